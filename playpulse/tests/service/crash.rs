//! `kill -9` the real server while clients post; after a restart on the same data directory,
//! every event that got a 200 is in history, exactly once.

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

async fn start_server(data_dir: &std::path::Path) -> Server {
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
    let mut server = start_server(dir.path()).await;
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

    let server = start_server(dir.path()).await;
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
