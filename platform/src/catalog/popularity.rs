//! How much each title is watched, for the search boost: the viewer count of every title in
//! the graph (which the durable playback stream feeds), pushed to the index every interval.
//! Only what changed is pushed, except after a rebuild switched generations: then everything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use graph::GraphStore;
use search::SearchIndex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Popularity values sent per call.
const CHUNK: usize = 5_000;

pub struct PopularityRefresher {
    graph: Arc<dyn GraphStore>,
    index: Arc<dyn SearchIndex>,
    pushed: tokio::sync::Mutex<Pushed>,
    rounds: AtomicU64,
}

#[derive(Default)]
struct Pushed {
    generation: String,
    viewers: HashMap<u64, u64>,
}

impl PopularityRefresher {
    pub fn new(graph: Arc<dyn GraphStore>, index: Arc<dyn SearchIndex>) -> PopularityRefresher {
        PopularityRefresher {
            graph,
            index,
            pushed: tokio::sync::Mutex::new(Pushed::default()),
            rounds: AtomicU64::new(0),
        }
    }

    /// One round; returns how many titles' popularity was pushed.
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut pushed = self.pushed.lock().await;
        let generation = self.index.generation().await.map_err(|e| e.to_string())?;
        if generation != pushed.generation {
            pushed.viewers.clear();
        }
        let titles = self.graph.titles().await.map_err(|e| e.to_string())?;
        let changed: Vec<(u64, f32)> = titles
            .iter()
            .filter(|title| pushed.viewers.get(&title.title) != Some(&title.viewers))
            .map(|title| (title.title, title.viewers as f32))
            .collect();
        for chunk in changed.chunks(CHUNK) {
            self.index
                .set_popularity(chunk)
                .await
                .map_err(|e| e.to_string())?;
        }
        pushed.viewers = titles
            .iter()
            .map(|title| (title.title, title.viewers))
            .collect();
        pushed.generation = generation;
        self.rounds.fetch_add(1, Ordering::Relaxed);
        Ok(changed.len())
    }

    /// Rounds completed so far.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    pub fn start(self: Arc<Self>, every: Duration) -> PopularityTask {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = ticks.tick() => {}
                }
                if let Err(error) = self.refresh().await {
                    tracing::warn!(%error, "cannot refresh search popularity; next round retries");
                }
            }
        });
        PopularityTask { stop, task }
    }
}

pub struct PopularityTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PopularityTask {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
