//! The embedded search index: tantivy, in process, in a directory of its own (or in memory for
//! tests). A directory holds generations (`<root>/<name>/`) and an `ALIAS` file naming the
//! current one; a rebuild fills a new generation and then rewrites `ALIAS` (write, rename).
//!
//! Every search runs one custom collector ([`TitleCollector`]) over the matches: it applies the
//! popularity boost, the country filter (availability windows packed in a fast field), the
//! cursor, the top-k and the facet counts in one pass.

use std::collections::{BinaryHeap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, FuzzyTermQuery,
    Occur, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value, FAST,
    STORED, STRING,
};
use tantivy::tokenizer::TokenizerManager;
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentOrdinal,
    SegmentReader, TantivyDocument, Term,
};

use crate::cursor::{fingerprint, Cursor};
use crate::highlight::highlight;
use crate::query::{self, ParsedQuery, QueryWord};
use crate::{
    popularity_boost, sort_facet, Applied, Day, FacetCount, Facets, Highlights, Hit, IndexStats,
    SearchError, SearchIndex, SearchRequest, SearchResponse, Title, TitleChange, EXACT_TITLE_BOOST,
    INITIAL_SCORE, MAX_LIMIT,
};

/// Memory the writer buffers before it flushes a segment.
const WRITER_MEMORY: usize = 64 * 1024 * 1024;
const ALIAS_FILE: &str = "ALIAS";
/// How an index written with another schema is told apart.
const SCHEMA_CHANGED: &str = "the index has another schema";
/// The analyzer of the text fields ([`query::analyzer`]).
const WORDS: &str = "words";
/// The synopsis analyzer ([`query::synopsis_analyzer`]).
const SYNOPSIS: &str = "synopsis";
/// Prefix fields hold words already cut into prefixes: split on spaces only.
const PREFIXES: &str = "whitespace";

/// Each scored field with its weight; the prefix fields weigh as their text fields do.
const TEXT_FIELDS: [(&str, f32); 5] = [
    ("title", 4.0),
    ("original_title", 3.0),
    ("cast", 2.0),
    ("crew", 1.0),
    ("synopsis", 1.0),
];
const PREFIX_FIELDS: [(&str, f32); 3] = [
    ("title_prefix", 4.0),
    ("original_title_prefix", 3.0),
    ("cast_prefix", 2.0),
];

#[derive(Clone)]
struct Fields {
    id: Field,
    live: Field,
    version: Field,
    text: Vec<(Field, f32)>,
    prefix: Vec<(Field, f32)>,
    title: Field,
    original_title: Field,
    synopsis: Field,
    cast: Field,
    crew: Field,
    title_prefix: Field,
    original_title_prefix: Field,
    cast_prefix: Field,
    title_key: Field,
    title_initial: Field,
    genres: Field,
    year: Field,
    decade: Field,
    maturity: Field,
    languages: Field,
    availability: Field,
    doc: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let number = NumericOptions::default().set_indexed().set_fast();
    let id = builder.add_u64_field("id", number.clone().set_stored());
    let live = builder.add_u64_field("live", number.clone());
    let version = builder.add_u64_field("version", NumericOptions::default().set_fast());
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(WORDS)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let prefixes = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(PREFIXES)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    // A name matches or not: how many other names a title lists says nothing of relevance.
    let names = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(WORDS)
            .set_index_option(IndexRecordOption::WithFreqs)
            .set_fieldnorms(false),
    );
    let title = builder.add_text_field("title", words.clone());
    let original_title = builder.add_text_field("original_title", words.clone());
    let cast = builder.add_text_field("cast", names.clone());
    let crew = builder.add_text_field("crew", names);
    let synopsis = builder.add_text_field(
        "synopsis",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(SYNOPSIS)
                .set_index_option(IndexRecordOption::WithFreqs),
        ),
    );
    let title_prefix = builder.add_text_field("title_prefix", prefixes.clone());
    let original_title_prefix = builder.add_text_field("original_title_prefix", prefixes.clone());
    let cast_prefix = builder.add_text_field(
        "cast_prefix",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(PREFIXES)
                .set_index_option(IndexRecordOption::WithFreqs)
                .set_fieldnorms(false),
        ),
    );
    let title_key = builder.add_text_field("title_key", STRING);
    let title_initial = builder.add_text_field("title_initial", STRING);
    let genres = builder.add_text_field("genres", STRING | FAST);
    let year = builder.add_u64_field("year", number);
    let decade = builder.add_u64_field("decade", FAST);
    let maturity = builder.add_text_field("maturity", STRING);
    let languages = builder.add_text_field("languages", STRING | FAST);
    let availability = builder.add_u64_field("availability", FAST);
    let doc = builder.add_text_field("doc", STORED);
    let fields = Fields {
        id,
        live,
        version,
        text: vec![
            (title, TEXT_FIELDS[0].1),
            (original_title, TEXT_FIELDS[1].1),
            (cast, TEXT_FIELDS[2].1),
            (crew, TEXT_FIELDS[3].1),
            (synopsis, TEXT_FIELDS[4].1),
        ],
        prefix: vec![
            (title_prefix, PREFIX_FIELDS[0].1),
            (original_title_prefix, PREFIX_FIELDS[1].1),
            (cast_prefix, PREFIX_FIELDS[2].1),
        ],
        title,
        original_title,
        synopsis,
        cast,
        crew,
        title_prefix,
        original_title_prefix,
        cast_prefix,
        title_key,
        title_initial,
        genres,
        year,
        decade,
        maturity,
        languages,
        availability,
        doc,
    };
    (builder.build(), fields)
}

