//! Good clients under attack: `loadgen http` posts at a fixed rate, first alone (the clean
//! run), then, on the same server, while hostile clients hold 10,000 idle connections, trickle
//! headers and bodies, hold uploads one byte short, post oversized and bad-key requests, and
//! flood one key past its limit. Targets: the good clients' acknowledged rate >= 90% of the
//! clean run's; the server's RSS within the admission budget + 128 MiB; `/healthz` p99 <=
//! 100 ms; every acknowledged event stored once (`loadgen verify`).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::json;
use std::net::Ipv4Addr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::report::{CpuPerEvent, Outcome};
use crate::server::{self, Server};
use crate::Common;

const TARGET_RATE_SHARE: f64 = 0.90;
const TARGET_RSS_HEADROOM: u64 = 128 << 20;
const TARGET_HEALTHZ_P99_MS: f64 = 100.0;
/// The admission budget the server runs with here (the default's).
const BUDGET_BYTES: u64 = 256 << 20;
/// How long the attack runs alone before the good clients join it.
const ATTACK_ALONE: Duration = Duration::from_secs(15);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Length of each run (clean, then under attack).
    #[command(flatten)]
    common: Common,
    /// The good clients' offered rate, events/s.
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
    /// Idle connections the attackers hold.
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Connections trickling headers, and as many trickling bodies.
    #[arg(long, default_value_t = 200)]
    tricklers: usize,
    /// Uploads held one byte short of their 4 MiB Content-Length.
    #[arg(long, default_value_t = 48)]
    held_uploads: usize,
}

/// What the attackers did, counted by status or outcome.
#[derive(Default)]
struct Tally {
    idle_open: AtomicU64,
    idle_opened: AtomicU64,
    refused_connections: AtomicU64,
    trickles_closed: AtomicU64,
    held_uploads_answered: AtomicU64,
    oversized_413: AtomicU64,
    bad_key_401: AtomicU64,
    flood_requests: AtomicU64,
    flood_429: AtomicU64,
    other: AtomicU64,
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    // 10,000 sockets here and as many in the server.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let bin = server::build_binaries()?;
    let work = tempfile::tempdir()?;
    let data_dir = work.path().join("data");
    let ingest_key = create_key(&bin, &data_dir, "ingest", "players")?;
    let admin_key = create_key(&bin, &data_dir, "admin", "verifier")?;
    let flood_key = create_key(&bin, &data_dir, "read", "flooder")?;
    let server = Server::start(
        &bin,
        &data_dir,
        &[
            ("PLAYPULSE_AUTH__ENABLED", "true".to_owned()),
            (
                "PLAYPULSE_PIPELINE__MAX_IN_FLIGHT_BYTES",
                BUDGET_BYTES.to_string(),
            ),
            (
                "PLAYPULSE_RATE_LIMITS__READ",
                "{ per_second = 200, burst = 400 }".to_owned(),
            ),
            // The verifier reads every viewer's history: not what is measured here.
            (
                "PLAYPULSE_RATE_LIMITS__ADMIN",
                "{ per_second = 1000000, burst = 1000000 }".to_owned(),
            ),
        ],
    )?;
    let addr = server.url.trim_start_matches("http://").to_owned();
    // loadgen reads its key from the environment, so that it is not in the command lines
    // printed below.
    std::env::set_var("PLAYPULSE_API_KEY", &ingest_key);
    let seconds = args.common.duration.as_secs().max(1);
    // Each run its own seed: the same seed would send the same event ids again, and history
    // would then return each id once (the newest), which verify would count as lost.
    let good = |name: &str, seed: u64| -> Vec<String> {
        vec![
            "http".into(),
            "--seed".into(),
            seed.to_string(),
            "--url".into(),
            server.url.clone(),
            "--rate".into(),
            args.rate.to_string(),
            "--duration".into(),
            format!("{seconds}s"),
            "--batch".into(),
            "1000".into(),
            "--connections".into(),
            "8".into(),
            "--acked-log".into(),
            work.path()
                .join(format!("{name}.tsv"))
                .display()
                .to_string(),
        ]
    };

