//! The graph on Neo4j, over Bolt with `neo4rs`. Each call is one round trip: writes `UNWIND` a
//! whole coalesced update in one transaction, reads ask for many titles or users at once.
//!
//! Ids are 64-bit unsigned in PlayPulse and signed in Neo4j: they are stored bit for bit
//! (`as i64`) and read back the same way, so every id round-trips; orders that matter are
//! fixed on this side.
//!
//! The driver retries transient failures for up to a minute on its own; every call here is
//! bounded by `request_timeout` instead, so that a Neo4j that is down costs its callers (side
//! paths and refreshes, never a request) a bounded wait and a clear error.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use neo4rs::{query, BoltType, ConfigBuilder, Query};
use tokio::sync::OnceCell;

use crate::{
    latest_first, most_viewed_first, CoWatch, GraphError, GraphStore, GraphUpdate, Identifier,
    SharedIdentifiers, TitleViewers, UserWatch,
};

/// How to reach Neo4j.
#[derive(Debug, Clone)]
pub struct Neo4jOptions {
    /// `host:port` of the Bolt connector (or a `bolt://` / `neo4j://` URI).
    pub uri: String,
    pub user: String,
    pub password: String,
    /// Prefixed to every label (`{prefix}User`, `{prefix}Title`, ...): graphs side by side in
    /// one database (Community Edition has one), as the tests do. Empty in production.
    pub label_prefix: String,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Neo4jOptions {
    fn default() -> Self {
        Neo4jOptions {
            uri: "127.0.0.1:7687".to_owned(),
            user: "neo4j".to_owned(),
            password: "neo4j".to_owned(),
            label_prefix: String::new(),
            request_timeout: Duration::from_secs(5),
            max_connections: 4,
        }
    }
}

/// The Cypher text of every query, with the labels filled in once.
struct Statements {
    schema: Vec<String>,
    watches: String,
    payment_methods: String,
    devices: String,
    co_watched: String,
    watches_of: String,
    titles: String,
    viewer_count: String,
    shared_identifiers: String,
}

impl Statements {
    fn new(prefix: &str) -> Result<Statements, GraphError> {
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(GraphError::Neo4j {
                context: "label prefix",
                message: format!("`{prefix}` may hold only ASCII letters, digits and `_`"),
            });
        }
        let user = format!("{prefix}User");
        let title = format!("{prefix}Title");
        let payment = format!("{prefix}PaymentMethod");
        let device = format!("{prefix}Device");
        let lower = prefix.to_ascii_lowercase();
        Ok(Statements {
            schema: vec![
                format!("CREATE CONSTRAINT {lower}user_id IF NOT EXISTS FOR (n:{user}) REQUIRE n.id IS UNIQUE"),
                format!("CREATE CONSTRAINT {lower}title_id IF NOT EXISTS FOR (n:{title}) REQUIRE n.id IS UNIQUE"),
                format!("CREATE CONSTRAINT {lower}payment_method_fingerprint IF NOT EXISTS FOR (n:{payment}) REQUIRE n.fingerprint IS UNIQUE"),
                format!("CREATE CONSTRAINT {lower}device_id IF NOT EXISTS FOR (n:{device}) REQUIRE n.id IS UNIQUE"),
            ],
            // `titles` on a user and `viewers` on a title are degree counts kept at write time,
            // so that the reads below filter and normalize without counting edges.
            watches: format!(
                "UNWIND $watches AS w \
                 MERGE (u:{user} {{id: w.user}}) ON CREATE SET u.titles = 0 \
                 MERGE (t:{title} {{id: w.title}}) ON CREATE SET t.viewers = 0 \
                 MERGE (u)-[r:WATCHED]->(t) \
                 ON CREATE SET r.plays = 0, r.watch_ms = 0, r.completed = false, \
                   r.last_ts = w.last_ts, t.viewers = t.viewers + 1, u.titles = u.titles + 1 \
                 SET r.plays = r.plays + w.plays, \
                   r.watch_ms = CASE WHEN w.watch_ms > r.watch_ms THEN w.watch_ms ELSE r.watch_ms END, \
                   r.completed = r.completed OR w.completed, \
                   r.last_ts = CASE WHEN w.last_ts > r.last_ts THEN w.last_ts ELSE r.last_ts END"
            ),
            payment_methods: format!(
                "UNWIND $links AS l \
                 MERGE (u:{user} {{id: l.user}}) ON CREATE SET u.titles = 0 \
                 MERGE (m:{payment} {{fingerprint: l.id}}) \
                 MERGE (u)-[:PAID_WITH]->(m)"
            ),
            devices: format!(
                "UNWIND $links AS l \
                 MERGE (u:{user} {{id: l.user}}) ON CREATE SET u.titles = 0 \
                 MERGE (d:{device} {{id: l.id}}) \
                 MERGE (u)-[:USED]->(d)"
            ),
            co_watched: format!(
                "UNWIND $titles AS id \
                 MATCH (t:{title} {{id: id}})<-[:WATCHED]-(u:{user}) \
                 WHERE u.titles <= $cap \
                 MATCH (u)-[:WATCHED]->(o:{title}) \
                 WHERE o <> t \
                 RETURN t.id AS title, o.id AS other, count(u) AS together, \
                   t.viewers AS title_viewers, o.viewers AS other_viewers"
            ),
            watches_of: format!(
                "UNWIND $users AS id \
                 CALL {{ WITH id \
                   MATCH (:{user} {{id: id}})-[r:WATCHED]->(t:{title}) \
                   RETURN t.id AS title, r.plays AS plays, r.watch_ms AS watch_ms, \
                     r.completed AS completed, r.last_ts AS last_ts \
                   ORDER BY r.last_ts DESC, t.id LIMIT $limit }} \
                 RETURN id AS user, title, plays, watch_ms, completed, last_ts"
            ),
            titles: format!("MATCH (t:{title}) RETURN t.id AS title, t.viewers AS viewers"),
            viewer_count: format!(
                "MATCH (u:{user}) WHERE u.titles > 0 RETURN count(u) AS viewers"
            ),
            shared_identifiers: format!(
                "CALL {{ MATCH (i:{payment}) RETURN i, 'p' + i.fingerprint AS key \
                   UNION MATCH (i:{device}) RETURN i, 'd' + i.id AS key }} \
                 WITH i, key, COUNT {{ (i)<-[:PAID_WITH|USED]-(:{user}) }} AS accounts \
                 WHERE accounts >= 2 AND accounts <= $max_accounts \
                 MATCH (a:{user})-[:PAID_WITH|USED]->(i)<-[:PAID_WITH|USED]-(b:{user}) \
                 WHERE a.id < b.id \
                 WITH a, b, collect(key) AS shared \
                 WHERE size(shared) >= $min_shared \
                 RETURN a.id AS user, b.id AS other, shared"
            ),
        })
    }
}

