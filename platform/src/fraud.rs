//! Fraud rings: accounts linked through shared payment-method fingerprints or devices
//! ([`graph::rings`]), recomputed from the graph off the request path whenever the graph was
//! given new identity links, at most every `interval`, and served from memory
//! (`GET /v1/fraud/rings`, `GET /v1/users/{id}/risk`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use graph::rings::{rings, risk_score, Ring, RingOptions};
use graph::{GraphError, GraphStore, GraphUpdate, SharedIdentifiers};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::domain::{now_ms, Millis};

/// The rings as last computed.
#[derive(Debug, Clone, Default)]
pub struct RingIndex {
    /// Largest first.
    pub rings: Vec<Ring>,
    /// Account -> its ring's place in `rings`.
    by_account: HashMap<u64, usize>,
    /// Epoch ms; 0: never computed.
    pub computed_at: Millis,
}

/// An account's risk.
#[derive(Debug, Clone, PartialEq)]
pub struct Risk {
    pub user: u64,
    /// 0 outside every ring ([`risk_score`]).
    pub score: f64,
    pub ring: Option<u64>,
    pub ring_accounts: usize,
    /// The links of this account inside its ring.
    pub links: Vec<SharedIdentifiers>,
    pub computed_at: Millis,
}

pub struct FraudRings {
    graph: Arc<dyn GraphStore>,
    options: RingOptions,
    index: RwLock<Arc<RingIndex>>,
    /// The graph was given identity links since the last computation.
    changed: AtomicBool,
    failures: AtomicU64,
}

impl FraudRings {
    pub fn new(graph: Arc<dyn GraphStore>, options: RingOptions) -> FraudRings {
        FraudRings {
            graph,
            options,
            index: RwLock::default(),
            // Compute once at start: the graph may hold links from before.
            changed: AtomicBool::new(true),
            failures: AtomicU64::new(0),
        }
    }

    /// What the graph feeder wrote: links make the rings due for a recomputation.
    pub fn heard(&self, update: &GraphUpdate) {
        if !update.identities.is_empty() {
            self.changed.store(true, Ordering::Release);
        }
    }

    pub fn index(&self) -> Arc<RingIndex> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn risk(&self, user: u64) -> Risk {
        let index = self.index();
        let ring = index
            .by_account
            .get(&user)
            .map(|&place| &index.rings[place]);
        Risk {
            user,
            score: risk_score(ring.map_or(0, |ring| ring.accounts.len())),
            ring: ring.map(|ring| ring.id),
            ring_accounts: ring.map_or(0, |ring| ring.accounts.len()),
            links: ring
                .map(|ring| {
                    ring.links
                        .iter()
                        .filter(|link| link.user == user || link.other == user)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
            computed_at: index.computed_at,
        }
    }

    /// Recomputes the rings from the graph now; returns how many there are.
    pub async fn refresh_now(&self) -> Result<usize, GraphError> {
        self.changed.store(false, Ordering::Release);
        let computed_at = now_ms();
        let pairs = match self
            .graph
            .shared_identifiers(
                self.options.min_shared,
                self.options.max_accounts_per_identifier,
            )
            .await
        {
            Ok(pairs) => pairs,
            Err(error) => {
                self.changed.store(true, Ordering::Release);
                return Err(error);
            }
        };
        let rings = rings(&pairs);
        let mut by_account = HashMap::new();
        for (place, ring) in rings.iter().enumerate() {
            for &account in &ring.accounts {
                by_account.insert(account, place);
            }
        }
        let count = rings.len();
        *self
            .index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(RingIndex {
            rings,
            by_account,
            computed_at,
        });
        Ok(count)
    }

    /// Recomputes every `interval` when links arrived meanwhile.
    pub fn start(self: &Arc<Self>, interval: Duration) -> FraudTask {
        let (stop, mut stopped) = watch::channel(false);
        let rings = self.clone();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = every.tick() => {}
                }
                if !rings.changed.load(Ordering::Acquire) {
                    continue;
                }
                if let Err(error) = rings.refresh_now().await {
                    let failures = rings.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    if failures == 1 || failures.is_multiple_of(60) {
                        tracing::warn!(%error, failures, "cannot recompute fraud rings; serving the last ones, with their age");
                    }
                }
            }
        });
        FraudTask { stop, task }
    }
}

pub struct FraudTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FraudTask {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
