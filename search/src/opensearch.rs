//! The search port on OpenSearch 2.19, over its REST API with `reqwest` (plain HTTP, JSON).
//!
//! The index is an alias pointing at one generation, `{alias}-{unix millis}`; a rebuild fills a
//! new generation and swaps the alias in one `_aliases` call. Writes are `_bulk` scripted
//! upserts that keep a change only if its version is newer than the stored one, so replays and
//! reorders are no-ops and a tombstone (`live: false`) outlives any older upsert.
//!
//! Ids are `unsigned_long`, so every `u64` id sorts and pages as it does on tantivy.
//!
//! Every call is bounded by `request_timeout` (the client's timeout covers connect, send and
//! the whole answer). No answer, a refused connection, a 5xx or a 429 is
//! [`SearchError::Unavailable`]; any other answer this code did not ask for is
//! [`SearchError::Protocol`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cursor::{fingerprint, Cursor};
use crate::query::{ParsedQuery, QueryWord, MAX_PREFIX_CHARS, MAX_WORD_BYTES, SYNOPSIS_STOP_WORDS};
use crate::{
    sort_facet, Applied, Day, FacetCount, Facets, Filters, Highlights, Hit, IndexStats,
    SearchError, SearchIndex, SearchRequest, SearchResponse, Title, TitleChange, EXACT_TITLE_BOOST,
    FACET_SIZE, INITIAL_SCORE, MAX_LIMIT, POPULARITY_WEIGHT,
};

/// How to reach OpenSearch.
#[derive(Debug, Clone)]
pub struct OpenSearchOptions {
    /// `http://host:port`.
    pub url: String,
    /// The alias searches and writes go through; its generations are `{alias}-{n}`.
    pub alias: String,
    /// Bound on every HTTP call.
    pub request_timeout: Duration,
}