pub struct Neo4jGraph {
    driver: neo4rs::Graph,
    statements: Statements,
    /// Constraints, created once Neo4j first answers (it may be down when we start).
    schema: OnceCell<()>,
    address: String,
    timeout: Duration,
}

impl Neo4jGraph {
    /// Builds the driver's pool without connecting: Neo4j may be down now; calls fail (bounded)
    /// until it answers.
    pub fn new(options: &Neo4jOptions) -> Result<Neo4jGraph, GraphError> {
        let statements = Statements::new(&options.label_prefix)?;
        let config = ConfigBuilder::default()
            .uri(options.uri.as_str())
            .user(options.user.as_str())
            .password(options.password.as_str())
            .max_connections(options.max_connections.max(1))
            .fetch_size(2_000)
            .build()
            .map_err(driver("config"))?;
        let driver = neo4rs::Graph::connect(config).map_err(driver("connect"))?;
        Ok(Neo4jGraph {
            driver,
            statements,
            schema: OnceCell::new(),
            address: options.uri.clone(),
            timeout: options.request_timeout,
        })
    }

    /// Where the graph lives, for logs.
    pub fn address(&self) -> &str {
        &self.address
    }

    async fn bounded<T>(
        &self,
        context: &'static str,
        call: impl Future<Output = Result<T, GraphError>>,
    ) -> Result<T, GraphError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(GraphError::Neo4j {
                context,
                message: format!("no answer within {:?}", self.timeout),
            }),
        }
    }

    async fn ensure_schema(&self) -> Result<(), GraphError> {
        self.schema
            .get_or_try_init(|| async {
                for statement in &self.statements.schema {
                    self.driver
                        .run(query(statement))
                        .await
                        .map_err(driver("create constraint"))?;
                }
                Ok::<(), GraphError>(())
            })
            .await
            .map(|_| ())
    }

    async fn rows(
        &self,
        context: &'static str,
        request: Query,
    ) -> Result<Vec<neo4rs::Row>, GraphError> {
        self.bounded(context, async {
            self.ensure_schema().await?;
            let mut stream = self
                .driver
                .execute(request)
                .await
                .map_err(driver(context))?;
            let mut rows = Vec::new();
            while let Some(row) = stream.next().await.map_err(driver(context))? {
                rows.push(row);
            }
            Ok(rows)
        })
        .await
    }
}

