//! The audience: viewers in playback sessions over a Zipf catalog, on a device mix, producing
//! events in simulated time; deterministic for a seed.
//!
//! Each viewer has its own random stream, derived from the run's seed and the viewer's number, so
//! a viewer's events do not depend on how the audience is split among connections. A worker owns
//! a share of the audience and takes its events in simulated-time order ([`Audience`]); how
//! simulated time maps onto the wall clock is [`clock`]'s business.

pub mod catalog;
pub mod clock;
pub mod devices;
pub mod rng;
pub mod session;
pub mod zipf;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::{CountryCode, EventKind, PlaybackEvent, SmolStr, WireEvent};

pub use session::{EventDraft, PlayerState, Viewer};
pub use zipf::{Taste, ZipfCatalog};

/// Why a workload cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// The catalog is empty or too large for the popularity table.
    #[error("--catalog must be between 1 and {max} titles, got {titles}")]
    CatalogSize { titles: usize, max: usize },
    /// The Zipf exponent is negative or not a number.
    #[error("--zipf-s must be a finite number >= 0, got {0}")]
    ZipfExponent(f64),
    /// The heartbeat interval is zero or absurd.
    #[error("--heartbeat must be between 1 ms and 1 h, got {0:?}")]
    Heartbeat(Duration),
    /// No viewers.
    #[error("--viewers must be at least 1")]
    NoViewers,
    /// Taste segments that cannot be built.
    #[error("{0}")]
    Taste(String),
}

/// What the audience looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub viewers: u64,
    #[serde(with = "duration_ms")]
    pub heartbeat: Duration,
    pub catalog_titles: usize,
    pub zipf_exponent: f64,
    /// Absent from reports written before viewers had taste: none.
    #[serde(default = "no_taste")]
    pub taste: Taste,
}

fn no_taste() -> Taste {
    Taste::NONE
}

impl WorkloadConfig {
    pub fn validate(&self) -> Result<(), WorkloadError> {
        if self.heartbeat.is_zero() || self.heartbeat > Duration::from_secs(3600) {
            return Err(WorkloadError::Heartbeat(self.heartbeat));
        }
        if self.viewers == 0 {
            return Err(WorkloadError::NoViewers);
        }
        self.taste.validate()
    }

    pub fn heartbeat_ms(&self) -> u64 {
        self.heartbeat.as_millis().max(1) as u64
    }

    pub fn catalog(&self) -> Result<ZipfCatalog, WorkloadError> {
        ZipfCatalog::new(self.catalog_titles, self.zipf_exponent)?.with_taste(self.taste)
    }
}

/// Counts of generated events by kind, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts([u64; EventKind::ALL.len()]);

impl KindCounts {
    pub fn add(&mut self, kind: EventKind) {
        self.0[kind.code() as usize] += 1;
    }

