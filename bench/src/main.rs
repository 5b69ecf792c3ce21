//! `bench`: one command per scenario. Each prints its figures, writes JSON with `events_per_sec`
//! at the top level (`--json FILE`), declares its target, and exits non-zero when it misses it.

mod abba;
mod analytics;
mod architectures;
mod body;
mod cassandra;
mod cassandra_writes;
mod history;
mod hostile;
mod http;
mod invalidation;
mod latte;
mod ops;
mod pipeline;
mod recommendations;
mod report;
mod search;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bench", about = "PlayPulse benchmark scenarios")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// In process: parse + validate + batch + durable embedded write, as the HTTP handler does
    /// after reading a body (target: 1,500,000 events/s sustained for 60 s).
    Pipeline(pipeline::Args),
    /// The Cassandra path against its baselines on the same node in one run: the pipeline on
    /// the Cassandra sink vs `loadgen cassandra --mode best` vs `--mode per-event` vs latte, as
    /// ratios; bytes per event on disk after flush + major compaction; peak RSS (target: the
    /// pipeline's rows/s >= latte's). Needs `CASSANDRA_JMX_PORT=7199 engines/up cassandra` and
    /// latte (`cargo install latte-cli --locked`).
    Cassandra(cassandra::Args),
    /// The Cassandra sink's write modes (concurrent inserts, partition batches, replica
    /// batches) against a real node: rows/s and CPU per row, client and server. Needs
    /// `engines/up cassandra`.
    CassandraWrites(cassandra_writes::Args),
    /// History reads as the store grows: fill it with `--events` events, then time reads of
    /// `limit` events for random viewers (target: p99 <= 10 ms).
    History(history::Args),
    /// Good clients at a fixed rate, alone and then while hostile ones hold 10,000 idle
    /// connections, trickle, hold uploads, post oversized and bad-key requests and flood a key
    /// (targets: >= 90% of the clean rate; RSS <= budget + 128 MiB; /healthz p99 <= 100 ms;
    /// every acknowledged event stored once).
    Hostile(hostile::Args),
    /// loadgen against `playpulse serve` on loopback, both on this machine: saturation point,
    /// then p99 at 80% of it (targets: 500,000 events/s; p99 <= 50 ms and server CPU <= 1.5 µs per event there).
    Http(http::Args),
    /// The Redis invalidation side path off vs on, alternated in one run (targets: <= 5%
    /// throughput cost; durable-to-UNLINK p99 <= 1 s). Needs Redis: `engines/up redis`.
    Invalidation(invalidation::Args),
    /// The analytics side path (QoE rollups, trending, live sessions): its cost to ingest off
    /// vs on (ABBA; Redis commands per event with `--live redis`), every metric per minute
    /// against loadgen's truth, live-view lag and trending latency under load, and the QoE
    /// query over a day at minute resolution (targets: cost <= 10%; counts exact, percentiles
    /// within 1%; qoe p99 <= 50 ms; lag p99 <= 10 s; trending p99 <= 5 ms).
    Analytics(analytics::Args),
    /// Recommendations and fraud rings on the graph, in one run: hit@10 and NDCG@10 of the graph
    /// recommender vs today's co-watch counts vs popular on a replayed audience with taste;
    /// served p50/p99 (cache, read model, cold); freshness; fraud-ring precision and recall on
    /// planted rings; the graph side path's cost to ingest over HTTP, off vs on (targets: hit@10
    /// >= 2x popular and above co-watch; served p99 <= 5 ms; freshness p99 <= 5 s; precision
    /// >= 0.95, recall >= 0.9; cost <= 5%). `--neo4j 127.0.0.1:7687` runs the graph on Neo4j.
    Recommendations(recommendations::Args),
    /// Catalog search on tantivy and OpenSearch, same titles and queries, one run: indexing
    /// rate, CPU per title and size; as-you-type and full-text-with-facets latency under
    /// `--clients` typing clients; saturation; command to searchable (targets: prefix p95 <= 50
    /// ms and p99 <= 100 ms; full text p95 <= 100 ms; searchable p99 <= 2 s). Needs
    /// `engines/up opensearch` unless `--engines tantivy`.
    Search(search::Args),
    /// The operator dashboard's cost: server CPU of the page and of each refresh (what its
    /// script reads every 2 s) against the server's CPU at saturation (target: one open tab
    /// < 1%).
    Ops(ops::Args),
    /// Why hybrid? One mixed workload (events at rising rates, history and recommendation
    /// reads, idempotent subscriptions) on the embedded default, PostgreSQL alone and the hybrid
    /// stack, one after another on this machine: the highest event rate at the SLO, read p99s,
    /// subscriptions/s, CPU per event per engine, bytes per event, and where each saturates.
    /// Needs `engines/up postgres cassandra redis neo4j opensearch` (JMX for Cassandra's bytes).
    Architectures(architectures::Args),
}

/// Options every scenario shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// How long to measure.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.scenario {
            Scenario::Pipeline(args) => pipeline::run(args).await,
            Scenario::Analytics(args) => analytics::run(args).await,
            Scenario::Cassandra(args) => cassandra::run(args).await,
            Scenario::CassandraWrites(args) => cassandra_writes::run(args).await,
            Scenario::History(args) => history::run(args).await,
            Scenario::Hostile(args) => hostile::run(args).await,
            Scenario::Http(args) => http::run(args).await,
            Scenario::Invalidation(args) => invalidation::run(args).await,
            Scenario::Recommendations(args) => recommendations::run(args).await,
            Scenario::Search(args) => search::run(args).await,
            Scenario::Ops(args) => ops::run(args).await,
            Scenario::Architectures(args) => architectures::run(args).await,
        }
    });
    match outcome {
        Ok(report) => {
            if report.target_met() {
                ExitCode::SUCCESS
            } else {
                eprintln!("bench: target missed");
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::from(2)
        }
    }
}