fn driver(context: &'static str) -> impl Fn(neo4rs::Error) -> GraphError {
    move |error| GraphError::Neo4j {
        context,
        message: error.to_string(),
    }
}

fn field<'row, T: serde::Deserialize<'row>>(
    row: &'row neo4rs::Row,
    name: &str,
) -> Result<T, GraphError> {
    row.get::<T>(name)
        .map_err(|error| GraphError::Corrupt(format!("`{name}`: {error}")))
}

fn map(entries: Vec<(&str, BoltType)>) -> BoltType {
    BoltType::from(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect::<HashMap<String, BoltType>>(),
    )
}

fn id(value: u64) -> BoltType {
    BoltType::from(value as i64)
}

fn count(value: i64) -> u64 {
    value.max(0) as u64
}

fn identifier(key: &str) -> Result<Identifier, GraphError> {
    match key.split_at_checked(1) {
        Some(("p", fingerprint)) => Ok(Identifier::PaymentMethod(fingerprint.to_owned())),
        Some(("d", device)) => Ok(Identifier::Device(device.to_owned())),
        _ => Err(GraphError::Corrupt(format!("identifier key `{key}`"))),
    }
}

#[async_trait]
impl GraphStore for Neo4jGraph {
    async fn apply(&self, update: &GraphUpdate) -> Result<(), GraphError> {
        if update.is_empty() {
            return Ok(());
        }
        let watches: Vec<BoltType> = update
            .watches
            .iter()
            .map(|watch| {
                map(vec![
                    ("user", id(watch.user)),
                    ("title", id(watch.title)),
                    (
                        "plays",
                        BoltType::from(watch.plays.min(i64::MAX as u64) as i64),
                    ),
                    (
                        "watch_ms",
                        BoltType::from(watch.watch_ms.min(i64::MAX as u64) as i64),
                    ),
                    ("completed", BoltType::from(watch.completed)),
                    ("last_ts", BoltType::from(watch.last_ts)),
                ])
            })
            .collect();
        let (mut payments, mut devices) = (Vec::new(), Vec::new());
        for link in &update.identities {
            let (list, key) = match &link.identifier {
                Identifier::PaymentMethod(fingerprint) => (&mut payments, fingerprint),
                Identifier::Device(device) => (&mut devices, device),
            };
            list.push(map(vec![
                ("user", id(link.user)),
                ("id", BoltType::from(key.as_str())),
            ]));
        }
        let mut queries = Vec::new();
        if !watches.is_empty() {
            queries.push(query(&self.statements.watches).param("watches", watches));
        }
        if !payments.is_empty() {
            queries.push(query(&self.statements.payment_methods).param("links", payments));
        }
        if !devices.is_empty() {
            queries.push(query(&self.statements.devices).param("links", devices));
        }
        self.bounded("apply", async {
            self.ensure_schema().await?;
            let mut txn = self.driver.start_txn().await.map_err(driver("begin"))?;
            txn.run_queries(queries).await.map_err(driver("write"))?;
            txn.commit().await.map_err(driver("commit"))
        })
        .await
    }