impl Default for OpenSearchOptions {
    fn default() -> Self {
        OpenSearchOptions {
            url: "http://127.0.0.1:9200".to_owned(),
            alias: "playpulse-titles".to_owned(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Actions per `_bulk` request, and bytes: big enough to amortise the round trip, small enough
/// that one request stays well under the node's limits and the request timeout.
const BULK_ACTIONS: usize = 1_000;
const BULK_BYTES: usize = 5 * 1024 * 1024;

/// How long a point in time lives between two pages.
const PIT_KEEP_ALIVE: &str = "1m";

const CURSOR_EXPIRED: &str = "after: this cursor has expired; search again";

/// Keeps the change only if it is newer than what is stored; a replacement keeps the stored
/// popularity (it comes from another feed), a tombstone keeps nothing but id and version.
/// One source text: OpenSearch compiles it once and caches it.
const WRITE_SCRIPT: &str = "\
def stored = ctx._source.version; \
long incoming = ((Number) params.doc.version).longValue(); \
if (stored != null && ((Number) stored).longValue() >= incoming) { \
  ctx.op = 'noop'; \
} else { \
  def popularity = ctx._source.popularity; \
  ctx._source.clear(); \
  ctx._source.putAll(params.doc); \
  if (popularity != null && params.doc.live == true) { ctx._source.popularity = popularity; } \
}";

/// Popularity only for live titles: a tombstone stays bare.
const POPULARITY_SCRIPT: &str = "\
if (ctx._source.live == true) { ctx._source.popularity = params.popularity; } \
else { ctx.op = 'noop'; }";

pub struct OpenSearchIndex {
    client: Client,
    /// `url` without a trailing slash.
    base: String,
    alias: String,
    timeout: Duration,
    /// The millis of the last generation this process named: two created within one
    /// millisecond still get distinct names.
    last_generation: AtomicU64,
    /// Whether the alias is known to exist (else the next call makes sure first).
    aliased: AtomicBool,
    /// Whether the alias's index was found to have this version's mapping.
    mapping_checked: AtomicBool,
}

/// The mapping's version, kept in its `_meta`: raised with every change to the mapping or the
/// analysis.
const MAPPING_VERSION: u64 = 1;

enum Body {
    Empty,
    Json(Value),
    NdJson(String),
}

/// An answer that was not a transport failure or a 5xx.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body of a 2xx answer, or the error it carries.
    fn ok(self, context: &str) -> Result<Value, SearchError> {
        if self.is_success() {
            Ok(self.body)
        } else {
            Err(SearchError::Protocol(format!(
                "{context}: {} {}",
                self.status,
                error_reason(&self.body)
            )))
        }
    }

    /// What the first root cause is (`search_context_missing_exception`, ...).
    fn root_cause(&self) -> (&str, &str) {
        let cause = &self.body["error"]["root_cause"][0];
        (
            cause["type"].as_str().unwrap_or(""),
            cause["reason"].as_str().unwrap_or(""),
        )
    }
}

fn error_reason(body: &Value) -> String {
    match &body["error"] {
        Value::Object(error) => {
            let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
            let reason = error.get("reason").and_then(Value::as_str).unwrap_or("");
            format!("{kind}: {reason}")
        }
        Value::String(reason) => reason.clone(),
        _ => {
            let mut text = body.to_string();
            text.truncate(300);
            text
        }
    }
}

fn protocol(context: &str) -> impl Fn(serde_json::Error) -> SearchError + '_ {
    move |error| SearchError::Protocol(format!("{context}: {error}"))
}

/// Index names OpenSearch accepts and that are safe in a URL path.
fn valid_index_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['-', '_', '+', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

impl OpenSearchIndex {
    /// A client for the index, without a round trip: an engine that is down now is found out
    /// (and the alias made) by the first call that needs it.
    pub fn new(options: OpenSearchOptions) -> Result<OpenSearchIndex, SearchError> {
        if !valid_index_name(&options.alias) {
            return Err(SearchError::BadRequest(format!(
                "alias `{}`: lower-case letters, digits, `-`, `_` and `.` only",
                options.alias
            )));
        }
        let client = Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout)
            .build()
            .map_err(|error| SearchError::Protocol(format!("http client: {error}")))?;
        let index = OpenSearchIndex {
            client,
            base: options.url.trim_end_matches('/').to_owned(),
            alias: options.alias,
            timeout: options.request_timeout,
            last_generation: AtomicU64::new(0),
            aliased: AtomicBool::new(false),
            mapping_checked: AtomicBool::new(false),
        };
        Ok(index)
    }

    /// Connects; when the alias does not exist yet, creates a first generation and points the
    /// alias at it. Fails with [`SearchError::Unavailable`] when the engine does not answer.
    pub async fn connect(options: OpenSearchOptions) -> Result<OpenSearchIndex, SearchError> {
        let index = OpenSearchIndex::new(options)?;
        index.ensure_alias().await?;
        Ok(index)
    }

    /// Refuses to write through an alias whose index another version's mapping made (its
    /// strict mapping would refuse the fields this version writes): the way out is a rebuild.
    async fn ensure_current_mapping(&self) -> Result<(), SearchError> {
        if self.mapping_checked.load(Ordering::Acquire) {
            return Ok(());
        }
        let mapping = self
            .send(
                Method::GET,
                &format!("/{}/_mapping", self.alias),
                Body::Empty,
            )
            .await?
            .ok("mapping")?;
        let versions: Vec<Option<u64>> = mapping
            .as_object()
            .into_iter()
            .flat_map(|indices| indices.values())
            .map(|index| index["mappings"]["_meta"]["playpulse_schema"].as_u64())
            .collect();
        if versions
            .iter()
            .any(|version| *version != Some(MAPPING_VERSION))
        {
            return Err(SearchError::Protocol(format!(
                "the index behind `{}` has another version's mapping ({versions:?}, this one writes {MAPPING_VERSION}): run `playpulse search reindex`",
                self.alias
            )));
        }
        self.mapping_checked.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes sure the alias exists (once it did, without a round trip).
    async fn ensure_alias(&self) -> Result<(), SearchError> {
        if self.aliased.load(Ordering::Acquire) {
            return Ok(());
        }
        let answer = self
            .send(Method::GET, &format!("/_alias/{}", self.alias), Body::Empty)
            .await?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => self.first_generation().await?,
            _ => {
                answer.ok("alias")?;
            }
        }
        self.aliased.store(true, Ordering::Release);
        Ok(())
    }

    /// Deletes the alias and every generation of it.
    pub async fn drop_all(&self) -> Result<(), SearchError> {
        let mut names = self.aliased().await?;
        let listed = self
            .send(
                Method::GET,
                &format!("/_cat/indices/{}-*?format=json&h=index", self.alias),
                Body::Empty,
            )
            .await?
            .ok("list generations")?;
        for entry in listed.as_array().into_iter().flatten() {
            if let Some(name) = entry["index"].as_str() {
                if self.is_generation(name) && !names.iter().any(|known| known == name) {
                    names.push(name.to_owned());
                }
            }
        }
        for name in names {
            self.delete_index(&name).await?;
        }
        Ok(())
    }

    /// One search with the words as `parsed` says (edits allowed or not).
    async fn search_parsed(
        &self,
        parsed: &ParsedQuery,
        request: &SearchRequest,
    ) -> Result<SearchResponse, SearchError> {
        let limit = request.limit.clamp(1, MAX_LIMIT);
        let mut body = search_body(parsed, request, limit);
        let (path, pit) = match &request.after {
            None => (format!("/{}/_search", self.alias), None),
            Some(cursor) => {
                let pit = match &cursor.pit {
                    Some(pit) => pit.clone(),
                    None => self.open_pit().await?,
                };
                body["pit"] = json!({ "id": pit, "keep_alive": PIT_KEEP_ALIVE });
                body["search_after"] = json!([cursor.score, cursor.id]);
                ("/_search".to_owned(), Some(pit))
            }
        };
        let answer = self.send(Method::POST, &path, Body::Json(body)).await?;
        if pit.is_some() && !answer.is_success() {
            // Expired or closed: no search context. Not one OpenSearch gave: invalid id.
            let (cause, reason) = answer.root_cause();
            if answer.status == StatusCode::NOT_FOUND
                || cause == "search_context_missing_exception"
                || (cause == "illegal_argument_exception" && reason.starts_with("invalid id"))
            {
                return Err(SearchError::BadRequest(CURSOR_EXPIRED.to_owned()));
            }
        }
        let answer: SearchAnswer =
            serde_json::from_value(answer.ok("search")?).map_err(protocol("search"))?;
        let pit = answer.pit_id.or(pit);
        let mut found = answer.hits.hits;
        let more = found.len() > limit;
        found.truncate(limit);
        let next = match (more, found.last()) {
            (true, Some(last)) => Some(Cursor {
                score: last
                    .sort
                    .first()
                    .and_then(Value::as_f64)
                    .or(last.score)
                    .unwrap_or(0.0),
                id: last.source.id,
                query: fingerprint(&request.q, &request.filters),
                pit,
            }),
            _ => {
                if let Some(pit) = pit {
                    self.close_pit(pit);
                }
                None
            }
        };
        let facets = match (request.facets, answer.aggregations) {
            (true, Some(mut aggregations)) => Some(Facets {
                genres: facet(&mut aggregations, "genres"),
                decades: facet(&mut aggregations, "decades"),
                languages: facet(&mut aggregations, "languages"),
            }),
            (true, None) => Some(Facets::default()),
            (false, _) => None,
        };
        Ok(SearchResponse {
            total: answer.hits.total.value,
            hits: found.into_iter().map(hit).collect(),
            facets,
            next,
        })
    }

    async fn send(&self, method: Method, path: &str, body: Body) -> Result<Answer, SearchError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method.clone(), &url);
        request = match body {
            Body::Empty => request,
            Body::Json(value) => request.json(&value),
            Body::NdJson(text) => request
                .header(CONTENT_TYPE, "application/x-ndjson")
                .body(text),
        };
        let unreachable = |error: reqwest::Error| {
            let what = if error.is_timeout() {
                format!("no answer within {:?}", self.timeout)
            } else if error.is_connect() {
                "cannot connect".to_owned()
            } else {
                "request failed".to_owned()
            };
            SearchError::Unavailable(format!("{method} {url}: {what} ({})", chain(&error)))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(SearchError::Unavailable(format!(
                "{method} {url}: {status} {}",
                error_reason(&body)
            )));
        }
        Ok(Answer { status, body })
    }

