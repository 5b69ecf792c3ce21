use std::net::SocketAddr;
use std::time::Duration;

use platform::keys::Role;
use playpulse::{Application, Overrides, Settings};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use testkit::{eventually, fresh_user, now_ms};

/// A playback event as a client would send it, with a fresh event_id.
pub fn event(user_id: u64, ts: i64) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "session_id": "6f1c1d1e-2b1a-4c3d-9e8f-0a1b2c3d4e5f",
        "user_id": user_id,
        "content_id": 1234,
        "kind": "heartbeat",
        "ts": ts,
        "sent_at": now_ms(),
        "position_ms": 60_000,
        "bitrate_kbps": 4500,
        "device": "tv",
        "country": "US"
    })
}

/// Events for one user, one a second back from now.
pub fn events_for(user_id: u64, count: usize) -> Vec<Value> {
    let now = now_ms();
    (0..count)
        .map(|i| event(user_id, now - 1_000 * (i as i64 + 1)))
        .collect()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the application on a free port with a fresh data directory and these settings.
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    spawn_app_in(tempfile::tempdir().expect("a temporary directory"), env).await
}

pub async fn spawn_app_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> TestApp {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_owned()),
    };
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let settings = Settings::load(None, env, &overrides).expect("test settings are valid");
    spawn_settings(settings, dir).await
}

/// Starts the application on these settings (their data directory `dir`, kept as long as it).
pub async fn spawn_settings(settings: Settings, dir: tempfile::TempDir) -> TestApp {
    let app = Application::build(settings)
        .await
        .expect("the application builds");
    let addr = app.local_addr();
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop.await;
    }));
    TestApp {
        addr,
        client: reqwest::Client::new(),
        dir,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post_body(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.post(self.url("/v1/events")).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the server answers")
    }

    pub async fn post_events(&self, events: &[Value]) -> reqwest::Response {
        let body = serde_json::to_vec(events).unwrap();
        self.post_body(body, &[("content-type", "application/json")])
            .await
    }

    pub async fn history(&self, user_id: u64, query: &str) -> Vec<Value> {
        let response = self
            .client
            .get(self.url(&format!("/v1/users/{user_id}/history?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "history of {user_id}");
        response.json().await.unwrap()
    }

    /// Stops the server (graceful shutdown) and returns its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("shutdown finishes in time")
                .expect("server task")
                .expect("server result");
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

pub fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| event["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Creates a key in the command store the app uses (its data directory).
pub async fn create_key(app: &TestApp, role: Role, name: &str) -> String {
    let keys = platform::open_api_keys(&settings_of(app).platform())
        .await
        .expect("the key store opens");
    keys.create(role, name).await.expect("a key is created").0
}

pub fn settings_of(app: &TestApp) -> Settings {
    let overrides = Overrides {
        listen: None,
        data_dir: Some(app.dir.path().to_owned()),
    };
    Settings::load(None, std::iter::empty(), &overrides).unwrap()
}
