//! Catalog search on both indexes, same machine, same titles, same queries, one run:
//!
//! 1. Indexing: the synthetic catalog (`loadgen::workload::catalog`, `--titles`, deterministic
//!    by `--seed`) through the port's versioned writes, `--batch` titles per call: titles/s,
//!    CPU per title (this process and, for OpenSearch, the engine's JVM), index size. Then the
//!    popularity of the `--popular` most watched titles (their Zipf share of plays).
//! 2. As you type: `--clients` clients, each typing the title of a title it picked by
//!    popularity, one keystroke every `--keystroke` (a fast typist), prefix queries without
//!    facets; latency from when the keystroke was due (a late answer delays the next keystroke,
//!    which still counts from its due time). Also: how often the title typed was in the top 10
//!    once its first 12 characters were typed.
//! 3. Full text with facets: the same clients and pace, two whole words of the title, its cast
//!    or its synopsis, facets counted, one query in four filtered by country.
//! 4. Saturation: prefix queries with no pause between them, the most the index answers per
//!    second on this machine.
//! 5. Freshness: titles created through the catalog's commands (SQLite command store, outbox,
//!    projector) until a search finds them, `--freshness-samples` of them, 10 per second.
//!
//! Targets: as-you-type p95 <= 50 ms and p99 <= 100 ms; full text with facets p95 <= 100 ms;
//! command to searchable p99 <= 2 s.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use loadgen::workload::catalog::SyntheticCatalog;
use loadgen::workload::rng::Rng;
use loadgen::workload::{Taste, ZipfCatalog};
use platform::catalog::feed::{CatalogFeed, FeedOptions, SearchProjector};
use platform::catalog::Catalog;
use search::{
    CountryCode, Filters, OpenSearchIndex, OpenSearchOptions, SearchIndex, SearchRequest,
    TantivyIndex, Title, TitleChange,
};
use serde_json::json;

use crate::report::{self, LatencyMs, Outcome};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Titles in the catalog.
    #[arg(long, default_value_t = 1_000_000)]
    pub titles: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Zipf exponent of the titles' popularity (loadgen's default).
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Concurrent clients searching.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Time between two keystrokes of one client.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub keystroke: Duration,
    /// How long each query phase measures.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How long the saturation phase measures.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub saturation: Duration,
    /// The indexes to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "tantivy,opensearch")]
    pub engines: Vec<String>,
    #[arg(long, default_value = "http://127.0.0.1:9200")]
    pub opensearch: String,
    /// OpenSearch's pid file, for its CPU time.
    #[arg(long, default_value = ".engines/run/opensearch.pid")]
    pub opensearch_pid_file: PathBuf,
    /// Titles per write call while indexing.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
    /// The most watched titles whose popularity is pushed (the long tail has no viewers).
    #[arg(long, default_value_t = 100_000)]
    pub popular: usize,
    /// Titles created through the commands for the freshness figure.
    #[arg(long, default_value_t = 200)]
    pub freshness_samples: usize,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