    /// The indexes the alias points at (none when it does not exist).
    async fn aliased(&self) -> Result<Vec<String>, SearchError> {
        let answer = self
            .send(Method::GET, &format!("/_alias/{}", self.alias), Body::Empty)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let body = answer.ok("alias")?;
        let mut names: Vec<String> = body
            .as_object()
            .map(|indexes| indexes.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        Ok(names)
    }

    fn is_generation(&self, name: &str) -> bool {
        name.strip_prefix(self.alias.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    fn check_generation(&self, name: &str) -> Result<(), SearchError> {
        if self.is_generation(name) {
            Ok(())
        } else {
            Err(SearchError::BadRequest(format!(
                "`{name}` is not a generation of `{}`",
                self.alias
            )))
        }
    }

    fn next_generation_name(&self) -> String {
        let now = unix_millis();
        let mut last = self.last_generation.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self.last_generation.compare_exchange(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return format!("{}-{next}", self.alias),
                Err(seen) => last = seen,
            }
        }
    }

    /// Creates a generation, with the alias on it when `with_alias`. Another process may have
    /// taken the same millisecond: then the next one is tried.
    async fn create_index(&self, with_alias: bool) -> Result<String, SearchError> {
        let mut body = index_definition();
        if with_alias {
            // The write index flag makes a second first generation (another process
            // connecting at the same moment) fail instead of sharing the alias.
            body["aliases"] = json!({ self.alias.as_str(): { "is_write_index": true } });
        }
        let mut attempts = 0;
        loop {
            let name = self.next_generation_name();
            let answer = self
                .send(Method::PUT, &format!("/{name}"), Body::Json(body.clone()))
                .await?;
            attempts += 1;
            let (cause, _) = answer.root_cause();
            if !answer.is_success() && cause == "resource_already_exists_exception" && attempts < 5
            {
                continue;
            }
            answer.ok("create generation")?;
            return Ok(name);
        }
    }

    async fn first_generation(&self) -> Result<(), SearchError> {
        match self.create_index(true).await {
            Ok(_) => Ok(()),
            // Lost the race to another process: its generation is the alias's.
            Err(error) => {
                if self.aliased().await?.is_empty() {
                    Err(error)
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn delete_index(&self, name: &str) -> Result<(), SearchError> {
        let answer = self
            .send(Method::DELETE, &format!("/{name}"), Body::Empty)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        answer.ok("delete generation").map(|_| ())
    }

    /// Sends `actions` (each an action line and its body) in chunks; the items in order.
    async fn bulk(&self, query: &str, actions: &[String]) -> Result<Vec<BulkItem>, SearchError> {
        let mut items = Vec::new();
        let mut body = String::new();
        let mut count = 0;
        for action in actions {
            if count > 0 && (count >= BULK_ACTIONS || body.len() + action.len() > BULK_BYTES) {
                items.extend(self.send_bulk(query, std::mem::take(&mut body)).await?);
                count = 0;
            }
            body.push_str(action);
            count += 1;
        }
        if count > 0 {
            items.extend(self.send_bulk(query, body).await?);
        }
        Ok(items)
    }

    async fn send_bulk(&self, query: &str, body: String) -> Result<Vec<BulkItem>, SearchError> {
        let answer = self
            .send(Method::POST, &format!("/_bulk{query}"), Body::NdJson(body))
            .await?
            .ok("bulk")?;
        let answer: BulkAnswer = serde_json::from_value(answer).map_err(protocol("bulk"))?;
        Ok(answer
            .items
            .into_iter()
            .filter_map(|item| item.into_values().next())
            .collect())
    }

    async fn write(
        &self,
        index: &str,
        query: &str,
        changes: &[TitleChange],
    ) -> Result<Applied, SearchError> {
        let actions = changes
            .iter()
            .map(|change| write_action(index, change))
            .collect::<Result<Vec<_>, _>>()?;
        let mut applied = Applied::default();
        for item in self.bulk(query, &actions).await? {
            if item.error.is_some() {
                return Err(item.failure("write"));
            }
            match item.result.as_deref() {
                Some("noop") => applied.stale += 1,
                Some("created" | "updated") => applied.written += 1,
                other => {
                    return Err(SearchError::Protocol(format!(
                        "write: item result {other:?}"
                    )))
                }
            }
        }
        Ok(applied)
    }

    async fn open_pit(&self) -> Result<String, SearchError> {
        let answer = self
            .send(
                Method::POST,
                &format!(
                    "/{}/_search/point_in_time?keep_alive={PIT_KEEP_ALIVE}",
                    self.alias
                ),
                Body::Empty,
            )
            .await?
            .ok("open point in time")?;
        answer["pit_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SearchError::Protocol("open point in time: no pit_id".to_owned()))
    }

    /// Frees a point in time once its last page is read, in the background: it would expire
    /// on its own, but open ones count against the node's limit until then.
    fn close_pit(&self, pit: String) {
        let client = self.client.clone();
        let url = format!("{}/_search/point_in_time", self.base);
        tokio::spawn(async move {
            let closed = client
                .delete(&url)
                .json(&json!({ "pit_id": [pit] }))
                .send()
                .await;
            if let Err(error) = closed {
                tracing::debug!(%error, "closing a point in time failed (it expires on its own)");
            }
        });
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Deserialize)]
struct BulkAnswer {
    items: Vec<HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    error: Option<Value>,
}

impl BulkItem {
    fn failure(&self, context: &str) -> SearchError {
        let reason = match &self.error {
            Some(error) => format!(
                "{}: {}",
                error["type"].as_str().unwrap_or("error"),
                error["reason"].as_str().unwrap_or("")
            ),
            None => String::new(),
        };
        let message = format!("{context}: item {} {reason}", self.status);
        // Rejected for load (a full write queue): worth a retry later.
        if self.status == 429 || self.status >= 500 {
            SearchError::Unavailable(message)
        } else {
            SearchError::Protocol(message)
        }
    }
}

/// Settings and mapping of a generation: the analysis is `query`'s (split on what is not a
/// letter or a digit, drop long words, lower-case, fold accents), prefixes index-time only.
fn index_definition() -> Value {
    let word_filters = json!(["long_words", "lowercase", "asciifolding"]);
    let prefix_filters = json!(["long_words", "lowercase", "asciifolding", "prefixes"]);
    let synopsis_filters = json!([
        "long_words",
        "lowercase",
        "asciifolding",
        "synopsis_stop_words"
    ]);
    // Offsets in the postings: the highlighter reads them instead of analysing each hit's
    // text again (that re-analysis was most of a query's CPU).
    let text_with_prefix = json!({
        "type": "text",
        "analyzer": "words",
        "index_options": "offsets",
        "fields": {
            "prefix": {
                "type": "text", "analyzer": "prefixes", "search_analyzer": "words",
                "index_options": "offsets"
            }
        }
    });
    // The query is analysed with `words`: a stop word asked for simply finds nothing here.
    let synopsis = json!({
        "type": "text", "analyzer": "synopsis", "search_analyzer": "words",
        "index_options": "offsets"
    });
    // A name matches or not: how many other names a title lists says nothing of relevance.
    let names = json!({ "type": "text", "analyzer": "words", "norms": false });
    let names_with_prefix = json!({
        "type": "text",
        "analyzer": "words",
        "norms": false,
        "fields": {
            "prefix": {
                "type": "text", "analyzer": "prefixes", "search_analyzer": "words", "norms": false
            }
        }
    });
    let keyword = json!({ "type": "keyword" });
    let integer = json!({ "type": "integer" });
    json!({
        "settings": {
            "number_of_shards": 1,
            "number_of_replicas": 0,
            "refresh_interval": "1s",
            "analysis": {
                "tokenizer": {
                    "words": { "type": "pattern", "pattern": "[^\\p{L}\\p{N}]+" }
                },
                "filter": {
                    // Characters, where tantivy counts bytes: the same for ASCII words.
                    "long_words": { "type": "length", "max": MAX_WORD_BYTES },
                    "prefixes": {
                        "type": "edge_ngram", "min_gram": 1, "max_gram": MAX_PREFIX_CHARS
                    },
                    "synopsis_stop_words": { "type": "stop", "stopwords": SYNOPSIS_STOP_WORDS.to_vec() }
                },
                "analyzer": {
                    "words": { "type": "custom", "tokenizer": "words", "filter": word_filters },
                    "prefixes": { "type": "custom", "tokenizer": "words", "filter": prefix_filters },
                    "synopsis": {
                        "type": "custom", "tokenizer": "words", "filter": synopsis_filters
                    }
                }
            }
        },
        "mappings": {
            "_meta": { "playpulse_schema": MAPPING_VERSION },
            "dynamic": "strict",
            "properties": {
                "id": { "type": "unsigned_long" },
                "title": text_with_prefix,
                "original_title": text_with_prefix,
                "synopsis": synopsis,
                "cast": names_with_prefix,
                "crew": names,
                "title_key": keyword,
                "title_initial": keyword,
                "genres": keyword,
                "year": integer,
                "decade": integer,
                "runtime_minutes": integer,
                "maturity": keyword,
                "languages": keyword,
                "availability": {
                    "type": "nested",
                    "properties": {
                        "country": keyword,
                        "from": integer,
                        "until": integer
                    }
                },
                "popularity": { "type": "float" },
                "version": { "type": "long" },
                "live": { "type": "boolean" },
                "doc": { "type": "object", "enabled": false }
            }
        }
    })
}

/// Versions are `long` in the index; nothing counts that far, but a bad one must not fail.
fn stored_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

fn document(title: &Title, version: u64) -> Result<Value, SearchError> {
    let availability: Vec<Value> = title
        .availability
        .iter()
        .map(|window| {
            json!({
                "country": window.country.as_str(),
                "from": window.from,
                "until": window.until.unwrap_or(Day::MAX),
            })
        })
        .collect();
    let doc = serde_json::to_value(title).map_err(protocol("title"))?;
    Ok(json!({
        "id": title.id,
        "title": title.title,
        "original_title": title.original_title,
        "synopsis": title.synopsis,
        "cast": title.cast,
        "crew": title.crew,
        "title_key": title.title_keys(),
        "title_initial": title.initials(),
        "genres": title.genres,
        "year": title.year,
        "decade": title.decade(),
        "runtime_minutes": title.runtime_minutes,
        "maturity": title.maturity,
        "languages": title.languages(),
        "availability": availability,
        "version": stored_version(version),
        "live": true,
        "doc": doc,
    }))
}

fn write_action(index: &str, change: &TitleChange) -> Result<String, SearchError> {
    let doc = match change {
        TitleChange::Upsert { title, version } => document(title, *version)?,
        TitleChange::Delete { id, version } => {
            json!({ "id": id, "version": stored_version(*version), "live": false })
        }
    };
    let action = json!({
        "update": { "_index": index, "_id": change.id().to_string(), "retry_on_conflict": 3 }
    });
    let body = json!({
        "scripted_upsert": true,
        "upsert": {},
        "script": { "source": WRITE_SCRIPT, "lang": "painless", "params": { "doc": doc } }
    });
    Ok(format!("{action}\n{body}\n"))
}

fn popularity_action(alias: &str, id: u64, popularity: f32) -> String {
    // ln1p of a negative or missing number is no boost at all.
    let popularity = if popularity.is_finite() {
        popularity.max(0.0)
    } else {
        0.0
    };
    let action = json!({
        "update": { "_index": alias, "_id": id.to_string(), "retry_on_conflict": 3 }
    });
    let body = json!({
        "script": {
            "source": POPULARITY_SCRIPT,
            "lang": "painless",
            "params": { "popularity": popularity }
        }
    });
    format!("{action}\n{body}\n")
}

/// One word: it must match a field as a term within its edits, or (the word being typed) a
/// prefix of a word of the title, original title or cast.
fn word_clause(word: &QueryWord) -> Value {
    if word.initial {
        return json!({ "constant_score": {
            "filter": { "term": { "title_initial": word.text } }, "boost": INITIAL_SCORE
        } });
    }
    let mut should = vec![json!({
        "multi_match": {
            "query": word.text,
            "fields": ["title^4", "original_title^3", "cast^2", "crew", "synopsis"],
            "fuzziness": word.edits,
            "prefix_length": 0,
            "max_expansions": 50,
            "fuzzy_transpositions": true
        }
    })];
    if word.prefix {
        should.push(json!({
            "multi_match": {
                "query": word.text,
                "fields": ["title.prefix^4", "original_title.prefix^3", "cast.prefix^2"]
            }
        }));
    }
    json!({ "bool": { "should": should, "minimum_should_match": 1 } })
}

fn filter_clauses(filters: &Filters, today: Day) -> Vec<Value> {
    let mut clauses = Vec::new();
    if let Some(genre) = &filters.genre {
        clauses.push(json!({ "term": { "genres": genre } }));
    }
    if filters.year_from.is_some() || filters.year_to.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(from) = filters.year_from {
            range.insert("gte".to_owned(), json!(from));
        }
        if let Some(to) = filters.year_to {
            range.insert("lte".to_owned(), json!(to));
        }
        clauses.push(json!({ "range": { "year": range } }));
    }
    if let Some(language) = &filters.language {
        clauses.push(json!({ "term": { "languages": language } }));
    }
    if !filters.maturity.is_empty() {
        clauses.push(json!({ "terms": { "maturity": filters.maturity } }));
    }
    if let Some(country) = filters.country {
        clauses.push(json!({
            "nested": {
                "path": "availability",
                "query": { "bool": { "filter": [
                    { "term": { "availability.country": country.as_str() } },
                    { "range": { "availability.from": { "lte": today } } },
                    { "range": { "availability.until": { "gte": today } } }
                ] } }
            }
        }));
    }
    clauses
}

fn search_body(parsed: &ParsedQuery, request: &SearchRequest, limit: usize) -> Value {
    let must: Vec<Value> = if parsed.is_empty() {
        vec![json!({ "match_all": {} })]
    } else {
        parsed.words.iter().map(word_clause).collect()
    };
    let filter = filter_clauses(&request.filters, request.today);
    let exact_title: Vec<Value> = parsed
        .title_key()
        .map(|key| {
            json!({ "constant_score": {
                "filter": { "term": { "title_key": key } }, "boost": EXACT_TITLE_BOOST
            } })
        })
        .into_iter()
        .collect();
    let query = json!({
        "function_score": {
            // Tombstones out: a short list to skip, where `live: true` would be every document
            // to intersect with.
            "query": { "bool": {
                "must": must, "should": exact_title, "filter": filter,
                "must_not": [{ "term": { "live": false } }]
            } },
            // 1 + 0.1 ln(1 + popularity), times the BM25 score: crate::popularity_boost.
            "functions": [
                { "weight": 1 },
                {
                    "field_value_factor": {
                        "field": "popularity", "modifier": "ln1p", "missing": 0
                    },
                    "weight": POPULARITY_WEIGHT
                }
            ],
            "score_mode": "sum",
            "boost_mode": "multiply"
        }
    });
    let mut body = json!({
        "query": query,
        "sort": [{ "_score": "desc" }, { "id": "asc" }],
        "track_total_hits": true,
        // One more than the page: whether a next page exists.
        "size": limit + 1,
        "_source": ["id", "doc.title", "doc.year", "doc.genres", "doc.maturity"],
    });
    if !parsed.is_empty() {
        let mut fields = json!({
            "title": { "number_of_fragments": 0 },
            "synopsis": { "fragment_size": 150, "number_of_fragments": 1 }
        });
        if parsed.words.iter().any(|word| word.prefix) {
            // The prefix field highlights the whole word a prefix matched in the title.
            fields["title.prefix"] = json!({ "number_of_fragments": 0 });
        }
        body["highlight"] = json!({
            "encoder": "html",
            "pre_tags": ["<em>"],
            "post_tags": ["</em>"],
            "fields": fields
        });
    }
    if request.facets {
        let terms = |field: &str| {
            json!({ "terms": {
                "field": field,
                "size": FACET_SIZE,
                "order": [{ "_count": "desc" }, { "_key": "asc" }]
            } })
        };
        body["aggs"] = json!({
            "genres": terms("genres"),
            "decades": terms("decade"),
            "languages": terms("languages")
        });
    }
    body
}

#[derive(Deserialize)]
struct SearchAnswer {
    hits: SearchHits,
    #[serde(default)]
    aggregations: Option<HashMap<String, TermsAnswer>>,
    #[serde(default)]
    pit_id: Option<String>,
}

#[derive(Deserialize)]
struct SearchHits {
    total: Total,
    hits: Vec<SearchHit>,
}

#[derive(Deserialize)]
struct Total {
    value: u64,
}

#[derive(Deserialize)]
struct SearchHit {
    #[serde(rename = "_score", default)]
    score: Option<f64>,
    #[serde(default)]
    sort: Vec<Value>,
    #[serde(rename = "_source")]
    source: HitSource,
    #[serde(default)]
    highlight: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct HitSource {
    id: u64,
    doc: HitDoc,
}

#[derive(Deserialize)]
struct HitDoc {
    title: String,
    year: u16,
    #[serde(default)]
    genres: Vec<String>,
    maturity: String,
}

#[derive(Deserialize)]
struct TermsAnswer {
    buckets: Vec<Bucket>,
}

#[derive(Deserialize)]
struct Bucket {
    key: Value,
    doc_count: u64,
}

fn facet(aggregations: &mut HashMap<String, TermsAnswer>, name: &str) -> Vec<FacetCount> {
    let mut counts: Vec<FacetCount> = aggregations
        .remove(name)
        .map(|terms| terms.buckets)
        .unwrap_or_default()
        .into_iter()
        .map(|bucket| FacetCount {
            value: match bucket.key {
                Value::String(text) => text,
                other => other.to_string(),
            },
            count: bucket.doc_count,
        })
        .collect();
    sort_facet(&mut counts);
    counts
}

/// The characters of a highlight with whether each is inside `<em>`.
fn marked(highlight: &str) -> Vec<(char, bool)> {
    let mut marks = Vec::with_capacity(highlight.len());
    let mut inside = false;
    let mut rest = highlight;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("<em>") {
            inside = true;
            rest = after;
        } else if let Some(after) = rest.strip_prefix("</em>") {
            inside = false;
            rest = after;
        } else {
            marks.push((c, inside));
            rest = &rest[c.len_utf8()..];
        }
    }
    marks
}

/// The title with the words either highlight marked: the title field's (terms, fuzzy) and the
/// prefix field's (the word a prefix matched). Both are the same escaped text, so the marks
/// line up; the literal text holds no `<` (the encoder escaped it).
fn merge_highlights(title: Option<&str>, prefix: Option<&str>) -> Option<String> {
    let (title, prefix) = match (title, prefix) {
        (Some(title), Some(prefix)) => (title, prefix),
        (one, other) => return one.or(other).map(str::to_owned),
    };
    let (a, b) = (marked(title), marked(prefix));
    if a.len() != b.len() || a.iter().zip(&b).any(|((x, _), (y, _))| x != y) {
        return Some(title.to_owned());
    }
    let mut merged = String::with_capacity(title.len() + prefix.len());
    let mut inside = false;
    for ((c, in_a), (_, in_b)) in a.iter().zip(&b) {
        let marked = *in_a || *in_b;
        if marked != inside {
            merged.push_str(if marked { "<em>" } else { "</em>" });
            inside = marked;
        }
        merged.push(*c);
    }
    if inside {
        merged.push_str("</em>");
    }
    Some(merged)
}

fn first(highlight: &mut HashMap<String, Vec<String>>, field: &str) -> Option<String> {
    highlight
        .remove(field)
        .and_then(|fragments| fragments.into_iter().next())
}

fn hit(mut found: SearchHit) -> Hit {
    let title = first(&mut found.highlight, "title");
    let prefix = first(&mut found.highlight, "title.prefix");
    let score = found
        .score
        .or_else(|| found.sort.first().and_then(Value::as_f64))
        .unwrap_or(0.0);
    Hit {
        id: found.source.id,
        title: found.source.doc.title,
        year: found.source.doc.year,
        genres: found.source.doc.genres,
        maturity: found.source.doc.maturity,
        score: score as f32,
        highlights: Highlights {
            title: merge_highlights(title.as_deref(), prefix.as_deref()),
            synopsis: first(&mut found.highlight, "synopsis"),
        },
    }
}

#[async_trait]
impl SearchIndex for OpenSearchIndex {
    async fn apply(&self, changes: &[TitleChange]) -> Result<Applied, SearchError> {
        self.ensure_alias().await?;
        self.ensure_current_mapping().await?;
        // Through the alias, so that a switch takes effect between two batches; never
        // auto-creating an index named like the alias if it is gone.
        self.write(&self.alias, "?require_alias=true", changes)
            .await
    }

    async fn set_popularity(&self, popularity: &[(u64, f32)]) -> Result<(), SearchError> {
        self.ensure_alias().await?;
        let actions: Vec<String> = popularity
            .iter()
            .map(|&(id, popularity)| popularity_action(&self.alias, id, popularity))
            .collect();
        for item in self.bulk("?require_alias=true", &actions).await? {
            let missing = item.status == 404
                && item
                    .error
                    .as_ref()
                    .is_some_and(|error| error["type"] == "document_missing_exception");
            if item.error.is_some() && !missing {
                return Err(item.failure("set popularity"));
            }
        }
        Ok(())
    }

    async fn search(&self, request: &SearchRequest) -> Result<SearchResponse, SearchError> {
        self.ensure_alias().await?;
        let parsed = ParsedQuery::parse(&request.q)?;
        if let Some(after) = &request.after {
            after.check(&request.q, &request.filters)?;
        }
        let exact = self.search_parsed(&parsed.as_typed(), request).await?;
        if exact.total == 0 && parsed.allows_typos() {
            return self.search_parsed(&parsed, request).await;
        }
        Ok(exact)
    }

    async fn version_of(&self, id: u64) -> Result<Option<(u64, bool)>, SearchError> {
        self.ensure_alias().await?;
        // A get through an alias of one index is real time, unlike a search.
        let answer = self
            .send(
                Method::GET,
                &format!("/{}/_doc/{id}?_source=version,live", self.alias),
                Body::Empty,
            )
            .await?;
        if answer.status == StatusCode::NOT_FOUND && answer.body["found"] == false {
            return Ok(None);
        }
        let body = answer.ok("version")?;
        let source = &body["_source"];
        match (source["version"].as_i64(), source["live"].as_bool()) {
            (Some(version), Some(live)) => Ok(Some((u64::try_from(version).unwrap_or(0), live))),
            _ => Err(SearchError::Protocol(format!(
                "version of {id}: no version or live in {source}"
            ))),
        }
    }

    async fn refresh(&self) -> Result<(), SearchError> {
        self.send(
            Method::POST,
            &format!("/{}/_refresh", self.alias),
            Body::Empty,
        )
        .await?
        .ok("refresh")
        .map(|_| ())
    }

    async fn generation(&self) -> Result<String, SearchError> {
        self.ensure_alias().await?;
        let mut names = self.aliased().await?;
        match names.len() {
            1 => Ok(names.remove(0)),
            0 => Err(SearchError::Protocol(format!(
                "alias `{}` does not exist",
                self.alias
            ))),
            _ => Err(SearchError::Protocol(format!(
                "alias `{}` points at {names:?}",
                self.alias
            ))),
        }
    }

    async fn create_generation(&self) -> Result<String, SearchError> {
        self.ensure_alias().await?;
        self.create_index(false).await
    }

    async fn apply_to(&self, name: &str, changes: &[TitleChange]) -> Result<Applied, SearchError> {
        self.check_generation(name)?;
        // A bulk update would create a missing index with a guessed mapping.
        let exists = self
            .send(Method::HEAD, &format!("/{name}"), Body::Empty)
            .await?;
        if exists.status == StatusCode::NOT_FOUND {
            return Err(SearchError::BadRequest(format!(
                "generation `{name}` does not exist"
            )));
        }
        exists.ok("generation")?;
        self.write(name, "", changes).await
    }

    async fn switch_to(&self, name: &str) -> Result<(), SearchError> {
        self.check_generation(name)?;
        let previous = self.aliased().await?;
        if previous.iter().all(|old| old == name) && !previous.is_empty() {
            return Ok(());
        }
        // What the rebuild wrote is searchable the moment the alias moves.
        self.send(Method::POST, &format!("/{name}/_refresh"), Body::Empty)
            .await?
            .ok("refresh generation")?;
        let mut actions: Vec<Value> = previous
            .iter()
            .filter(|old| *old != name)
            .map(|old| json!({ "remove": { "index": old, "alias": self.alias } }))
            .collect();
        actions
            .push(json!({ "add": { "index": name, "alias": self.alias, "is_write_index": true } }));
        self.send(
            Method::POST,
            "/_aliases",
            Body::Json(json!({ "actions": actions })),
        )
        .await?
        .ok("switch alias")?;
        for old in previous.iter().filter(|old| *old != name) {
            self.delete_index(old).await?;
        }
        Ok(())
    }

    async fn stats(&self) -> Result<IndexStats, SearchError> {
        self.ensure_alias().await?;
        let count = self
            .send(
                Method::POST,
                &format!("/{}/_count", self.alias),
                Body::Json(json!({ "query": { "term": { "live": true } } })),
            )
            .await?
            .ok("count")?;
        let store = self
            .send(
                Method::GET,
                &format!("/{}/_stats/store", self.alias),
                Body::Empty,
            )
            .await?
            .ok("store stats")?;
        match (
            count["count"].as_u64(),
            store["_all"]["primaries"]["store"]["size_in_bytes"].as_u64(),
        ) {
            (Some(titles), Some(size_bytes)) => Ok(IndexStats { titles, size_bytes }),
            _ => Err(SearchError::Protocol(
                "stats: no count or store size".to_owned(),
            )),
        }
    }

    async fn ready(&self) -> bool {
        match self
            .send(Method::GET, "/_cluster/health", Body::Empty)
            .await
        {
            Ok(answer) if answer.is_success() => {
                matches!(answer.body["status"].as_str(), Some("green" | "yellow"))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlights_of_the_title_and_its_prefixes_merge() {
        assert_eq!(
            merge_highlights(
                Some("<em>The</em> Godfather &amp; Son"),
                Some("The <em>Godfather</em> &amp; Son")
            )
            .as_deref(),
            Some("<em>The</em> <em>Godfather</em> &amp; Son")
        );
        assert_eq!(
            merge_highlights(Some("<em>Heat</em>"), Some("<em>Heat</em>")).as_deref(),
            Some("<em>Heat</em>")
        );
        assert_eq!(
            merge_highlights(None, Some("<em>Heat</em>")).as_deref(),
            Some("<em>Heat</em>")
        );
        assert_eq!(merge_highlights(None, None), None);
        assert_eq!(
            merge_highlights(Some("<em>a</em> b"), Some("other")).as_deref(),
            Some("<em>a</em> b")
        );
    }

    #[test]
    fn generation_names_belong_to_the_alias() {
        let index = OpenSearchIndex {
            client: Client::new(),
            base: String::new(),
            alias: "titles".to_owned(),
            timeout: Duration::from_secs(1),
            last_generation: AtomicU64::new(0),
            aliased: AtomicBool::new(true),
            mapping_checked: AtomicBool::new(true),
        };
        assert!(index.is_generation("titles-1700000000000"));
        assert!(!index.is_generation("titles-eu-1700000000000"));
        assert!(!index.is_generation("titles-"));
        assert!(!index.is_generation("titles"));
        let (a, b) = (index.next_generation_name(), index.next_generation_name());
        assert_ne!(a, b);
        assert!(valid_index_name("playpulse-titles"));
        assert!(!valid_index_name("../_all"));
        assert!(!valid_index_name("Titles"));
    }
}