    pub fn merge(&mut self, other: &KindCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    pub fn get(&self, kind: EventKind) -> u64 {
        self.0[kind.code() as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn by_name(&self) -> std::collections::BTreeMap<String, u64> {
        EventKind::ALL
            .into_iter()
            .map(|kind| (kind.as_str().to_owned(), self.get(kind)))
            .collect()
    }
}

/// A share of the audience, giving its events in simulated-time order.
#[derive(Debug)]
pub struct Audience {
    viewers: Vec<Viewer>,
    /// (next event time, slot in `viewers`): ties go to the lower slot, so the order is fixed.
    queue: BinaryHeap<Reverse<(u64, u32)>>,
    catalog: Arc<ZipfCatalog>,
    kinds: KindCounts,
    simulated_ms: u64,
}

impl Audience {
    /// The viewers numbered `share, share + shares, share + 2 * shares, ...` below
    /// `config.viewers`.
    pub fn share(
        config: &WorkloadConfig,
        catalog: Arc<ZipfCatalog>,
        share: u64,
        shares: u64,
    ) -> Audience {
        debug_assert!(share < shares);
        let heartbeat_ms = config.heartbeat_ms();
        let viewers: Vec<Viewer> = (share..config.viewers)
            .step_by(shares as usize)
            .map(|index| Viewer::new(config.seed, index, heartbeat_ms, &catalog))
            .collect();
        let queue = viewers
            .iter()
            .enumerate()
            .map(|(slot, viewer)| Reverse((viewer.next_at_ms(), slot as u32)))
            .collect();
        Audience {
            viewers,
            queue,
            catalog,
            kinds: KindCounts::default(),
            simulated_ms: 0,
        }
    }

    /// The whole audience as one share.
    pub fn whole(config: &WorkloadConfig, catalog: Arc<ZipfCatalog>) -> Audience {
        Audience::share(config, catalog, 0, 1)
    }

    pub fn viewers(&self) -> usize {
        self.viewers.len()
    }

    /// The next event of any viewer in this share; `None` only for an empty share.
    pub fn next_event(&mut self) -> Option<EventDraft> {
        // Replace the top in place: one sift instead of a pop and a push.
        let mut top = self.queue.peek_mut()?;
        let Reverse((_, slot)) = *top;
        let viewer = &mut self.viewers[slot as usize];
        let draft = viewer.step(&self.catalog);
        *top = Reverse((viewer.next_at_ms(), slot));
        drop(top);
        self.kinds.add(draft.kind);
        self.simulated_ms = draft.at_ms;
        Some(draft)
    }

    /// How far simulated time has gone: the time of the latest event.
    pub fn simulated_ms(&self) -> u64 {
        self.simulated_ms
    }

    pub fn kinds(&self) -> &KindCounts {
        &self.kinds
    }
}

/// Events per viewer per second of viewing, measured on a sample of this workload's audience
/// over an hour of simulated time (the rate is a property of the model, not of the audience's
/// size). Used to size the audience and to report what 1 M events/s means in viewers.
pub fn events_per_viewer_per_sec(config: &WorkloadConfig) -> Result<f64, WorkloadError> {
    const SAMPLE_VIEWERS: u64 = 200;
    const SAMPLE_SPAN_MS: u64 = 3_600_000;
    let sample = WorkloadConfig {
        viewers: SAMPLE_VIEWERS,
        ..config.clone()
    };
    let mut audience = Audience::whole(&sample, Arc::new(config.catalog()?));
    let mut events = 0u64;
    while let Some(event) = audience.next_event() {
        if event.at_ms > SAMPLE_SPAN_MS {
            break;
        }
        events += 1;
    }
    Ok(events as f64 / (SAMPLE_VIEWERS as f64 * SAMPLE_SPAN_MS as f64 / 1000.0))
}

impl EventDraft {
    /// Appends this event as JSON to `out`: the bytes serde_json writes for
    /// [`EventDraft::to_wire`], with no wire event in between and no allocation (tested equal).
    /// This is most of what the generator spends per event.
    pub fn write_json(&self, out: &mut Vec<u8>, ts: i64, sent_at: Option<i64>) {
        let mut uuid_text = uuid::Uuid::encode_buffer();
        let mut number = itoa::Buffer::new();
        out.extend_from_slice(b"{\"event_id\":\"");
        out.extend_from_slice(
            self.event_id
                .hyphenated()
                .encode_lower(&mut uuid_text)
                .as_bytes(),
        );
        out.extend_from_slice(b"\",\"session_id\":\"");
        out.extend_from_slice(
            self.session_id
                .hyphenated()
                .encode_lower(&mut uuid_text)
                .as_bytes(),
        );
        out.extend_from_slice(b"\",\"user_id\":");
        out.extend_from_slice(number.format(self.user_id).as_bytes());
        out.extend_from_slice(b",\"content_id\":");
        out.extend_from_slice(number.format(self.content_id).as_bytes());
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"ts\":");
        out.extend_from_slice(number.format(ts).as_bytes());
        if let Some(sent_at) = sent_at {
            out.extend_from_slice(b",\"sent_at\":");
            out.extend_from_slice(number.format(sent_at).as_bytes());
        }
        out.extend_from_slice(b",\"position_ms\":");
        out.extend_from_slice(number.format(self.position_ms).as_bytes());
        let mut optional_number = |name: &[u8], value: Option<u64>| {
            if let Some(value) = value {
                out.extend_from_slice(name);
                out.extend_from_slice(number.format(value).as_bytes());
            }
        };
        optional_number(b",\"duration_ms\":", self.duration_ms);
        optional_number(b",\"bitrate_kbps\":", self.bitrate_kbps.map(u64::from));
        optional_number(b",\"buffer_ms\":", self.buffer_ms.map(u64::from));
        optional_number(b",\"played_ms\":", self.played_ms.map(u64::from));
        optional_number(b",\"startup_ms\":", self.startup_ms.map(u64::from));
        for (name, flag) in [
            (&b",\"before_start\":"[..], self.before_start),
            (&b",\"fatal\":"[..], self.fatal),
        ] {
            if let Some(flag) = flag {
                out.extend_from_slice(name);
                out.extend_from_slice(if flag { b"true" } else { b"false" });
            }
        }
        if let Some(code) = self.error_code {
            write_text(out, b",\"error_code\":", code);
        }
        write_text(out, b",\"device\":", self.device);
        write_text(out, b",\"cdn\":", self.cdn);
        write_text(out, b",\"app_version\":", self.app_version);
        write_text(out, b",\"country\":", self.country);
        out.push(b'}');
    }

    /// This event as the service stores it, for writers that skip the service (`loadgen
    /// cassandra`): the same values the service would make of [`EventDraft::write_json`]'s.
    pub fn to_playback(&self, ts: i64, sent_at: Option<i64>, received_at: i64) -> PlaybackEvent {
        PlaybackEvent {
            event_id: self.event_id,
            session_id: self.session_id,
            user_id: self.user_id,
            content_id: self.content_id,
            kind: self.kind,
            ts,
            sent_at,
            received_at,
            position_ms: self.position_ms,
            duration_ms: self.duration_ms,
            bitrate_kbps: self.bitrate_kbps,
            buffer_ms: self.buffer_ms,
            played_ms: self.played_ms,
            startup_ms: self.startup_ms,
            before_start: self.before_start,
            fatal: self.fatal,
            error_code: self.error_code.map(SmolStr::new_static),
            device: Some(SmolStr::new_static(self.device)),
            cdn: Some(SmolStr::new_static(self.cdn)),
            app_version: Some(SmolStr::new_static(self.app_version)),
            country: CountryCode::parse(self.country),
        }
    }

    /// This event as a wire event (for tests and tools; bodies are written by
    /// [`EventDraft::write_json`]).
    pub fn to_wire(&self, ts: i64, sent_at: Option<i64>) -> WireEvent {
        WireEvent {
            event_id: self.event_id.to_string(),
            session_id: self.session_id.to_string(),
            user_id: self.user_id,
            content_id: self.content_id,
            kind: self.kind,
            ts,
            sent_at,
            position_ms: self.position_ms,
            duration_ms: self.duration_ms,
            bitrate_kbps: self.bitrate_kbps,
            buffer_ms: self.buffer_ms,
            played_ms: self.played_ms,
            startup_ms: self.startup_ms,
            before_start: self.before_start,
            fatal: self.fatal,
            error_code: self.error_code.map(str::to_owned),
            device: Some(self.device.to_owned()),
            cdn: Some(self.cdn.to_owned()),
            app_version: Some(self.app_version.to_owned()),
            country: Some(self.country.to_owned()),
            received_at: None,
        }
    }
}

/// `name` and `text` as a JSON string. The audience's texts are constants without anything to
/// escape; one that had any goes through serde_json, so the output is JSON whatever they hold.
fn write_text(out: &mut Vec<u8>, name: &[u8], text: &str) {
    out.extend_from_slice(name);
    if text
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Durations as whole milliseconds in JSON.
pub mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64, viewers: u64) -> WorkloadConfig {
        WorkloadConfig {
            seed,
            viewers,
            heartbeat: Duration::from_secs(10),
            catalog_titles: 5_000,
            zipf_exponent: 1.0,
            taste: Taste::default(),
        }
    }

    fn events(config: &WorkloadConfig, n: usize) -> Vec<EventDraft> {
        let mut audience = Audience::whole(config, Arc::new(config.catalog().unwrap()));
        (0..n).map(|_| audience.next_event().unwrap()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_event_sequence() {
        assert_eq!(
            events(&config(5, 500), 5_000),
            events(&config(5, 500), 5_000)
        );
        assert_ne!(
            events(&config(5, 500), 5_000),
            events(&config(6, 500), 5_000)
        );
    }

    #[test]
    fn events_come_in_simulated_time_order() {
        let drafts = events(&config(1, 1_000), 20_000);
        assert!(drafts.windows(2).all(|pair| pair[0].at_ms <= pair[1].at_ms));
    }

    #[test]
    fn shares_of_an_audience_hold_every_viewer_once_and_the_same_events() {
        let config = config(8, 101);
        let catalog = Arc::new(config.catalog().unwrap());
        let shares: Vec<Audience> = (0..4)
            .map(|share| Audience::share(&config, catalog.clone(), share, 4))
            .collect();
        assert_eq!(shares.iter().map(Audience::viewers).sum::<usize>(), 101);
        // Viewer 5 belongs to share 1 and behaves there exactly as in the whole audience.
        let mut whole = Audience::whole(&config, catalog.clone());
        let mut share = Audience::share(&config, catalog, 1, 4);
        let user = Viewer::new(8, 5, 10_000, &config.catalog().unwrap()).user_id();
        let of_user = |audience: &mut Audience, n: usize| {
            std::iter::from_fn(|| audience.next_event())
                .filter(|event| event.user_id == user)
                .take(n)
                .collect::<Vec<_>>()
        };
        assert_eq!(of_user(&mut whole, 30), of_user(&mut share, 30));
    }

    #[test]
    fn heartbeats_dominate_and_every_kind_occurs() {
        let config = config(2, 2_000);
        let mut audience = Audience::whole(&config, Arc::new(config.catalog().unwrap()));
        for _ in 0..400_000 {
            audience.next_event();
        }
        let kinds = audience.kinds();
        let heartbeat_share = kinds.get(EventKind::Heartbeat) as f64 / kinds.total() as f64;
        assert!((0.75..0.95).contains(&heartbeat_share), "{heartbeat_share}");
        for kind in EventKind::ALL {
            assert!(kinds.get(kind) > 0, "no {kind}");
        }
    }

    #[test]
    fn content_popularity_is_skewed_as_zipf_says() {
        let config = WorkloadConfig {
            taste: Taste::NONE,
            ..config(3, 5_000)
        };
        let mut starts = std::collections::HashMap::<u64, u64>::new();
        let mut audience = Audience::whole(&config, Arc::new(config.catalog().unwrap()));
        for _ in 0..600_000 {
            let event = audience.next_event().unwrap();
            if event.kind == EventKind::Start {
                *starts.entry(event.content_id).or_default() += 1;
            }
        }
        let top = starts[&ZipfCatalog::content_id(0)] as f64;
        let second = starts[&ZipfCatalog::content_id(1)] as f64;
        assert!((1.5..2.6).contains(&(top / second)), "{top} / {second}");
    }

    #[test]
    fn viewers_mostly_start_titles_of_their_segments_genres() {
        let config = config(5, 2_000);
        let catalog = Arc::new(config.catalog().unwrap());
        let taste = *catalog.taste();
        let segments: std::collections::HashMap<u64, u32> = (0..config.viewers)
            .map(|index| {
                let viewer = Viewer::new(config.seed, index, 10_000, &catalog);
                (viewer.user_id(), viewer.segment())
            })
            .collect();
        let mut audience = Audience::whole(&config, catalog.clone());
        let (mut starts, mut preferred) = (0u64, 0u64);
        for _ in 0..300_000 {
            let event = audience.next_event().unwrap();
            if event.kind == EventKind::Start {
                starts += 1;
                let segment = segments[&event.user_id];
                preferred += u64::from(taste.prefers(segment, taste.genre_of(event.content_id)));
            }
        }
        // 0.8 loyal + 0.2 x 2/16 by chance: 0.825.
        let share = preferred as f64 / starts as f64;
        assert!((0.78..0.87).contains(&share), "{share} of {starts} starts");
    }

    #[test]
    fn a_viewer_sends_about_one_event_per_heartbeat_interval_plus_a_few() {
        let rate = events_per_viewer_per_sec(&config(4, 1)).unwrap();
        assert!((0.09..0.14).contains(&rate), "{rate}");
    }

    #[test]
    fn generated_events_pass_the_servers_validation() {
        let drafts = events(&config(9, 300), 30_000);
        let now = 1_750_000_000_000i64;
        let ctx = wire::ValidationContext {
            received_at: now,
            max_future_ms: wire::limits::MAX_FUTURE_MS,
        };
        let mut json = Vec::new();
        for draft in &drafts {
            let ts = now - 3_600_000 + draft.at_ms as i64;
            json.clear();
            draft.write_json(&mut json, ts, Some(now));
            let json = String::from_utf8(json.clone()).unwrap();
            let element: wire::Element = serde_json::from_str(&json).unwrap();
            let event =
                wire::validate(&element, &ctx).unwrap_or_else(|error| panic!("{error}: {json}"));
            assert_eq!(event.kind, draft.kind);
            assert_eq!(event.event_id, draft.event_id);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Whatever the seed, heartbeat, catalog and skew, the server accepts every event.
        #[test]
        fn any_workload_produces_only_valid_events(
            seed in proptest::prelude::any::<u64>(),
            heartbeat_ms in 500u64..60_000,
            titles in 1usize..5_000,
            zipf_s in 0.0f64..2.5,
        ) {
            let config = WorkloadConfig {
                seed,
                viewers: 40,
                heartbeat: Duration::from_millis(heartbeat_ms),
                catalog_titles: titles,
                zipf_exponent: zipf_s,
                taste: Taste::default(),
            };
            let now = 1_750_000_000_000i64;
            let ctx = wire::ValidationContext {
                received_at: now,
                max_future_ms: wire::limits::MAX_FUTURE_MS,
            };
            for draft in events(&config, 2_000) {
                let json = serde_json::to_string(&draft.to_wire(now - 1_000, Some(now))).unwrap();
                let element: wire::Element = serde_json::from_str(&json).unwrap();
                proptest::prop_assert!(wire::validate(&element, &ctx).is_ok(), "{}", json);
            }
        }
    }

    #[test]
    fn events_written_as_json_directly_are_what_serde_writes() {
        for draft in events(&config(11, 300), 5_000) {
            for sent_at in [Some(1_750_000_000_000), None] {
                let mut direct = Vec::new();
                draft.write_json(&mut direct, -5, sent_at);
                let serde = serde_json::to_vec(&draft.to_wire(-5, sent_at)).unwrap();
                assert_eq!(
                    String::from_utf8(direct).unwrap(),
                    String::from_utf8(serde).unwrap()
                );
            }
        }
        let mut odd = Vec::new();
        write_text(&mut odd, b"\"x\":", "a\"b\\c\u{1}");
        assert_eq!(odd, br#""x":"a\"b\\c\u0001""#);
    }
}
