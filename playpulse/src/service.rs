//! The service without its listener: the sink, the cache, the pipeline with its side paths, and
//! the CQRS platform, built from the settings. [`crate::Application`] serves it over HTTP;
//! benchmarks drive its handlers' core in process.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use cache::{Cache, MemoryCache, PostgresCache, RedisCache, RedisOptions};
use event_cql::CassandraConfig;
use ingest::config::{CacheKind, HistoryLayout, SinkKind};
use ingest::http::{self, AppState, PlaybackSessions};
use ingest::pipeline::{Pipeline, PipelineWorkers};
use ingest::sink::cassandra::{CassandraChunks, CassandraSink};
use ingest::sink::embedded::{open_packed, EmbeddedSink, StoreOptions};
use ingest::sink::packed::PackedSink;
use ingest::sink::postgres::PostgresSink;
use ingest::sink::EventSink;
use ingest::telemetry::Metrics;
use ingest::tokens::PlaybackTokens;
use platform::keys::ApiKeys;
use platform::Platform;

use crate::access::limits::RateLimitSettings;
use crate::access::{self, CorsSettings};
use crate::edge::{self, BodyLimits};
use crate::settings::Settings;
use crate::{metric_sources, ops, readiness};

/// A command (user, plan, subscription) is a small JSON object.
const COMMAND_BODY_MAX_BYTES: usize = 64 << 10;
/// The dashboard's login form holds one key.
const OPS_FORM_MAX_BYTES: usize = 4 << 10;
use crate::analytics_http::{self, AnalyticsApi};
use crate::side_paths::SidePaths;

