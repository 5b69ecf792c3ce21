//! `loadgen verify`: checks through the history API that every acknowledged event is stored
//! exactly once: the no-loss check after a crash or an engine fault.
//!
//! Each user's history is read over the time range of that user's acknowledged events, newest
//! first, at most [`PAGE_LIMIT`] events a page. A full page is continued by narrowing the window:
//! the next page ends at the oldest `ts` of the previous one (inclusive, since several events may
//! share it), and only events strictly newer than that `ts` are counted from the page before.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acked::{read_acked_log, AckedEvent, AckedLogError};
use crate::http::{base_url_of, client, HttpError};
use crate::settings::ApiKey;

/// The history API's largest page.
pub const PAGE_LIMIT: usize = 10_000;
/// Attempts per page: a server that just restarted may refuse a request or two.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Why the check could not be completed (as opposed to finding lost events).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The acked log cannot be read.
    #[error(transparent)]
    AckedLog(#[from] AckedLogError),
    /// The client cannot be built or the URL is bad.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The history API did not answer usefully.
    #[error("history of user {user_id}: {message}")]
    History { user_id: u64, message: String },
}

#[derive(Debug, Clone)]
pub struct VerifySettings {
    pub url: String,
    pub acked_log: PathBuf,
    /// Users checked at once.
    pub concurrency: usize,
    pub timeout: Duration,
    /// A progress line on stderr every few seconds.
    pub show_progress: bool,
    /// A `read` key, when the server has auth on.
    pub api_key: Option<ApiKey>,
}

/// One acknowledged event that is not stored exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discrepancy {
    pub event_id: Uuid,
    pub user_id: u64,
    pub ts: i64,
    /// How many times the history holds it (0: lost).
    pub stored: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    /// Distinct acknowledged events checked.
    pub acked_events: u64,
    /// Lines of the log naming an event already named (a retried request acknowledged twice).
    pub repeated_log_lines: u64,
    pub users: u64,
    pub stored_once: u64,
    pub lost: Vec<Discrepancy>,
    pub doubled: Vec<Discrepancy>,
    /// Events read from the history API (other runs' events included).
    pub history_events_read: u64,
    /// Users whose history could not be read completely, with the reason.
    pub unreadable_users: BTreeMap<u64, String>,
}

impl VerifyOutcome {
    /// Every acknowledged event stored exactly once, and every user readable.
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.doubled.is_empty() && self.unreadable_users.is_empty()
    }

    /// The text printed by `loadgen verify`, listing at most `max_listed` events of each kind.
    pub fn summary(&self, max_listed: usize) -> String {
        let mut out = format!(
            "verified {} acknowledged events of {} users: {} stored once, {} lost, {} doubled{}\n",
            self.acked_events,
            self.users,
            self.stored_once,
            self.lost.len(),
            self.doubled.len(),
            if self.unreadable_users.is_empty() {
                String::new()
            } else {
                format!(", {} users unreadable", self.unreadable_users.len())
            }
        );
        for (label, list) in [("LOST", &self.lost), ("DOUBLED", &self.doubled)] {
            for item in list.iter().take(max_listed) {
                out.push_str(&format!(
                    "  {label} event_id={} user_id={} ts={} stored={}\n",
                    item.event_id, item.user_id, item.ts, item.stored
                ));
            }
            if list.len() > max_listed {
                out.push_str(&format!(
                    "  ... and {} more {label}\n",
                    list.len() - max_listed
                ));
            }
        }
        for (user_id, reason) in self.unreadable_users.iter().take(max_listed) {
            out.push_str(&format!("  UNREADABLE user_id={user_id}: {reason}\n"));
        }
        out
    }
}

/// The fields of a history entry the check needs.
#[derive(Debug, Deserialize)]
struct StoredEvent {
    event_id: String,
    ts: i64,
}

