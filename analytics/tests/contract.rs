//! One contract for each analytics port, run on the embedded implementation and on the real
//! engine (SQLite and Cassandra for rollups; in process and Redis for trending and sessions),
//! and the side path end to end on both profiles.

use std::sync::Arc;
use std::time::Duration;

use analytics::measures::Measures;
use analytics::query::{self, Filters, QoeQuery, Resolution};
use analytics::rollup::{minute_of, CellKey, Dimension, Dims, Grouping, RollupRow, MINUTE_MS};
use analytics::sessions::{
    continue_from_history, LiveSession, MemorySessions, PlayerState, RedisSessions, SessionStore,
};
use analytics::sidepath::{self, AnalyticsSettings, AnalyticsSinks, AnalyticsStats};
use analytics::store::cassandra::{CassandraRollups, CassandraRollupsConfig};
use analytics::store::sqlite::SqliteRollups;
use analytics::store::RollupStore;
use analytics::trending::{self, MemoryTrending, RedisTrending, StartCount, TrendingStore, Window};
use uuid::Uuid;
use wire::{CountryCode, EventKind, PlaybackEvent, SmolStr};

const HALF_LIFE: Duration = Duration::from_secs(3_600);

struct Rollups {
    name: &'static str,
    store: Arc<dyn RollupStore>,
    _dir: Option<tempfile::TempDir>,
    keyspace: Option<String>,
}

async fn sqlite() -> Rollups {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteRollups::open(&dir.path().join("rollups.db"))
        .await
        .unwrap();
    Rollups {
        name: "sqlite",
        store: Arc::new(store),
        _dir: Some(dir),
        keyspace: None,
    }
}

async fn cassandra() -> Option<Rollups> {
    let node = testkit::engines::cassandra()?;
    let keyspace = testkit::unique_name("analytics_test");
    let store = CassandraRollups::connect(&CassandraRollupsConfig {
        nodes: vec![node],
        keyspace: keyspace.clone(),
        replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".to_owned(),
        local_datacenter: "datacenter1".to_owned(),
        request_timeout: Duration::from_secs(10),
        ttl_seconds: 86_400,
    })
    .await
    .expect("Cassandra answers");
    Some(Rollups {
        name: "cassandra",
        store: Arc::new(store),
        _dir: None,
        keyspace: Some(keyspace),
    })
}

impl Rollups {
    async fn finish(self) {
        if let (Some(keyspace), Some(node)) = (self.keyspace, testkit::engines::cassandra()) {
            let session = scylla::client::session_builder::SessionBuilder::new()
                .known_node(node)
                .build()
                .await
                .unwrap();
            let _ = event_cql::drop_keyspace(&session, &keyspace).await;
        }
    }
}

fn redis() -> Option<redis::aio::ConnectionManager> {
    let url = testkit::engines::redis()?;
    Some(analytics::redis_connection(&url, Duration::from_secs(2)).unwrap())
}

