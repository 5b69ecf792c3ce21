//! Hostile clients and broken player SDKs: slow headers and bodies, idle connections, held
//! uploads, bodies simd-json alone would refuse, answers that must not outgrow requests.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Reads until the server closes the connection or `within` passes; what it said, if closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut answer)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_disconnected_after_the_header_timeout() {
    let app = spawn_app_with(&[("PLAYPULSE_SERVER__HEADER_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = async {
        loop {
            if stream.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), trickle).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a header trickler was held for {:?}",
        started.elapsed()
    );
    app.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(&[("PLAYPULSE_SERVER__HEADER_TIMEOUT", "1s")]).await;
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(5))
            .await
            .is_some(),
        "an idle connection is held past the header timeout"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_as_json() {
    let app = spawn_app_with(&[("PLAYPULSE_SERVER__BODY_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n[",
        )
        .await
        .unwrap();
    let answer = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server answers a stalled body");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn connections_past_the_limit_get_a_json_503_and_the_ones_served_keep_working() {
    let app = spawn_app_with(&[("PLAYPULSE_SERVER__MAX_CONNECTIONS", "20")]).await;
    // A served connection, kept alive.
    let served = reqwest::Client::new();
    let health = app.url("/healthz");
    assert_eq!(served.get(&health).send().await.unwrap().status(), 200);
    let mut idle = Vec::new();
    for _ in 0..19 {
        idle.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // Accepted in order: once the server has answered on a later connection it has taken these.
    let mut refused = None;
    for _ in 0..50 {
        let mut extra = TcpStream::connect(app.addr).await.unwrap();
        let _ = extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let answer = closed_within(&mut extra, Duration::from_secs(5)).await;
        if let Some(answer) = answer.filter(|answer| answer.starts_with("HTTP/1.1 503")) {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a connection past the limit is refused");
    let (head, body) = refused.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "the declared length is the body's: {refused}"
    );
    let body: Value = serde_json::from_str(body).unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("too many connections"));
    assert_eq!(served.get(&health).send().await.unwrap().status(), 200);

    drop(idle);
    let fresh = eventually(Duration::from_secs(10), || async {
        let client = reqwest::Client::new();
        client
            .get(app.url("/healthz"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200)
    })
    .await;
    assert!(fresh, "connections freed are served again");
    app.stop().await;
}

#[tokio::test]
async fn one_client_address_cannot_take_every_connection() {
    let app = spawn_app_with(&[("PLAYPULSE_SERVER__MAX_CONNECTIONS_PER_CLIENT", "5")]).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // Accepted in order: the server has counted the five before it takes the sixth.
    let mut sixth = TcpStream::connect(app.addr).await.unwrap();
    let refused = closed_within(&mut sixth, Duration::from_secs(5))
        .await
        .expect("the sixth connection from one address is closed");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    // Another address still gets in.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(app.addr).await.unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut other, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_stop_healthz() {
    let app = spawn_app().await;
    let mut idle = Vec::new();
    for n in 0..3000u32 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        let source =
            std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(127, 0, 1, 0)) + n / 500);
        socket.bind((source, 0).into()).unwrap();
        idle.push(socket.connect(app.addr).await.unwrap());
    }
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(idle);
    app.stop().await;
}

#[tokio::test]
async fn a_half_sent_request_does_not_hold_the_shutdown() {
    let app = spawn_app_with(&[
        ("PLAYPULSE_SERVER__REQUEST_TIMEOUT", "1s"),
        ("PLAYPULSE_SERVER__BODY_TIMEOUT", "60s"),
        ("PLAYPULSE_SERVER__HEADER_TIMEOUT", "60s"),
        ("PLAYPULSE_SERVER__SHUTDOWN_TIMEOUT", "30s"),
    ])
    .await;
    let user = fresh_user();
    let events = events_for(user, 20);
    assert_eq!(app.post_events(&events).await.status(), 200);
    let mut half_headers = TcpStream::connect(app.addr).await.unwrap();
    half_headers
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut half_body = TcpStream::connect(app.addr).await.unwrap();
    half_body
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[")
        .await
        .unwrap();
    // Both are being served once a later connection is answered.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let started = Instant::now();
    let dir = app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?} with half-sent requests",
        started.elapsed()
    );
    let app = spawn_app_in(dir, &[]).await;
    assert_eq!(app.history(user, "limit=100").await.len(), events.len());
    app.stop().await;
}

