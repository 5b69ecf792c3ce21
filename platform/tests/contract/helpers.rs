use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache::{Cache, MemoryCache, PostgresCache, RedisCache, RedisOptions};
use graph::{GraphStore, MemoryGraph, Neo4jGraph, Neo4jOptions};
use platform::commands::{CommandOptions, Commands};
use platform::config::*;
use platform::outbox::{Relay, RelayOptions};
use platform::payments::SimulatedGateway;
use platform::projectors::ProfileProjector;
use platform::readmodel::{
    CassandraReadModel, CassandraReadModelConfig, LocalReadModel, PostgresReadModel, ReadModel,
};
use platform::store::{CommandStore, PostgresStore, SqliteStore};
use search::{OpenSearchIndex, OpenSearchOptions, SearchIndex, TantivyIndex};
use tokio::sync::Notify;

/// Runs a test body against every backend: `on_the_embedded_default`, `on_postgres_only` and
/// `on_the_real_engines`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_the_embedded_default() {
                super::$name($crate::helpers::Backend::embedded().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres_only() {
                if let Some(backend) = $crate::helpers::Backend::postgres_only().await {
                    super::$name(backend).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_the_real_engines() {
                if let Some(backend) = $crate::helpers::Backend::engines().await {
                    super::$name(backend).await;
                }
            }
        }
    )*};
}

pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn CommandStore>,
    pub read_model: Arc<dyn ReadModel>,
    pub graph: Arc<dyn GraphStore>,
    pub search: Arc<dyn SearchIndex>,
    pub cache: Arc<dyn Cache>,
    pub gateway: Arc<SimulatedGateway>,
    pub settings: PlatformSettings,
    pub _dir: tempfile::TempDir,
}

pub fn settings(dir: &std::path::Path) -> PlatformSettings {
    PlatformSettings {
        commands: CommandsSettings {
            kind: CommandStoreKind::Sqlite,
            sqlite_path: "".into(),
            postgres_url: String::new(),
            postgres_max_connections: 8,
            charge_timeout: Duration::from_secs(2),
            charge_attempts: 3,
            idempotency_key_lease: Duration::from_secs(60),
            idempotency_key_retention: Duration::from_secs(86_400),
        },
        read_model: ReadModelSettings {
            kind: ReadModelKind::Local,
            local_path: "".into(),
            keyspace: "unused".into(),
            postgres_schema: "read_model".into(),
        },
        outbox: OutboxSettings {
            poll_interval: Duration::from_millis(20),
            batch_size: 64,
        },
        recommendations: RecommendationsSettings {
            ttl: Duration::from_secs(3600),
            profile_ttl: Duration::from_secs(3600),
            limit: 10,
        },
        graph: GraphSettings {
            kind: GraphKind::Memory,
            neo4j_uri: String::new(),
            neo4j_user: "neo4j".into(),
            neo4j_password: "neo4j".into(),
            neo4j_label_prefix: String::new(),
            request_timeout: Duration::from_secs(5),
            feed_playback: true,
            flush_interval: Duration::from_millis(20),
            max_pending: 10_000,
            queue_batches: 64,
            refresh_interval: Duration::from_millis(50),
            full_refresh_interval: Duration::from_secs(300),
            similarity: graph::similarity::Measure::Jaccard,
            top_k: 20,
            max_viewer_titles: 500,
            hub_share: 1.0,
            min_together: 1,
            trending_window: Duration::from_secs(900),
            rings_interval: Duration::from_millis(50),
            ring_min_shared: 2,
            ring_max_accounts: 10,
        },
        search: SearchSettings {
            kind: SearchKind::Tantivy,
            path: "".into(),
            opensearch_url: String::new(),
            alias: "pptest".into(),
            request_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(20),
            batch_size: 100,
            popularity_interval: Duration::from_millis(50),
        },
        data_dir: dir.to_owned(),
        cassandra: CassandraConnection {
            nodes: vec![],
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            local_datacenter: "datacenter1".into(),
            request_timeout: Duration::from_secs(5),
        },
    }
}