/// Builds the sink the settings name; `metrics` counts what the sink does (retries).
pub async fn build_sink(
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<dyn EventSink>> {
    let shards = settings.pipeline.shards.get();
    let limits = settings.chunks.limits();
    match settings.sink.kind {
        SinkKind::Embedded => {
            let embedded = &settings.embedded;
            let options = StoreOptions {
                data_dir: embedded.data_dir.clone(),
                shards,
                retention: settings.sink.retention,
                segment_bytes: embedded.segment_bytes.get() as u64,
                fsync: embedded.fsync,
            };
            let context = || {
                format!(
                    "cannot open the embedded store in {}",
                    embedded.data_dir.display()
                )
            };
            Ok(match embedded.layout {
                HistoryLayout::Rows => {
                    Arc::new(EmbeddedSink::open(options).await.with_context(context)?)
                }
                HistoryLayout::Chunks => {
                    Arc::new(open_packed(options, limits).await.with_context(context)?)
                }
            })
        }
        SinkKind::Cassandra => {
            let config =
                CassandraConfig::from_settings(&settings.cassandra, settings.sink.retention)?;
            let context = "cannot start the Cassandra sink (sink.kind = \"cassandra\")";
            let node_id = config.node_id.clone();
            let layout = config.layout;
            let rows = CassandraSink::connect(config, metrics.clone())
                .await
                .context(context)?;
            Ok(match layout {
                HistoryLayout::Rows => Arc::new(rows),
                HistoryLayout::Chunks => {
                    let store = CassandraChunks::new(rows, node_id, shards)
                        .await
                        .context(context)?;
                    let retention = settings.sink.retention;
                    Arc::new(
                        PackedSink::start(Arc::new(store), shards, limits, retention)
                            .await
                            .context(context)?,
                    )
                }
            })
        }
        SinkKind::Postgres => Ok(PostgresSink::connect(
            &settings.postgres,
            settings.sink.retention,
        )
        .await
        .context("cannot start the PostgreSQL sink (sink.kind = \"postgres\", [postgres])")?),
    }
}

/// Builds the cache the settings name.
pub async fn build_cache(settings: &Settings) -> anyhow::Result<Arc<dyn Cache>> {
    match settings.cache.kind {
        CacheKind::Memory => Ok(Arc::new(MemoryCache::new())),
        CacheKind::Redis => {
            let redis = &settings.redis;
            // Does not connect: Redis may be down now; readiness reports it until it answers.
            let cache = RedisCache::new(&redis.url, &redis.key_prefix, RedisOptions::default())
                .context("cannot use redis.url")?;
            tracing::info!(address = cache.address(), prefix = %redis.key_prefix, "cache: redis");
            Ok(Arc::new(cache))
        }
        CacheKind::Postgres => {
            let postgres = &settings.postgres;
            let cache = PostgresCache::connect(
                &postgres.url,
                postgres.max_connections,
                postgres.request_timeout,
            )
            .await
            .context("cannot start the PostgreSQL cache (cache.kind = \"postgres\", [postgres])")?;
            Ok(Arc::new(cache))
        }
    }
}

/// The running service: handlers' state, the batchers, the side paths and the platform.
pub struct Service {
    /// What every ingest handler reaches; clone it to drive the handlers in process.
    pub state: AppState,
    workers: PipelineWorkers,
    side_paths: SidePaths,
    platform: Option<Platform>,
    /// The analytics routes' state, when `analytics.enabled`.
    analytics: Option<AnalyticsApi>,
    /// What the dashboard says about this service.
    ops: ops::PageFacts,
    /// The API keys, when `auth.enabled`.
    keys: Option<ApiKeys>,
    rate_limits: RateLimitSettings,
    cors: CorsSettings,
}

impl Service {
    /// Opens the sink and the cache, starts the platform (when `platform.enabled`), the side
    /// paths and the pipeline.
    pub async fn start(settings: &Settings) -> anyhow::Result<Service> {
        let metrics = Arc::new(Metrics::default());
        let sink = build_sink(settings, &metrics).await?;
        let cache = build_cache(settings).await?;
        let mut platform = None;
        if settings.platform.enabled {
            let started = Platform::build(&settings.platform(), cache.clone())
                .await
                .context(
                    "cannot start the CQRS platform ([platform.commands], [platform.read_model])",
                )?;
            platform = Some(started);
        }
        let keys = match (&platform, settings.auth.enabled) {
            (_, false) => None,
            (Some(platform), true) => Some(platform.api_keys()),
            // Keys live in the command store, which runs without the rest of the platform.
            (None, true) => Some(
                platform::open_api_keys(&settings.platform())
                    .await
                    .context("cannot open the API keys (auth.enabled, [platform.commands])")?,
            ),
        };
        let graph_feeder = platform.as_mut().and_then(Platform::take_graph_feeder);
        let recommender = platform
            .as_ref()
            .map(|platform| platform.recommender().clone());
        let mut degradable = platform
            .as_ref()
            .map(readiness::of_platform)
            .unwrap_or_default();
        let mut metric_sources = platform
            .as_ref()
            .map(metric_sources::of_platform)
            .unwrap_or_default();
        let mut analytics_api = None;
        let mut analytics_side_path = None;
        if settings.analytics.enabled {
            let sinks = settings
                .analytics
                .open(&settings.analytics_engines())
                .await
                .context("cannot open the analytics stores ([analytics])")?;
            let stats = Arc::new(analytics::sidepath::AnalyticsStats::default());
            analytics_side_path = Some(analytics::sidepath::start(
                &settings.analytics.settings(),
                sinks.clone(),
                settings.analytics.writer(),
                stats.clone(),
            ));
            degradable.push(readiness::of_analytics(&sinks));
            metric_sources.push(Arc::new(metric_sources::AnalyticsMetrics(stats)));
            analytics_api = Some(AnalyticsApi {
                sinks,
                history: sink.clone(),
            });
        }
        let mut side_paths = SidePaths::start(
            &settings.invalidation,
            graph_feeder,
            recommender,
            analytics_side_path,
            cache.clone(),
            metrics.clone(),
        );
        tracing::debug!(side_paths = ?side_paths.names(), "side paths");
        let (pipeline, workers) = Pipeline::start(
            &settings.pipeline,
            sink.clone(),
            side_paths.take_listeners(),
            metrics.clone(),
        );
        let state = AppState {
            pipeline,
            sink,
            cache,
            metrics,
            server: Arc::new(settings.server.clone()),
            ready: Arc::new(AtomicBool::new(false)),
            playback_tokens: settings.auth.playback_tokens.then(|| PlaybackSessions {
                tokens: Arc::new(PlaybackTokens::new(
                    settings.auth.playback_token_secret.as_bytes(),
                )),
                ttl: settings.auth.playback_token_ttl,
            }),
            degradable,
            metric_sources,
        };
        let ops = ops_facts(
            settings,
            &state,
            side_paths.names(),
            &analytics_api,
            &platform,
        );
        Ok(Service {
            state,
            ops,
            workers,
            side_paths,
            platform,
            analytics: analytics_api,
            keys,
            rate_limits: settings.rate_limits.clone(),
            cors: settings.cors.clone(),
        })
    }

    /// The service's routes: ingest's, and the platform's when it runs (their bodies read
    /// whole, bounded), behind the edge's layers.
    pub fn router(&self) -> anyhow::Result<axum::Router> {
        let router = http::router(self.state.clone());
        let router = match &self.platform {
            Some(platform) => {
                let limits = BodyLimits {
                    max_bytes: COMMAND_BODY_MAX_BYTES,
                    timeout: self.state.server.body_timeout,
                };
                router.merge(edge::bounded_bodies(platform.router(), limits))
            }
            None => router,
        };
        let router = match &self.analytics {
            Some(api) => router.merge(analytics_http::router(api.clone())),
            None => router,
        };
        let ops_limits = BodyLimits {
            max_bytes: OPS_FORM_MAX_BYTES,
            timeout: self.state.server.body_timeout,
        };
        let router = router.merge(edge::bounded_bodies(
            ops::router(self.ops.clone(), self.keys.clone()),
            ops_limits,
        ));
        let router = access::wrap(router, self.keys.clone(), &self.rate_limits, &self.cors)?;
        Ok(edge::wrap(router))
    }

    /// The side paths' names, in the order they run.
    pub fn side_paths(&self) -> Vec<&'static str> {
        self.side_paths.names()
    }

    /// Stops in order, once every clone of [`Service::state`] (and so of the pipeline) is gone:
    /// the batchers write what they hold, the sink stores what it holds in memory, the
    /// platform's relay stops, then each side path sends what the last batches left it.
    pub async fn drain(self) {
        let Service {
            state,
            workers,
            side_paths,
            platform,
            ..
        } = self;
        let sink = state.sink.clone();
        drop(state);
        workers.drain().await;
        // Open chunks are written now; what cannot be, the log replays on the next start.
        sink.shutdown().await;
        if let Some(platform) = platform {
            platform.shutdown().await;
        }
        side_paths.finished().await;
    }
}

