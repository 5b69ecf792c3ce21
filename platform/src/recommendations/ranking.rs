//! A user's list from their recent watches through each title's precomputed neighbours: one
//! function, used by the refresher and by `bench recommendations`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use graph::similarity::Similar;
use graph::UserWatch;

use crate::readmodel::Recommendation;

/// Where a list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From the neighbours of several of the user's titles.
    Personal,
    /// From the neighbours of the one or two titles the user watched.
    SimilarToRecent,
    /// What most viewers started lately (a user the graph knows nothing of yet).
    Trending,
    /// What most viewers ever watched.
    Popular,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Personal => "personal",
            Source::SimilarToRecent => "similar_to_recent",
            Source::Trending => "trending",
            Source::Popular => "popular",
        }
    }
}

/// How a list is ranked.
#[derive(Debug, Clone, PartialEq)]
pub struct RankingOptions {
    /// Titles per list.
    pub limit: usize,
    /// The latest watches whose neighbours are scored (older ones only exclude titles).
    pub recent: usize,
    /// A watch this many places back counts half as much as the latest one.
    pub half_weight_at: f64,
    /// How much more a finished watch says of taste than an abandoned one.
    pub completed_boost: f64,
    /// From this many distinct titles watched, a list is `personal`.
    pub personal_from: usize,
}

impl Default for RankingOptions {
    fn default() -> Self {
        RankingOptions {
            limit: 20,
            recent: 20,
            half_weight_at: 5.0,
            completed_boost: 1.5,
            personal_from: 3,
        }
    }
}

/// `user`'s list: candidates are the neighbours of their latest `recent` watches, each scored
/// by the sum over those watches of `similarity x recency weight (x completed boost)`. Titles the
/// user already watched (finished or not: "continue watching" is another row) never appear.
/// A short list is filled from `trending`, then `popular` (score 0, source unchanged); a user
/// without neighbours gets `trending`, or `popular` when nothing trends, each title scored by
/// its plays in the window or its viewers. Both come as (title, count), most first.
pub fn rank(
    watches: &[UserWatch],
    neighbours: impl Fn(u64) -> Option<Arc<[Similar]>>,
    trending: &[(u64, f64)],
    popular: &[(u64, f64)],
    options: &RankingOptions,
) -> (Source, Vec<Recommendation>) {
    let watched: HashSet<u64> = watches.iter().map(|watch| watch.title).collect();
    let mut scores: HashMap<u64, f64> = HashMap::new();
    for (place, watch) in watches.iter().take(options.recent).enumerate() {
        let Some(similar) = neighbours(watch.title) else {
            continue;
        };
        let mut weight = 1.0 / (1.0 + place as f64 / options.half_weight_at.max(f64::EPSILON));
        if watch.completed {
            weight *= options.completed_boost;
        }
        for neighbour in similar.iter() {
            if !watched.contains(&neighbour.title) {
                *scores.entry(neighbour.title).or_default() += neighbour.score * weight;
            }
        }
    }
    let mut ranked: Vec<(u64, f64)> = scores.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(options.limit);
    let source = match (ranked.is_empty(), watched.len() >= options.personal_from) {
        (false, true) => Source::Personal,
        (false, false) => Source::SimilarToRecent,
        (true, _) if trending.is_empty() => Source::Popular,
        (true, _) => Source::Trending,
    };
    let mut items: Vec<Recommendation> = ranked
        .into_iter()
        .map(|(content_id, score)| Recommendation { content_id, score })
        .collect();
    let mut listed: HashSet<u64> = items.iter().map(|item| item.content_id).collect();
    let fallback = matches!(source, Source::Trending | Source::Popular);
    for &(title, count) in trending.iter().chain(popular) {
        if items.len() >= options.limit {
            break;
        }
        if !watched.contains(&title) && listed.insert(title) {
            items.push(Recommendation {
                content_id: title,
                // Counts only where the whole list is counts: beside similarities they would
                // read as a scale they are not.
                score: if fallback { count } else { 0.0 },
            });
        }
    }
    (source, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(title: u64, completed: bool) -> UserWatch {
        UserWatch {
            title,
            plays: 1,
            watch_ms: 1,
            completed,
            last_ts: 0,
        }
    }

    fn similar(pairs: &[(u64, f64)]) -> Arc<[Similar]> {
        pairs
            .iter()
            .map(|&(title, score)| Similar {
                title,
                score,
                together: 2,
            })
            .collect()
    }

    #[test]
    fn neighbours_of_recent_watches_rank_and_watched_titles_never_appear() {
        let neighbours = |title: u64| match title {
            1 => Some(similar(&[(10, 0.5), (2, 0.9), (11, 0.1)])),
            2 => Some(similar(&[(11, 0.5)])),
            _ => None,
        };
        let options = RankingOptions {
            limit: 3,
            ..RankingOptions::default()
        };
        let (source, items) = rank(
            &[watch(1, false), watch(2, true)],
            neighbours,
            &[(50, 9.0)],
            &[(60, 90.0)],
            &options,
        );
        assert_eq!(source, Source::SimilarToRecent);
        let titles: Vec<u64> = items.iter().map(|item| item.content_id).collect();
        // 11: 0.1 x 1 + 0.5 x (1/1.2) x 1.5 = 0.725; 10: 0.5; then trending fills.
        assert_eq!(titles, vec![11, 10, 50]);
        assert_eq!(items[2].score, 0.0);
    }

    #[test]
    fn a_user_without_neighbours_gets_trending_then_popular() {
        let none = |_| None;
        let options = RankingOptions::default();
        let (source, items) = rank(
            &[],
            none,
            &[(5, 4.0), (6, 2.0)],
            &[(6, 50.0), (7, 40.0)],
            &options,
        );
        assert_eq!(source, Source::Trending);
        let titles: Vec<(u64, f64)> = items
            .iter()
            .map(|item| (item.content_id, item.score))
            .collect();
        assert_eq!(titles, vec![(5, 4.0), (6, 2.0), (7, 40.0)]);
        let (source, _) = rank(
            &[watch(7, true)],
            none,
            &[],
            &[(6, 1.0), (7, 1.0)],
            &options,
        );
        assert_eq!(source, Source::Popular);
    }

    #[test]
    fn three_titles_make_a_list_personal() {
        let neighbours = |_| Some(similar(&[(9, 0.5)]));
        let watches = [watch(1, false), watch(2, false), watch(3, false)];
        let (source, items) = rank(&watches, neighbours, &[], &[], &RankingOptions::default());
        assert_eq!(source, Source::Personal);
        assert_eq!(items.len(), 1);
    }
}
