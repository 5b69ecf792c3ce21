//! PlayPulse's CQRS platform: the command side (users, plans, subscriptions and payments on
//! PostgreSQL, or SQLite on the embedded default), API keys, the transactional outbox and its relay, the
//! projectors that keep the read models (Cassandra, or a local file) and the cache in step, the
//! recommendations query, and billing reports.
//!
//! Data flows: HTTP command -> domain types -> command store transaction (change + outbox
//! event) -> relay -> projector (read model, then cache invalidation) -> queries.

pub mod commands;
pub mod config;
pub mod domain;
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
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::commands::{CommandOptions, Commands};
use crate::config::{CommandStoreKind, PlatformSettings, ReadModelKind, SettingError};
use crate::keys::ApiKeys;
use crate::outbox::{Relay, RelayHandle, RelayOptions};
use crate::payments::{PaymentGateway, SimulatedGateway};
use crate::projectors::ProfileProjector;
use crate::readmodel::{
    CassandraReadModel, CassandraReadModelConfig, LocalReadModel, ReadModel, ReadModelError,
};
use crate::recommendations::{RecommendationService, RecorderTask, ViewingRecorder};
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
}

/// The running platform: its state for the router, the relay, and the background tasks.
pub struct Platform {
    pub state: http::PlatformState,
    pub relay: Arc<Relay>,
    api_keys: ApiKeys,
    /// The view recorder (when `recommendations.record_views`), until its host takes it as a
    /// side path of ingest with [`Platform::take_view_recorder`].
    recorder: Option<(ViewingRecorder, RecorderTask)>,
    relay_task: Option<RelayHandle>,
    purge: Option<(watch::Sender<bool>, JoinHandle<()>)>,
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
    })
}

impl Platform {
    /// Opens the stores, starts the relay, the recorder and the key purge, with the simulated
    /// payment gateway.
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
        Ok(Platform::assemble(
            settings, store, read_model, cache, gateway,
        ))
    }

    /// Wires already-open parts together and starts the background tasks.
    pub fn assemble(
        settings: &PlatformSettings,
        store: Arc<dyn CommandStore>,
        read_model: Arc<dyn ReadModel>,
        cache: Arc<dyn Cache>,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Platform {
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
            ProfileProjector::new(read_model.clone(), cache.clone()),
            RelayOptions {
                poll_interval: settings.outbox.poll_interval,
                batch_size: i64::from(settings.outbox.batch_size),
            },
            committed,
        ));
        let relay_task = relay.clone().spawn();
        let recommendations = Arc::new(RecommendationService::new(
            read_model.clone(),
            cache.clone(),
            settings.recommendations.ttl,
            settings.recommendations.limit,
        ));
        let recorder = settings.recommendations.record_views.then(|| {
            ViewingRecorder::start(
                read_model.clone(),
                Some(cache.clone()),
                recommendations.refresh_epochs(),
                settings.recommendations.limit,
                settings.recommendations.recorder_queue,
            )
        });
        let api_keys = ApiKeys::new(store.clone());
        let purge = spawn_purge(store, settings.commands.idempotency_key_retention);
        Platform {
            state: http::PlatformState {
                commands,
                read_model,
                cache,
                recommendations,
                profile_ttl: settings.recommendations.profile_ttl,
            },
            relay,
            api_keys,
            recorder,
            relay_task: Some(relay_task),
            purge: Some(purge),
        }
    }

    /// The API key service on the platform's command store (one cache for every clone).
    pub fn api_keys(&self) -> ApiKeys {
        self.api_keys.clone()
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// The view recorder and its task, for the host to feed with durable playback events and
    /// to finish after its pipeline has drained (see [`ViewingRecorder`]); `None` when
    /// `recommendations.record_views` is off or it was taken already.
    pub fn take_view_recorder(&mut self) -> Option<(ViewingRecorder, RecorderTask)> {
        self.recorder.take()
    }

    /// Stops the relay after its round in progress, the purge, and lets a recorder still held
    /// here write what it holds (once every recorder clone is dropped).
    pub async fn shutdown(mut self) {
        if let Some(relay) = self.relay_task.take() {
            relay.stop().await;
        }
        if let Some((stop, task)) = self.purge.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
        if let Some((recorder, task)) = self.recorder.take() {
            drop(recorder);
            task.finished().await;
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
