//! Today's co-watch counts, kept as the baseline `bench recommendations` measures the graph
//! recommender against: titles watched by viewers who watched what the user watched, counted,
//! over the read model's `watched` tables ([`ReadModel::record_views`]).

use std::collections::{HashMap, HashSet};

use crate::readmodel::{ReadModel, ReadModelError, Recommendation};

/// Titles a user watched that are read to find co-viewers, and co-viewers read per title:
/// bounds one list to at most 1 + WATCHED + WATCHED * VIEWERS small partition reads.
const WATCHED_LIMIT: i64 = 50;
const VIEWERS_LIMIT: i64 = 50;

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
