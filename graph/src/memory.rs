//! The in-process graph of the embedded default: adjacency maps behind one lock. It lives as
//! long as the process (what it computed, the recommendation lists, is kept in the read model).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::{
    latest_first, most_viewed_first, CoWatch, GraphError, GraphStore, GraphUpdate, Identifier,
    SharedIdentifiers, TitleViewers, UserWatch, Watch,
};

#[derive(Default)]
struct Adjacency {
    /// User -> title -> what they watched of it.
    watched: HashMap<u64, HashMap<u64, Watch>>,
    /// Title -> its viewers.
    viewers: HashMap<u64, BTreeSet<u64>>,
    /// Identifier -> the accounts that used it.
    accounts: BTreeMap<Identifier, BTreeSet<u64>>,
}

#[derive(Default)]
pub struct MemoryGraph {
    adjacency: Mutex<Adjacency>,
}

impl MemoryGraph {
    pub fn new() -> MemoryGraph {
        MemoryGraph::default()
    }

    fn lock(&self) -> MutexGuard<'_, Adjacency> {
        // A panic mid-update leaves maps that are still maps: keep serving them.
        self.adjacency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl GraphStore for MemoryGraph {
    async fn apply(&self, update: &GraphUpdate) -> Result<(), GraphError> {
        let mut graph = self.lock();
        for watch in &update.watches {
            graph
                .watched
                .entry(watch.user)
                .or_default()
                .entry(watch.title)
                .and_modify(|held| held.merge(watch))
                .or_insert(*watch);
            graph
                .viewers
                .entry(watch.title)
                .or_default()
                .insert(watch.user);
        }
        for link in &update.identities {
            graph
                .accounts
                .entry(link.identifier.clone())
                .or_default()
                .insert(link.user);
        }
        Ok(())
    }

    async fn co_watched(
        &self,
        titles: &[u64],
        max_viewer_titles: u64,
    ) -> Result<Vec<CoWatch>, GraphError> {
        let graph = self.lock();
        let viewer_count = |title: u64| graph.viewers.get(&title).map_or(0, |v| v.len() as u64);
        let mut answer = Vec::new();
        for &title in titles {
            let Some(viewers) = graph.viewers.get(&title) else {
                continue;
            };
            let mut together: BTreeMap<u64, u64> = BTreeMap::new();
            for viewer in viewers {
                let Some(watched) = graph.watched.get(viewer) else {
                    continue;
                };
                if watched.len() as u64 > max_viewer_titles {
                    continue;
                }
                for &other in watched.keys() {
                    if other != title {
                        *together.entry(other).or_default() += 1;
                    }
                }
            }
            let title_viewers = viewers.len() as u64;
            answer.extend(together.into_iter().map(|(other, together)| CoWatch {
                title,
                other,
                together,
                title_viewers,
                other_viewers: viewer_count(other),
            }));
        }
        Ok(answer)
    }

    async fn watches_of(
        &self,
        users: &[u64],
        limit: usize,
    ) -> Result<Vec<(u64, Vec<UserWatch>)>, GraphError> {
        let graph = self.lock();
        Ok(users
            .iter()
            .map(|&user| {
                let mut watches: Vec<UserWatch> = graph
                    .watched
                    .get(&user)
                    .map(|titles| {
                        titles
                            .values()
                            .map(|watch| UserWatch {
                                title: watch.title,
                                plays: watch.plays,
                                watch_ms: watch.watch_ms,
                                completed: watch.completed,
                                last_ts: watch.last_ts,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                latest_first(&mut watches);
                watches.truncate(limit);
                (user, watches)
            })
            .collect())
    }

    async fn titles(&self) -> Result<Vec<TitleViewers>, GraphError> {
        let graph = self.lock();
        let mut titles: Vec<TitleViewers> = graph
            .viewers
            .iter()
            .map(|(&title, viewers)| TitleViewers {
                title,
                viewers: viewers.len() as u64,
            })
            .collect();
        most_viewed_first(&mut titles);
        Ok(titles)
    }

    async fn viewer_count(&self) -> Result<u64, GraphError> {
        Ok(self.lock().watched.len() as u64)
    }

    async fn shared_identifiers(
        &self,
        min_shared: usize,
        max_accounts: u64,
    ) -> Result<Vec<SharedIdentifiers>, GraphError> {
        let graph = self.lock();
        let mut pairs: BTreeMap<(u64, u64), Vec<Identifier>> = BTreeMap::new();
        for (identifier, accounts) in &graph.accounts {
            let count = accounts.len() as u64;
            if count < 2 || count > max_accounts {
                continue;
            }
            let accounts: Vec<u64> = accounts.iter().copied().collect();
            for (index, &user) in accounts.iter().enumerate() {
                for &other in &accounts[index + 1..] {
                    pairs
                        .entry((user, other))
                        .or_default()
                        .push(identifier.clone());
                }
            }
        }
        Ok(pairs
            .into_iter()
            .filter(|(_, shared)| shared.len() >= min_shared.max(1))
            .map(|((user, other), identifiers)| SharedIdentifiers {
                user,
                other,
                identifiers,
            })
            .collect())
    }

    async fn ready(&self) -> bool {
        true
    }
}