/// A window packed in one u64: country (16 bits), first day (24 bits), last day (24 bits, all
/// ones: no end). Days count from 1970 and fit 24 bits until the year 47,000.
fn pack_window(window: &crate::Availability) -> u64 {
    const DAY_MASK: u64 = 0xff_ffff;
    let from = (window.from.max(0) as u64).min(DAY_MASK - 1);
    let until = window
        .until
        .map_or(DAY_MASK, |until| (until.max(0) as u64).min(DAY_MASK - 1));
    (u64::from(window.country.as_u16()) << 48) | (from << 24) | until
}

fn window_covers(packed: u64, country: u16, day: Day) -> bool {
    let day = day.max(0) as u64;
    (packed >> 48) as u16 == country
        && (packed >> 24) & 0xff_ffff <= day
        && day <= packed & 0xff_ffff
}

/// Title id -> how much it is watched, looked up once per match: hashed with one multiply
/// (ids are already well spread) rather than SipHash, on every match of a broad query.
type Popularity = HashMap<u64, f32, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (id ^ (id >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One generation: an index, its reader, its one writer and the versions it holds.
struct Generation {
    name: String,
    dir: Option<PathBuf>,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// Title id -> (version, live): what the versioned writes compare with.
    versions: Mutex<HashMap<u64, (u64, bool)>>,
}

struct Inner {
    root: Option<PathBuf>,
    fields: Fields,
    schema: Schema,
    current: RwLock<Arc<Generation>>,
    building: Mutex<HashMap<String, Arc<Generation>>>,
    /// Title id -> how much it is watched. Kept beside the index (a boost changes no document).
    popularity: RwLock<Arc<Popularity>>,
}

/// The embedded search index.
#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

fn engine(error: impl std::fmt::Display) -> SearchError {
    SearchError::Unavailable(format!("embedded index: {error}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TantivyIndex {
    /// Opens (or creates) the index kept in `root`.
    pub fn open(root: &Path) -> Result<TantivyIndex, SearchError> {
        std::fs::create_dir_all(root).map_err(engine)?;
        let (schema, fields) = schema();
        let alias = root.join(ALIAS_FILE);
        let name = match std::fs::read_to_string(&alias) {
            Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
            _ => {
                let name = generation_name();
                write_alias(root, &name)?;
                name
            }
        };
        let current = match open_generation(Some(root), &schema, &name) {
            Err(SearchError::Protocol(message)) if message.starts_with(SCHEMA_CHANGED) => {
                // Written by another version: the index is derived data, so it starts again
                // empty, and the catalog's projector (finding it empty) reads the log again.
                tracing::warn!(generation = %name, "search index of another schema: rebuilt from the catalog");
                let fresh = generation_name();
                let generation = open_generation(Some(root), &schema, &fresh)?;
                write_alias(root, &fresh)?;
                if let Err(error) = std::fs::remove_dir_all(root.join(&name)) {
                    tracing::warn!(%error, "could not remove the old generation");
                }
                generation
            }
            other => other?,
        };
        Ok(TantivyIndex::from_parts(
            Some(root.to_owned()),
            schema,
            fields,
            current,
        ))
    }

    /// An index in memory (tests, benchmarks).
    pub fn in_memory() -> Result<TantivyIndex, SearchError> {
        let (schema, fields) = schema();
        let current = open_generation(None, &schema, &generation_name())?;
        Ok(TantivyIndex::from_parts(None, schema, fields, current))
    }

    fn from_parts(
        root: Option<PathBuf>,
        schema: Schema,
        fields: Fields,
        current: Generation,
    ) -> TantivyIndex {
        TantivyIndex {
            inner: Arc::new(Inner {
                root,
                fields,
                schema,
                current: RwLock::new(Arc::new(current)),
                building: Mutex::new(HashMap::new()),
                popularity: RwLock::new(Arc::new(Popularity::default())),
            }),
        }
    }

    /// Runs tantivy's blocking work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, SearchError> + Send + 'static,
    ) -> Result<T, SearchError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(engine)?
    }
}

fn generation_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("titles-{nanos}")
}

fn write_alias(root: &Path, name: &str) -> Result<(), SearchError> {
    let temporary = root.join(format!("{ALIAS_FILE}.tmp"));
    std::fs::write(&temporary, name).map_err(engine)?;
    std::fs::rename(&temporary, root.join(ALIAS_FILE)).map_err(engine)
}

fn tokenizers() -> TokenizerManager {
    let manager = TokenizerManager::default();
    manager.register(WORDS, query::analyzer());
    manager.register(SYNOPSIS, query::synopsis_analyzer());
    manager
}

fn open_generation(
    root: Option<&Path>,
    schema: &Schema,
    name: &str,
) -> Result<Generation, SearchError> {
    if name.contains(['/', '\\', '.']) {
        return Err(SearchError::Protocol(format!(
            "bad generation name {name:?}"
        )));
    }
    let dir = root.map(|root| root.join(name));
    let mut index = match &dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(engine)?;
            let directory = tantivy::directory::MmapDirectory::open(dir).map_err(engine)?;
            Index::open_or_create(directory, schema.clone()).map_err(|error| match error {
                tantivy::TantivyError::SchemaError(message) => {
                    SearchError::Protocol(format!("{SCHEMA_CHANGED}: {message}"))
                }
                other => engine(other),
            })?
        }
        None => Index::create_in_ram(schema.clone()),
    };
    index.set_tokenizers(tokenizers());
    let writer = index.writer(WRITER_MEMORY).map_err(|error| match error {
        tantivy::TantivyError::LockFailure(..) => SearchError::Unavailable(format!(
            "embedded index {name}: another process holds it open (a running server?)"
        )),
        other => engine(other),
    })?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(engine)?;
    let versions = read_versions(&reader)?;
    Ok(Generation {
        name: name.to_owned(),
        dir,
        reader,
        writer: Mutex::new(writer),
        versions: Mutex::new(versions),
    })
}

