//! Batches -> requests -> service: the write modes, the history query, readiness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use event_cql::schema::{days_refresh, days_ttl_seconds};
use event_cql::statements::{DayRow, DaysKey, EventRow, HistoryKey, Statements, StoredEvent};
use event_cql::{
    partition_batches, replica_set_batches, BatchLimits, CassandraConfig, CassandraError, WriteMode,
};
use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::cluster::ClusterState;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::batch::{Batch, BatchType};
use wire::{PlaybackEvent, MS_PER_DAY};

use super::service::{CassandraService, RequestStats};
use crate::sink::{newest_first_unique, EventSink, HistoryQuery, SinkError};
use crate::telemetry::Metrics;

/// Playback events in Cassandra's `viewing_history` table (see `cassandra.md`).
pub struct CassandraSink {
    config: CassandraConfig,
    service: CassandraService,
    statements: Statements,
    days: Arc<DayIndex>,
    days_ttl_seconds: u32,
    /// A write that has not finished by then fails as unavailable: every attempt of its
    /// slowest request timed out, plus one request timeout of waiting for a free slot.
    write_deadline: Duration,
}

impl CassandraSink {
    /// Connects and prepares the statements; the schema must exist (`playpulse schema apply`).
    pub async fn connect(
        config: CassandraConfig,
        metrics: Arc<Metrics>,
    ) -> Result<CassandraSink, CassandraError> {
        let session = config.connect().await?;
        CassandraSink::with_session(Arc::new(session), config, metrics).await
    }

    /// Builds the sink on an open session (tests and tools that applied the schema with it).
    pub async fn with_session(
        session: Arc<Session>,
        config: CassandraConfig,
        metrics: Arc<Metrics>,
    ) -> Result<CassandraSink, CassandraError> {
        let ready_timeout = config.request_timeout.min(Duration::from_secs(1));
        let statements = Statements::prepare(&session, &config.keyspace, ready_timeout).await?;
        let service = CassandraService::new(session, &config, metrics);
        let write_deadline =
            service.retry_policy().worst_case(config.request_timeout) + config.request_timeout;
        Ok(CassandraSink {
            days: Arc::new(DayIndex::new(days_refresh(config.ttl_seconds))),
            days_ttl_seconds: days_ttl_seconds(config.ttl_seconds),
            config,
            service,
            statements,
            write_deadline,
        })
    }

    pub fn config(&self) -> &CassandraConfig {
        &self.config
    }

    pub(super) fn service(&self) -> &CassandraService {
        &self.service
    }

    /// Writes the `viewing_days` rows of these pairs that were not written recently.
    pub(super) async fn write_day_rows(
        &self,
        pairs: impl Iterator<Item = (u64, i32)>,
    ) -> Result<(), CassandraError> {
        let started = Instant::now();
        let stale = self.days.stale_pairs(pairs, started);
        let session = self.session().as_ref();
        futures::stream::iter(stale.iter().map(Ok))
            .try_for_each_concurrent(64, |&(user_id, day)| async move {
                let row = DayRow::new(user_id, day, self.days_ttl_seconds);
                self.service
                    .call("day index write", 1, || {
                        session.execute_unpaged(&self.statements.insert_day, &row)
                    })
                    .await
                    .map(|_| ())
            })
            .await?;
        self.days.mark(&stale, started);
        Ok(())
    }

    pub fn session(&self) -> &Arc<Session> {
        self.service.session()
    }

    /// Requests sent so far (for benchmarks).
    pub fn request_stats(&self) -> RequestStats {
        self.service.stats()
    }

    /// Turns a batch into requests the way `write_mode` says, sends them (as many at once as
    /// the service allows), and returns when all succeeded or one failed for good.
    async fn write_events(&self, events: Arc<Vec<PlaybackEvent>>) -> Result<(), CassandraError> {
        let started = Instant::now();
        let (stale_days, requests) = if events.len() <= INLINE_PLAN_EVENTS {
            self.plan(&events, started)
        } else {
            // Sorting and grouping thousands of rows takes a millisecond or more: off the
            // async workers, which must not stall that long.
            let (sink_plan, events) = (self.plan_inputs(), events.clone());
            tokio::task::spawn_blocking(move || sink_plan.plan(&events, started))
                .await
                .map_err(|error| CassandraError::Internal(format!("planning a write: {error}")))?
        };
        futures::stream::iter(requests.into_iter().map(Ok))
            .try_for_each_concurrent(self.config.max_in_flight_rows, |request| {
                self.send(&events, request)
            })
            .await?;
        // Only once the day rows are durable may later writes skip them.
        self.days.mark(&stale_days, started);
        Ok(())
    }

