//! `playpulse search reindex`: the search index rebuilt from the command store into a new
//! generation, then the alias switched to it, while searches keep answering from the old one.
//!
//! Changes committed during the rebuild are not lost: the rebuild notes the catalog's last
//! position before it copies, applies the events after it to the new generation, switches, and
//! applies the events after that once more (the live projector may have sent those to the old
//! generation). Every write is versioned, so what is applied twice changes nothing.

use std::sync::Arc;
use std::time::Instant;

use search::{SearchIndex, TitleChange};
use serde::Serialize;

use super::CatalogError;
use crate::store::CommandStore;

/// Titles read from the store and written to the index per round trip.
const PAGE: i64 = 2_000;

#[derive(Debug, Clone, Serialize)]
pub struct ReindexReport {
    pub previous: String,
    pub generation: String,
    /// Titles copied (tombstones included).
    pub copied: u64,
    /// Changes committed while the rebuild ran, applied to the new generation.
    pub caught_up: u64,
    pub took_ms: u64,
}

pub async fn reindex(
    store: &Arc<dyn CommandStore>,
    index: &Arc<dyn SearchIndex>,
) -> Result<ReindexReport, CatalogError> {
    let started = Instant::now();
    let previous = index.generation().await?;
    let before_copy = store.last_title_event().await?;
    let generation = index.create_generation().await?;
    let mut copied = 0;
    let mut after = 0;
    loop {
        let page = store.titles_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.title.id;
        let changes: Vec<TitleChange> = page.iter().map(|entry| entry.change()).collect();
        index.apply_to(&generation, &changes).await?;
        copied += changes.len() as u64;
    }
    let (mut caught_up, before_switch) =
        catch_up(store, index, Some(&generation), before_copy).await?;
    index.switch_to(&generation).await?;
    let (after_switch, _) = catch_up(store, index, None, before_switch).await?;
    caught_up += after_switch;
    Ok(ReindexReport {
        previous,
        generation,
        copied,
        caught_up,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Applies every event after `after` to the generation `target` (none: the current one);
/// returns how many and the last position.
async fn catch_up(
    store: &Arc<dyn CommandStore>,
    index: &Arc<dyn SearchIndex>,
    target: Option<&str>,
    mut after: i64,
) -> Result<(u64, i64), CatalogError> {
    let mut applied = 0;
    loop {
        let events = store.title_events_after(after, PAGE).await?;
        let Some(last) = events.last().map(|event| event.seq) else {
            return Ok((applied, after));
        };
        let changes: Vec<TitleChange> = events.into_iter().map(|event| event.change).collect();
        match target {
            Some(generation) => index.apply_to(generation, &changes).await?,
            None => index.apply(&changes).await?,
        };
        applied += changes.len() as u64;
        after = last;
    }
}