/// What an index holds, read back from its fast fields when it is opened.
fn read_versions(reader: &IndexReader) -> Result<HashMap<u64, (u64, bool)>, SearchError> {
    let searcher = reader.searcher();
    let mut versions = HashMap::new();
    for segment in searcher.segment_readers() {
        let fast = segment.fast_fields();
        let ids = fast.u64("id").map_err(engine)?;
        let version = fast.u64("version").map_err(engine)?;
        let live = fast.u64("live").map_err(engine)?;
        for doc in segment.doc_ids_alive() {
            if let Some(id) = ids.first(doc) {
                versions.insert(
                    id,
                    (version.first(doc).unwrap_or(0), live.first(doc) == Some(1)),
                );
            }
        }
    }
    Ok(versions)
}

impl Inner {
    fn generation(&self, name: Option<&str>) -> Result<Arc<Generation>, SearchError> {
        match name {
            None => Ok(self
                .current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone()),
            Some(name) => lock(&self.building).get(name).cloned().ok_or_else(|| {
                SearchError::BadRequest(format!("no generation {name} is being built"))
            }),
        }
    }

    fn document(&self, title: &Title, version: u64) -> Result<TantivyDocument, SearchError> {
        let f = &self.fields;
        let mut analyzer = query::analyzer();
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.id, title.id);
        doc.add_u64(f.live, 1);
        doc.add_u64(f.version, version);
        doc.add_text(f.title, &title.title);
        doc.add_text(
            f.title_prefix,
            query::prefixes(&mut analyzer, &title.title).join(" "),
        );
        if let Some(original) = &title.original_title {
            doc.add_text(f.original_title, original);
            doc.add_text(
                f.original_title_prefix,
                query::prefixes(&mut analyzer, original).join(" "),
            );
        }
        for key in title.title_keys() {
            doc.add_text(f.title_key, key);
        }
        for initial in title.initials() {
            doc.add_text(f.title_initial, initial);
        }
        doc.add_text(f.synopsis, &title.synopsis);
        for name in &title.cast {
            doc.add_text(f.cast, name);
            doc.add_text(
                f.cast_prefix,
                query::prefixes(&mut analyzer, name).join(" "),
            );
        }
        for name in &title.crew {
            doc.add_text(f.crew, name);
        }
        for genre in &title.genres {
            doc.add_text(f.genres, genre);
        }
        doc.add_u64(f.year, u64::from(title.year));
        doc.add_u64(f.decade, u64::from(title.decade()));
        doc.add_text(f.maturity, &title.maturity);
        for language in title.languages() {
            doc.add_text(f.languages, language);
        }
        for window in &title.availability {
            doc.add_u64(f.availability, pack_window(window));
        }
        let json = serde_json::to_string(title)
            .map_err(|error| SearchError::Protocol(error.to_string()))?;
        doc.add_text(f.doc, json);
        Ok(doc)
    }

    fn tombstone(&self, id: u64, version: u64) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.fields.id, id);
        doc.add_u64(self.fields.live, 0);
        doc.add_u64(self.fields.version, version);
        doc
    }

    fn apply(
        &self,
        generation: &Generation,
        changes: &[TitleChange],
    ) -> Result<Applied, SearchError> {
        let mut applied = Applied::default();
        {
            let writer = lock(&generation.writer);
            let mut versions = lock(&generation.versions);
            for change in changes {
                let (id, version) = (change.id(), change.version());
                if versions.get(&id).is_some_and(|(held, _)| *held >= version) {
                    applied.stale += 1;
                    continue;
                }
                let doc = match change {
                    TitleChange::Upsert { title, .. } => self.document(title, version)?,
                    TitleChange::Delete { .. } => self.tombstone(id, version),
                };
                writer.delete_term(Term::from_field_u64(self.fields.id, id));
                writer.add_document(doc).map_err(engine)?;
                versions.insert(id, (version, matches!(change, TitleChange::Upsert { .. })));
                applied.written += 1;
            }
        }
        if applied.written > 0 {
            lock(&generation.writer).commit().map_err(engine)?;
            generation.reader.reload().map_err(engine)?;
        }
        Ok(applied)
    }

    fn word_query(&self, word: &QueryWord) -> Box<dyn Query> {
        if word.initial {
            return Box::new(ConstScoreQuery::new(
                Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.title_initial, &word.text),
                    IndexRecordOption::Basic,
                )),
                INITIAL_SCORE,
            ));
        }
        let mut alternatives: Vec<Box<dyn Query>> = Vec::new();
        let mut per_field: Vec<Box<dyn Query>> = Vec::new();
        for &(field, weight) in &self.fields.text {
            let term = Term::from_field_text(field, &word.text);
            let exact: Box<dyn Query> =
                Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs));
            let clause: Box<dyn Query> = if word.edits > 0 {
                Box::new(BooleanQuery::new(vec![
                    (Occur::Should, exact),
                    (
                        Occur::Should,
                        Box::new(FuzzyTermQuery::new(term, word.edits, true)),
                    ),
                ]))
            } else {
                exact
            };
            per_field.push(Box::new(BoostQuery::new(clause, weight)));
        }
        alternatives.push(Box::new(DisjunctionMaxQuery::new(per_field)));
        if word.prefix {
            let prefixes: Vec<Box<dyn Query>> = self
                .fields
                .prefix
                .iter()
                .map(|&(field, weight)| {
                    let term = Term::from_field_text(field, &word.text);
                    Box::new(BoostQuery::new(
                        Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
                        weight,
                    )) as Box<dyn Query>
                })
                .collect();
            alternatives.push(Box::new(DisjunctionMaxQuery::new(prefixes)));
        }
        Box::new(BooleanQuery::new(
            alternatives
                .into_iter()
                .map(|query| (Occur::Should, query))
                .collect(),
        ))
    }

    fn query(&self, parsed: &ParsedQuery, request: &SearchRequest) -> Box<dyn Query> {
        let f = &self.fields;
        let filter = |query: Box<dyn Query>| {
            (
                Occur::Must,
                Box::new(BoostQuery::new(query, 0.0)) as Box<dyn Query>,
            )
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if parsed.is_empty() {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        }
        for word in &parsed.words {
            clauses.push((Occur::Must, self.word_query(word)));
        }
        if let Some(key) = parsed.title_key() {
            clauses.push((
                Occur::Should,
                Box::new(ConstScoreQuery::new(
                    Box::new(TermQuery::new(
                        Term::from_field_text(f.title_key, &key),
                        IndexRecordOption::Basic,
                    )),
                    EXACT_TITLE_BOOST,
                )),
            ));
        }
        // Tombstones out: a short list to skip, where "live" would be every document to
        // intersect with.
        clauses.push((
            Occur::MustNot,
            Box::new(TermQuery::new(
                Term::from_field_u64(f.live, 0),
                IndexRecordOption::Basic,
            )),
        ));
        let filters = &request.filters;
        if let Some(genre) = &filters.genre {
            clauses.push(filter(Box::new(TermQuery::new(
                Term::from_field_text(f.genres, genre),
                IndexRecordOption::Basic,
            ))));
        }
        if filters.year_from.is_some() || filters.year_to.is_some() {
            let bound = |year: Option<u16>| match year {
                Some(year) => Bound::Included(Term::from_field_u64(f.year, u64::from(year))),
                None => Bound::Unbounded,
            };
            clauses.push(filter(Box::new(RangeQuery::new(
                bound(filters.year_from),
                bound(filters.year_to),
            ))));
        }
        if let Some(language) = &filters.language {
            clauses.push(filter(Box::new(TermQuery::new(
                Term::from_field_text(f.languages, language),
                IndexRecordOption::Basic,
            ))));
        }
        if !filters.maturity.is_empty() {
            clauses.push(filter(Box::new(TermSetQuery::new(
                filters
                    .maturity
                    .iter()
                    .map(|rating| Term::from_field_text(f.maturity, rating)),
            ))));
        }
        Box::new(BooleanQuery::new(clauses))
    }

    fn search(&self, request: &SearchRequest) -> Result<SearchResponse, SearchError> {
        let parsed = ParsedQuery::parse(&request.q)?;
        if let Some(after) = &request.after {
            after.check(&request.q, &request.filters)?;
        }
        let limit = request.limit.clamp(1, MAX_LIMIT);
        let generation = self.generation(None)?;
        let searcher = generation.reader.searcher();
        let collector = TitleCollector {
            limit: limit + 1,
            after: request
                .after
                .as_ref()
                .map(|after| (after.score as f32, after.id)),
            country: request
                .filters
                .country
                .map(|country| (country.as_u16(), request.today)),
            facets: request.facets,
            popularity: self
                .popularity
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        };
        let mut parsed = parsed;
        let exact = parsed.as_typed();
        let mut found = searcher
            .search(self.query(&exact, request).as_ref(), &collector)
            .map_err(engine)?;
        if found.total == 0 && parsed.allows_typos() {
            found = searcher
                .search(self.query(&parsed, request).as_ref(), &collector)
                .map_err(engine)?;
        } else {
            parsed = exact;
        }
        let mut ranked = found.top.into_sorted_vec();
        let more = ranked.len() > limit;
        ranked.truncate(limit);
        let mut hits = Vec::with_capacity(ranked.len());
        for entry in &ranked {
            let doc: TantivyDocument = searcher.doc(entry.address).map_err(engine)?;
            let json = doc
                .get_first(self.fields.doc)
                .and_then(|value| value.as_str())
                .ok_or_else(|| {
                    SearchError::Protocol(format!("title {} has no document", entry.id))
                })?;
            let title: Title = serde_json::from_str(json)
                .map_err(|error| SearchError::Protocol(format!("title {}: {error}", entry.id)))?;
            hits.push(Hit {
                id: title.id,
                highlights: Highlights {
                    title: highlight(&title.title, query::analyzer(), &parsed.words, false),
                    synopsis: highlight(
                        &title.synopsis,
                        query::synopsis_analyzer(),
                        &parsed.words,
                        true,
                    ),
                },
                title: title.title,
                year: title.year,
                genres: title.genres,
                maturity: title.maturity,
                score: entry.score,
            });
        }
        let next = match (more, ranked.last()) {
            (true, Some(last)) => Some(Cursor {
                score: f64::from(last.score),
                id: last.id,
                query: fingerprint(&request.q, &request.filters),
                pit: None,
            }),
            _ => None,
        };
        let facets = request.facets.then(|| found.facets.into_facets());
        Ok(SearchResponse {
            total: found.total,
            hits,
            facets,
            next,
        })
    }
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn apply(&self, changes: &[TitleChange]) -> Result<Applied, SearchError> {
        let changes = changes.to_vec();
        self.blocking(move |inner| inner.apply(&*inner.generation(None)?, &changes))
            .await
    }

    async fn set_popularity(&self, popularity: &[(u64, f32)]) -> Result<(), SearchError> {
        let mut map = self
            .inner
            .popularity
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let map = Arc::make_mut(&mut map);
        for &(id, value) in popularity {
            if value.is_finite() && value > 0.0 {
                map.insert(id, value);
            } else {
                map.remove(&id);
            }
        }
        Ok(())
    }

    async fn search(&self, request: &SearchRequest) -> Result<SearchResponse, SearchError> {
        let request = request.clone();
        self.blocking(move |inner| inner.search(&request)).await
    }

    async fn version_of(&self, id: u64) -> Result<Option<(u64, bool)>, SearchError> {
        let generation = self.inner.generation(None)?;
        let held = lock(&generation.versions).get(&id).copied();
        Ok(held)
    }

    async fn refresh(&self) -> Result<(), SearchError> {
        // Every apply commits and reloads before it returns.
        Ok(())
    }

    async fn generation(&self) -> Result<String, SearchError> {
        Ok(self.inner.generation(None)?.name.clone())
    }

    async fn create_generation(&self) -> Result<String, SearchError> {
        self.blocking(|inner| {
            let name = generation_name();
            let generation = open_generation(inner.root.as_deref(), &inner.schema, &name)?;
            lock(&inner.building).insert(name.clone(), Arc::new(generation));
            Ok(name)
        })
        .await
    }

    async fn apply_to(&self, name: &str, changes: &[TitleChange]) -> Result<Applied, SearchError> {
        let (name, changes) = (name.to_owned(), changes.to_vec());
        self.blocking(move |inner| inner.apply(&*inner.generation(Some(&name))?, &changes))
            .await
    }

    async fn switch_to(&self, name: &str) -> Result<(), SearchError> {
        let name = name.to_owned();
        self.blocking(move |inner| {
            let next = inner.generation(Some(&name))?;
            if let Some(root) = &inner.root {
                write_alias(root, &name)?;
            }
            let previous = std::mem::replace(
                &mut *inner
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                next,
            );
            lock(&inner.building).remove(&name);
            if let Some(dir) = &previous.dir {
                // Open searchers keep their files mapped; the directory goes now.
                if let Err(error) = std::fs::remove_dir_all(dir) {
                    tracing::warn!(%error, dir = %dir.display(), "could not remove an old generation");
                }
            }
            Ok(())
        })
        .await
    }

    async fn stats(&self) -> Result<IndexStats, SearchError> {
        self.blocking(|inner| {
            let generation = inner.generation(None)?;
            let titles = lock(&generation.versions)
                .values()
                .filter(|(_, live)| *live)
                .count();
            let size_bytes = generation
                .reader
                .searcher()
                .space_usage()
                .map_err(engine)?
                .total()
                .get_bytes();
            Ok(IndexStats {
                titles: titles as u64,
                size_bytes,
            })
        })
        .await
    }

    async fn ready(&self) -> bool {
        true
    }
}

