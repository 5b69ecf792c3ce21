use std::path::Path;
use std::process::Output;
use std::time::Duration;

use playpulse::{Application, Overrides, Settings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A PlayPulse server on a free port with an embedded store in a temporary directory.
pub struct TestServer {
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    serving: JoinHandle<anyhow::Result<()>>,
    _data: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let data = tempfile::tempdir().expect("a temporary data directory");
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".parse().expect("an address")),
            data_dir: Some(data.path().to_owned()),
        };
        // No environment: a developer's PLAYPULSE_* variables must not change the test.
        let settings = Settings::load(None, std::iter::empty(), &overrides).expect("settings");
        let app = Application::build(settings)
            .await
            .expect("the server starts");
        let url = format!("http://127.0.0.1:{}", app.port());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let server = TestServer {
            url,
            shutdown: Some(shutdown),
            serving,
            _data: data,
        };
        server.wait_until_ready(Duration::from_secs(10)).await;
        server
    }

    async fn wait_until_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let client = reqwest::Client::new();
        let readyz = format!("{}/readyz", self.url);
        loop {
            let ready = client
                .get(&readyz)
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server was not ready within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let stopped = tokio::time::timeout(Duration::from_secs(30), &mut self.serving).await;
        assert!(stopped.is_ok(), "the server did not drain within 30 s");
    }
}

/// Runs the loadgen binary; fails the test if it does not finish within `within`.
pub async fn loadgen(args: &[&str], within: Duration) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command.args(args).kill_on_drop(true);
    match tokio::time::timeout(within, command.output()).await {
        Ok(output) => output.expect("loadgen runs"),
        Err(_) => panic!("loadgen {args:?} did not finish within {within:?}"),
    }
}

/// The text of a finished process, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