    // A first run fills the packed layout's open chunks and the allocator's arenas: the clean
    // run after it is the baseline the attacked run is compared with, rate and memory alike.
    eprintln!(
        "hostile: warm-up run at {} events/s for {seconds}s",
        args.rate
    );
    server::run_loadgen(&bin, &good("warmup", 1), &work.path().join("warmup.json"))?;
    eprintln!(
        "hostile: clean run at {} events/s for {seconds}s",
        args.rate
    );
    let clean_probe = Probe::start(&server);
    let cpu_before = server.cpu_seconds();
    let clean = server::run_loadgen(&bin, &good("clean", 2), &work.path().join("clean.json"))?;
    let clean_cpu = server.cpu_seconds() - cpu_before;
    let clean_probe = clean_probe.stop().await;

    eprintln!(
        "hostile: {} idle connections, {} header and {} body tricklers, {} held uploads, oversized, bad keys, a key flood",
        args.idle_connections, args.tricklers, args.tricklers, args.held_uploads
    );
    // The server at rest after the clean run: what the attack alone adds is measured from here.
    let status = format!("/proc/{}/status", server.pid());
    let at_rest_rss = rss_of(&status);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = tokio::task::JoinSet::new();
    // Attackers come from many addresses (127.0.0.2 and up), as a botnet would: from one, the
    // server's per-client limit would refuse all but the first 1,024 connections.
    for n in 0..args.idle_connections {
        attackers.spawn(hold_idle(
            attacker_address(n),
            addr.clone(),
            tally.clone(),
            stop.clone(),
        ));
    }
    for n in 0..args.tricklers {
        attackers.spawn(trickle_headers(
            attacker_address(n),
            addr.clone(),
            tally.clone(),
            stop.clone(),
        ));
        attackers.spawn(trickle_body(
            attacker_address(n + 1),
            addr.clone(),
            ingest_key.clone(),
            tally.clone(),
            stop.clone(),
        ));
    }
    for n in 0..args.held_uploads {
        attackers.spawn(hold_upload(
            attacker_address(n + 2),
            addr.clone(),
            ingest_key.clone(),
            tally.clone(),
            stop.clone(),
        ));
    }
    for _ in 0..4 {
        attackers.spawn(post_oversized(
            attacker_address(3),
            addr.clone(),
            ingest_key.clone(),
            tally.clone(),
            stop.clone(),
        ));
        attackers.spawn(post_bad_keys(
            server.url.clone(),
            tally.clone(),
            stop.clone(),
        ));
        attackers.spawn(flood_key_past_its_limit(
            server.url.clone(),
            flood_key.clone(),
            tally.clone(),
            stop.clone(),
        ));
    }
    let held = Instant::now();
    while tally.idle_open.load(Relaxed) < args.idle_connections as u64 * 9 / 10 {
        if held.elapsed() > Duration::from_secs(60) {
            bail!(
                "only {} idle connections open after 60 s",
                tally.idle_open.load(Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The attack alone for a while: held uploads fill, tricklers pile up.
    let mut attack_alone_rss = 0;
    let alone = Instant::now();
    while alone.elapsed() < ATTACK_ALONE {
        attack_alone_rss = attack_alone_rss.max(rss_of(&status));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "hostile: {} idle connections held, RSS {} MiB (at rest {} MiB); the good clients run again",
        tally.idle_open.load(Relaxed),
        attack_alone_rss >> 20,
        at_rest_rss >> 20
    );
    let attacked_probe = Probe::start(&server);
    let cpu_before = server.cpu_seconds();
    let attacked = {
        let bin = bin.clone();
        let args = good("attacked", 3);
        let report = work.path().join("attacked.json");
        tokio::task::spawn_blocking(move || server::run_loadgen(&bin, &args, &report)).await??
    };
    let attacked_cpu = server.cpu_seconds() - cpu_before;
    let attacked_probe = attacked_probe.stop().await;
    stop.store(true, Relaxed);
    attackers.abort_all();
    while attackers.join_next().await.is_some() {}

    let mut verified = Vec::new();
    for name in ["warmup", "clean", "attacked"] {
        let outcome = loadgen::verify::verify(&loadgen::verify::VerifySettings {
            url: server.url.clone(),
            acked_log: work.path().join(format!("{name}.tsv")),
            concurrency: 16,
            timeout: Duration::from_secs(30),
            show_progress: false,
            api_key: Some(loadgen::settings::ApiKey(admin_key.clone())),
        })
        .await
        .with_context(|| format!("verifying the {name} run"))?;
        verified.push(outcome);
    }
    drop(server);

    let share = attacked.events_per_sec / clean.events_per_sec.max(1e-9);
    let rss_limit = BUDGET_BYTES + TARGET_RSS_HEADROOM;
    let rss = clean_probe.max_rss.max(attacked_probe.max_rss);
    // What the attackers hold: RSS under the attack alone over RSS at rest. (The packed
    // layout's open chunks, bounded on their own by chunks.max_open_bytes, and the allocator's
    // growth from run to run are in the good clients' runs alike: reported, not the target.)
    let attack_rss = attack_alone_rss.saturating_sub(at_rest_rss);
    let healthz_p99 = attacked_probe.healthz_p99_ms();
    let stored_once = verified.iter().all(|outcome| outcome.passed());
    let met = share >= TARGET_RATE_SHARE
        && attack_rss <= rss_limit
        && healthz_p99 <= TARGET_HEALTHZ_P99_MS
        && stored_once;
    let count = |counter: &AtomicU64| counter.load(Relaxed);
    println!(
        "hostile: good clients {:.0} events/s under attack vs {:.0} clean = {:.1}% (target >= {:.0}%)",
        attacked.events_per_sec,
        clean.events_per_sec,
        share * 100.0,
        TARGET_RATE_SHARE * 100.0
    );
    println!(
        "  p99 {:.2} ms under attack vs {:.2} ms clean; errors {} vs {}",
        attacked.latency_ms.p99, clean.latency_ms.p99, attacked.error_count, clean.error_count
    );
    println!(
        "  server RSS: the attack alone added {} MiB (target <= {} MiB = budget {} + 128); max {} MiB with the good clients under attack, {} MiB in the clean run; /healthz p99 {:.2} ms, max {:.2} ms under attack (target <= {TARGET_HEALTHZ_P99_MS})",
        attack_rss >> 20,
        rss_limit >> 20,
        BUDGET_BYTES >> 20,
        attacked_probe.max_rss >> 20,
        clean_probe.max_rss >> 20,
        healthz_p99,
        attacked_probe.healthz_max_ms(),
    );
    for (name, outcome) in ["warmup", "clean", "attacked"].iter().zip(&verified) {
        println!(
            "  verify {name}: {} acknowledged, {} stored once, {} lost, {} doubled, {} users unreadable{}",
            outcome.acked_events,
            outcome.stored_once,
            outcome.lost.len(),
            outcome.doubled.len(),
            outcome.unreadable_users.len(),
            outcome
                .unreadable_users
                .values()
                .next()
                .map_or_else(String::new, |why| format!(" (first: {why})"))
        );
    }
    println!(
        "  attackers: {} idle connections opened ({} refused at the limit), {} trickles closed by the server, {} held uploads answered, {} oversized 413, {} bad-key 401, {} of {} flood requests 429, {} other answers",
        count(&tally.idle_opened),
        count(&tally.refused_connections),
        count(&tally.trickles_closed),
        count(&tally.held_uploads_answered),
        count(&tally.oversized_413),
        count(&tally.bad_key_401),
        count(&tally.flood_429),
        count(&tally.flood_requests),
        count(&tally.other),
    );
    let clean_per_event = CpuPerEvent::of(
        clean_cpu,
        clean.generator_cpu_seconds,
        clean.totals.events_acked,
    );
    // The attack's requests count against the good events: what the attack costs per event served.
    let attacked_per_event = CpuPerEvent::of(
        attacked_cpu,
        attacked.generator_cpu_seconds,
        attacked.totals.events_acked,
    );
    println!(
        "  clean: {clean_per_event} ({:.2} server cores);  under attack: {attacked_per_event} ({:.2} server cores, the attack's requests included)",
        clean_cpu / clean.wall_seconds.max(1e-9),
        attacked_cpu / attacked.wall_seconds.max(1e-9),
    );
    let outcome = Outcome {
        json: json!({
            "scenario": "hostile",
            "target_met": met,
            "offered_events_per_sec": args.rate,
            "clean_events_per_sec": clean.events_per_sec,
            "attacked_events_per_sec": attacked.events_per_sec,
            "share": share,
            "target_share": TARGET_RATE_SHARE,
            "clean_p99_ms": clean.latency_ms.p99,
            "attacked_p99_ms": attacked.latency_ms.p99,
            "attacked_errors": attacked.errors,
            "server_max_rss_bytes": rss,
            "attack_rss_bytes": attack_rss,
            "at_rest_rss_bytes": at_rest_rss,
            "attack_alone_rss_bytes": attack_alone_rss,
            "clean_cpu_us_per_event": clean_per_event,
            "attacked_cpu_us_per_event": attacked_per_event,
            "clean_max_rss_bytes": clean_probe.max_rss,
            "attacked_max_rss_bytes": attacked_probe.max_rss,
            "rss_limit_bytes": rss_limit,
            "healthz_p99_ms": healthz_p99,
            "healthz_max_ms": attacked_probe.healthz_max_ms(),
            "clean_healthz_p99_ms": clean_probe.healthz_p99_ms(),
            "stored_once": stored_once,
            "attackers": {
                "idle_connections": args.idle_connections,
                "idle_opened": count(&tally.idle_opened),
                "refused_connections": count(&tally.refused_connections),
                "trickles_closed": count(&tally.trickles_closed),
                "held_uploads_answered": count(&tally.held_uploads_answered),
                "oversized_413": count(&tally.oversized_413),
                "bad_key_401": count(&tally.bad_key_401),
                "flood_requests": count(&tally.flood_requests),
                "flood_429": count(&tally.flood_429),
                "other": count(&tally.other),
            },
        }),
        met,
    };
    outcome.write(args.common.json.as_deref())?;
    Ok(outcome)
}

fn create_key(bin: &Path, data_dir: &Path, role: &str, name: &str) -> anyhow::Result<String> {
    let output = Command::new(bin.join("playpulse"))
        .args([
            "keys",
            "create",
            "--role",
            role,
            "--name",
            name,
            "--data-dir",
        ])
        .arg(data_dir)
        .output()
        .context("cannot run playpulse keys create")?;
    if !output.status.success() {
        bail!(
            "playpulse keys create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Samples the server's RSS and `/healthz` latency while a run goes on.
struct Probe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Histogram<u64>)>,
}

struct Probed {
    max_rss: u64,
    healthz_us: Histogram<u64>,
}

impl Probed {
    fn healthz_p99_ms(&self) -> f64 {
        self.healthz_us.value_at_quantile(0.99) as f64 / 1000.0
    }

    fn healthz_max_ms(&self) -> f64 {
        self.healthz_us.max() as f64 / 1000.0
    }
}

impl Probe {
    fn start(server: &Server) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let status = format!("/proc/{}/status", server.pid());
        let url = format!("{}/healthz", server.url);
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("a client");
            let mut healthz = Histogram::<u64>::new(3).expect("a histogram");
            let mut max_rss = 0;
            while !flag.load(Relaxed) {
                max_rss = max_rss.max(rss_of(&status));
                let started = Instant::now();
                let answered = client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|response| response.status() == 200);
                // A probe that fails counts as the 5 s a load balancer would wait.
                let micros = if answered {
                    started.elapsed().as_micros() as u64
                } else {
                    5_000_000
                };
                let _ = healthz.record(micros.max(1));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (max_rss, healthz)
        });
        Probe { stop, task }
    }

    async fn stop(self) -> Probed {
        self.stop.store(true, Relaxed);
        let (max_rss, healthz_us) = self
            .task
            .await
            .unwrap_or_else(|_| (0, Histogram::new(3).expect("a histogram")));
        Probed {
            max_rss,
            healthz_us,
        }
    }
}

/// VmRSS of a process now, in bytes.
fn rss_of(status_path: &str) -> u64 {
    crate::report::status_bytes(status_path, "VmRSS:").unwrap_or(0)
}

/// The source address of the `n`th attacking connection: 500 per address from 127.0.0.2.
fn attacker_address(n: usize) -> Ipv4Addr {
    let host = 2 + (n / 500) as u32;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + host)
}

/// Connects to `addr` from `source` (any loopback address is this machine).
async fn connect_from(source: Ipv4Addr, addr: &str) -> std::io::Result<TcpStream> {
    let target: std::net::SocketAddr = addr
        .parse()
        .map_err(|_| std::io::Error::other("the server's address"))?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((source, 0)))?;
    socket.connect(target).await
}