/// What the dashboard shows of the service's make-up: its engines, side paths and ports, in
/// `/readyz`'s names.
fn ops_facts(
    settings: &Settings,
    state: &AppState,
    side_paths: Vec<&'static str>,
    analytics: &Option<AnalyticsApi>,
    platform: &Option<Platform>,
) -> ops::PageFacts {
    let lower = |kind: &dyn std::fmt::Debug| format!("{kind:?}").to_lowercase();
    let sink = lower(&settings.sink.kind);
    let cache = lower(&settings.cache.kind);
    let mut ports = vec![
        ops::Port {
            key: "sink",
            label: format!("Event store · {sink}"),
            required: true,
        },
        ops::Port {
            key: "cache",
            label: format!("Cache · {cache}"),
            required: true,
        },
    ];
    let engines = settings.platform();
    for dependency in &state.degradable {
        let label = match dependency.name() {
            "commands" => format!("Command store · {}", lower(&engines.commands.kind)),
            "graph" => format!("Graph · {}", lower(&engines.graph.kind)),
            "search" => format!("Search · {}", lower(&engines.search.kind)),
            "analytics" => format!("QoE rollups · {}", lower(&settings.analytics.store)),
            other => other.to_owned(),
        };
        ports.push(ops::Port {
            key: dependency.name(),
            label,
            required: false,
        });
    }
    ops::PageFacts {
        version: env!("CARGO_PKG_VERSION"),
        sink,
        cache,
        side_paths,
        ports,
        analytics: analytics.is_some(),
        platform: platform.is_some(),
    }
}
