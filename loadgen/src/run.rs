//! Running phases of load: one worker task per connection, each owning its share of the
//! audience, its schedule, its buffers and its measurements.
//!
//! A worker prepares its next request (draws the events, encodes and compresses the body) while
//! it waits for the send time, so the generator's own work stays out of the measured latency
//! unless the generator falls behind, and then the send is counted as late
//! ([`crate::schedule::Lateness`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use wire::PlaybackEvent;

use crate::acked::{AckedEvent, AckedLogError, AckedLogWriter};
use crate::cassandra::CassandraWriter;
use crate::cpu::process_cpu_time;
use crate::http::{compress, BodyWriter, Compression, HttpError};
use crate::ramp::{judge_step, saturation_point, RampReport, StepMeasurement, KEEP_UP_FRACTION};
use crate::report::{Report, ReportError, RunFacts};
use crate::schedule::{classify_send, Lateness, OpenSchedule};
use crate::settings::{LoadShape, RunSettings, TargetSettings};
use crate::stats::{progress, HistogramError, Sample};
use crate::target::{Payload, Target};
use crate::truth::{accepted_flags, Truth, TruthError, TruthEvent, TruthFile};
use crate::workload::clock::{simulated_span, TimeAxis, ASSUMED_MAX_EVENTS_PER_SEC};
use crate::workload::{Audience, EventDraft, KindCounts, WorkloadError, ZipfCatalog};

/// Why a run stopped before its end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Building or encoding requests failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The acknowledged-events log failed.
    #[error(transparent)]
    AckedLog(#[from] AckedLogError),
    /// Merging measurements failed.
    #[error(transparent)]
    Histogram(#[from] HistogramError),
    /// A worker task panicked or was cancelled.
    #[error("a worker task failed: {0}")]
    Worker(String),
    /// The workload cannot be built.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// The report cannot be built.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Cassandra cannot be reached, or its schema applied.
    #[error(transparent)]
    Cassandra(#[from] event_cql::CassandraError),
    /// The truth file (`--truth`) cannot be written.
    #[error(transparent)]
    Truth(#[from] TruthError),
}

/// Runs the load the settings describe, phase by phase, and reports it.
/// `events_per_viewer_per_sec` is the model's rate (see [`crate::workload::events_per_viewer_per_sec`]).
pub async fn run_load(
    settings: &RunSettings,
    events_per_viewer_per_sec: f64,
    planned_time_compression: Option<f64>,
    show_progress: bool,
) -> Result<Report, RunError> {
    let catalog = Arc::new(settings.workload.catalog()?);
    let span = simulated_span(
        settings.planned_events(ASSUMED_MAX_EVENTS_PER_SEC),
        settings.workload.viewers,
        events_per_viewer_per_sec,
    );
    let started_at_ms = wall_clock_ms();
    let axis = TimeAxis::ending_at(started_at_ms, span);
    let target = connect(settings, show_progress).await?;
    let mut runner = Runner::new(settings, target, catalog, axis, show_progress)?;
    // Ctrl-C ends the run early; what was measured so far is still reported.
    let interrupted = runner.stop_flag();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: finishing the requests in flight");
            interrupted.store(true, Ordering::Relaxed);
        }
    });

    let ramp_slo = match &settings.load {
        LoadShape::Ramp { .. } => settings.slo_p99_ms,
        _ => None,
    };
    let stop_at_first_failure = matches!(settings.load, LoadShape::Ramp { steps: None, .. });
    let mut phases = Vec::new();
    let mut steps = Vec::new();
    for step in 0..settings.load.max_steps() {
        let rate = settings.load.rate_of_step(step);
        let label = match (ramp_slo, rate) {
            (Some(_), Some(rate)) => format!("step {} at {:.0} ev/s: ", step + 1, rate),
            _ => String::new(),
        };
        let plan = PhasePlan {
            label,
            rate,
            duration: settings.phase_duration(),
        };
        let result = runner.run_phase(&plan).await?;
        if let (Some(slo), Some(rate)) = (ramp_slo, rate) {
            let counters = &result.sample.counters;
            let judged = judge_step(
                StepMeasurement {
                    target_events_per_sec: rate,
                    achieved_events_per_sec: result.acked_events_per_sec(),
                    latency_ms: result.sample.latency.summary(),
                    errors: counters.error_count(),
                    missed_sends: counters.missed.total(),
                    generator_late: counters.missed.generator_late,
                    requests_sent: counters.requests_sent,
                },
                slo,
            );
            if show_progress {
                eprintln!(
                    "step {} at {:.0} events/s: {}",
                    step + 1,
                    rate,
                    judged.failed_because.as_deref().unwrap_or("passed")
                );
            }
            let failed = !judged.passed;
            steps.push(judged);
            phases.push(result);
            if failed && stop_at_first_failure {
                break;
            }
        } else {
            phases.push(result);
        }
        if runner.stopped() {
            break;
        }
    }
    watcher.abort();
    let ramp = ramp_slo.map(|slo| RampReport {
        slo_p99_ms: slo,
        keep_up_fraction: KEEP_UP_FRACTION,
        saturation_events_per_sec: saturation_point(&steps),
        steps,
    });
    let kinds = runner.kinds();
    let simulated = runner.simulated();
    let Finished {
        acked_log_events,
        truth,
    } = runner.finish()?;
    Ok(Report::build(RunFacts {
        settings,
        started_at_ms,
        phases: &phases,
        ramp,
        kinds,
        simulated,
        events_per_viewer_per_sec,
        planned_time_compression,
        ts_origin_ms: axis.origin_ms(),
        acked_log_events,
        truth,
    })?)
}