impl Backend {
    /// The platform on this backend's parts, its background tasks started.
    pub fn platform(&self) -> platform::Platform {
        platform::Platform::assemble(
            &self.settings,
            self.store.clone(),
            self.read_model.clone(),
            self.graph.clone(),
            self.search.clone(),
            self.cache.clone(),
            self.gateway.clone(),
        )
    }

    pub async fn embedded() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        Backend {
            name: "embedded",
            store: Arc::new(SqliteStore::open(&settings.sqlite_path()).await.unwrap()),
            read_model: Arc::new(
                LocalReadModel::open(&settings.read_model_path())
                    .await
                    .unwrap(),
            ),
            graph: Arc::new(MemoryGraph::new()),
            search: Arc::new(TantivyIndex::in_memory().unwrap()),
            cache: Arc::new(MemoryCache::new()),
            gateway: Arc::new(SimulatedGateway::new()),
            settings,
            _dir: dir,
        }
    }

    /// PostgreSQL alone (`config/postgres-only.toml`): commands, read models (their own schema)
    /// and the cache (an unlogged table) in one fresh database; the graph and search in process.
    pub async fn postgres_only() -> Option<Backend> {
        let postgres = testkit::engines::postgres()?;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path());
        let url = testkit::postgres::fresh_database(&postgres).await;
        settings.commands.kind = CommandStoreKind::Postgres;
        settings.commands.postgres_url = url.clone();
        settings.read_model.kind = ReadModelKind::Postgres;
        let store = PostgresStore::connect(&url, 16).await.unwrap();
        let read_model = PostgresReadModel::connect(&url, "read_model", 8)
            .await
            .expect("the PostgreSQL read model connects");
        let cache = PostgresCache::connect(&url, 4, Duration::from_secs(5))
            .await
            .expect("the PostgreSQL cache connects");
        Some(Backend {
            name: "postgres-only",
            store: Arc::new(store),
            read_model: Arc::new(read_model),
            graph: Arc::new(MemoryGraph::new()),
            search: Arc::new(TantivyIndex::in_memory().unwrap()),
            cache: Arc::new(cache),
            gateway: Arc::new(SimulatedGateway::new()),
            settings,
            _dir: dir,
        })
    }

    /// PostgreSQL (a fresh database), Cassandra (a fresh keyspace), Redis (a fresh prefix).
    /// Without `PLAYPULSE_TEST_CASSANDRA` the read model is the local one, so that the command
    /// store's contract still runs on PostgreSQL where no Cassandra is at hand.
    pub async fn engines() -> Option<Backend> {
        let postgres = testkit::engines::postgres()?;
        let cassandra = std::env::var("PLAYPULSE_TEST_CASSANDRA")
            .ok()
            .filter(|nodes| !nodes.trim().is_empty());
        let redis = testkit::engines::redis()?;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path());
        settings.commands.kind = CommandStoreKind::Postgres;
        settings.commands.postgres_url = testkit::postgres::fresh_database(&postgres).await;
        let store = PostgresStore::connect(&settings.commands.postgres_url, 16)
            .await
            .unwrap();
        let read_model: Arc<dyn ReadModel> = match cassandra {
            Some(cassandra) => {
                settings.read_model.kind = ReadModelKind::Cassandra;
                settings.read_model.keyspace = testkit::unique_name("pp_test");
                settings.cassandra.nodes = vec![cassandra.clone()];
                Arc::new(
                    CassandraReadModel::connect(&CassandraReadModelConfig {
                        nodes: vec![cassandra],
                        keyspace: settings.read_model.keyspace.clone(),
                        replication: settings.cassandra.replication.clone(),
                        local_datacenter: "datacenter1".into(),
                        request_timeout: Duration::from_secs(5),
                    })
                    .await
                    .expect("Cassandra read model"),
                )
            }
            None => {
                eprintln!(
                    "PLAYPULSE_TEST_CASSANDRA is unset: PostgreSQL with the local read model"
                );
                Arc::new(
                    LocalReadModel::open(&settings.read_model_path())
                        .await
                        .unwrap(),
                )
            }
        };
        let cache = RedisCache::new(
            &redis,
            &format!("{}:", testkit::unique_name("pp_test")),
            RedisOptions::default(),
        )
        .unwrap();
        // Neo4j with labels of this test's own; the in-process graph where no Neo4j is at hand.
        let graph: Arc<dyn GraphStore> = match std::env::var("PLAYPULSE_TEST_NEO4J")
            .ok()
            .filter(|uri| !uri.trim().is_empty())
        {
            Some(uri) => {
                settings.graph.kind = GraphKind::Neo4j;
                settings.graph.neo4j_uri = uri.clone();
                Arc::new(
                    Neo4jGraph::new(&Neo4jOptions {
                        uri,
                        label_prefix: testkit::unique_name("t"),
                        request_timeout: Duration::from_secs(30),
                        ..Neo4jOptions::default()
                    })
                    .expect("a Neo4j driver"),
                )
            }
            None => {
                eprintln!("PLAYPULSE_TEST_NEO4J is unset: the in-process graph");
                Arc::new(MemoryGraph::new())
            }
        };
        // OpenSearch under an alias of this test's own; tantivy where no OpenSearch is at hand.
        let search: Arc<dyn SearchIndex> = match std::env::var("PLAYPULSE_TEST_OPENSEARCH")
            .ok()
            .filter(|url| !url.trim().is_empty())
        {
            Some(url) => {
                testkit::engines::drop_stale_opensearch_indices(&url, "pptest").await;
                settings.search.kind = SearchKind::Opensearch;
                settings.search.opensearch_url = url.clone();
                settings.search.alias = testkit::unique_name("pptest");
                Arc::new(
                    OpenSearchIndex::connect(OpenSearchOptions {
                        url,
                        alias: settings.search.alias.clone(),
                        request_timeout: Duration::from_secs(10),
                    })
                    .await
                    .expect("OpenSearch answers"),
                )
            }
            None => {
                eprintln!("PLAYPULSE_TEST_OPENSEARCH is unset: the in-process index");
                Arc::new(TantivyIndex::in_memory().unwrap())
            }
        };
        Some(Backend {
            name: "engines",
            store: Arc::new(store),
            read_model,
            graph,
            search,
            cache: Arc::new(cache),
            gateway: Arc::new(SimulatedGateway::new()),
            settings,
            _dir: dir,
        })
    }

    pub fn commands(&self) -> Commands {
        self.commands_with(self.gateway.clone())
    }

    pub fn commands_with(&self, gateway: Arc<SimulatedGateway>) -> Commands {
        Commands::new(
            self.store.clone(),
            gateway,
            CommandOptions {
                charge_timeout: Duration::from_secs(2),
                charge_attempts: 3,
                key_lease: Duration::from_secs(60),
            },
            Arc::new(Notify::new()),
        )
    }

    pub fn relay(&self) -> Relay {
        Relay::new(
            self.store.clone(),
            ProfileProjector::new(self.read_model.clone(), self.cache.clone()),
            RelayOptions {
                poll_interval: Duration::from_millis(20),
                batch_size: 16,
            },
            Arc::new(Notify::new()),
        )
    }

    /// The first column of each row `sql` returns, read straight from the command store's
    /// database (what anyone holding the file or the database sees); cast it to text in SQL.
    pub async fn raw_strings(&self, sql: &str) -> Vec<String> {
        use sqlx::Row;
        let rows = match self.settings.commands.kind {
            CommandStoreKind::Sqlite => {
                let pool = self.raw_sqlite().await;
                let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
                let texts = rows.iter().map(|row| row.get::<String, _>(0)).collect();
                pool.close().await;
                texts
            }
            CommandStoreKind::Postgres => {
                let pool = sqlx::PgPool::connect(&self.settings.commands.postgres_url)
                    .await
                    .unwrap();
                let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
                let texts = rows.iter().map(|row| row.get::<String, _>(0)).collect();
                pool.close().await;
                texts
            }
        };
        rows
    }

    /// Runs one statement straight on the command store's database (to fake an older one).
    pub async fn raw_execute(&self, sql: &str) {
        match self.settings.commands.kind {
            CommandStoreKind::Sqlite => {
                let pool = self.raw_sqlite().await;
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            CommandStoreKind::Postgres => {
                let pool = sqlx::PgPool::connect(&self.settings.commands.postgres_url)
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    async fn raw_sqlite(&self) -> sqlx::SqlitePool {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.settings.sqlite_path())
            .busy_timeout(Duration::from_secs(5));
        sqlx::SqlitePool::connect_with(options).await.unwrap()
    }

    /// Opens the command store again, as a restart (or a newer version) would.
    pub async fn reopen_store(&self) -> Result<Arc<dyn CommandStore>, platform::PlatformError> {
        platform::open_store(&self.settings).await
    }

    /// Publishes until the outbox is empty.
    pub async fn drain_outbox(&self) {
        let relay = self.relay();
        eventually("the outbox drains", || async {
            relay.run_once().await.unwrap();
            self.store.outbox_pending().await.unwrap() == 0
        })
        .await;
    }
}

/// Polls `check` until it holds, failing after 20 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy in front of an engine, to take it "down" (connections refused and cut) and
/// bring it back without touching the engine itself.
pub struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    /// Bumped at each stop: connections from before it end.
    epoch: Arc<tokio::sync::watch::Sender<u64>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// In front of `url`'s `host:port` (`http://host:port`).
    pub async fn start(url: &str) -> Proxy {
        let target = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let epoch = Arc::new(tokio::sync::watch::channel(0u64).0);
        let accept = {
            let (up, epoch) = (up.clone(), epoch.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(std::sync::atomic::Ordering::Acquire) {
                        continue;
                    }
                    let target = target.clone();
                    let mut stopped = epoch.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = stopped.changed() => {}
                        }
                    });
                }
            })
        };
        Proxy {
            addr,
            up,
            epoch,
            _accept: accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// New connections are closed at once and open ones are cut.
    pub fn stop(&self) {
        self.up.store(false, std::sync::atomic::Ordering::Release);
        self.epoch.send_modify(|epoch| *epoch += 1);
    }

    pub fn resume(&self) {
        self.up.store(true, std::sync::atomic::Ordering::Release);
    }
}