/// Holds a connection open without a request; when the server closes it, opens another.
async fn hold_idle(source: Ipv4Addr, addr: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    while !stop.load(Relaxed) {
        let Ok(mut stream) = connect_from(source, &addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tally.idle_opened.fetch_add(1, Relaxed);
        tally.idle_open.fetch_add(1, Relaxed);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        tally.idle_open.fetch_sub(1, Relaxed);
        if answer.starts_with(b"HTTP/1.1 503") {
            tally.refused_connections.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Sends a request head a byte a second.
async fn trickle_headers(source: Ipv4Addr, addr: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    while !stop.load(Relaxed) {
        let Ok(mut stream) = connect_from(source, &addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = stream
            .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await;
        while stream.write_all(b"a").await.is_ok() && !stop.load(Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tally.trickles_closed.fetch_add(1, Relaxed);
    }
}

/// Sends a body of a declared 5 MiB at 1 KiB a second.
async fn trickle_body(
    source: Ipv4Addr,
    addr: String,
    key: String,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Relaxed) {
        let Ok(mut stream) = connect_from(source, &addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n[",
            5 << 20
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let chunk = vec![b' '; 1024];
        while stream.write_all(&chunk).await.is_ok() && !stop.load(Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tally.trickles_closed.fetch_add(1, Relaxed);
    }
}

/// Sends all but the last byte of a 4 MiB body, then waits for the server to give up on it.
async fn hold_upload(
    source: Ipv4Addr,
    addr: String,
    key: String,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let length = 4 << 20;
    let body = vec![b' '; length - 1];
    while !stop.load(Relaxed) {
        let Ok(mut stream) = connect_from(source, &addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&body).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        tally.held_uploads_answered.fetch_add(1, Relaxed);
    }
}

/// Posts bodies declared far past the limit (1 GiB), and sends 64 KiB of them.
async fn post_oversized(
    source: Ipv4Addr,
    addr: String,
    key: String,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let start = vec![b' '; 64 << 10];
    while !stop.load(Relaxed) {
        let Ok(mut stream) = connect_from(source, &addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            1u64 << 30
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&start).await;
        let mut answer = vec![0; 64];
        let read = stream.read(&mut answer).await.unwrap_or(0);
        if answer[..read].starts_with(b"HTTP/1.1 413") {
            tally.oversized_413.fetch_add(1, Relaxed);
        } else {
            tally.other.fetch_add(1, Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts events with keys that do not exist.
async fn post_bad_keys(url: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::new();
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        n += 1;
        let answer = client
            .post(format!("{url}/v1/events"))
            .bearer_auth(format!("pp_forged{n:039}"))
            .header("content-type", "application/json")
            .body("[]")
            .send()
            .await;
        match answer.map(|response| response.status().as_u16()) {
            Ok(401) => tally.bad_key_401.fetch_add(1, Relaxed),
            _ => tally.other.fetch_add(1, Relaxed),
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads as fast as it can with one key, far past its role's limit.
async fn flood_key_past_its_limit(
    url: String,
    key: String,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::new();
    while !stop.load(Relaxed) {
        let answer = client
            .get(format!("{url}/v1/plans"))
            .bearer_auth(&key)
            .send()
            .await;
        tally.flood_requests.fetch_add(1, Relaxed);
        match answer.map(|response| response.status().as_u16()) {
            Ok(429) => tally.flood_429.fetch_add(1, Relaxed),
            Ok(200) => 0,
            _ => tally.other.fetch_add(1, Relaxed),
        };
    }
}
