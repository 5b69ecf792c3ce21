//! The application: built from settings, served until a shutdown signal, then drained.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::cache::{Cache, MemoryCache, RedisCache, RedisOptions};
use crate::config::{CacheKind, Settings, SinkKind};
use crate::http::{self, AppState};
use crate::pipeline::{Pipeline, PipelineWorkers};
use crate::sidepath::invalidation::{self, InvalidationTask};
use crate::sidepath::DurableListener;
use crate::sink::cassandra::{CassandraConfig, CassandraSink};
use crate::sink::embedded::{EmbeddedSink, StoreOptions};
use crate::sink::EventSink;
use crate::telemetry::Metrics;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    workers: PipelineWorkers,
    side_paths: SidePaths,
    settings: Settings,
}

/// The side paths' background tasks; each finishes on its own once the pipeline has drained
/// (its listeners are dropped with the batchers), after a bounded last flush.
#[derive(Default)]
pub struct SidePaths {
    invalidation: Option<InvalidationTask>,
    /// The CQRS platform: its routes join the service's, its relay and view recorder run
    /// beside the pipeline and stop with it.
    platform: Option<platform::Platform>,
}

impl SidePaths {
    /// Waits for every side path's last flush (call after the pipeline has drained).
    pub async fn finished(self) {
        // The platform first: its view recorder hands its last refreshed users to the
        // invalidation side path, whose flush ends once nobody can hand it more.
        if let Some(platform) = self.platform {
            platform.shutdown().await;
        }
        if let Some(invalidation) = self.invalidation {
            invalidation.finished().await;
        }
    }
}

/// Feeds the platform's recommendations read model from durable playback events.
struct ViewingListener(platform::recommendations::ViewingRecorder);

impl DurableListener for ViewingListener {
    fn on_durable(&self, events: &[wire::PlaybackEvent]) {
        self.0.record(events);
    }
}

/// Builds the sink the settings name; `metrics` counts what the sink does (retries).
pub async fn build_sink(
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<dyn EventSink>> {
    match settings.sink.kind {
        SinkKind::Embedded => {
            let embedded = &settings.embedded;
            let options = StoreOptions {
                data_dir: embedded.data_dir.clone(),
                lanes: settings.pipeline.shards.get(),
                retention: settings.sink.retention,
                segment_bytes: embedded.segment_bytes.get() as u64,
                fsync: embedded.fsync,
            };
            let sink = EmbeddedSink::open(options).await.with_context(|| {
                format!(
                    "cannot open the embedded store in {}",
                    embedded.data_dir.display()
                )
            })?;
            Ok(Arc::new(sink))
        }
        SinkKind::Cassandra => {
            let config =
                CassandraConfig::from_settings(&settings.cassandra, settings.sink.retention)?;
            let sink = CassandraSink::connect(config, metrics.clone())
                .await
                .context("cannot start the Cassandra sink (sink.kind = \"cassandra\")")?;
            Ok(Arc::new(sink))
        }
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
    }
}

/// Opens the sink and starts the pipeline with its side paths: everything but the listener
/// (benchmarks drive the handlers' core directly). The side paths run detached: they still
/// flush and stop once the pipeline has drained, but nobody waits for that last flush.
pub async fn build_state(settings: &Settings) -> anyhow::Result<(AppState, PipelineWorkers)> {
    let (state, workers, _side_paths) = build_service(settings).await?;
    Ok((state, workers))
}

/// [`build_state`], with the side paths' tasks to await after the pipeline drains.
pub async fn build_service(
    settings: &Settings,
) -> anyhow::Result<(AppState, PipelineWorkers, SidePaths)> {
    let metrics = Arc::new(Metrics::default());
    let sink = build_sink(settings, &metrics).await?;
    let cache = build_cache(settings).await?;
    let mut listeners: Vec<Arc<dyn DurableListener>> = Vec::new();
    let mut side_paths = SidePaths::default();
    let mut invalidator = None;
    if settings.invalidation.enabled {
        let (listener, task) =
            invalidation::start(&settings.invalidation, cache.clone(), metrics.clone());
        invalidator = Some(listener);
        side_paths.invalidation = Some(task);
    }
    let covers_recommendations = settings
        .invalidation
        .keys
        .iter()
        .any(|key| key == "recommendations:{user_id}");
    if settings.commands.enabled {
        let platform = platform::Platform::build(&settings.platform(), cache.clone())
            .await
            .context("cannot start the CQRS platform ([commands], [read_model])")?;
        if let Some(recorder) = platform.recorder.clone() {
            // A viewer's cached recommendations may only be dropped after the recorder has
            // refreshed them; so the recorder, not the batchers, hands users to the
            // invalidation side path, which still coalesces them into one UNLINK per window.
            if covers_recommendations {
                if let Some(listener) = invalidator.take() {
                    recorder.notify_after_refresh(Arc::new(move |users: &[u64]| {
                        listener.enqueue_users(users.iter().copied())
                    }));
                }
            }
            listeners.push(Arc::new(ViewingListener(recorder)));
        }
        side_paths.platform = Some(platform);
    }
    if let Some(listener) = invalidator {
        listeners.push(listener);
    }
    let (pipeline, workers) =
        Pipeline::start(&settings.pipeline, sink.clone(), listeners, metrics.clone());
    let state = AppState {
        pipeline,
        sink,
        cache,
        metrics,
        server: Arc::new(settings.server.clone()),
        ready: Arc::new(AtomicBool::new(false)),
    };
    Ok((state, workers, side_paths))
}

impl Application {
    /// Opens the sink, starts the pipeline and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let (state, workers, side_paths) = build_service(&settings).await?;
        let listen = settings.server.listen;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
        Ok(Application {
            listener,
            state,
            workers,
            side_paths,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until SIGTERM or ctrl-c, then drains.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves; then readiness turns false, requests in flight finish,
    /// batchers write what they hold, and this returns, all within `server.shutdown_timeout`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            workers,
            side_paths,
            settings,
        } = self;
        let ready = state.ready.clone();
        let addr = listener.local_addr()?;
        let mut router = http::router(state);
        if let Some(platform) = &side_paths.platform {
            router = router.merge(platform.router());
        }
        ready.store(true, Ordering::Release);
        tracing::info!(%addr, sink = ?settings.sink.kind, "serving");

        let (drain_started, drain_signal) = tokio::sync::oneshot::channel::<()>();
        let ready_flag = ready.clone();
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            ready_flag.store(false, Ordering::Release);
            tracing::info!("shutting down: draining requests in flight");
            let _ = drain_started.send(());
        });
        let server = tokio::spawn(async move { serve.await });

        // The drain is bounded from the moment the signal arrives.
        let _ = drain_signal.await;
        let timeout = settings.server.shutdown_timeout;
        let drained = tokio::time::timeout(timeout, async {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "server error"),
                Err(error) => tracing::error!(%error, "server task failed"),
            }
            // The router (and with it every pipeline handle) is gone: batchers flush and stop.
            workers.drain().await;
            // Then the side paths send what the last batches left them.
            side_paths.finished().await;
        })
        .await;
        match drained {
            Ok(()) => tracing::info!("drained; bye"),
            Err(_) => tracing::warn!(?timeout, "shutdown timed out with work in flight"),
        }
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