    async fn co_watched(
        &self,
        titles: &[u64],
        max_viewer_titles: u64,
    ) -> Result<Vec<CoWatch>, GraphError> {
        if titles.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<BoltType> = titles.iter().map(|&title| id(title)).collect();
        let request = query(&self.statements.co_watched)
            .param("titles", ids)
            .param("cap", max_viewer_titles.min(i64::MAX as u64) as i64);
        let mut answer = self
            .rows("co-watched", request)
            .await?
            .iter()
            .map(|row| {
                Ok(CoWatch {
                    title: field::<i64>(row, "title")? as u64,
                    other: field::<i64>(row, "other")? as u64,
                    together: count(field(row, "together")?),
                    title_viewers: count(field(row, "title_viewers")?),
                    other_viewers: count(field(row, "other_viewers")?),
                })
            })
            .collect::<Result<Vec<_>, GraphError>>()?;
        answer.sort_by_key(|co| (co.title, co.other));
        Ok(answer)
    }

    async fn watches_of(
        &self,
        users: &[u64],
        limit: usize,
    ) -> Result<Vec<(u64, Vec<UserWatch>)>, GraphError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<BoltType> = users.iter().map(|&user| id(user)).collect();
        let request = query(&self.statements.watches_of)
            .param("users", ids)
            .param("limit", limit.min(i64::MAX as usize) as i64);
        let mut found: HashMap<u64, Vec<UserWatch>> = HashMap::new();
        for row in self.rows("watches of", request).await? {
            found
                .entry(field::<i64>(&row, "user")? as u64)
                .or_default()
                .push(UserWatch {
                    title: field::<i64>(&row, "title")? as u64,
                    plays: count(field(&row, "plays")?),
                    watch_ms: count(field(&row, "watch_ms")?),
                    completed: field(&row, "completed")?,
                    last_ts: field(&row, "last_ts")?,
                });
        }
        Ok(users
            .iter()
            .map(|user| {
                let mut watches = found.get(user).cloned().unwrap_or_default();
                latest_first(&mut watches);
                (*user, watches)
            })
            .collect())
    }

    async fn titles(&self) -> Result<Vec<TitleViewers>, GraphError> {
        let mut titles = self
            .rows("titles", query(&self.statements.titles))
            .await?
            .iter()
            .map(|row| {
                Ok(TitleViewers {
                    title: field::<i64>(row, "title")? as u64,
                    viewers: count(field(row, "viewers")?),
                })
            })
            .collect::<Result<Vec<_>, GraphError>>()?;
        most_viewed_first(&mut titles);
        Ok(titles)
    }

    async fn viewer_count(&self) -> Result<u64, GraphError> {
        let rows = self
            .rows("viewer count", query(&self.statements.viewer_count))
            .await?;
        match rows.first() {
            Some(row) => Ok(count(field(row, "viewers")?)),
            None => Err(GraphError::Corrupt("viewer count: no row".to_owned())),
        }
    }

    async fn shared_identifiers(
        &self,
        min_shared: usize,
        max_accounts: u64,
    ) -> Result<Vec<SharedIdentifiers>, GraphError> {
        let request = query(&self.statements.shared_identifiers)
            .param("min_shared", min_shared.max(1) as i64)
            .param("max_accounts", max_accounts.min(i64::MAX as u64) as i64);
        let mut pairs = self
            .rows("shared identifiers", request)
            .await?
            .iter()
            .map(|row| {
                let (a, b) = (
                    field::<i64>(row, "user")? as u64,
                    field::<i64>(row, "other")? as u64,
                );
                let mut identifiers = field::<Vec<String>>(row, "shared")?
                    .iter()
                    .map(|key| identifier(key))
                    .collect::<Result<Vec<_>, GraphError>>()?;
                identifiers.sort();
                Ok(SharedIdentifiers {
                    user: a.min(b),
                    other: a.max(b),
                    identifiers,
                })
            })
            .collect::<Result<Vec<_>, GraphError>>()?;
        pairs.sort_by_key(|pair| (pair.user, pair.other));
        Ok(pairs)
    }

    async fn ready(&self) -> bool {
        self.rows("ready", query("RETURN 1 AS one")).await.is_ok()
    }
}