#[tokio::test]
async fn bytes_held_by_unfinished_uploads_count_against_the_admission_budget() {
    let mib = 1 << 20;
    let app = spawn_app_with(&[
        ("PLAYPULSE_SERVER__MAX_BODY_BYTES", "1048576"),
        ("PLAYPULSE_PIPELINE__MAX_IN_FLIGHT_BYTES", "2097152"),
        ("PLAYPULSE_SERVER__REQUEST_TIMEOUT", "1s"),
        ("PLAYPULSE_SERVER__BODY_TIMEOUT", "60s"),
    ])
    .await;
    // Two uploads hold the whole budget, one byte short of their Content-Length.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {mib}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&vec![b' '; mib - 1]).await.unwrap();
        held.push(stream);
    }
    let full = eventually(Duration::from_secs(10), || async {
        app.post_events(&events_for(fresh_user(), 1)).await.status() == 503
    })
    .await;
    assert!(full, "held uploads do not count against the budget");
    drop(held);
    let freed = eventually(Duration::from_secs(10), || async {
        app.post_events(&events_for(fresh_user(), 1)).await.status() == 200
    })
    .await;
    assert!(freed, "the budget is given back when uploads go away");
    app.stop().await;
}

#[tokio::test]
async fn valid_json_that_simd_json_refuses_rejects_its_events_alone() {
    let app = spawn_app().await;
    let user = fresh_user();
    let good = events_for(user, 2);
    let mut body = String::from("[");
    body.push_str(&good[0].to_string());
    for (field, value) in [
        ("user_id", "18446744073709551616"),
        ("ts", "1e400"),
        ("device", r#""\ud800""#),
        ("device", r#""\udc00x""#),
    ] {
        let mut bad = events_for(user, 1).remove(0).to_string();
        bad = bad.replacen('{', &format!(r#"{{"{field}":{value},"#), 1);
        body.push(',');
        body.push_str(&bad);
    }
    body.push(',');
    body.push_str(&good[1].to_string());
    body.push(']');
    let response = app
        .post_body(body.into_bytes(), &[("content-type", "application/json")])
        .await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["accepted"], 2, "{ack}");
    let rejected = ack["rejected"].as_array().unwrap();
    let indexes: Vec<u64> = rejected
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, vec![1, 2, 3, 4]);
    assert_eq!(app.history(user, "limit=10").await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn an_answer_does_not_grow_with_the_bad_values_it_rejects() {
    let app = spawn_app().await;
    let long = "x".repeat(4000);
    let events: Vec<Value> = (0..1000)
        .map(|_| {
            let mut event = events_for(fresh_user(), 1).remove(0);
            event["kind"] = Value::from(long.clone());
            event
        })
        .collect();
    let body = serde_json::to_vec(&events).unwrap();
    let response = app
        .post_body(body.clone(), &[("content-type", "application/json")])
        .await;
    assert_eq!(response.status(), 200);
    let answer = response.bytes().await.unwrap();
    assert!(
        answer.len() < body.len() / 10,
        "{} bytes answered to {} bytes",
        answer.len(),
        body.len()
    );
    app.stop().await;
}

#[tokio::test]
async fn answers_are_compressed_for_clients_that_accept_it() {
    let app = spawn_app().await;
    let user = fresh_user();
    assert_eq!(app.post_events(&events_for(user, 200)).await.status(), 200);
    let response = app
        .client
        .get(app.url(&format!("/v1/users/{user}/history?limit=200")))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-encoding").unwrap(), "gzip");
    let compressed = response.bytes().await.unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut plain,
    )
    .unwrap();
    let history: Vec<Value> = serde_json::from_slice(&plain).unwrap();
    assert_eq!(history.len(), 200);
    assert!(compressed.len() < plain.len() / 3);
    app.stop().await;
}

#[tokio::test]
async fn every_error_answer_is_json_of_one_shape() {
    let app = spawn_app_with(&[("PLAYPULSE_SERVER__MAX_BODY_BYTES", "1024")]).await;
    let client = &app.client;
    let cases = [
        client.get(app.url("/nowhere")).send().await.unwrap(),
        client.delete(app.url("/v1/events")).send().await.unwrap(),
        client.get(app.url("/v1/events")).send().await.unwrap(),
        app.post_body(vec![b' '; 4096], &[("content-type", "application/json")])
            .await,
        client
            .post(app.url("/v1/users"))
            .header("content-type", "application/json")
            .body(vec![b' '; 4 << 20])
            .send()
            .await
            .unwrap(),
        client
            .get(app.url("/v1/users/abc/history"))
            .send()
            .await
            .unwrap(),
    ];
    for response in cases {
        let status = response.status();
        assert!(status.is_client_error(), "{status}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{status}: {:?}",
            response.headers()
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{status}: {body}");
    }
    app.stop().await;
}
