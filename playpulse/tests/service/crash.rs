//! `kill -9` the real server while clients post; after a restart on the same data directory
//! (and the same Cassandra node id), every event that got a 200 is in history, exactly once.
//! And two server processes on one Cassandra see each other's events within the chunk age.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use testkit::free_port;

use crate::helpers::*;

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `playpulse serve` as a process of its own, with these settings in its environment.
async fn start_server_with(data_dir: &std::path::Path, env: &[(&str, String)]) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_playpulse"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .env("PLAYPULSE_LOG__LEVEL", "warn")
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("playpulse starts");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let url = format!("{}/readyz", server.base);
    let up = eventually(Duration::from_secs(30), || {
        let request = client.get(&url).send();
        async move { request.await.is_ok_and(|response| response.status() == 200) }
    })
    .await;
    assert!(up, "playpulse became ready");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_under_load_then_verify(dir.path(), &[]).await;
}

/// The same on Cassandra, packed layout: the log (event_log) past the checkpoint is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cassandra_every_acknowledged_event_survives_kill_9_exactly_once() {
    let Some(address) = testkit::engines::cassandra() else {
        return;
    };
    let keyspace = testkit::cassandra::TestKeyspace::create(
        &address,
        Duration::from_secs(86_400),
        event_cql::WriteMode::ReplicaBatches,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = cassandra_env(&address, &keyspace.config.keyspace, "crash-node");
    kill_9_under_load_then_verify(dir.path(), &env).await;
    keyspace.drop_keyspace().await;
}

/// Settings of a node on the packed Cassandra layout, its chunks closing within half a second.
fn cassandra_env(address: &str, keyspace: &str, node_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PLAYPULSE_SINK__KIND", "cassandra".to_owned()),
        ("PLAYPULSE_CASSANDRA__NODES", format!("[\"{address}\"]")),
        ("PLAYPULSE_CASSANDRA__KEYSPACE", keyspace.to_owned()),
        ("PLAYPULSE_CASSANDRA__LAYOUT", "chunks".to_owned()),
        ("PLAYPULSE_CASSANDRA__NODE_ID", node_id.to_owned()),
        ("PLAYPULSE_CHUNKS__MAX_AGE", "500ms".to_owned()),
    ]
}

/// Two `playpulse serve` processes on one Cassandra: an event one of them acknowledged is
/// visible through the other within the chunk age bound (plus a commit round).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_sees_the_first_ones_events_within_the_chunk_age() {
    let Some(address) = testkit::engines::cassandra() else {
        return;
    };
    let keyspace = testkit::cassandra::TestKeyspace::create(
        &address,
        Duration::from_secs(86_400),
        event_cql::WriteMode::ReplicaBatches,
    )
    .await;
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = &keyspace.config.keyspace;
    let first = start_server_with(first_dir.path(), &cassandra_env(&address, name, "node-1")).await;
    let second =
        start_server_with(second_dir.path(), &cassandra_env(&address, name, "node-2")).await;
    let client = reqwest::Client::new();
    let user = fresh_user();
    let events = events_for(user, 3);
    let posted = std::time::Instant::now();
    let response = client
        .post(format!("{}/v1/events", first.base))
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let url = format!("{}/v1/users/{user}/history", second.base);
    let seen = eventually(Duration::from_secs(15), || {
        let request = client.get(&url).send();
        let expected = ids(&events);
        async move {
            match request.await {
                Ok(response) => response
                    .json::<Vec<Value>>()
                    .await
                    .is_ok_and(|stored| ids(&stored) == expected),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(seen, "the second process never saw the first one's events");
    // The bound: chunks.max_age (500 ms) and a commit interval, with room for a loaded machine.
    assert!(
        posted.elapsed() <= Duration::from_secs(5),
        "visible only after {:?}",
        posted.elapsed()
    );
    drop((first, second));
    keyspace.drop_keyspace().await;
}

async fn kill_9_under_load_then_verify(data_dir: &std::path::Path, env: &[(&str, String)]) {
    let dir = data_dir;
    let mut server = start_server_with(dir, env).await;
    let users: Vec<u64> = (0..20).map(|_| fresh_user()).collect();
    let acknowledged: Arc<Mutex<HashMap<u64, Vec<String>>>> = Arc::default();
    let client = reqwest::Client::new();

    let clients: Vec<_> = (0..4)
        .map(|worker| {
            let (client, url) = (client.clone(), format!("{}/v1/events", server.base));
            let (users, acknowledged) = (users.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for round in 0.. {
                    let user = users[(worker * 5 + round) % users.len()];
                    let events = events_for(user, 200);
                    let Ok(response) = client.post(&url).json(&events).send().await else {
                        return;
                    };
                    if response.status() == 200 {
                        acknowledged
                            .lock()
                            .unwrap()
                            .entry(user)
                            .or_default()
                            .extend(ids(&events));
                    }
                }
            })
        })
        .collect();

    // Kill once a good amount has been acknowledged, with requests still in flight.
    let enough = eventually(Duration::from_secs(60), || {
        let count: usize = acknowledged.lock().unwrap().values().map(Vec::len).sum();
        async move { count >= 20_000 }
    })
    .await;
    assert!(enough, "clients got acknowledgements");
    server.child.kill().expect("kill -9");
    server.child.wait().unwrap();
    for client in clients {
        client.await.unwrap();
    }

    let server = start_server_with(dir, env).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    for (user, expected) in acknowledged {
        let url = format!("{}/v1/users/{user}/history?limit=10000", server.base);
        let stored: Vec<Value> = client.get(&url).send().await.unwrap().json().await.unwrap();
        let stored = ids(&stored);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for id in &stored {
            *counts.entry(id.as_str()).or_default() += 1;
        }
        for id in &expected {
            assert_eq!(
                counts.get(id.as_str()).copied(),
                Some(1),
                "acknowledged event {id} of user {user}"
            );
        }
        assert!(
            counts.values().all(|count| *count == 1),
            "an event is stored twice"
        );
    }
}