    fn plan(&self, events: &[PlaybackEvent], now: Instant) -> (Vec<(u64, i32)>, Vec<Request>) {
        self.plan_inputs().plan(events, now)
    }

    fn plan_inputs(&self) -> WritePlanner {
        WritePlanner {
            mode: self.config.write_mode,
            limits: self.config.batch_limits,
            keyspace: self.config.keyspace.clone(),
            cluster: (self.config.write_mode == WriteMode::ReplicaBatches)
                .then(|| self.session().get_cluster_state()),
            days: self.days.clone(),
        }
    }

    async fn send(&self, events: &[PlaybackEvent], request: Request) -> Result<(), CassandraError> {
        let session = self.session().as_ref();
        let statements = &self.statements;
        let ttl = self.config.ttl_seconds;
        match request {
            Request::One(index) => {
                let row = EventRow::new(&events[index], ttl);
                self.service
                    .call("insert", 1, || {
                        session.execute_unpaged(&statements.insert_event, &row)
                    })
                    .await?;
            }
            Request::Many(indexes) => {
                // UNLOGGED: the rows share a partition or a replica set, so the batch log
                // (a second write of everything, for atomicity we do not need) is pure cost.
                let mut batch = Batch::new(BatchType::Unlogged);
                batch.set_is_idempotent(true);
                for _ in &indexes {
                    batch.append_statement(statements.insert_event.clone());
                }
                let rows: Vec<EventRow<'_>> = indexes
                    .iter()
                    .map(|&index| EventRow::new(&events[index], ttl))
                    .collect();
                self.service
                    .call("batch", rows.len(), || session.batch(&batch, &rows))
                    .await?;
            }
            Request::Day(user_id, day) => {
                let row = DayRow::new(user_id, day, self.days_ttl_seconds);
                self.service
                    .call("day index insert", 1, || {
                        session.execute_unpaged(&statements.insert_day, &row)
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// The days (newest first) on which the user has history in `[from_day, to_day]`.
    pub(super) async fn days_with_history(
        &self,
        user_id: u64,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<i32>, CassandraError> {
        let session = self.session().as_ref();
        let key = DaysKey::new(user_id, from_day, to_day);
        let mut days = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (result, next) = self
                .service
                .call("day index query", 1, || {
                    session.execute_single_page(&self.statements.select_days, &key, paging.clone())
                })
                .await?;
            let rows = result.into_rows_result().map_err(decode)?;
            for row in rows.rows::<(i32,)>().map_err(decode)? {
                days.push(row.map_err(decode)?.0);
            }
            match next {
                PagingStateResponse::HasMorePages { state } => paging = state,
                PagingStateResponse::NoMorePages => return Ok(days),
            }
        }
    }

    /// Appends up to `limit` events of one day partition in `[from_ms, to_ms]`, newest first.
    async fn read_day(
        &self,
        query: &HistoryQuery,
        day: i32,
        limit: usize,
        into: &mut Vec<PlaybackEvent>,
    ) -> Result<(), CassandraError> {
        let session = self.session().as_ref();
        let key = HistoryKey::new(query.user_id, day, query.from_ms, query.to_ms, limit);
        let mut paging = PagingState::start();
        loop {
            let (result, next) = self
                .service
                .call("history query", 1, || {
                    session.execute_single_page(
                        &self.statements.select_history,
                        &key,
                        paging.clone(),
                    )
                })
                .await?;
            let rows = result.into_rows_result().map_err(decode)?;
            for row in rows.rows::<StoredEvent<'_>>().map_err(decode)? {
                into.push(row.map_err(decode)?.into_event()?);
            }
            match next {
                PagingStateResponse::HasMorePages { state } => paging = state,
                PagingStateResponse::NoMorePages => return Ok(()),
            }
        }
    }

    async fn read_history(
        &self,
        query: HistoryQuery,
    ) -> Result<Vec<PlaybackEvent>, CassandraError> {
        if query.limit == 0 || query.from_ms > query.to_ms {
            return Ok(Vec::new());
        }
        let days = self
            .days_with_history(
                query.user_id,
                day_bound(query.from_ms),
                day_bound(query.to_ms),
            )
            .await?;
        let mut events = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // Days come newest first and a day's rows too, so the first rows read are the newest:
        // stop reading as soon as they hold `limit` distinct events. The same `event_id` at
        // another `ts` is another row, so a day with such copies is read again, further.
        for day in days {
            let mut take = query.limit - seen.len();
            let rows = loop {
                let mut rows = Vec::new();
                self.read_day(&query, day, take, &mut rows).await?;
                let fresh = rows
                    .iter()
                    .map(|event| event.event_id)
                    .filter(|id| !seen.contains(id))
                    .collect::<std::collections::HashSet<_>>()
                    .len();
                if rows.len() < take || seen.len() + fresh >= query.limit {
                    break rows;
                }
                take += query.limit - seen.len() - fresh;
            };
            seen.extend(rows.iter().map(|event| event.event_id));
            events.extend(rows);
            if seen.len() >= query.limit {
                break;
            }
        }
        // Already in order; this applies the embedded store's exact tie-break (event_id bytes)
        // to the rare events of one millisecond whose UUID versions differ, which CQL's uuid
        // type orders by version first.
        Ok(newest_first_unique(events, query.limit))
    }
}

#[async_trait]
impl EventSink for CassandraSink {
    async fn write(&self, _shard: usize, events: Arc<Vec<PlaybackEvent>>) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(self.write_deadline, self.write_events(events)).await {
            Ok(result) => result.map_err(SinkError::from),
            Err(_) => Err(CassandraError::Deadline(self.write_deadline).into()),
        }
    }

    async fn history(&self, query: HistoryQuery) -> Result<Vec<PlaybackEvent>, SinkError> {
        self.read_history(query).await.map_err(SinkError::from)
    }

    async fn ready(&self) -> bool {
        // Straight to the session, past the in-flight bound: a probe must answer now, and a
        // saturated but working cluster is ready.
        self.session()
            .execute_unpaged(&self.statements.ready, ())
            .await
            .is_ok()
    }
}

fn decode(error: impl std::fmt::Display) -> CassandraError {
    CassandraError::Decode(error.to_string())
}

/// The day partition a timestamp falls in, clamped to CQL's `int` (a query may ask for "all
/// time", i64::MIN..i64::MAX).
pub(super) fn day_bound(ts_ms: i64) -> i32 {
    ts_ms
        .div_euclid(MS_PER_DAY)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Batches up to this size are planned on the async worker: small enough that planning them
/// does not hold up the worker; larger ones go to the blocking pool.
const INLINE_PLAN_EVENTS: usize = 256;

/// What planning a write needs, owned, so that it can run on the blocking pool.
struct WritePlanner {
    mode: WriteMode,
    limits: BatchLimits,
    keyspace: String,
    /// The driver's view of the ring, for replica batches.
    cluster: Option<Arc<ClusterState>>,
    days: Arc<DayIndex>,
}

impl WritePlanner {
    /// The day rows to write, and the requests, event rows and day rows together.
    fn plan(&self, events: &[PlaybackEvent], now: Instant) -> (Vec<(u64, i32)>, Vec<Request>) {
        let stale_days = self.days.stale(events, now);
        let mut requests = match (self.mode, &self.cluster) {
            (WriteMode::ConcurrentInserts, _) => (0..events.len()).map(Request::One).collect(),
            (WriteMode::ReplicaBatches, Some(cluster)) => into_requests(replica_set_batches(
                cluster,
                &self.keyspace,
                events,
                &self.limits,
            )),
            (WriteMode::PartitionBatches | WriteMode::ReplicaBatches, _) => {
                into_requests(partition_batches(events, &self.limits))
            }
        };
        requests.extend(
            stale_days
                .iter()
                .map(|&(user_id, day)| Request::Day(user_id, day)),
        );
        (stale_days, requests)
    }
}

/// One request of a write: rows by their index in the batch.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    One(usize),
    Many(Vec<usize>),
    /// A `viewing_days` row.
    Day(u64, i32),
}

/// A group of one row goes as a plain insert: a batch of one only adds work.
fn into_requests(groups: Vec<Vec<usize>>) -> Vec<Request> {
    groups
        .into_iter()
        .map(|group| match group.as_slice() {
            [only] => Request::One(*only),
            _ => Request::Many(group),
        })
        .collect()
}

/// The `(user_id, day)` pairs this process has recently written to `viewing_days`, so a busy
/// viewer's day row is written once per refresh interval, not once per batch. Bounded: when
/// full, old entries go; a forgotten pair only costs one more (idempotent) write.
struct DayIndex {
    refresh: Duration,
    written: Mutex<HashMap<(u64, i32), Instant>>,
}

/// About 20 MB at most.
const DAY_INDEX_MAX_ENTRIES: usize = 1 << 20;

impl DayIndex {
    fn new(refresh: Duration) -> DayIndex {
        DayIndex {
            refresh,
            written: Mutex::new(HashMap::new()),
        }
    }

    /// The pairs of these events whose day row must be (re)written now.
    fn stale(&self, events: &[PlaybackEvent], now: Instant) -> Vec<(u64, i32)> {
        self.stale_pairs(events.iter().map(|event| (event.user_id, event.day())), now)
    }

    /// Of these `(user_id, day)` pairs, those whose day row must be (re)written now.
    fn stale_pairs(
        &self,
        pairs: impl Iterator<Item = (u64, i32)>,
        now: Instant,
    ) -> Vec<(u64, i32)> {
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stale: Vec<(u64, i32)> = pairs
            .filter(|key| {
                written
                    .get(key)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= self.refresh)
            })
            .collect();
        drop(written);
        stale.sort_unstable();
        stale.dedup();
        stale
    }

    /// Records day rows as written at `at`: the time before they were sent, so that their TTL
    /// (counted from when Cassandra received them) runs out no sooner than assumed.
    fn mark(&self, keys: &[(u64, i32)], at: Instant) {
        if keys.is_empty() {
            return;
        }
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if written.len() + keys.len() > DAY_INDEX_MAX_ENTRIES {
            let refresh = self.refresh;
            written.retain(|_, written_at| at.saturating_duration_since(*written_at) < refresh);
            if written.len() + keys.len() > DAY_INDEX_MAX_ENTRIES {
                written.clear();
            }
        }
        for key in keys {
            written.insert(*key, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use testkit::event;

    use super::*;

    const DAY: i64 = MS_PER_DAY;

    #[test]
    fn single_rows_go_as_inserts_and_groups_as_batches() {
        let requests = into_requests(vec![vec![3], vec![1, 2]]);
        assert_eq!(requests, vec![Request::One(3), Request::Many(vec![1, 2])]);
    }

    #[test]
    fn all_time_queries_clamp_to_the_int_days() {
        assert_eq!(day_bound(i64::MIN), i32::MIN);
        assert_eq!(day_bound(i64::MAX), i32::MAX);
        assert_eq!(day_bound(-1), -1);
        assert_eq!(day_bound(DAY * 20_000 + 1), 20_000);
    }

    #[test]
    fn a_day_row_is_rewritten_only_after_its_refresh_interval() {
        let index = DayIndex::new(Duration::from_secs(60));
        let events = vec![event(1, 10), event(1, 20), event(2, DAY)];
        let start = Instant::now();
        let stale = index.stale(&events, start);
        assert_eq!(stale, vec![(1, 0), (2, 1)]);
        index.mark(&stale, start);
        assert!(index
            .stale(&events, start + Duration::from_secs(59))
            .is_empty());
        assert_eq!(
            index.stale(&events, start + Duration::from_secs(60)).len(),
            2
        );
    }
}
