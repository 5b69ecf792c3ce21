use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use cache::Cache;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wire::PlaybackEvent;

use super::RefreshEpochs;
use crate::readmodel::{ReadModel, ReadModelError, Recommendation};

/// Titles a user watched that are read to find co-viewers, and co-viewers read per title:
/// bounds one refresh to at most 1 + WATCHED + WATCHED * VIEWERS small partition reads.
const WATCHED_LIMIT: i64 = 50;
const VIEWERS_LIMIT: i64 = 50;

/// Side path of ingest: fed with every durable batch of playback events, it records who
/// watched what in the read model, recomputes the viewers' recommendations and invalidates their
/// cached ones. `record` never waits: a full queue drops the batch and counts it (the next view
/// of the same title records it again; recommendations are a ranking, not a ledger).
#[derive(Clone)]
pub struct ViewingRecorder {
    queue: mpsc::Sender<Vec<(u64, u64)>>,
    dropped: Arc<AtomicU64>,
    after_refresh: Arc<OnceLock<RefreshedUsers>>,
}

/// Told which users' recommendations were just refreshed, after the read-model write: the
/// moment their cached answers may be dropped, never before. Runs on the recorder's task: it
/// must only record what to do and return.
pub trait RefreshListener: Send + Sync + 'static {
    fn refreshed(&self, users: &[u64]);
}

type RefreshedUsers = Arc<dyn RefreshListener>;

impl ViewingRecorder {
    /// Starts the recorder's task; it ends once every `ViewingRecorder` clone is dropped.
    /// After each refresh it unlinks the users' `recommendations:{id}` in `cache`, unless
    /// [`ViewingRecorder::notify_after_refresh`] hands them to another side path instead.
    /// `epochs` are bumped for every refreshed user once the read model holds the refresh,
    /// before the cache is told (the recommendation service's, see `RefreshEpochs`).
    pub fn start(
        read_model: Arc<dyn ReadModel>,
        cache: Option<Arc<dyn Cache>>,
        epochs: Arc<RefreshEpochs>,
        limit: usize,
        queue_batches: usize,
    ) -> (ViewingRecorder, RecorderTask) {
        let (queue, batches) = mpsc::channel(queue_batches.max(1));
        let after_refresh = Arc::new(OnceLock::new());
        let task = tokio::spawn(run(
            batches,
            read_model,
            cache,
            epochs,
            after_refresh.clone(),
            limit,
        ));
        (
            ViewingRecorder {
                queue,
                dropped: Arc::new(AtomicU64::new(0)),
                after_refresh,
            },
            RecorderTask { task },
        )
    }

    /// Records the views in `events` (a `start` or `complete` of a title): non-blocking.
    pub fn record(&self, events: &[PlaybackEvent]) {
        let views: Vec<(u64, u64)> = events
            .iter()
            .filter(|event| event.kind.changes_taste())
            .map(|event| (event.user_id, event.content_id))
            .collect();
        if views.is_empty() {
            return;
        }
        if let Err(full) = self.queue.try_send(views) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            // Not refreshed, but whoever drops cached answers must still hear of these users.
            if let (Some(listener), mpsc::error::TrySendError::Full(views)) =
                (self.after_refresh.get(), full)
            {
                let users: BTreeSet<u64> = views.iter().map(|&(user, _)| user).collect();
                listener.refreshed(&users.into_iter().collect::<Vec<_>>());
            }
        }
    }

    /// Hands refreshed users to `listener` (e.g. ingest's coalescing invalidation side path)
    /// instead of unlinking their keys itself. Set once, before events flow; false if already set.
    pub fn notify_after_refresh(&self, listener: Arc<dyn RefreshListener>) -> bool {
        self.after_refresh.set(listener).is_ok()
    }

    /// Batches dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The recorder's task.
pub struct RecorderTask {
    task: JoinHandle<()>,
}

impl RecorderTask {
    /// Waits for the task to write what it was given (after every recorder is dropped).
    pub async fn finished(self) {
        let _ = self.task.await;
    }
}

async fn run(
    mut batches: mpsc::Receiver<Vec<(u64, u64)>>,
    read_model: Arc<dyn ReadModel>,
    cache: Option<Arc<dyn Cache>>,
    epochs: Arc<RefreshEpochs>,
    after_refresh: Arc<OnceLock<RefreshedUsers>>,
    limit: usize,
) {
    while let Some(mut views) = batches.recv().await {
        // Coalesce what queued up meanwhile: one refresh per user per round.
        while let Ok(more) = batches.try_recv() {
            views.extend(more);
            if views.len() > 10_000 {
                break;
            }
        }
        let unique: BTreeSet<(u64, u64)> = views.into_iter().collect();
        let views: Vec<(u64, u64)> = unique.into_iter().collect();
        let users: Vec<u64> = views
            .iter()
            .map(|&(user, _)| user)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if let Err(error) = refresh(&views, &users, &*read_model, limit).await {
            tracing::warn!(%error, views = views.len(), "cannot record views for recommendations");
        }
        // After the read model write (or its failure), never before (see projectors); loads
        // that read before it must not fill the cache with what they read.
        for &user in &users {
            epochs.bump(user);
        }
        if let Some(listener) = after_refresh.get() {
            listener.refreshed(&users);
        } else if let Some(cache) = &cache {
            let keys: Vec<String> = users
                .iter()
                .map(|user| wire::keys::recommendations(*user))
                .collect();
            if let Err(error) = cache.unlink(&keys).await {
                tracing::warn!(%error, "cannot invalidate recommendations after a refresh; the TTL bounds staleness");
            }
        }
    }
}

async fn refresh(
    views: &[(u64, u64)],
    users: &[u64],
    read_model: &dyn ReadModel,
    limit: usize,
) -> Result<(), ReadModelError> {
    read_model.record_views(views).await?;
    for &user in users {
        let items = co_watched(read_model, user, limit).await?;
        read_model.put_recommendations(user, &items).await?;
    }
    Ok(())
}

/// Titles co-watched by viewers who watched what `user` watched, that `user` has not watched,
/// ranked by how many such viewers watched them (ties: lower content id first).
pub async fn co_watched(
    read_model: &dyn ReadModel,
    user: u64,
    limit: usize,
) -> Result<Vec<Recommendation>, ReadModelError> {
    let watched: HashSet<u64> = read_model
        .watched_by(user, WATCHED_LIMIT)
        .await?
        .into_iter()
        .collect();
    let mut co_viewers = HashSet::new();
    for &content in &watched {
        for viewer in read_model.viewers_of(content, VIEWERS_LIMIT).await? {
            if viewer != user {
                co_viewers.insert(viewer);
            }
        }
    }
    let mut scores: HashMap<u64, u64> = HashMap::new();
    for viewer in co_viewers {
        for content in read_model.watched_by(viewer, WATCHED_LIMIT).await? {
            if !watched.contains(&content) {
                *scores.entry(content).or_default() += 1;
            }
        }
    }
    let mut ranked: Vec<(u64, u64)> = scores.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(ranked
        .into_iter()
        .take(limit)
        .map(|(content_id, score)| Recommendation {
            content_id,
            score: score as f64,
        })
        .collect())
}