const PREFIX_P95_MS: f64 = 50.0;
const PREFIX_P99_MS: f64 = 100.0;
const FULL_TEXT_P95_MS: f64 = 100.0;
const FRESHNESS_P99_MS: f64 = 2_000.0;
/// Characters typed of a title before it should be in the top 10.
const TYPED_CHARS: usize = 12;

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let zipf = ZipfCatalog::new(args.titles, args.zipf)?.with_taste(Taste::default())?;
    let catalog = Arc::new(SyntheticCatalog::new(args.seed, zipf.clone()));
    eprintln!(
        "search: {} titles (seed {}), {} clients, a keystroke every {:?}, {:?} per phase; {}",
        args.titles,
        args.seed,
        args.clients,
        args.keystroke,
        args.duration,
        machine()
    );
    let mut engines = Vec::new();
    let mut met = true;
    for engine in &args.engines {
        let work = tempfile::tempdir()?;
        // The OpenSearch index is kept apart too, to drop it once measured (or failed).
        let mut opensearch: Option<Arc<OpenSearchIndex>> = None;
        let (index, server_stat): (Arc<dyn SearchIndex>, Option<String>) = match engine.as_str() {
            "tantivy" => (
                Arc::new(TantivyIndex::open(&work.path().join("index"))?),
                None,
            ),
            "opensearch" => {
                let index = OpenSearchIndex::connect(OpenSearchOptions {
                    url: args.opensearch.clone(),
                    alias: format!("bench-titles-{}", std::process::id()),
                    request_timeout: Duration::from_secs(60),
                })
                .await
                .with_context(|| format!("OpenSearch at {}", args.opensearch))?;
                let stat = report::pid_stat_path(&args.opensearch_pid_file);
                if stat.is_none() {
                    eprintln!(
                        "search: no live pid in {}: OpenSearch's CPU not measured",
                        args.opensearch_pid_file.display()
                    );
                }
                let index = Arc::new(index);
                opensearch = Some(index.clone());
                (index, stat)
            }
            other => anyhow::bail!("--engines: `{other}` is neither tantivy nor opensearch"),
        };
        let figures = measure(
            &args,
            &catalog,
            &zipf,
            &index,
            server_stat.as_deref(),
            work.path(),
        )
        .await;
        if let Some(opensearch) = opensearch {
            if let Err(error) = opensearch.drop_all().await {
                eprintln!("search: cannot drop the benchmark's OpenSearch index: {error}");
            }
        }
        let figures = figures.with_context(|| engine.to_string())?;
        met &= figures.met;
        eprintln!("search: {engine}: {}", figures.summary);
        engines.push(json!({ "engine": engine, "figures": figures.json }));
    }
    let outcome = Outcome {
        json: json!({
            "scenario": "search",
            "titles": args.titles,
            "seed": args.seed,
            "clients": args.clients,
            "keystroke_ms": args.keystroke.as_millis() as u64,
            "duration_s": args.duration.as_secs(),
            "machine": machine(),
            "engines": engines,
            "targets": {
                "prefix_p95_ms": PREFIX_P95_MS, "prefix_p99_ms": PREFIX_P99_MS,
                "full_text_p95_ms": FULL_TEXT_P95_MS, "freshness_p99_ms": FRESHNESS_P99_MS,
            },
            "met": met,
        }),
        met,
    };
    outcome.write(args.json.as_deref())?;
    println!("{}", serde_json::to_string_pretty(&outcome.json)?);
    Ok(outcome)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let load = report::load_average().map_or("?".to_owned(), |load| format!("{load:.2}"));
    format!(
        "{cpu}, {} cores, load {load} at the start",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

struct Figures {
    json: serde_json::Value,
    summary: String,
    met: bool,
}

/// CPU seconds of this process and of the engine, between two points.
struct CpuMark {
    own: f64,
    server: Option<f64>,
}

impl CpuMark {
    fn now(server_stat: Option<&str>) -> CpuMark {
        CpuMark {
            own: report::cpu_seconds(),
            server: server_stat.and_then(report::cpu_seconds_of),
        }
    }

    /// µs of CPU per operation since `self`: (this process, the engine).
    fn per(&self, server_stat: Option<&str>, operations: u64) -> (f64, Option<f64>) {
        let now = CpuMark::now(server_stat);
        let per = |seconds: f64| seconds * 1e6 / operations.max(1) as f64;
        (
            per(now.own - self.own),
            now.server.zip(self.server).map(|(b, a)| per(b - a)),
        )
    }
}

async fn measure(
    args: &Args,
    catalog: &Arc<SyntheticCatalog>,
    zipf: &ZipfCatalog,
    index: &Arc<dyn SearchIndex>,
    server_stat: Option<&str>,
    work: &std::path::Path,
) -> anyhow::Result<Figures> {
    // 1. Indexing.
    let mut writing = Duration::ZERO;
    let cpu = CpuMark::now(server_stat);
    let mut rank = 0;
    while rank < catalog.len() {
        let end = (rank + args.batch.max(1)).min(catalog.len());
        let changes: Vec<TitleChange> = (rank..end)
            .map(|rank| TitleChange::Upsert {
                title: catalog.title(rank),
                version: 1,
            })
            .collect();
        let started = Instant::now();
        index.apply(&changes).await?;
        writing += started.elapsed();
        rank = end;
        if rank % 100_000 == 0 {
            eprintln!(
                "search: indexed {rank} titles ({:.0}/s)",
                rank as f64 / writing.as_secs_f64()
            );
        }
    }
    index.refresh().await?;
    let (index_cpu_own, index_cpu_server) = cpu.per(server_stat, catalog.len() as u64);
    let indexing_rate = catalog.len() as f64 / writing.as_secs_f64().max(1e-9);
    let popular: Vec<(u64, f32)> = (0..args.popular.min(catalog.len()))
        .map(|rank| {
            (
                ZipfCatalog::content_id(rank),
                (catalog.popularity(rank) * 1e6) as f32,
            )
        })
        .collect();
    for chunk in popular.chunks(5_000) {
        index.set_popularity(chunk).await?;
    }
    index.refresh().await?;
    let stats = index.stats().await?;
    eprintln!(
        "search: indexed {} titles at {indexing_rate:.0}/s, {:.1} MiB",
        stats.titles,
        stats.size_bytes as f64 / (1 << 20) as f64
    );

    // 2-4. Queries.
    let typing = queries(args, catalog, zipf, index, server_stat, Phase::AsYouType).await?;
    let full_text = queries(args, catalog, zipf, index, server_stat, Phase::FullText).await?;
    let saturation = queries(args, catalog, zipf, index, server_stat, Phase::Saturation).await?;

    // 5. Freshness.
    let freshness = freshness(args, index, work).await?;

    let met = typing.latency.value_at_quantile(0.95) as f64 / 1000.0 <= PREFIX_P95_MS
        && typing.latency.value_at_quantile(0.99) as f64 / 1000.0 <= PREFIX_P99_MS
        && full_text.latency.value_at_quantile(0.95) as f64 / 1000.0 <= FULL_TEXT_P95_MS
        && freshness.value_at_quantile(0.99) as f64 / 1000.0 <= FRESHNESS_P99_MS
        && typing.errors + full_text.errors == 0;
    let summary = format!(
        "indexing {indexing_rate:.0} titles/s ({index_cpu_own:.0} µs CPU here, {} µs engine, per title), {:.0} MiB; as you type p50 {:.1} p95 {:.1} p99 {:.1} ms at {:.0} q/s, found in top 10 {:.1}%; full text + facets p95 {:.1} p99 {:.1} ms; saturation {:.0} q/s; command to searchable p50 {:.0} p99 {:.0} ms",
        index_cpu_server.map_or("?".to_owned(), |cpu| format!("{cpu:.0}")),
        stats.size_bytes as f64 / (1 << 20) as f64,
        typing.latency.value_at_quantile(0.5) as f64 / 1000.0,
        typing.latency.value_at_quantile(0.95) as f64 / 1000.0,
        typing.latency.value_at_quantile(0.99) as f64 / 1000.0,
        typing.rate,
        typing.found_share() * 100.0,
        full_text.latency.value_at_quantile(0.95) as f64 / 1000.0,
        full_text.latency.value_at_quantile(0.99) as f64 / 1000.0,
        saturation.rate,
        freshness.value_at_quantile(0.5) as f64 / 1000.0,
        freshness.value_at_quantile(0.99) as f64 / 1000.0,
    );
    Ok(Figures {
        json: json!({
            "indexing": {
                "titles": stats.titles,
                "titles_per_s": indexing_rate,
                "cpu_us_per_title_bench": index_cpu_own,
                "cpu_us_per_title_engine": index_cpu_server,
                "size_bytes": stats.size_bytes,
                "popularity_pushed": popular.len(),
            },
            "as_you_type": typing.json(),
            "full_text_with_facets": full_text.json(),
            "saturation": saturation.json(),
            "command_to_searchable_ms": LatencyMs::from_micros(&freshness),
            "met": met,
        }),
        summary,
        met,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AsYouType,
    FullText,
    Saturation,
}

struct QueryFigures {
    latency: Histogram<u64>,
    queries: u64,
    errors: u64,
    rate: f64,
    /// Titles typed TYPED_CHARS characters into, and how many were in the top 10 then.
    typed: u64,
    found: u64,
    cpu_us_bench: f64,
    cpu_us_engine: Option<f64>,
    total_mean: f64,
}

impl QueryFigures {
    fn found_share(&self) -> f64 {
        self.found as f64 / self.typed.max(1) as f64
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "latency_ms": LatencyMs::from_micros(&self.latency),
            "p95_ms": self.latency.value_at_quantile(0.95) as f64 / 1000.0,
            "queries": self.queries,
            "errors": self.errors,
            "queries_per_s": self.rate,
            "found_in_top_10": self.found_share(),
            "cpu_us_per_query_bench": self.cpu_us_bench,
            "cpu_us_per_query_engine": self.cpu_us_engine,
            "mean_matches": self.total_mean,
        })
    }
}

/// The query a client sends next, and the title it is after.
fn full_text_query(title: &Title, rng: &mut Rng) -> String {
    let mut analyzer = search::query::analyzer();
    let pool: Vec<String> = [title.title.as_str(), &title.cast.join(" "), &title.synopsis]
        .iter()
        .flat_map(|text| search::query::words(&mut analyzer, text))
        .filter(|word| word.len() > 3)
        .collect();
    if pool.is_empty() {
        return format!("{} ", title.title);
    }
    let word = |rng: &mut Rng| pool[rng.below(pool.len() as u64) as usize].clone();
    let first = search::query::words(&mut analyzer, &title.title)
        .into_iter()
        .find(|word| word.len() > 3)
        .unwrap_or_else(|| word(rng));
    format!("{first} {} ", word(rng))
}

async fn queries(
    args: &Args,
    catalog: &Arc<SyntheticCatalog>,
    zipf: &ZipfCatalog,
    index: &Arc<dyn SearchIndex>,
    server_stat: Option<&str>,
    phase: Phase,
) -> anyhow::Result<QueryFigures> {
    let duration = if phase == Phase::Saturation {
        args.saturation
    } else {
        args.duration
    };
    let pause = if phase == Phase::Saturation {
        Duration::ZERO
    } else {
        args.keystroke
    };
    let started = Instant::now();
    let deadline = started + duration;
    let cpu = CpuMark::now(server_stat);
    let matches = Arc::new(AtomicU64::new(0));
    let today = platform::domain::today();
    let mut clients = Vec::new();
    for client in 0..args.clients {
        let (catalog, zipf, index, matches) = (
            catalog.clone(),
            zipf.clone(),
            index.clone(),
            matches.clone(),
        );
        let seed = args.seed ^ ((phase as u64 + 1) << 40);
        clients.push(tokio::spawn(async move {
            let mut rng = Rng::for_stream(seed, client as u64);
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut queries, mut errors, mut typed, mut found) = (0u64, 0u64, 0u64, 0u64);
            // Clients start spread over one keystroke, not all at once.
            let mut due = Instant::now() + pause.mul_f64(rng.unit());
            'typing: while Instant::now() < deadline {
                let rank = zipf.sample_rank(&mut rng);
                let title = catalog.title(rank);
                let typed_queries: Vec<(String, bool)> = match phase {
                    Phase::FullText => vec![(full_text_query(&title, &mut rng), false)],
                    _ => {
                        let chars: Vec<char> = title.title.chars().collect();
                        (1..=chars.len().min(TYPED_CHARS))
                            .map(|end| {
                                (
                                    chars[..end].iter().collect(),
                                    end == chars.len().min(TYPED_CHARS),
                                )
                            })
                            .collect()
                    }
                };
                for (q, last) in typed_queries {
                    if pause > Duration::ZERO {
                        tokio::time::sleep_until(due.into()).await;
                    } else {
                        due = Instant::now();
                    }
                    if Instant::now() >= deadline {
                        break 'typing;
                    }
                    let request = SearchRequest {
                        q,
                        filters: Filters {
                            country: (phase == Phase::FullText && rng.below(4) == 0)
                                .then(|| CountryCode::parse("US"))
                                .flatten(),
                            ..Filters::default()
                        },
                        limit: 10,
                        after: None,
                        facets: phase == Phase::FullText,
                        today,
                    };
                    match index.search(&request).await {
                        Ok(answer) => {
                            matches.fetch_add(answer.total, Ordering::Relaxed);
                            if last {
                                typed += 1;
                                found +=
                                    u64::from(answer.hits.iter().any(|hit| hit.id == title.id));
                            }
                        }
                        Err(_) => errors += 1,
                    }
                    let micros = due.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                    latency.record(micros)?;
                    queries += 1;
                    due += pause;
                }
            }
            anyhow::Ok((latency, queries, errors, typed, found))
        }));
    }
    let mut figures = QueryFigures {
        latency: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
        queries: 0,
        errors: 0,
        rate: 0.0,
        typed: 0,
        found: 0,
        cpu_us_bench: 0.0,
        cpu_us_engine: None,
        total_mean: 0.0,
    };
    for client in clients {
        let (latency, queries, errors, typed, found) = client.await??;
        figures.latency.add(&latency)?;
        figures.queries += queries;
        figures.errors += errors;
        figures.typed += typed;
        figures.found += found;
    }
    let elapsed = started.elapsed().as_secs_f64();
    figures.rate = figures.queries as f64 / elapsed;
    let (own, engine) = cpu.per(server_stat, figures.queries);
    figures.cpu_us_bench = own;
    figures.cpu_us_engine = engine;
    figures.total_mean = matches.load(Ordering::Relaxed) as f64 / figures.queries.max(1) as f64;
    eprintln!(
        "search: {phase:?}: {} queries ({:.0}/s), {} errors, p50 {:.1} p95 {:.1} p99 {:.1} ms",
        figures.queries,
        figures.rate,
        figures.errors,
        figures.latency.value_at_quantile(0.5) as f64 / 1000.0,
        figures.latency.value_at_quantile(0.95) as f64 / 1000.0,
        figures.latency.value_at_quantile(0.99) as f64 / 1000.0,
    );
    Ok(figures)
}

