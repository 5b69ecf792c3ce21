//! `loadgen cassandra` against a real Cassandra (`engines/up cassandra`, address in
//! `PLAYPULSE_TEST_CASSANDRA`): each mode writes the sink's table in a keyspace of its own, the
//! report says what was written, and the table holds exactly the acknowledged rows.

use std::time::Duration;

use event_cql::{self as cassandra, CassandraConfig, CassandraSettings, HISTORY_TABLE};
use loadgen::report::Report;

use crate::helpers::loadgen;

async fn session(address: &str) -> scylla::client::session::Session {
    let settings = CassandraSettings {
        nodes: vec![address.to_owned()],
        ..CassandraSettings::default()
    };
    CassandraConfig::from_settings(&settings, Duration::from_secs(86_400))
        .expect("valid settings")
        .connect()
        .await
        .expect("Cassandra answers")
}

async fn rows_in(session: &scylla::client::session::Session, keyspace: &str) -> i64 {
    let cql = format!("SELECT COUNT(*) FROM {keyspace}.{HISTORY_TABLE}");
    let result = session
        .query_unpaged(cql, ())
        .await
        .expect("count rows")
        .into_rows_result()
        .expect("rows");
    result.single_row::<(i64,)>().expect("one count").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_modes_write_exactly_the_acknowledged_rows_and_report_them() {
    let Some(address) = testkit::engines::cassandra() else {
        return;
    };
    let session = session(&address).await;
    for (mode, batch, rate) in [("best", "200", "2000"), ("per-event", "1", "400")] {
        let keyspace = testkit::unique_name(&format!("pp_test_loadgen_{}", mode.replace('-', "_")));
        let report_dir = tempfile::tempdir().unwrap();
        let report_path = report_dir.path().join("report.json");
        let output = loadgen(
            &[
                "cassandra",
                "--nodes",
                &address,
                "--mode",
                mode,
                "--keyspace",
                &keyspace,
                "--rate",
                rate,
                "--batch",
                batch,
                "--duration",
                "2s",
                "--connections",
                "4",
                "--viewers",
                "500",
                "--slo-p99-ms",
                "5000",
                "--report",
                report_path.to_str().unwrap(),
                "--quiet",
            ],
            Duration::from_secs(120),
        )
        .await;
        assert!(
            output.status.success(),
            "{mode}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let report = Report::read(&report_path).unwrap();
        assert_eq!(report.target, "cassandra");
        assert_eq!(report.error_count, 0, "{mode}: {:?}", report.errors);
        assert!(
            report.totals.events_acked >= 100,
            "{mode}: only {} events written",
            report.totals.events_acked
        );
        assert_eq!(report.totals.events_acked, report.totals.events_sent);
        assert_eq!(report.latency_ms.count, report.totals.requests_acked);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(&format!("loadgen cassandra {address} keyspace {keyspace}")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("mode {mode}")), "{stdout}");
        // Every acknowledged event is one row: ids never repeat, and nothing unacknowledged
        // was written (the run had no errors).
        assert_eq!(
            rows_in(&session, &keyspace).await,
            report.totals.events_acked as i64,
            "{mode}"
        );
        cassandra::drop_keyspace(&session, &keyspace)
            .await
            .expect("drop the test keyspace");
    }
}

#[tokio::test]
async fn an_unreachable_node_fails_with_a_clear_error() {
    let output = loadgen(
        &[
            "cassandra",
            "--nodes",
            "127.0.0.1:1",
            "--mode",
            "best",
            "--rate",
            "100",
            "--duration",
            "1s",
            "--timeout",
            "2s",
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to Cassandra at 127.0.0.1:1"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_cassandra_flags_are_refused_before_connecting() {
    let output = loadgen(
        &[
            "cassandra",
            "--nodes",
            "127.0.0.1:9042",
            "--mode",
            "best",
            "--keyspace",
            "no-dashes",
            "--max",
        ],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--keyspace"), "{stderr}");
}