pub async fn verify(settings: &VerifySettings) -> Result<VerifyOutcome, VerifyError> {
    let base = base_url_of(&settings.url)?.to_owned();
    let http = client(
        settings.concurrency,
        settings.timeout,
        settings.api_key.as_ref(),
    )?;
    let logged = read_acked_log(&settings.acked_log)?;

    let mut by_user: HashMap<u64, Vec<AckedEvent>> = HashMap::new();
    let mut outcome = VerifyOutcome::default();
    let mut seen = std::collections::HashSet::with_capacity(logged.len());
    for event in logged {
        if seen.insert(event.event_id) {
            by_user.entry(event.user_id).or_default().push(event);
        } else {
            outcome.repeated_log_lines += 1;
        }
    }
    drop(seen);
    outcome.users = by_user.len() as u64;

    let mut checks = stream::iter(by_user)
        .map(|(user_id, events)| {
            let http = &http;
            let base = base.as_str();
            async move {
                let from = events.iter().map(|event| event.ts).min().unwrap_or(0);
                let to = events.iter().map(|event| event.ts).max().unwrap_or(0);
                let stored = stored_counts(http, base, user_id, from, to).await;
                (user_id, events, stored)
            }
        })
        .buffer_unordered(settings.concurrency.max(1));
    let started = std::time::Instant::now();
    let mut last_progress = started;
    let mut users_done = 0u64;
    while let Some((user_id, events, stored)) = checks.next().await {
        users_done += 1;
        if settings.show_progress && last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = std::time::Instant::now();
            eprintln!(
                "[{:>5.0}s] checked {users_done} of {} users: {} lost, {} doubled so far",
                started.elapsed().as_secs_f64(),
                outcome.users,
                outcome.lost.len(),
                outcome.doubled.len()
            );
        }
        let (counts, read) = match stored {
            Ok(stored) => stored,
            Err(error) => {
                outcome.unreadable_users.insert(user_id, error.to_string());
                continue;
            }
        };
        outcome.history_events_read += read;
        for event in events {
            outcome.acked_events += 1;
            let stored = counts.get(&event.event_id).copied().unwrap_or(0);
            let discrepancy = || Discrepancy {
                event_id: event.event_id,
                user_id: event.user_id,
                ts: event.ts,
                stored,
            };
            match stored {
                0 => outcome.lost.push(discrepancy()),
                1 => outcome.stored_once += 1,
                _ => outcome.doubled.push(discrepancy()),
            }
        }
    }
    outcome.lost.sort_by_key(|item| (item.user_id, item.ts));
    outcome.doubled.sort_by_key(|item| (item.user_id, item.ts));
    Ok(outcome)
}

/// How often each event id appears in a user's history between `from` and `to` (inclusive),
/// and how many events were read.
async fn stored_counts(
    http: &reqwest::Client,
    base: &str,
    user_id: u64,
    from: i64,
    to: i64,
) -> Result<(HashMap<Uuid, u32>, u64), VerifyError> {
    count_pages(user_id, from, to, PAGE_LIMIT, |from, to| {
        history_page(http, base, user_id, from, to)
    })
    .await
}

