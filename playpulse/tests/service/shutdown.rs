use std::collections::HashSet;

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn a_graceful_shutdown_answers_requests_in_flight_and_loses_none() {
    let app = spawn_app().await;
    let client = app.client.clone();
    let url = app.url("/v1/events");
    let users: Vec<u64> = (0..8).map(|_| fresh_user()).collect();
    let posts: Vec<_> = users
        .iter()
        .map(|user| {
            let events = events_for(*user, 500);
            let request = client
                .post(&url)
                .header("content-type", "application/json")
                .json(&events)
                .send();
            tokio::spawn(async move { (events, request.await) })
        })
        .collect();
    // Shut down while those requests are in flight.
    let dir = app.stop().await;

    let mut acknowledged = HashSet::new();
    for post in posts {
        let (events, response) = post.await.unwrap();
        if let Ok(response) = response {
            if response.status() == 200 {
                acknowledged.extend(ids(&events));
            }
        }
    }
    let app = spawn_app_in(dir, &[]).await;
    let mut stored = HashSet::new();
    for user in users {
        let history: Vec<Value> = app.history(user, "limit=10000").await;
        stored.extend(ids(&history));
    }
    assert!(
        acknowledged.is_subset(&stored),
        "{} acknowledged events lost",
        acknowledged.difference(&stored).count()
    );
}

#[tokio::test]
async fn readiness_turns_false_once_shutdown_starts_and_requests_in_flight_are_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app().await;
    let url = app.url("/readyz");
    let client = app.client.clone();
    // A request whose body is still arriving when shutdown starts.
    let body = serde_json::to_vec(&events_for(fresh_user(), 10)).unwrap();
    let mut in_flight = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(&body[..10]).await.unwrap();
    // Connections are accepted in order: once a later one is answered, ours is being served.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    let stopping = tokio::spawn(app.stop());
    let not_ready = eventually(std::time::Duration::from_secs(10), || {
        let request = reqwest::Client::new().get(&url).send();
        async move {
            match request.await {
                Ok(response) => response.status() == 503,
                // A closed listener is not ready either.
                Err(_) => true,
            }
        }
    })
    .await;
    assert!(not_ready, "readiness stays true while draining");

    in_flight.write_all(&body[10..]).await.unwrap();
    let mut response = Vec::new();
    in_flight.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"accepted\":10"), "{response}");
    stopping.await.unwrap();
}
