//! PlayPulse's CQRS platform: the command side (users, plans, subscriptions and payments on
//! PostgreSQL, or SQLite on the embedded default), API keys, the transactional outbox and its relay, the
//! projectors that keep the read models (Cassandra, or a local file) and the cache in step,
//! recommendations and fraud rings from the graph (Neo4j, or in process), and billing reports.
//!
//! Data flows: HTTP command -> domain types -> command store transaction (change + outbox
//! event) -> relay -> projector (read model, then cache invalidation; identifiers to the graph
//! feeder) -> queries. Playback: durable events -> graph feeder -> graph -> refreshes
//! (similar titles and fraud rings in memory, users' lists in the read model) -> queries.

pub mod catalog;
pub mod commands;
pub mod config;
pub mod domain;
pub mod fraud;
pub mod http;
pub mod keys;
pub mod outbox;
pub mod payments;
pub mod projectors;
pub mod readmodel;
pub mod recommendations;
pub mod reports;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use cache::Cache;
use graph::feed::{FeedOptions, FeederTask, FlushListener, GraphFeeder};
use graph::rings::RingOptions;
use graph::similarity::SimilarityOptions;
use graph::{GraphError, GraphStore, GraphUpdate, MemoryGraph, Neo4jGraph, Neo4jOptions};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::catalog::feed::{CatalogFeed, FeedHandle, SearchProjector, TitleReadModel};
use crate::catalog::popularity::{PopularityRefresher, PopularityTask};
use crate::catalog::Catalog;
use crate::commands::{CommandOptions, Commands};
use crate::config::{
    CommandStoreKind, GraphKind, GraphSettings, PlatformSettings, ReadModelKind, SearchKind,
    SettingError,
};
use crate::fraud::{FraudRings, FraudTask};
use crate::keys::ApiKeys;
use crate::outbox::{Relay, RelayHandle, RelayOptions};
use crate::payments::{PaymentGateway, SimulatedGateway};
use crate::projectors::ProfileProjector;
use crate::readmodel::{
    CassandraReadModel, CassandraReadModelConfig, LocalReadModel, PostgresReadModel, ReadModel,
    ReadModelError,
};
use crate::recommendations::{
    GraphRecommender, RankingOptions, RecommendationService, RefresherOptions, RefresherTask,
};
use crate::store::{CommandStore, PostgresStore, SqliteStore, StoreError};

/// Why the platform cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Search(#[from] search::SearchError),
}

/// The running platform: its state for the router, the relay, and the background tasks.
pub struct Platform {
    pub state: http::PlatformState,
    pub relay: Arc<Relay>,
    api_keys: ApiKeys,
    /// The graph feeder, until its host takes it as a side path of ingest with
    /// [`Platform::take_graph_feeder`] (when `graph.feed_playback`).
    feeder: Option<(GraphFeeder, FeederTask)>,
    feed_playback: bool,
    refresher: Option<RefresherTask>,
    fraud: Option<FraudTask>,
    relay_task: Option<RelayHandle>,
    purge: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// The catalog's projectors: the title read model's, then the search index's.
    catalog_feeds: Vec<Arc<CatalogFeed>>,
    catalog_tasks: Vec<FeedHandle>,
    popularity: Arc<PopularityRefresher>,
    popularity_task: Option<PopularityTask>,
}

/// Opens the search index the settings name (OpenSearch: without a round trip; it may be down
/// now, and is found out by the first call that needs it).
pub fn open_search(
    settings: &PlatformSettings,
) -> Result<Arc<dyn search::SearchIndex>, PlatformError> {
    let search = &settings.search;
    Ok(match search.kind {
        SearchKind::Tantivy => Arc::new(search::TantivyIndex::open(&settings.search_path())?),
        SearchKind::Opensearch => {
            Arc::new(search::OpenSearchIndex::new(search::OpenSearchOptions {
                url: search.opensearch_url.clone(),
                alias: search.alias.clone(),
                request_timeout: search.request_timeout,
            })?)
        }
    })
}

