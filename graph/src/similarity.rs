//! Item-to-item similarity over co-watching, written once for both graphs: the cosine of two
//! titles' viewer sets, `together / sqrt(viewers(a) * viewers(b))` (or their Jaccard index),
//! which normalizes for popularity (a title everyone watched is "co-watched" with everything).
//! Titles watched by more than `hub_share` of all viewers are left out of every neighbour
//! list: they are what the popular fallback already shows. Cosine is the default: on the same
//! replay it found 0.700 hit@10 to Jaccard's 0.673 (BENCHMARKS.md, "Recommendations").

use std::collections::BTreeMap;

use crate::CoWatch;

/// How co-watching becomes a similarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// `together / (viewers(a) + viewers(b) - together)`.
    Jaccard,
    /// `together / sqrt(viewers(a) * viewers(b))`: penalizes popular neighbours less.
    Cosine,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimilarityOptions {
    pub measure: Measure,
    /// Neighbours kept per title.
    pub top_k: usize,
    /// Viewers of more titles than this are left out of co-watching (see
    /// [`crate::GraphStore::co_watched`]).
    pub max_viewer_titles: u64,
    /// A title watched by more than this share of all viewers is a hub (never a neighbour),
    /// once the graph has at least [`HUB_MIN_VIEWERS`] viewers.
    pub hub_share: f64,
    /// Pairs co-watched by fewer viewers are noise, not taste.
    pub min_together: u64,
}

/// Below this many viewers, every title is watched by a large share: no title is a hub yet.
pub const HUB_MIN_VIEWERS: u64 = 20;

impl Default for SimilarityOptions {
    fn default() -> Self {
        SimilarityOptions {
            measure: Measure::Cosine,
            top_k: 20,
            max_viewer_titles: 500,
            hub_share: 0.5,
            min_together: 2,
        }
    }
}

/// A neighbour of a title.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similar {
    pub title: u64,
    /// Jaccard index, in (0, 1].
    pub score: f64,
    /// Viewers who watched both.
    pub together: u64,
}

/// Each title in `co_watched` with its `top_k` neighbours, best first (ties: more viewers in
/// common, then lower id). Every title asked about gets an entry, empty when nothing qualifies,
/// so that a refresh replaces what it held before.
pub fn top_similar(
    co_watched: &[CoWatch],
    viewers_total: u64,
    options: &SimilarityOptions,
) -> BTreeMap<u64, Vec<Similar>> {
    let hub_above = (viewers_total >= HUB_MIN_VIEWERS)
        .then(|| (options.hub_share * viewers_total as f64).max(1.0));
    let mut lists: BTreeMap<u64, Vec<Similar>> = BTreeMap::new();
    for co in co_watched {
        let list = lists.entry(co.title).or_default();
        if co.together < options.min_together.max(1) {
            continue;
        }
        if hub_above.is_some_and(|above| co.other_viewers as f64 > above) {
            continue;
        }
        let denominator = match options.measure {
            Measure::Jaccard => {
                (co.title_viewers + co.other_viewers).saturating_sub(co.together) as f64
            }
            Measure::Cosine => ((co.title_viewers as f64) * (co.other_viewers as f64)).sqrt(),
        };
        if denominator <= 0.0 {
            continue;
        }
        list.push(Similar {
            title: co.other,
            score: (co.together as f64 / denominator).min(1.0),
            together: co.together,
        });
    }
    for list in lists.values_mut() {
        list.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.together.cmp(&a.together))
                .then(a.title.cmp(&b.title))
        });
        list.truncate(options.top_k);
    }
    lists
}

#[cfg(test)]
mod tests {
    use super::*;

    fn co(
        title: u64,
        other: u64,
        together: u64,
        title_viewers: u64,
        other_viewers: u64,
    ) -> CoWatch {
        CoWatch {
            title,
            other,
            together,
            title_viewers,
            other_viewers,
        }
    }

    #[test]
    fn jaccard_prefers_a_niche_neighbour_over_a_popular_one() {
        let options = SimilarityOptions {
            measure: Measure::Jaccard,
            hub_share: 1.0,
            ..SimilarityOptions::default()
        };
        // 1 and 2 share 8 of their 10 viewers; 1 and 3 share 9, but 3 has 90 viewers.
        let lists = top_similar(&[co(1, 3, 9, 10, 90), co(1, 2, 8, 10, 10)], 100, &options);
        let titles: Vec<u64> = lists[&1].iter().map(|s| s.title).collect();
        assert_eq!(titles, vec![2, 3]);
        assert!((lists[&1][0].score - 8.0 / 12.0).abs() < 1e-9);
    }

    #[test]
    fn cosine_penalizes_a_popular_neighbour_less_than_jaccard() {
        let options = SimilarityOptions {
            hub_share: 1.0,
            ..SimilarityOptions::default()
        };
        let lists = top_similar(&[co(1, 3, 9, 10, 90)], 100, &options);
        // 9 / sqrt(10 x 90) = 0.3; Jaccard: 9 / 91.
        assert!((lists[&1][0].score - 0.3).abs() < 1e-9);
    }

    #[test]
    fn hubs_and_noise_are_left_out_but_the_title_keeps_an_entry() {
        let options = SimilarityOptions::default();
        let lists = top_similar(&[co(1, 2, 1, 5, 5), co(1, 3, 30, 40, 60)], 100, &options);
        assert_eq!(lists[&1], Vec::new());
    }

    #[test]
    fn lists_are_cut_at_top_k() {
        let options = SimilarityOptions {
            top_k: 2,
            ..SimilarityOptions::default()
        };
        let rows: Vec<CoWatch> = (2..10).map(|other| co(1, other, other, 10, 10)).collect();
        let titles: Vec<u64> = top_similar(&rows, 100, &options)[&1]
            .iter()
            .map(|s| s.title)
            .collect();
        assert_eq!(titles, vec![9, 8]);
    }
}