/// Titles created through the catalog's commands until a search finds them, 10 a second.
async fn freshness(
    args: &Args,
    index: &Arc<dyn SearchIndex>,
    work: &std::path::Path,
) -> anyhow::Result<Histogram<u64>> {
    let store: Arc<dyn platform::store::CommandStore> =
        Arc::new(platform::store::SqliteStore::open(&work.join("commands.sqlite")).await?);
    let read_model: Arc<dyn platform::readmodel::ReadModel> =
        Arc::new(platform::readmodel::LocalReadModel::open(&work.join("read_model.sqlite")).await?);
    let catalog = Catalog::new(store.clone(), read_model, index.clone());
    let feed = Arc::new(CatalogFeed::new(
        store,
        Arc::new(SearchProjector {
            name: "bench".to_owned(),
            index: index.clone(),
        }),
        FeedOptions::default(),
        catalog.commits(),
    ));
    let task = feed.clone().spawn();
    let mut pollers = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(100));
    for sample in 0..args.freshness_samples {
        every.tick().await;
        let catalog = catalog.clone();
        // Ids above the synthetic catalog's, and a word no other title has.
        let id = 900_000_000 + sample as u64;
        let word = format!("freshness{}x{sample}", std::process::id());
        pollers.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut title = platform_title(id, &word);
            title.id = id;
            catalog.create(Some(id), &title).await?;
            let request = SearchRequest {
                q: format!("{word} "),
                filters: Filters::default(),
                limit: 1,
                after: None,
                facets: false,
                today: platform::domain::today(),
            };
            let deadline = started + Duration::from_secs(30);
            loop {
                if let Ok(answer) = catalog.search(&request).await {
                    if answer.hits.iter().any(|hit| hit.id == id) {
                        return anyhow::Ok(started.elapsed());
                    }
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "title {id} not searchable after 30 s"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for poller in pollers {
        histogram.record(poller.await??.as_micros().clamp(1, 60_000_000) as u64)?;
    }
    task.stop().await;
    eprintln!(
        "search: command to searchable p50 {:.0} p99 {:.0} ms",
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0
    );
    Ok(histogram)
}

fn platform_title(id: u64, word: &str) -> Title {
    Title {
        id,
        title: format!("The {word} Story"),
        original_title: None,
        synopsis: "A title created to time how soon search finds it.".to_owned(),
        genres: vec!["documentary".to_owned()],
        year: 2026,
        runtime_minutes: 90,
        maturity: "PG".to_owned(),
        cast: vec![],
        crew: vec![],
        audio_languages: vec!["en".to_owned()],
        subtitle_languages: vec![],
        availability: vec![],
    }
}