/// Opens the command store the settings name.
pub async fn open_store(
    settings: &PlatformSettings,
) -> Result<Arc<dyn CommandStore>, PlatformError> {
    Ok(match settings.commands.kind {
        CommandStoreKind::Sqlite => Arc::new(SqliteStore::open(&settings.sqlite_path()).await?),
        CommandStoreKind::Postgres => Arc::new(
            PostgresStore::connect(
                &settings.commands.postgres_url,
                settings.commands.postgres_max_connections,
            )
            .await?,
        ),
    })
}

/// The API key service on the command store the settings name, without the rest of the
/// platform (for the `playpulse keys` command).
pub async fn open_api_keys(settings: &PlatformSettings) -> Result<ApiKeys, PlatformError> {
    settings.validate()?;
    Ok(ApiKeys::new(open_store(settings).await?))
}

/// Opens the read model the settings name.
pub async fn open_read_model(
    settings: &PlatformSettings,
) -> Result<Arc<dyn ReadModel>, PlatformError> {
    Ok(match settings.read_model.kind {
        ReadModelKind::Local => Arc::new(LocalReadModel::open(&settings.read_model_path()).await?),
        ReadModelKind::Cassandra => {
            let cassandra = &settings.cassandra;
            Arc::new(
                CassandraReadModel::connect(&CassandraReadModelConfig {
                    nodes: cassandra.nodes.clone(),
                    keyspace: settings.read_model.keyspace.clone(),
                    replication: cassandra.replication.clone(),
                    local_datacenter: cassandra.local_datacenter.clone(),
                    request_timeout: cassandra.request_timeout,
                })
                .await?,
            )
        }
        ReadModelKind::Postgres => Arc::new(
            PostgresReadModel::connect(
                &settings.commands.postgres_url,
                &settings.read_model.postgres_schema,
                settings.commands.postgres_max_connections,
            )
            .await?,
        ),
    })
}

/// Opens the graph the settings name (Neo4j: without connecting; it may be down now).
pub fn open_graph(settings: &GraphSettings) -> Result<Arc<dyn GraphStore>, PlatformError> {
    Ok(match settings.kind {
        GraphKind::Memory => Arc::new(MemoryGraph::new()),
        GraphKind::Neo4j => {
            let graph = Neo4jGraph::new(&Neo4jOptions {
                uri: settings.neo4j_uri.clone(),
                user: settings.neo4j_user.clone(),
                password: settings.neo4j_password.clone(),
                label_prefix: settings.neo4j_label_prefix.clone(),
                request_timeout: settings.request_timeout,
                ..Neo4jOptions::default()
            })?;
            tracing::info!(address = graph.address(), "graph: neo4j");
            Arc::new(graph)
        }
    })
}

/// What the feeder tells after each graph write: the refresher marks what changed, the fraud
/// rings note new links.
struct AfterGraphWrite {
    recommender: Arc<GraphRecommender>,
    fraud: Arc<FraudRings>,
}

impl FlushListener for AfterGraphWrite {
    fn flushed(&self, update: &GraphUpdate) {
        self.recommender.heard(update);
        self.fraud.heard(update);
    }
}

impl Platform {
    /// Opens the stores and the graph, starts the relay, the graph feeder and refreshes and
    /// the key purge, with the simulated payment gateway.
    pub async fn build(
        settings: &PlatformSettings,
        cache: Arc<dyn Cache>,
    ) -> Result<Platform, PlatformError> {
        Platform::build_with(settings, cache, Arc::new(SimulatedGateway::new())).await
    }