/// A match in the top-k: better is a higher score, then a lower id.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: Score,
    id: u64,
    address: DocAddress,
}

impl Ranked {
    fn is_after(&self, (score, id): (Score, u64)) -> bool {
        self.score < score || (self.score == score && self.id > id)
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    /// "Less" is better, so that a max-heap keeps the worst of the top on top.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.id.cmp(&other.id))
    }
}

#[derive(Default)]
struct FacetCounts {
    genres: HashMap<String, u64>,
    decades: HashMap<u64, u64>,
    languages: HashMap<String, u64>,
}

impl FacetCounts {
    fn merge(&mut self, other: FacetCounts) {
        for (genre, count) in other.genres {
            *self.genres.entry(genre).or_default() += count;
        }
        for (decade, count) in other.decades {
            *self.decades.entry(decade).or_default() += count;
        }
        for (language, count) in other.languages {
            *self.languages.entry(language).or_default() += count;
        }
    }

    fn into_facets(self) -> Facets {
        let strings = |counts: HashMap<String, u64>| {
            let mut out: Vec<FacetCount> = counts
                .into_iter()
                .map(|(value, count)| FacetCount { value, count })
                .collect();
            sort_facet(&mut out);
            out
        };
        let mut decades: Vec<FacetCount> = self
            .decades
            .into_iter()
            .map(|(decade, count)| FacetCount {
                value: decade.to_string(),
                count,
            })
            .collect();
        sort_facet(&mut decades);
        Facets {
            genres: strings(self.genres),
            decades,
            languages: strings(self.languages),
        }
    }
}