pub mod fixtures {
    use platform::commands::{Commands, Subscribe};
    use platform::domain::*;
    use platform::store::{NewPlan, NewUser, Plan, User};

    pub async fn user(commands: &Commands) -> User {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        commands
            .create_user(NewUser {
                email: Email::try_from(email).unwrap(),
                name: Name::try_from("Ada".to_owned()).unwrap(),
                country: parse_country("FR").unwrap(),
                device: None,
            })
            .await
            .unwrap()
    }

    pub async fn plan(
        commands: &Commands,
        price: i64,
        currency: &str,
        period: &str,
        available: bool,
    ) -> Plan {
        commands
            .create_plan(NewPlan {
                name: Name::try_from(format!("{period} {price} {currency}")).unwrap(),
                price: PriceCents::try_from(price).unwrap(),
                currency: Currency::try_from(currency).unwrap(),
                period: PlanPeriod::try_from(period).unwrap(),
                available,
            })
            .await
            .unwrap()
    }

    pub fn subscribe(user: &User, plan: &Plan, token: &str) -> Subscribe {
        Subscribe {
            user_id: user.id,
            plan_id: plan.id,
            token: PaymentToken::try_from(token).unwrap(),
            device: None,
        }
    }

    pub fn key() -> IdempotencyKey {
        IdempotencyKey::try_from(uuid::Uuid::new_v4().to_string().as_str()).unwrap()
    }
}
