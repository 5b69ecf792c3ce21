//! Latency in an HdrHistogram, in microseconds, with its summary and its portable encoding
//! (HdrHistogram V2 with deflate, in base64: what `HistogramLogProcessor` and every HdrHistogram
//! port read).

use std::time::Duration;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Recorded values are microseconds, from 1 µs up to an hour, at 3 significant digits.
const HIGHEST_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// Why a histogram could not be encoded, decoded or merged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistogramError {
    /// Serializing failed.
    #[error("cannot encode the histogram: {0}")]
    Encode(String),
    /// The text is not base64 or not a V2 histogram.
    #[error("cannot decode the histogram: {0}")]
    Decode(String),
    /// The two histograms cannot be added.
    #[error("cannot merge histograms: {0}")]
    Merge(String),
}

#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        LatencyHistogram(
            Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS)
                .expect("constant bounds are valid"),
        )
    }

    /// Records one latency; anything past an hour counts as an hour.
    pub fn record(&mut self, latency: Duration) {
        let micros = latency.as_micros().clamp(1, u128::from(HIGHEST_US)) as u64;
        self.0.saturating_record(micros);
    }

    pub fn merge(&mut self, other: &LatencyHistogram) -> Result<(), HistogramError> {
        self.0
            .add(&other.0)
            .map_err(|error| HistogramError::Merge(format!("{error:?}")))
    }

    pub fn reset(&mut self) {
        self.0.reset();
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            p50: self.quantile_ms(0.50),
            p90: self.quantile_ms(0.90),
            p99: self.quantile_ms(0.99),
            p999: self.quantile_ms(0.999),
            max: self.max_ms(),
            mean: if self.is_empty() {
                0.0
            } else {
                self.0.mean() / 1000.0
            },
            count: self.count(),
        }
    }

    /// V2 deflate, base64 (standard alphabet, padded).
    pub fn encode(&self) -> Result<String, HistogramError> {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut bytes)
            .map_err(|error| HistogramError::Encode(format!("{error:?}")))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn decode(text: &str) -> Result<LatencyHistogram, HistogramError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|error| HistogramError::Decode(error.to_string()))?;
        let histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|error| HistogramError::Decode(format!("{error:?}")))?;
        Ok(LatencyHistogram(histogram))
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    /// How many latencies were recorded.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn merged_histograms_hold_the_union_of_their_recordings() {
        let mut fast = LatencyHistogram::new();
        let mut slow = LatencyHistogram::new();
        for _ in 0..990 {
            fast.record(ms(1));
        }
        for _ in 0..10 {
            slow.record(ms(100));
        }
        let mut merged = LatencyHistogram::new();
        merged.merge(&fast).unwrap();
        merged.merge(&slow).unwrap();
        let summary = merged.summary();
        assert_eq!(summary.count, 1_000);
        assert!((summary.p50 - 1.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p99 - 1.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p999 - 100.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max - 100.0).abs() < 0.1, "{summary:?}");
    }

    #[test]
    fn merging_per_worker_histograms_equals_recording_in_one() {
        let mut one = LatencyHistogram::new();
        let mut workers = vec![LatencyHistogram::new(); 4];
        for value in 1..=10_000u64 {
            let latency = Duration::from_micros(value * 37 % 50_000 + 1);
            one.record(latency);
            workers[(value % 4) as usize].record(latency);
        }
        let mut merged = LatencyHistogram::new();
        for worker in &workers {
            merged.merge(worker).unwrap();
        }
        assert_eq!(merged, one);
    }

    #[test]
    fn the_encoding_round_trips() {
        let mut histogram = LatencyHistogram::new();
        for value in [1u64, 5, 5, 120, 3_000, 70_000] {
            histogram.record(Duration::from_micros(value));
        }
        let text = histogram.encode().unwrap();
        assert_eq!(LatencyHistogram::decode(&text).unwrap(), histogram);
        assert!(LatencyHistogram::decode("not base64!").is_err());
    }

    #[test]
    fn an_empty_histogram_summarises_to_zeros() {
        assert_eq!(LatencyHistogram::new().summary(), LatencySummary::default());
    }

    #[test]
    fn latencies_past_an_hour_count_as_an_hour() {
        let mut histogram = LatencyHistogram::new();
        histogram.record(Duration::from_secs(7_200));
        assert!((histogram.max_ms() - 3_600_000.0).abs() / 3_600_000.0 < 0.001);
    }
}