struct TitleCollector {
    /// Kept per segment: the page plus one (whether a next page exists).
    limit: usize,
    after: Option<(Score, u64)>,
    country: Option<(u16, Day)>,
    facets: bool,
    popularity: Arc<Popularity>,
}

struct Found {
    top: BinaryHeap<Ranked>,
    total: u64,
    facets: FacetCounts,
}

struct SegmentTitles {
    segment: SegmentOrdinal,
    limit: usize,
    after: Option<(Score, u64)>,
    country: Option<(u16, Day)>,
    popularity: Arc<Popularity>,
    ids: Column<u64>,
    availability: Column<u64>,
    facets: Option<SegmentFacets>,
    top: BinaryHeap<Ranked>,
    total: u64,
}

/// Facet counts by term ordinal within a segment; named in `harvest`.
struct SegmentFacets {
    genres: Option<StrColumn>,
    languages: Option<StrColumn>,
    decades: Column<u64>,
    genre_counts: HashMap<u64, u64>,
    language_counts: HashMap<u64, u64>,
    decade_counts: HashMap<u64, u64>,
}

impl Collector for TitleCollector {
    type Fruit = Found;
    type Child = SegmentTitles;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTitles> {
        let fast = reader.fast_fields();
        let facets = if self.facets {
            Some(SegmentFacets {
                genres: fast.str("genres")?,
                languages: fast.str("languages")?,
                decades: fast.u64("decade")?,
                genre_counts: HashMap::new(),
                language_counts: HashMap::new(),
                decade_counts: HashMap::new(),
            })
        } else {
            None
        };
        Ok(SegmentTitles {
            segment,
            limit: self.limit,
            after: self.after,
            country: self.country,
            popularity: self.popularity.clone(),
            ids: fast.u64("id")?,
            availability: fast.u64("availability")?,
            facets,
            top: BinaryHeap::with_capacity(self.limit + 1),
            total: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Found>) -> tantivy::Result<Found> {
        let mut merged = Found {
            top: BinaryHeap::with_capacity(self.limit + 1),
            total: 0,
            facets: FacetCounts::default(),
        };
        for fruit in fruits {
            merged.total += fruit.total;
            merged.facets.merge(fruit.facets);
            for entry in fruit.top {
                keep_best(&mut merged.top, entry, self.limit);
            }
        }
        Ok(merged)
    }
}

fn keep_best(top: &mut BinaryHeap<Ranked>, entry: Ranked, limit: usize) {
    if top.len() < limit {
        top.push(entry);
    } else if top.peek().is_some_and(|worst| entry < *worst) {
        top.pop();
        top.push(entry);
    }
}

impl SegmentCollector for SegmentTitles {
    type Fruit = Found;

    fn collect(&mut self, doc: DocId, score: Score) {
        let Some(id) = self.ids.first(doc) else {
            return;
        };
        if let Some((country, day)) = self.country {
            if !self
                .availability
                .values_for_doc(doc)
                .any(|window| window_covers(window, country, day))
            {
                return;
            }
        }
        self.total += 1;
        if let Some(facets) = &mut self.facets {
            facets.count(doc);
        }
        let popularity = self.popularity.get(&id).copied().unwrap_or(0.0);
        let entry = Ranked {
            score: score * popularity_boost(popularity),
            id,
            address: DocAddress::new(self.segment, doc),
        };
        if self.after.is_none_or(|after| entry.is_after(after)) {
            keep_best(&mut self.top, entry, self.limit);
        }
    }

    fn harvest(self) -> Found {
        Found {
            top: self.top,
            total: self.total,
            facets: self.facets.map(SegmentFacets::named).unwrap_or_default(),
        }
    }
}

impl SegmentFacets {
    fn count(&mut self, doc: DocId) {
        if let Some(genres) = &self.genres {
            for ord in genres.term_ords(doc) {
                *self.genre_counts.entry(ord).or_default() += 1;
            }
        }
        if let Some(languages) = &self.languages {
            for ord in languages.term_ords(doc) {
                *self.language_counts.entry(ord).or_default() += 1;
            }
        }
        if let Some(decade) = self.decades.first(doc) {
            *self.decade_counts.entry(decade).or_default() += 1;
        }
    }

    fn named(self) -> FacetCounts {
        let name = |column: &Option<StrColumn>, counts: HashMap<u64, u64>| {
            let mut named = HashMap::new();
            let Some(column) = column else { return named };
            let mut text = String::new();
            for (ord, count) in counts {
                text.clear();
                if column.ord_to_str(ord, &mut text).unwrap_or(false) {
                    *named.entry(text.clone()).or_default() += count;
                }
            }
            named
        };
        FacetCounts {
            genres: name(&self.genres, self.genre_counts),
            languages: name(&self.languages, self.language_counts),
            decades: self.decade_counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_index_of_another_schema_starts_again_empty() {
        let root = tempfile::tempdir().unwrap();
        let old = root.path().join("titles-1");
        std::fs::create_dir_all(&old).unwrap();
        let mut other = Schema::builder();
        other.add_u64_field("id", FAST);
        Index::create_in_dir(&old, other.build()).unwrap();
        write_alias(root.path(), "titles-1").unwrap();
        let index = TantivyIndex::open(root.path()).unwrap();
        assert_ne!(index.generation().await.unwrap(), "titles-1");
        assert_eq!(index.stats().await.unwrap().titles, 0);
        assert!(!old.exists());
    }

    #[test]
    fn a_packed_window_covers_its_days_only() {
        let us = crate::CountryCode::parse("us").unwrap();
        let window = crate::Availability {
            country: us,
            from: 100,
            until: Some(200),
        };
        let packed = pack_window(&window);
        assert!(window_covers(packed, us.as_u16(), 100));
        assert!(window_covers(packed, us.as_u16(), 200));
        assert!(!window_covers(packed, us.as_u16(), 201));
        assert!(!window_covers(packed, us.as_u16(), 99));
        let fr = crate::CountryCode::parse("FR").unwrap();
        assert!(!window_covers(packed, fr.as_u16(), 150));
        let open = pack_window(&crate::Availability {
            country: us,
            from: 0,
            until: None,
        });
        assert!(window_covers(open, us.as_u16(), 9_000_000));
    }
}