    pub async fn build_with(
        settings: &PlatformSettings,
        cache: Arc<dyn Cache>,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Result<Platform, PlatformError> {
        settings.validate()?;
        let store = open_store(settings).await?;
        let read_model = open_read_model(settings).await?;
        let graph = open_graph(&settings.graph)?;
        let search = open_search(settings)?;
        Ok(Platform::assemble(
            settings, store, read_model, graph, search, cache, gateway,
        ))
    }

    /// Wires already-open parts together and starts the background tasks.
    pub fn assemble(
        settings: &PlatformSettings,
        store: Arc<dyn CommandStore>,
        read_model: Arc<dyn ReadModel>,
        graph: Arc<dyn GraphStore>,
        search: Arc<dyn search::SearchIndex>,
        cache: Arc<dyn Cache>,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Platform {
        let graph_settings = &settings.graph;
        let (feeder, feeder_task) = GraphFeeder::start(
            graph.clone(),
            FeedOptions {
                flush_interval: graph_settings.flush_interval,
                max_pending: graph_settings.max_pending,
                queue_batches: graph_settings.queue_batches,
                ..FeedOptions::default()
            },
        );
        let recommender = Arc::new(GraphRecommender::new(
            graph.clone(),
            read_model.clone(),
            Some(cache.clone()),
            Arc::default(),
            RefresherOptions {
                refresh_interval: graph_settings.refresh_interval,
                full_refresh_interval: graph_settings.full_refresh_interval,
                similarity: SimilarityOptions {
                    measure: graph_settings.similarity,
                    top_k: graph_settings.top_k,
                    max_viewer_titles: graph_settings.max_viewer_titles,
                    hub_share: graph_settings.hub_share,
                    min_together: graph_settings.min_together,
                },
                ranking: RankingOptions {
                    limit: settings.recommendations.limit,
                    ..RankingOptions::default()
                },
                trending_window: graph_settings.trending_window,
                ..RefresherOptions::default()
            },
        ));
        let fraud = Arc::new(FraudRings::new(
            graph.clone(),
            RingOptions {
                min_shared: graph_settings.ring_min_shared,
                max_accounts_per_identifier: graph_settings.ring_max_accounts,
            },
        ));
        feeder.notify_after_flush(Arc::new(AfterGraphWrite {
            recommender: recommender.clone(),
            fraud: fraud.clone(),
        }));
        let refresher = recommender.start();
        let fraud_task = fraud.start(graph_settings.rings_interval);
        let committed = Arc::new(Notify::new());
        let commands = Commands::new(
            store.clone(),
            gateway,
            CommandOptions {
                charge_timeout: settings.commands.charge_timeout,
                charge_attempts: settings.commands.charge_attempts,
                key_lease: settings.commands.idempotency_key_lease,
            },
            committed.clone(),
        );
        let relay = Arc::new(Relay::new(
            store.clone(),
            ProfileProjector::new(read_model.clone(), cache.clone()).feeding(feeder.downgrade()),
            RelayOptions {
                poll_interval: settings.outbox.poll_interval,
                batch_size: i64::from(settings.outbox.batch_size),
            },
            committed,
        ));
        let relay_task = relay.clone().spawn();
        let recommendations = Arc::new(RecommendationService::new(
            read_model.clone(),
            recommender,
            cache.clone(),
            settings.recommendations.ttl,
            settings.recommendations.limit,
        ));
        let catalog = Catalog::new(store.clone(), read_model.clone(), search.clone());
        let feed_options = catalog::feed::FeedOptions {
            poll_interval: settings.search.poll_interval,
            batch_size: i64::from(settings.search.batch_size),
            ..catalog::feed::FeedOptions::default()
        };
        let consumers: [Arc<dyn catalog::feed::TitleConsumer>; 2] = [
            Arc::new(TitleReadModel {
                read_model: read_model.clone(),
            }),
            Arc::new(SearchProjector {
                name: format!("search:{}", settings.search.alias),
                index: search.clone(),
            }),
        ];
        let catalog_feeds: Vec<Arc<CatalogFeed>> = consumers
            .into_iter()
            .map(|consumer| {
                Arc::new(CatalogFeed::new(
                    store.clone(),
                    consumer,
                    feed_options.clone(),
                    catalog.commits(),
                ))
            })
            .collect();
        let catalog_tasks = catalog_feeds
            .iter()
            .map(|feed| feed.clone().spawn())
            .collect();
        let popularity = Arc::new(PopularityRefresher::new(graph.clone(), search));
        let popularity_task = popularity
            .clone()
            .start(settings.search.popularity_interval);
        let api_keys = ApiKeys::new(store.clone());
        let purge = spawn_purge(store, settings.commands.idempotency_key_retention);
        Platform {
            state: http::PlatformState {
                commands,
                read_model,
                cache,
                recommendations,
                fraud,
                catalog,
                profile_ttl: settings.recommendations.profile_ttl,
            },
            relay,
            api_keys,
            feeder: Some((feeder, feeder_task)),
            feed_playback: graph_settings.feed_playback,
            refresher: Some(refresher),
            fraud: Some(fraud_task),
            relay_task: Some(relay_task),
            purge: Some(purge),
            catalog_feeds,
            catalog_tasks,
            popularity,
            popularity_task: Some(popularity_task),
        }
    }

    /// The catalog: its commands, its read model, its search index.
    pub fn catalog(&self) -> &Catalog {
        &self.state.catalog
    }

    /// The projector that keeps the search index in step (its position, failures).
    pub fn search_feed(&self) -> &Arc<CatalogFeed> {
        &self.catalog_feeds[1]
    }

    /// The projector that keeps the title read model in step.
    pub fn title_feed(&self) -> &Arc<CatalogFeed> {
        &self.catalog_feeds[0]
    }

    /// What pushes titles' popularity to the search index.
    pub fn popularity(&self) -> &Arc<PopularityRefresher> {
        &self.popularity
    }

    /// The API key service on the platform's command store (one cache for every clone).
    pub fn api_keys(&self) -> ApiKeys {
        self.api_keys.clone()
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// The graph feeder and its task, for the host to feed with durable playback events and
    /// to finish after its pipeline has drained (see [`GraphFeeder`]); `None` when
    /// `graph.feed_playback` is off or it was taken already.
    pub fn take_graph_feeder(&mut self) -> Option<(GraphFeeder, FeederTask)> {
        if !self.feed_playback {
            return None;
        }
        self.feeder.take()
    }

    /// The refresher: what invalidation hears of refreshed users, and what benchmarks drive.
    pub fn recommender(&self) -> &Arc<GraphRecommender> {
        self.state.recommendations.recommender()
    }

    /// What the graph feeder did so far, while the platform holds it (not taken by the host).
    pub fn feed_stats(&self) -> Option<graph::feed::FeedStats> {
        self.feeder.as_ref().map(|(feeder, _)| feeder.stats())
    }

    /// The graph recommendations and fraud rings are computed from.
    pub fn graph(&self) -> &Arc<dyn GraphStore> {
        self.recommender().graph()
    }

    /// Stops the relay after its round in progress, the purge, lets a feeder still held here
    /// write what it holds (once every feeder clone is dropped), then stops the refreshes.
    pub async fn shutdown(mut self) {
        if let Some(relay) = self.relay_task.take() {
            relay.stop().await;
        }
        if let Some((stop, task)) = self.purge.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
        for task in std::mem::take(&mut self.catalog_tasks) {
            task.stop().await;
        }
        if let Some(task) = self.popularity_task.take() {
            task.stop().await;
        }
        if let Some((feeder, task)) = self.feeder.take() {
            drop(feeder);
            task.finished().await;
        }
        if let Some(refresher) = self.refresher.take() {
            refresher.stop().await;
        }
        if let Some(fraud) = self.fraud.take() {
            fraud.stop().await;
        }
    }
}

/// Forgets finished idempotency keys older than `retention`, hourly.
fn spawn_purge(
    store: Arc<dyn CommandStore>,
    retention: Duration,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = every.tick() => {}
            }
            let before = domain::now_ms() - retention.as_millis() as i64;
            match store.purge_keys(before).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "idempotency keys purged"),
                Err(error) => tracing::warn!(%error, "cannot purge idempotency keys"),
            }
        }
    });
    (stop, task)
}