/// The target of `settings`, connected (for Cassandra: the schema applied).
pub async fn connect(settings: &RunSettings, show_progress: bool) -> Result<Target, RunError> {
    if let Some(http) = Target::http(&settings.target, settings.connections, settings.timeout)? {
        return Ok(http);
    }
    let TargetSettings::Cassandra(cassandra) = &settings.target else {
        unreachable!("every target but Cassandra is HTTP");
    };
    let (writer, schema_steps) = CassandraWriter::connect(cassandra, settings.timeout).await?;
    if show_progress {
        for step in schema_steps {
            eprintln!("schema: {step}");
        }
    }
    Ok(Target::Cassandra(Arc::new(writer)))
}

/// One stretch of load at one rate.
#[derive(Debug, Clone, PartialEq)]
pub struct PhasePlan {
    /// Shown in progress lines ("" for a single-phase run).
    pub label: String,
    /// Events per second; None for closed loop.
    pub rate: Option<f64>,
    pub duration: Duration,
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub plan: PhasePlan,
    /// From the phase's start to its last answer.
    pub wall: Duration,
    pub sample: Sample,
    pub cpu: Duration,
}

impl PhaseResult {
    pub fn acked_events_per_sec(&self) -> f64 {
        self.sample.counters.events_acked as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// What a run leaves behind besides its measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Finished {
    /// Events in the acknowledged-events log (`--acked-log`).
    pub acked_log_events: Option<u64>,
    /// What the truth file (`--truth`) holds.
    pub truth: Option<TruthWritten>,
}

/// What the truth file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruthWritten {
    pub events: u64,
    pub minutes: u64,
}

/// The generator: workers, the client they share, the acknowledged-events log and the truth.
pub struct Runner {
    /// Taken by the tasks of a phase and given back at its end.
    workers: Vec<Worker>,
    target: Target,
    acked_log: Option<AckedLogWriter>,
    /// Created when the run starts, written when it ends (`--truth`).
    truth_file: Option<TruthFile>,
    axis: TimeAxis,
    batch: usize,
    miss_slack: Duration,
    show_progress: bool,
    /// Set to end the run early (Ctrl-C): workers stop sending at their next turn.
    stop: Arc<AtomicBool>,
}