fn trending_backends() -> Vec<(&'static str, Arc<dyn TrendingStore>)> {
    let mut backends: Vec<(&'static str, Arc<dyn TrendingStore>)> =
        vec![("memory", Arc::new(MemoryTrending::new(HALF_LIFE)))];
    if let Some(connection) = redis() {
        let prefix = format!("{}:", testkit::unique_name("analytics_test"));
        backends.push((
            "redis",
            Arc::new(RedisTrending::new(connection, HALF_LIFE, &prefix)),
        ));
    }
    backends
}

fn session_backends(ttl: Duration) -> Vec<(&'static str, Arc<dyn SessionStore>)> {
    let mut backends: Vec<(&'static str, Arc<dyn SessionStore>)> =
        vec![("memory", Arc::new(MemorySessions::new(ttl)))];
    if let Some(connection) = redis() {
        let prefix = format!("{}:", testkit::unique_name("analytics_test"));
        backends.push((
            "redis",
            Arc::new(RedisSessions::new(
                connection,
                ttl,
                Duration::from_secs(3_600),
                &prefix,
            )),
        ));
    }
    backends
}

async fn rollup_backends() -> Vec<Rollups> {
    let mut backends = vec![sqlite().await];
    backends.extend(cassandra().await);
    backends
}

fn country(code: &str) -> Option<CountryCode> {
    CountryCode::parse(code)
}

/// An event of `user` on `title` at `ts`, from France on a TV through cdn `a`.
fn event(kind: EventKind, user: u64, title: u64, ts: i64) -> PlaybackEvent {
    PlaybackEvent {
        kind,
        content_id: title,
        country: country("FR"),
        device: Some(SmolStr::new("tv")),
        cdn: Some(SmolStr::new("a")),
        session_id: Uuid::from_u128(u128::from(user) << 32 | u128::from(title)),
        received_at: ts,
        ..testkit::event(user, ts)
    }
}

fn measures_of(events: &[PlaybackEvent]) -> Measures {
    let mut measures = Measures::default();
    for event in events {
        measures.record(event);
    }
    measures
}

fn row(grouping: Grouping, minute: i64, dims: Dims, writer: &str, measures: Measures) -> RollupRow {
    RollupRow {
        key: CellKey {
            grouping,
            minute,
            dims,
        },
        writer: writer.to_owned(),
        measures,
    }
}

const T0: i64 = 1_764_547_200_000; // 2025-12-01 00:00 UTC

#[tokio::test]
async fn a_rewritten_row_replaces_the_old_one_and_writers_are_kept_apart() {
    for backend in rollup_backends().await {
        let store = &backend.store;
        let dims = Dims {
            title: Some(u64::MAX),
            country: country("JP"),
            device: Some("web".into()),
            cdn: None,
        };
        let first = measures_of(&[event(EventKind::Start, 1, 5, T0)]);
        let second = measures_of(&[
            event(EventKind::Start, 1, 5, T0),
            event(EventKind::Start, 2, 5, T0 + 1),
        ]);
        store
            .write(&[row(
                Grouping::Full,
                T0,
                dims.clone(),
                "node-a",
                first.clone(),
            )])
            .await
            .unwrap();
        store
            .write(&[row(
                Grouping::Full,
                T0,
                dims.clone(),
                "node-a",
                second.clone(),
            )])
            .await
            .unwrap();
        store
            .write(&[row(
                Grouping::Full,
                T0,
                dims.clone(),
                "node-b",
                first.clone(),
            )])
            .await
            .unwrap();
        let mut rows = store.read(Grouping::Full, T0, T0).await.unwrap();
        rows.sort_by(|a, b| a.writer.cmp(&b.writer));
        assert_eq!(rows.len(), 2, "{}", backend.name);
        assert_eq!(rows[0].key.dims, dims, "{}", backend.name);
        assert_eq!(rows[0].measures, second, "{}", backend.name);
        assert_eq!(rows[1].measures, first, "{}", backend.name);
        assert!(store.read(Grouping::All, T0, T0).await.unwrap().is_empty());
        assert!(store
            .read(Grouping::Full, T0 + MINUTE_MS, T0 + 9 * MINUTE_MS)
            .await
            .unwrap()
            .is_empty());
        assert!(store.ready().await);
        backend.finish().await;
    }
}

#[tokio::test]
async fn a_query_merges_writers_and_minutes_into_hours_and_breaks_down_by_a_dimension() {
    for backend in rollup_backends().await {
        let store = &backend.store;
        let mut rows = Vec::new();
        // Two hours, two countries, two writers: each minute one start per writer and country.
        for minute in 0..120 {
            let at = T0 + minute * MINUTE_MS;
            for (writer, user) in [("a", 1u64), ("b", 2)] {
                for code in ["FR", "DE"] {
                    let start = PlaybackEvent {
                        country: country(code),
                        startup_ms: Some(1_000 + minute as u32),
                        ..event(EventKind::Start, user, 9, at)
                    };
                    let measures = measures_of(std::slice::from_ref(&start));
                    let dims = Dims::of(&start);
                    rows.push(row(
                        Grouping::By(Dimension::Country),
                        at,
                        Grouping::By(Dimension::Country).project(&dims),
                        writer,
                        measures.clone(),
                    ));
                    rows.push(row(Grouping::Full, at, dims, writer, measures));
                }
                let mut all = Measures::default();
                for code in ["FR", "DE"] {
                    all.merge(&measures_of(&[PlaybackEvent {
                        country: country(code),
                        startup_ms: Some(1_000 + minute as u32),
                        ..event(EventKind::Start, user, 9, at)
                    }]));
                }
                rows.push(row(Grouping::All, at, Dims::default(), writer, all));
            }
        }
        store.write(&rows).await.unwrap();
        let hourly = query::qoe(
            store.as_ref(),
            &QoeQuery {
                from_ms: T0,
                to_ms: T0 + 120 * MINUTE_MS - 1,
                by: None,
                filters: Filters::default(),
                resolution: Resolution::Hour,
                limit: 10,
            },
        )
        .await
        .unwrap();
        assert_eq!(hourly.grouping, "all");
        assert_eq!(hourly.totals.views, 480, "{}", backend.name);
        assert_eq!(hourly.totals.unique_viewers, 2, "{}", backend.name);
        assert_eq!(hourly.series.len(), 1);
        let points = &hourly.series[0].points;
        assert_eq!(
            points
                .iter()
                .map(|p| (p.t, p.qoe.views))
                .collect::<Vec<_>>(),
            vec![(T0, 240), (T0 + 3_600_000, 240)]
        );
        let p50 = hourly.totals.startup_time_p50_ms.unwrap();
        assert!(
            (p50 - 1_059.0).abs() <= 1_059.0 * analytics::sketch::RELATIVE_ERROR,
            "{p50}"
        );

        let by_country = query::qoe(
            store.as_ref(),
            &QoeQuery {
                from_ms: T0,
                to_ms: T0 + 30 * MINUTE_MS - 1,
                by: Some(Dimension::Country),
                filters: Filters::default(),
                resolution: Resolution::Minute,
                limit: 10,
            },
        )
        .await
        .unwrap();
        assert_eq!(by_country.grouping, "country");
        let keys: Vec<_> = by_country
            .series
            .iter()
            .map(|s| (s.key.clone().unwrap(), s.totals.views, s.points.len()))
            .collect();
        assert_eq!(
            keys,
            vec![("DE".to_owned(), 60, 30), ("FR".to_owned(), 60, 30)],
            "{}",
            backend.name
        );

        let filtered = query::qoe(
            store.as_ref(),
            &QoeQuery {
                from_ms: T0,
                to_ms: T0 + 120 * MINUTE_MS,
                by: Some(Dimension::Device),
                filters: Filters {
                    country: Some("fr".to_owned()),
                    ..Filters::default()
                },
                resolution: Resolution::Day,
                limit: 10,
            },
        )
        .await
        .unwrap();
        assert_eq!(filtered.grouping, "full");
        assert_eq!(filtered.totals.views, 240);
        assert_eq!(filtered.series[0].key.as_deref(), Some("tv"));

        let too_many = QoeQuery {
            from_ms: T0,
            to_ms: T0 + 10 * 86_400_000,
            by: None,
            filters: Filters::default(),
            resolution: Resolution::Minute,
            limit: 10,
        };
        let error = query::qoe(store.as_ref(), &too_many).await.unwrap_err();
        assert!(error.to_string().contains("resolution"), "{error}");
        backend.finish().await;
    }
}

#[tokio::test]
async fn trending_ranks_decayed_and_weekly_starts_per_country() {
    let now = T0 + 3 * 3_600_000;
    for (name, store) in trending_backends() {
        let starts = [
            // Title 1: many starts three hours ago; title 2: fewer, now.
            StartCount {
                country: country("FR"),
                title: 1,
                minute: minute_of(T0),
                count: 40,
            },
            StartCount {
                country: country("FR"),
                title: 2,
                minute: minute_of(now),
                count: 10,
            },
            StartCount {
                country: country("DE"),
                title: 3,
                minute: minute_of(now),
                count: 1,
            },
            // Eight days ago: out of the week.
            StartCount {
                country: country("FR"),
                title: 4,
                minute: minute_of(now - 8 * 86_400_000),
                count: 500,
            },
        ];
        store.add(&starts).await.unwrap();
        let fr_now = store
            .top(country("FR"), Window::Now, now, 10)
            .await
            .unwrap();
        let titles: Vec<u64> = fr_now.iter().map(|trend| trend.title).collect();
        assert_eq!(titles[..2], [2, 1], "{name}: {fr_now:?}");
        assert!((fr_now[0].score - 10.0).abs() < 1e-6, "{name}: {fr_now:?}");
        assert!(
            (fr_now[1].score - 5.0).abs() < 1e-6,
            "{name}: 40 halved three times: {fr_now:?}"
        );
        let week = store
            .top(country("FR"), Window::Week, now, 10)
            .await
            .unwrap();
        assert_eq!(
            week.iter().map(|t| (t.title, t.score)).collect::<Vec<_>>(),
            vec![(1, 40.0), (2, 10.0)],
            "{name}"
        );
        let everywhere = store.top(None, Window::Week, now, 1).await.unwrap();
        assert_eq!(everywhere[0].title, 1, "{name}");
        let de = store
            .top(country("DE"), Window::Now, now, 10)
            .await
            .unwrap();
        assert_eq!(de.len(), 1, "{name}");
        assert!(store
            .top(country("US"), Window::Now, now, 10)
            .await
            .unwrap()
            .is_empty());
    }
}

#[tokio::test]
async fn trending_carries_scores_across_an_epoch() {
    let decay = trending::Decay::new(HALF_LIFE);
    let epoch_ms = (HALF_LIFE.as_millis() as f64 * trending::EPOCH_HALF_LIVES) as i64;
    let boundary = (decay.epoch_of(T0) + 1) * epoch_ms;
    let before = minute_of(boundary - 1);
    let after = minute_of(boundary) + 60 * MINUTE_MS;
    for (name, store) in trending_backends() {
        store
            .add(&[StartCount {
                country: None,
                title: 7,
                minute: before,
                count: 16,
            }])
            .await
            .unwrap();
        store
            .add(&[StartCount {
                country: None,
                title: 8,
                minute: after,
                count: 4,
            }])
            .await
            .unwrap();
        let top = store.top(None, Window::Now, after, 10).await.unwrap();
        assert_eq!(
            top.iter().map(|t| t.title).collect::<Vec<_>>(),
            vec![7, 8],
            "{name}: {top:?}"
        );
        assert!(
            (top[0].score - 16.0 * 0.5f64.powf((after - before) as f64 / 3_600_000.0)).abs() < 1e-3,
            "{name}: {top:?}"
        );
    }
}

#[tokio::test]
async fn live_sessions_end_expire_and_count_as_concurrent_viewers() {
    let ttl = Duration::from_secs(60);
    let now = T0 + 30_000;
    for (name, store) in session_backends(ttl) {
        let user = testkit::fresh_user();
        let playing = LiveSession::of(&PlaybackEvent {
            bitrate_kbps: Some(3_000),
            position_ms: 5_000,
            ..event(EventKind::Start, user, 1, now - 1_000)
        });
        let silent = LiveSession::of(&event(EventKind::Heartbeat, user, 2, now - 120_000));
        store.update(&[playing.clone(), silent]).await.unwrap();
        let live = store.of_user(user, now).await.unwrap();
        assert_eq!(live.len(), 1, "{name}: {live:?}");
        assert_eq!(live[0].title, 1);
        assert_eq!(live[0].state, Some(PlayerState::Playing));
        assert_eq!(live[0].bitrate_kbps, Some(3_000));
        // A heartbeat says nothing of the state: it stays playing.
        store
            .update(&[LiveSession::of(&PlaybackEvent {
                position_ms: 9_000,
                ..event(EventKind::Heartbeat, user, 1, now)
            })])
            .await
            .unwrap();
        let live = store.of_user(user, now).await.unwrap();
        assert_eq!(
            (live[0].position_ms, live[0].state),
            (9_000, Some(PlayerState::Playing)),
            "{name}"
        );
        assert!(store.concurrent(now).await.unwrap() >= 1, "{name}");
        store
            .update(&[LiveSession::of(&event(EventKind::Stop, user, 1, now + 1))])
            .await
            .unwrap();
        assert!(
            store.of_user(user, now + 1).await.unwrap().is_empty(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn continue_watching_is_rebuilt_from_history_and_then_kept_current() {
    for (name, store) in session_backends(Duration::from_secs(60)) {
        let user = testkit::fresh_user();
        assert_eq!(store.continue_watching(user).await.unwrap(), None, "{name}");
        let history = [
            PlaybackEvent {
                position_ms: 100_000,
                ..event(EventKind::Stop, user, 1, T0)
            },
            PlaybackEvent {
                position_ms: 50_000,
                ..event(EventKind::Heartbeat, user, 1, T0 - 10_000)
            },
            PlaybackEvent {
                position_ms: 7_000,
                ..event(EventKind::Complete, user, 2, T0 + 5)
            },
            PlaybackEvent {
                position_ms: 3_000,
                ..event(EventKind::Pause, user, 3, T0 + 9)
            },
        ];
        let rebuilt = continue_from_history(&history);
        assert_eq!(
            rebuilt
                .iter()
                .map(|r| (r.title, r.position_ms))
                .collect::<Vec<_>>(),
            vec![(3, 3_000), (1, 100_000)]
        );
        store.remember_continue(user, &rebuilt).await.unwrap();
        store
            .update(&[LiveSession::of(&PlaybackEvent {
                position_ms: 120_000,
                ..event(EventKind::Heartbeat, user, 1, T0 + 60_000)
            })])
            .await
            .unwrap();
        let list = store.continue_watching(user).await.unwrap().unwrap();
        assert_eq!(
            list.iter()
                .map(|r| (r.title, r.position_ms))
                .collect::<Vec<_>>(),
            vec![(1, 120_000), (3, 3_000)],
            "{name}"
        );
    }
}

/// The side path from events to stored rollups, trending and sessions, on both profiles; then
/// trending is lost and rebuilt from the rollups, and equals what the live feed built.
#[tokio::test]
async fn the_side_path_rolls_up_trends_and_tracks_sessions_and_trending_is_rebuilt_equal() {
    // The embedded profile (SQLite, in process), then the cluster one (Cassandra, Redis).
    let profiles = rollup_backends()
        .await
        .into_iter()
        .zip(trending_backends())
        .zip(session_backends(Duration::from_secs(120)));
    for ((backend, (trend_name, trending)), (_, live)) in profiles {
        let now = testkit::now_ms();
        let sinks = AnalyticsSinks {
            rollups: backend.store.clone(),
            index: None,
            trending: trending.clone(),
            sessions: live.clone(),
        };
        let stats = Arc::new(AnalyticsStats::default());
        let settings = AnalyticsSettings {
            flush_interval: Duration::from_millis(50),
            ..AnalyticsSettings::default()
        };
        let (recorder, task) =
            sidepath::start(&settings, sinks, "writer-1".to_owned(), stats.clone());
        let users: Vec<u64> = (0..5).map(|_| testkit::fresh_user()).collect();
        let mut events = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let title = 100 + (i as u64 % 2);
            let at = now - 3 * MINUTE_MS + i as i64 * 1_000;
            events.push(PlaybackEvent {
                startup_ms: Some(900 + i as u32 * 100),
                ..event(EventKind::Start, *user, title, at)
            });
            events.push(PlaybackEvent {
                played_ms: Some(30_000),
                bitrate_kbps: Some(2_000),
                ..event(EventKind::Heartbeat, *user, title, at + 30_000)
            });
        }
        events.push(PlaybackEvent {
            before_start: Some(true),
            ..event(EventKind::Stop, users[0], 102, now - MINUTE_MS)
        });
        // They all arrive now (the clients' clocks say earlier).
        for event in &mut events {
            event.received_at = now;
        }
        // Two batches, as two batchers would hand them over.
        recorder.record(&events[..4]);
        recorder.record(&events[4..]);
        let store = backend.store.clone();
        let from = minute_of(now) - 10 * MINUTE_MS;
        let answered = testkit::eventually(Duration::from_secs(10), || {
            let store = store.clone();
            async move {
                let answer = query::qoe(
                    store.as_ref(),
                    &QoeQuery {
                        from_ms: from,
                        to_ms: now,
                        by: None,
                        filters: Filters::default(),
                        resolution: Resolution::Minute,
                        limit: 10,
                    },
                )
                .await;
                answer.is_ok_and(|answer| answer.totals.events == 11)
            }
        })
        .await;
        assert!(answered, "{}: the rollups hold every event", backend.name);
        // The counter a caller watches to know the side path has caught up.
        let caught_up = testkit::eventually(Duration::from_secs(10), || {
            let stats = stats.clone();
            async move {
                stats
                    .events_flushed
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 11
            }
        })
        .await;
        assert!(
            caught_up,
            "{}: every event counted as flushed",
            backend.name
        );
        assert_eq!(stats.events.load(std::sync::atomic::Ordering::Relaxed), 11);
        let answer = query::qoe(
            backend.store.as_ref(),
            &QoeQuery {
                from_ms: from,
                to_ms: now,
                by: Some(Dimension::Title),
                filters: Filters::default(),
                resolution: Resolution::Hour,
                limit: 10,
            },
        )
        .await
        .unwrap();
        assert_eq!(answer.totals.views, 6);
        assert_eq!(answer.totals.exits_before_start, 1);
        assert_eq!(answer.totals.playing_time_ms, 150_000);
        assert_eq!(answer.totals.unique_viewers, 5);
        assert_eq!(answer.series[0].key.as_deref(), Some("100"));
        assert_eq!(answer.series[0].totals.views, 3);

        // Sessions go out after the rollups, in the same flush.
        let sessions_in = testkit::eventually(Duration::from_secs(10), || {
            let live = live.clone();
            async move {
                live.concurrent(testkit::now_ms())
                    .await
                    .is_ok_and(|count| count >= 5)
            }
        })
        .await;
        assert!(sessions_in, "{}: five live sessions", backend.name);
        let live_answer = query::live(
            backend.store.as_ref(),
            live.as_ref(),
            testkit::now_ms(),
            &analytics::rollup::Dimension::ALL,
        )
        .await
        .unwrap();
        assert!(live_answer.concurrent_viewers >= 5, "{}", backend.name);
        assert!(live_answer.lag_ms.is_some());
        assert_eq!(live_answer.worst["title"][0].value, "102");
        let sessions_of_first = live.of_user(users[1], testkit::now_ms()).await.unwrap();
        assert_eq!(sessions_of_first.len(), 1);
        assert_eq!(sessions_of_first[0].title, 101);

        let fr = country("FR");
        let trended = testkit::eventually(Duration::from_secs(10), || {
            let trending = trending.clone();
            async move {
                trending
                    .top(fr, Window::Week, testkit::now_ms(), 10)
                    .await
                    .is_ok_and(|top| top.len() == 2)
            }
        })
        .await;
        assert!(trended, "{trend_name}: both titles trend");
        let check_at = testkit::now_ms();
        let live_now = trending.top(fr, Window::Now, check_at, 10).await.unwrap();
        let live_week = trending.top(fr, Window::Week, check_at, 10).await.unwrap();
        assert_eq!(
            live_week
                .iter()
                .map(|t| (t.title, t.score))
                .collect::<Vec<_>>(),
            vec![(100, 3.0), (101, 2.0)]
        );
        drop(recorder);
        task.finished().await;

        // Redis loses its data: the lists come back from the rollups, equal.
        trending.clear().await.unwrap();
        assert!(!trending.is_built().await.unwrap());
        trending::rebuild(trending.as_ref(), backend.store.as_ref(), check_at)
            .await
            .unwrap();
        assert!(trending.is_built().await.unwrap());
        let rebuilt_now = trending.top(fr, Window::Now, check_at, 10).await.unwrap();
        let rebuilt_week = trending.top(fr, Window::Week, check_at, 10).await.unwrap();
        assert_eq!(rebuilt_week, live_week, "{trend_name}");
        assert_eq!(rebuilt_now.len(), live_now.len(), "{trend_name}");
        for (rebuilt, live) in rebuilt_now.iter().zip(&live_now) {
            assert_eq!(rebuilt.title, live.title, "{trend_name}");
            assert!(
                (rebuilt.score - live.score).abs() <= 1e-9 * live.score,
                "{trend_name}: {rebuilt:?} {live:?}"
            );
        }
        assert!(
            stats
                .rows_written
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        );
        backend.finish().await;
    }
}