/// Reads a history window page by page (each page newest first, at most `limit` events, both
/// bounds inclusive) and counts each event id.
async fn count_pages<F, Fut>(
    user_id: u64,
    from: i64,
    mut to: i64,
    limit: usize,
    mut fetch: F,
) -> Result<(HashMap<Uuid, u32>, u64), VerifyError>
where
    F: FnMut(i64, i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<StoredEvent>, VerifyError>>,
{
    let mut counts: HashMap<Uuid, u32> = HashMap::new();
    let mut read = 0u64;
    loop {
        let page = fetch(from, to).await?;
        read += page.len() as u64;
        let full = page.len() >= limit;
        let oldest = page.last().map_or(from, |event| event.ts);
        if full && page.iter().all(|event| event.ts == oldest) {
            return Err(VerifyError::History {
                user_id,
                message: format!("more than {limit} events share ts {oldest}; cannot page"),
            });
        }
        for event in &page {
            // On a full page, the events at the oldest ts are all read again by the next page.
            if full && event.ts == oldest {
                continue;
            }
            let id = Uuid::try_parse(&event.event_id).map_err(|_| VerifyError::History {
                user_id,
                message: format!("event_id {:?} is not a UUID", event.event_id),
            })?;
            *counts.entry(id).or_default() += 1;
        }
        if !full {
            return Ok((counts, read));
        }
        to = oldest;
    }
}

async fn history_page(
    http: &reqwest::Client,
    base: &str,
    user_id: u64,
    from: i64,
    to: i64,
) -> Result<Vec<StoredEvent>, VerifyError> {
    let url = format!("{base}/v1/users/{user_id}/history?from={from}&to={to}&limit={PAGE_LIMIT}");
    let mut backoff = FIRST_BACKOFF;
    let mut last_problem = String::new();
    for attempt in 1..=ATTEMPTS {
        match http.get(&url).send().await {
            Ok(response) if response.status().is_success() => {
                return response.json().await.map_err(|error| VerifyError::History {
                    user_id,
                    message: format!("unreadable answer: {error}"),
                });
            }
            Ok(response) if response.status().is_client_error() => {
                return Err(VerifyError::History {
                    user_id,
                    message: format!("{} for {url}", response.status()),
                });
            }
            Ok(response) => last_problem = format!("{} for {url}", response.status()),
            Err(error) => last_problem = format!("{error} for {url}"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(VerifyError::History {
        user_id,
        message: format!("gave up after {ATTEMPTS} attempts: {last_problem}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discrepancy(stored: u32) -> Discrepancy {
        Discrepancy {
            event_id: Uuid::from_u128(7),
            user_id: 1,
            ts: 2,
            stored,
        }
    }

    #[test]
    fn a_clean_outcome_passes_and_any_loss_or_double_fails() {
        let clean = VerifyOutcome {
            acked_events: 3,
            stored_once: 3,
            ..VerifyOutcome::default()
        };
        assert!(clean.passed());
        let lost = VerifyOutcome {
            lost: vec![discrepancy(0)],
            ..clean.clone()
        };
        assert!(!lost.passed());
        assert!(lost
            .summary(10)
            .contains("LOST event_id=00000000-0000-0000-0000-000000000007"));
        let doubled = VerifyOutcome {
            doubled: vec![discrepancy(2)],
            ..clean.clone()
        };
        assert!(!doubled.passed());
        let mut unreadable = clean;
        unreadable.unreadable_users.insert(1, "503".into());
        assert!(!unreadable.passed());
    }

    /// A history as the API serves it: newest first, bounds inclusive, at most `limit`.
    fn page_of(history: &[(i64, u128)], from: i64, to: i64, limit: usize) -> Vec<StoredEvent> {
        let mut page: Vec<&(i64, u128)> = history
            .iter()
            .filter(|(ts, _)| (from..=to).contains(ts))
            .collect();
        page.sort_by(|a, b| b.cmp(a));
        page.into_iter()
            .take(limit)
            .map(|(ts, id)| StoredEvent {
                event_id: Uuid::from_u128(*id).to_string(),
                ts: *ts,
            })
            .collect()
    }

    fn count(history: &[(i64, u128)], limit: usize) -> Result<HashMap<Uuid, u32>, VerifyError> {
        let pages = count_pages(1, 0, 1_000, limit, |from, to| {
            let page = page_of(history, from, to, limit);
            async move { Ok(page) }
        });
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(pages)
            .map(|(counts, _)| counts)
    }

    #[test]
    fn paging_counts_every_event_once_even_when_pages_split_a_timestamp() {
        // 23 events, several sharing a ts, read 4 at a time.
        let history: Vec<(i64, u128)> = (0..23u128)
            .map(|id| ((id / 3) as i64 * 10, id + 1))
            .collect();
        let counts = count(&history, 4).unwrap();
        assert_eq!(counts.len(), 23);
        assert!(counts.values().all(|count| *count == 1));
    }

    #[test]
    fn paging_sees_a_doubled_event() {
        let history = vec![(10, 1), (20, 2), (20, 2), (30, 3), (40, 4), (50, 5)];
        let counts = count(&history, 3).unwrap();
        assert_eq!(counts[&Uuid::from_u128(2)], 2);
        assert_eq!(counts[&Uuid::from_u128(5)], 1);
    }

    #[test]
    fn a_page_full_of_one_timestamp_cannot_be_paged_and_says_so() {
        let history: Vec<(i64, u128)> = (1..=5).map(|id| (10, id)).collect();
        let error = count(&history, 3).unwrap_err().to_string();
        assert!(error.contains("share ts 10"), "{error}");
    }

    #[test]
    fn long_lists_are_cut_with_a_count_of_the_rest() {
        let outcome = VerifyOutcome {
            lost: vec![discrepancy(0); 5],
            ..VerifyOutcome::default()
        };
        let text = outcome.summary(2);
        assert_eq!(text.matches("  LOST").count(), 2);
        assert!(text.contains("... and 3 more LOST"));
    }
}