impl Runner {
    pub fn new(
        settings: &RunSettings,
        target: Target,
        catalog: Arc<ZipfCatalog>,
        axis: TimeAxis,
        show_progress: bool,
    ) -> Result<Runner, RunError> {
        let shares = settings.connections as u64;
        // Before anything is sent: a truth file that cannot be created fails the run at once.
        let truth_file = settings
            .truth
            .as_deref()
            .map(TruthFile::create)
            .transpose()?;
        let workers = (0..settings.connections)
            .map(|index| Worker {
                index,
                audience: Audience::share(
                    &settings.workload,
                    catalog.clone(),
                    index as u64,
                    shares,
                ),
                ids: Vec::new(),
                sent: Vec::new(),
                truth: truth_file.as_ref().map(|_| Truth::new()),
                raw: Vec::new(),
            })
            .collect();
        let acked_log = settings
            .acked_log
            .as_deref()
            .map(AckedLogWriter::create)
            .transpose()?;
        Ok(Runner {
            workers,
            target,
            acked_log,
            truth_file,
            axis,
            batch: settings.batch,
            miss_slack: settings.miss_slack,
            show_progress,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    pub async fn run_phase(&mut self, plan: &PhasePlan) -> Result<PhaseResult, RunError> {
        let (samples, received) = unbounded_channel();
        let printer = tokio::spawn(progress::print_progress(
            received,
            plan.label.clone(),
            self.show_progress,
        ));
        let cpu_before = process_cpu_time().unwrap_or_default();
        let start = Instant::now() + Duration::from_millis(5);
        let context = Arc::new(PhaseContext {
            target: self.target.clone(),
            start,
            end: start + plan.duration,
            wall_start_ms: wall_clock_ms() + 5,
            rate: plan.rate,
            batch: self.batch,
            workers: self.workers.len(),
            miss_slack: self.miss_slack,
            axis: self.axis,
            acked: self.acked_log.as_ref().map(AckedLogWriter::sender),
            truth: self.truth_file.is_some(),
            stop: self.stop.clone(),
        });
        let tasks: Vec<_> = std::mem::take(&mut self.workers)
            .into_iter()
            .map(|worker| tokio::spawn(worker.run_phase(context.clone(), samples.clone())))
            .collect();
        drop(samples);
        drop(context);

        let mut total = Sample::default();
        let mut first_error = None;
        for task in tasks {
            match task.await {
                Ok((worker, outcome)) => {
                    self.workers.push(worker);
                    match outcome {
                        Ok(sample) => total.merge(&sample)?,
                        Err(error) => first_error = first_error.or(Some(error)),
                    }
                }
                Err(error) => {
                    first_error = first_error.or(Some(RunError::Worker(error.to_string())))
                }
            }
        }
        let wall = start.elapsed();
        let _ = printer.await;
        if let Some(error) = first_error {
            return Err(error);
        }
        self.workers.sort_by_key(|worker| worker.index);
        Ok(PhaseResult {
            plan: plan.clone(),
            wall,
            sample: total,
            cpu: process_cpu_time()
                .unwrap_or_default()
                .saturating_sub(cpu_before),
        })
    }

    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Events generated so far, by kind.
    pub fn kinds(&self) -> KindCounts {
        let mut kinds = KindCounts::default();
        for worker in &self.workers {
            kinds.merge(worker.audience.kinds());
        }
        kinds
    }

    /// How far the audience's simulated time has gone.
    pub fn simulated(&self) -> Duration {
        let furthest = self
            .workers
            .iter()
            .map(|worker| worker.audience.simulated_ms())
            .max()
            .unwrap_or(0);
        Duration::from_millis(furthest)
    }

    /// Flushes the acknowledged-events log and writes the truth file (the workers' truths
    /// merged); says what they hold.
    pub fn finish(self) -> Result<Finished, RunError> {
        let acked_log_events = self.acked_log.map(AckedLogWriter::finish).transpose()?;
        let truth = match self.truth_file {
            Some(file) => {
                let mut truth = Truth::new();
                for worker in self.workers {
                    if let Some(theirs) = worker.truth {
                        truth.merge(theirs);
                    }
                }
                let minutes = file.write(&truth)? as u64;
                Some(TruthWritten {
                    events: truth.events(),
                    minutes,
                })
            }
            None => None,
        };
        Ok(Finished {
            acked_log_events,
            truth,
        })
    }
}

/// What every worker of a phase shares (read only).
struct PhaseContext {
    target: Target,
    start: Instant,
    end: Instant,
    /// The wall clock at `start`, epoch ms.
    wall_start_ms: i64,
    rate: Option<f64>,
    batch: usize,
    workers: usize,
    miss_slack: Duration,
    axis: TimeAxis,
    acked: Option<mpsc::Sender<Vec<AckedEvent>>>,
    /// Whether workers add up the truth (`--truth`).
    truth: bool,
    stop: Arc<AtomicBool>,
}

impl PhaseContext {
    fn wall_ms_at(&self, instant: Instant) -> i64 {
        let since_start = instant.saturating_duration_since(self.start).as_millis() as i64;
        self.wall_start_ms + since_start
    }
}

struct Worker {
    index: usize,
    audience: Audience,
    /// The ids of the request in flight, for the acknowledged-events log.
    ids: Vec<AckedEvent>,
    /// The QoE fields of the request in flight, for the truth.
    sent: Vec<TruthEvent>,
    /// What this worker's acknowledged events add up to (`--truth`).
    truth: Option<Truth>,
    raw: Vec<u8>,
}

/// A worker's measurements: the current second's, and the phase's so far.
#[derive(Default)]
struct Measurements {
    interval: Sample,
    total: Sample,
}

impl Measurements {
    fn flush(&mut self, samples: &UnboundedSender<Sample>) -> Result<(), HistogramError> {
        if self.interval.is_empty() {
            return Ok(());
        }
        let interval = std::mem::take(&mut self.interval);
        self.total.merge(&interval)?;
        // The printer may be gone at the very end; the totals do not depend on it.
        let _ = samples.send(interval);
        Ok(())
    }
}

impl Worker {
    async fn run_phase(
        mut self,
        context: Arc<PhaseContext>,
        samples: UnboundedSender<Sample>,
    ) -> (Worker, Result<Sample, RunError>) {
        let outcome = self.send_until_the_end(&context, &samples).await;
        (self, outcome)
    }

    async fn send_until_the_end(
        &mut self,
        context: &PhaseContext,
        samples: &UnboundedSender<Sample>,
    ) -> Result<Sample, RunError> {
        let mut schedule = context.rate.map(|rate| {
            OpenSchedule::for_worker(
                context.start,
                rate,
                context.batch,
                self.index,
                context.workers,
            )
        });
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut measured = Measurements::default();
        let mut connection_free_at = context.start;
        tokio::time::sleep_until(context.start).await;

        loop {
            let now = Instant::now();
            let intended = match &schedule {
                Some(schedule) => schedule.next_send(),
                None => now,
            };
            if intended >= context.end || context.stop.load(Ordering::Relaxed) {
                break;
            }
            if now >= context.end {
                // Behind schedule when the phase ended: these sends never left.
                if let Some(schedule) = &schedule {
                    measured.interval.counters.missed.unsent +=
                        schedule.remaining_before(context.end);
                }
                break;
            }

            let sent_at_ms = context.wall_ms_at(intended.max(now));
            let body = self.prepare(context, sent_at_ms, &mut measured.interval)?;
            measured.interval.counters.preparing += now.elapsed();
            if schedule.is_some() {
                with_samples(
                    tokio::time::sleep_until(intended),
                    &mut ticker,
                    &mut measured,
                    samples,
                )
                .await?;
            }

            let started = Instant::now();
            if schedule.is_some() {
                let missed = &mut measured.interval.counters.missed;
                match classify_send(intended, started, connection_free_at, context.miss_slack) {
                    Lateness::OnTime => {}
                    Lateness::GeneratorLate => missed.generator_late += 1,
                    Lateness::ConnectionBusy => missed.connection_busy += 1,
                }
            }
            let counters = &mut measured.interval.counters;
            counters.requests_sent += 1;
            counters.events_sent += context.batch as u64;
            let answer = with_samples(
                context.target.send(body),
                &mut ticker,
                &mut measured,
                samples,
            )
            .await?;
            let answered = Instant::now();
            connection_free_at = answered;
            let interval = &mut measured.interval;
            interval.counters.awaiting += answered - started;
            match answer {
                Ok(ack) => {
                    // Open loop: from the intended send time, whatever delayed the send.
                    let latency_from = if schedule.is_some() {
                        intended
                    } else {
                        started
                    };
                    interval.latency.record(answered - latency_from);
                    let counters = &mut interval.counters;
                    counters.requests_acked += 1;
                    let rejected = ack.rejected.len();
                    counters.events_acked += ack.accepted as u64;
                    if rejected > 0 {
                        counters.events_rejected += rejected as u64;
                        counters.error("rejected_events", rejected as u64);
                    }
                    if ack.accepted + rejected != context.batch {
                        counters.error("ack_count_mismatch", 1);
                    }
                    if context.acked.is_some() || context.truth {
                        let drawn = self.ids.len().max(self.sent.len());
                        let accepted = accepted_flags(drawn, &ack.rejected);
                        if let Some(log) = &context.acked {
                            let ids = self.accepted_ids(accepted.as_deref());
                            if log.send(ids).is_err() {
                                return Err(AckedLogError::WriterGone.into());
                            }
                        }
                        self.record_truth(accepted.as_deref());
                    }
                }
                Err(failure) => interval.counters.error(&failure.label(), 1),
            }
            if let Some(schedule) = &mut schedule {
                schedule.advance();
            }
        }
        measured.flush(samples)?;
        Ok(measured.total)
    }

    /// Draws the next batch and prepares it for the target (for HTTP: encodes and compresses
    /// the request body).
    fn prepare(
        &mut self,
        context: &PhaseContext,
        sent_at_ms: i64,
        interval: &mut Sample,
    ) -> Result<Payload, RunError> {
        let batch = context.batch;
        self.ids.clear();
        self.sent.clear();
        match &context.target {
            Target::Http {
                format,
                compression,
                ..
            } => {
                let mut raw = std::mem::take(&mut self.raw);
                let mut body = BodyWriter::new(&mut raw, *format);
                for _ in 0..batch {
                    let (draft, ts) = self.draw(context, sent_at_ms, interval);
                    body.push(&draft, ts, Some(sent_at_ms));
                }
                body.finish();
                self.raw = raw;
                let counters = &mut interval.counters;
                counters.raw_bytes += self.raw.len() as u64;
                let body = match compression {
                    // Hand the buffer over instead of copying it; the next one starts at the
                    // same size.
                    Compression::None => {
                        let capacity = self.raw.len();
                        std::mem::replace(&mut self.raw, Vec::with_capacity(capacity))
                    }
                    compression => compress(&self.raw, *compression)?,
                };
                counters.body_bytes += body.len() as u64;
                Ok(Payload::Body(body))
            }
            Target::Cassandra(_) => {
                // The writer stands in for the server: it "receives" the events when it sends.
                let events: Vec<PlaybackEvent> = (0..batch)
                    .map(|_| {
                        let (draft, ts) = self.draw(context, sent_at_ms, interval);
                        draft.to_playback(ts, Some(sent_at_ms), sent_at_ms)
                    })
                    .collect();
                Ok(Payload::Events(events))
            }
        }
    }

    /// The next event of this worker's audience and its `ts` on the wall clock (never after
    /// the send); its ids are kept for the acknowledged-events log.
    fn draw(
        &mut self,
        context: &PhaseContext,
        sent_at_ms: i64,
        interval: &mut Sample,
    ) -> (EventDraft, i64) {
        let draft = self
            .audience
            .next_event()
            .expect("settings give every worker at least one viewer");
        let mut ts = context.axis.ts(draft.at_ms);
        if ts > sent_at_ms {
            ts = sent_at_ms;
            interval.counters.ts_clamped += 1;
        }
        if context.acked.is_some() {
            self.ids.push(AckedEvent {
                event_id: draft.event_id,
                user_id: draft.user_id,
                ts,
            });
        }
        if context.truth {
            self.sent.push(TruthEvent::of(&draft, ts));
        }
        (draft, ts)
    }

    /// The ids of the request just answered, without the ones the server rejected (`accepted`:
    /// one flag per event, None when all were).
    fn accepted_ids(&mut self, accepted: Option<&[bool]>) -> Vec<AckedEvent> {
        let Some(accepted) = accepted else {
            return std::mem::take(&mut self.ids);
        };
        self.ids
            .drain(..)
            .zip(accepted)
            .filter_map(|(id, accepted)| accepted.then_some(id))
            .collect()
    }

    /// Adds the events of the request just answered that the server accepted to the truth.
    fn record_truth(&mut self, accepted: Option<&[bool]>) {
        let Some(truth) = &mut self.truth else {
            return;
        };
        for (index, event) in self.sent.drain(..).enumerate() {
            if accepted.is_none_or(|flags| flags.get(index).copied().unwrap_or(true)) {
                truth.record_event(&event);
            }
        }
    }
}

/// Awaits `future`, handing in a sample every second meanwhile.
async fn with_samples<F: Future>(
    future: F,
    ticker: &mut Interval,
    measured: &mut Measurements,
    samples: &UnboundedSender<Sample>,
) -> Result<F::Output, HistogramError> {
    tokio::pin!(future);
    loop {
        tokio::select! {
            biased;
            output = &mut future => return Ok(output),
            _ = ticker.tick() => measured.flush(samples)?,
        }
    }
}

/// The wall clock, epoch ms.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
