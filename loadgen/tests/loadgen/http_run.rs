use std::io::Write;
use std::time::Duration;

use loadgen::report::Report;

use crate::helpers::{describe, loadgen, text, TestServer};

const WITHIN: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_run_reports_its_numbers_and_every_acknowledged_event_is_stored_once() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let acked_path = dir.path().join("acked.tsv");
    let truth_path = dir.path().join("truth.ndjson");

    let run = loadgen(
        &[
            "http",
            "--url",
            &server.url,
            "--rate",
            "2000",
            "--duration",
            "3s",
            "--batch",
            "100",
            "--connections",
            "2",
            "--viewers",
            "500",
            "--format",
            "ndjson",
            "--compression",
            "zstd",
            "--seed",
            "7",
            "--slo-p99-ms",
            "5000",
            "--acked-log",
            text(&acked_path),
            "--truth",
            text(&truth_path),
            "--report",
            text(&report_path),
            "--quiet",
        ],
        WITHIN,
    )
    .await;
    assert!(run.status.success(), "{}", describe(&run));
    let summary = String::from_utf8_lossy(&run.stdout);
    assert!(summary.contains("SLO p99 <= 5000 ms: met"), "{summary}");
    assert!(summary.contains("truth "), "{summary}");

    let report = Report::read(&report_path).unwrap();
    let totals = &report.totals;
    assert!(totals.events_acked >= 4_000, "{totals:?}");
    assert_eq!(totals.events_acked, totals.events_sent, "{totals:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        (1_000.0..3_000.0).contains(&report.events_per_sec),
        "{}",
        report.events_per_sec
    );
    assert_eq!(report.latency_ms.count, totals.requests_acked);
    assert!(report.latency_ms.p50 <= report.latency_ms.p99);
    assert!(report.latency_ms.p99 <= report.latency_ms.max);
    assert_eq!(
        report.histogram.decode().unwrap().count(),
        totals.requests_acked
    );
    assert!(report.generator_cpu_seconds > 0.0);
    assert_eq!(report.acked_log_events, Some(totals.events_acked));
    // The truth counts every acknowledged event once, minute by minute.
    let truth = loadgen::truth::read_ndjson(&truth_path).unwrap();
    assert!(!truth.is_empty());
    assert!(truth.windows(2).all(|pair| pair[0].minute < pair[1].minute));
    assert!(truth.iter().all(|minute| minute.minute % 60_000 == 0));
    assert_eq!(
        truth.iter().map(|minute| minute.events).sum::<u64>(),
        totals.events_acked
    );
    assert_eq!(report.truth_events, Some(totals.events_acked));
    assert_eq!(report.truth_minutes, Some(truth.len() as u64));
    assert!(truth.iter().map(|minute| minute.playing_ms).sum::<u64>() > 0);
    assert!(truth.iter().any(|minute| !minute.startup_ms.is_empty()));
    assert_eq!(report.workload.ts_clamped, 0);
    assert_eq!(report.workload.viewers, 500);

    let verify = loadgen(
        &[
            "verify",
            "--url",
            &server.url,
            "--acked-log",
            text(&acked_path),
        ],
        WITHIN,
    )
    .await;
    assert!(verify.status.success(), "{}", describe(&verify));
    let verdict = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verdict.contains(&format!("{} stored once", totals.events_acked)),
        "{verdict}"
    );
    assert!(verdict.contains("0 lost, 0 doubled"), "{verdict}");

    // An acknowledgement the server never got is reported lost, with exit code 3.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&acked_path)
        .unwrap();
    writeln!(
        log,
        "0b7e4a2c-1d3f-4c5e-9a8b-7c6d5e4f3a2b\t42\t1700000000000"
    )
    .unwrap();
    drop(log);
    let verify = loadgen(
        &[
            "verify",
            "--url",
            &server.url,
            "--acked-log",
            text(&acked_path),
        ],
        WITHIN,
    )
    .await;
    assert_eq!(verify.status.code(), Some(3), "{}", describe(&verify));
    let verdict = String::from_utf8_lossy(&verify.stdout);
    assert!(verdict.contains("1 lost"), "{verdict}");
    assert!(
        verdict.contains("LOST event_id=0b7e4a2c-1d3f-4c5e-9a8b-7c6d5e4f3a2b user_id=42"),
        "{verdict}"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_reports_its_curve_and_a_saturation_point() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("ramp.json");

    let run = loadgen(
        &[
            "http",
            "--url",
            &server.url,
            "--ramp",
            "--rate",
            "500",
            "--ramp-step",
            "500",
            "--ramp-steps",
            "2",
            "--step-duration",
            "1s",
            "--batch",
            "50",
            "--connections",
            "2",
            "--compression",
            "gzip",
            "--slo-p99-ms",
            "5000",
            "--report",
            text(&report_path),
            "--quiet",
        ],
        WITHIN,
    )
    .await;
    assert!(run.status.success(), "{}", describe(&run));

    let report = Report::read(&report_path).unwrap();
    let ramp = report.ramp.expect("a ramp report");
    let offered: Vec<f64> = ramp
        .steps
        .iter()
        .map(|step| step.target_events_per_sec)
        .collect();
    assert_eq!(offered, vec![500.0, 1_000.0]);
    assert!(
        ramp.steps.iter().all(|step| step.passed),
        "{:?}",
        ramp.steps
    );
    assert_eq!(ramp.saturation_events_per_sec, Some(1_000.0));
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_counted_as_connect_errors_and_misses_the_slo() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("down.json");
    let truth_path = dir.path().join("down-truth.ndjson");
    let url = format!("http://127.0.0.1:{port}");

    let run = loadgen(
        &[
            "http",
            "--url",
            &url,
            "--max",
            "--duration",
            "1s",
            "--batch",
            "10",
            "--connections",
            "1",
            "--viewers",
            "10",
            "--slo-p99-ms",
            "100",
            "--report",
            text(&report_path),
            "--truth",
            text(&truth_path),
            "--quiet",
        ],
        WITHIN,
    )
    .await;
    assert_eq!(run.status.code(), Some(3), "{}", describe(&run));
    // Events of failed requests are not in the truth.
    assert_eq!(loadgen::truth::read_ndjson(&truth_path).unwrap(), vec![]);
    let report = Report::read(&report_path).unwrap();
    assert!(
        report.errors.get("connect").copied().unwrap_or(0) > 0,
        "{:?}",
        report.errors
    );
    assert_eq!(report.totals.events_acked, 0);

    // A truth file that cannot be created fails the run before it sends, with its path.
    let unwritable = dir.path().join("no-such-dir").join("truth.ndjson");
    let run = loadgen(
        &[
            "http",
            "--url",
            &url,
            "--max",
            "--duration",
            "1s",
            "--connections",
            "1",
            "--viewers",
            "10",
            "--truth",
            text(&unwritable),
            "--quiet",
        ],
        WITHIN,
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("truth file") && stderr.contains("no-such-dir"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_written_for_an_outside_generator_are_accepted_whole_and_hold_distinct_events() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bodies");
    let written = loadgen(
        &[
            "bodies",
            "--out",
            text(&out),
            "--count",
            "3",
            "--batch",
            "50",
            "--viewers",
            "20",
        ],
        WITHIN,
    )
    .await;
    assert!(written.status.success(), "{}", describe(&written));

    let client = reqwest::Client::new();
    let mut ids = std::collections::HashSet::new();
    for index in 0..3 {
        let body = std::fs::read(out.join(format!("body-{index:03}.json"))).unwrap();
        let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(events.len(), 50);
        ids.extend(events.iter().map(|event| event["event_id"].to_string()));
        let answer = client
            .post(format!("{}/v1/events", server.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let ack: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(ack["accepted"], 50, "{ack}");
    }
    assert_eq!(ids.len(), 150, "every event of every body is distinct");
    assert!(!out.join("body-003.json").exists());

    let refused = loadgen(&["bodies", "--out", text(&out), "--batch", "0"], WITHIN).await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--batch"),
        "{}",
        describe(&refused)
    );
    server.stop().await;
}
