//! The real binaries, as a user runs them: `playpulse serve` on a free loopback port and
//! `loadgen`, both built in release mode next to `bench`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Builds `playpulse` and `loadgen` (release) and returns the directory holding them.
pub fn build_binaries() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "playpulse",
            "-p",
            "loadgen",
        ])
        .status()
        .context("cannot run cargo to build playpulse and loadgen")?;
    if !status.success() {
        bail!("building playpulse and loadgen failed");
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("bench has no directory")?.to_owned();
    for binary in ["playpulse", "loadgen"] {
        if !dir.join(binary).exists() {
            bail!("{} is missing after the build", dir.join(binary).display());
        }
    }
    Ok(dir)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running `playpulse serve`, stopped (SIGTERM, then kill) on drop.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// Starts the server with extra `PLAYPULSE_*` settings and waits until it is ready.
    pub fn start(bin: &Path, data_dir: &Path, env: &[(&str, String)]) -> anyhow::Result<Server> {
        let port = free_port()?;
        let mut command = Command::new(bin.join("playpulse"));
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data_dir)
            .env(
                "PLAYPULSE_LOG__LEVEL",
                "\"warn,scylla::network::connection=error\"",
            )
            .stdout(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().context("cannot start playpulse")?;
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.ready() {
            if Instant::now() > deadline {
                bail!("playpulse did not become ready on {}", server.url);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    fn ready(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(self.url.trim_start_matches("http://"))
        else {
            return false;
        };
        use std::io::{Read, Write};
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the server so far (VmHWM).
    pub fn peak_rss_bytes(&self) -> u64 {
        crate::report::peak_rss_of(&format!("/proc/{}/stat", self.pid())).unwrap_or(0)
    }

    /// CPU seconds the server has used.
    pub fn cpu_seconds(&self) -> f64 {
        crate::report::cpu_seconds_of(&format!("/proc/{}/stat", self.pid())).unwrap_or(0.0)
    }

    /// The server's /metrics text.
    pub fn metrics(&self) -> String {
        let Ok(mut stream) = std::net::TcpStream::connect(self.url.trim_start_matches("http://"))
        else {
            return String::new();
        };
        use std::io::{Read, Write};
        let request = "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
        let _ = stream.write_all(request.as_bytes());
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first: the server drains and exits on its own.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `loadgen` with these arguments and reads the report it writes.
pub fn run_loadgen(
    bin: &Path,
    args: &[String],
    report: &Path,
) -> anyhow::Result<loadgen::report::Report> {
    eprintln!("  loadgen {}", args.join(" "));
    let status = Command::new(bin.join("loadgen"))
        .args(args)
        .arg("--report")
        .arg(report)
        .stdout(Stdio::null())
        .status()
        .context("cannot run loadgen")?;
    // Exit code 3 means "ran, missed the SLO": the report still holds the figures.
    if !status.success() && status.code() != Some(3) {
        bail!("loadgen failed: {status}");
    }
    loadgen::report::Report::read(report).map_err(Into::into)
}
