//! A mergeable distribution with a stated error: a sparse log-bucketed histogram (the DDSketch
//! scheme). A value `x >= 1` falls in bucket `ceil(log_γ x)` with `γ = (1 + α) / (1 - α)`, and a
//! quantile is answered with its bucket's midpoint `2γ^i / (γ + 1)`, which is within a relative
//! error `α` of the true sample quantile. Merging adds bucket counts, so an hour's sketch is the
//! exact merge of its minutes' sketches, never a new estimate.
//!
//! Why not HdrHistogram (used elsewhere for latencies): a rollup keeps a sketch per minute and
//! per title, country, device and CDN, mostly holding a handful of values. HdrHistogram is dense
//! (7 KiB for 1 ms to 10 min at 2 significant digits); this keeps only the buckets it saw, 6 bytes
//! each, about 30 bytes for a typical cell.

/// Relative error of every quantile answer.
pub const RELATIVE_ERROR: f64 = 0.01;

/// `ln γ` for [`RELATIVE_ERROR`].
fn ln_gamma() -> f64 {
    ((1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR)).ln()
}

/// Where a value falls in a sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Below 1: no logarithm.
    Zero,
    Index(u16),
}

impl Bucket {
    pub fn of(value: u64) -> Bucket {
        if value < 1 {
            return Bucket::Zero;
        }
        let index = ((value as f64).ln() / ln_gamma())
            .ceil()
            .clamp(0.0, f64::from(u16::MAX));
        Bucket::Index(index as u16)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sketch {
    /// Values below 1 (zeros): they have no logarithm.
    zeros: u64,
    /// `(bucket, count)`, sorted by bucket, counts never zero.
    buckets: Vec<(u16, u64)>,
}

impl Sketch {
    pub fn new() -> Sketch {
        Sketch::default()
    }

    pub fn count(&self) -> u64 {
        self.zeros + self.buckets.iter().map(|(_, count)| count).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.zeros == 0 && self.buckets.is_empty()
    }

    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    pub fn record_n(&mut self, value: u64, count: u64) {
        self.add(Bucket::of(value), count);
    }

    /// Adds `count` values of a bucket found once with [`Bucket::of`] (an event adds its values
    /// to a sketch in each of its cells: the logarithm is taken once).
    pub fn add(&mut self, bucket: Bucket, count: u64) {
        if count == 0 {
            return;
        }
        match bucket {
            Bucket::Zero => self.zeros += count,
            Bucket::Index(index) => self.add_bucket(index, count),
        }
    }

    fn add_bucket(&mut self, bucket: u16, count: u64) {
        match self
            .buckets
            .binary_search_by_key(&bucket, |(index, _)| *index)
        {
            Ok(at) => self.buckets[at].1 += count,
            Err(at) => self.buckets.insert(at, (bucket, count)),
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        self.zeros += other.zeros;
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
            return;
        }
        for &(bucket, count) in &other.buckets {
            self.add_bucket(bucket, count);
        }
    }

    /// The `q` quantile (0 to 1) of the recorded values: the value of rank `ceil(q n)` (at
    /// least 1) within [`RELATIVE_ERROR`]; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        if rank <= self.zeros {
            return Some(0.0);
        }
        let mut seen = self.zeros;
        let gamma = ln_gamma().exp();
        for &(bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(2.0 * gamma.powi(i32::from(bucket)) / (gamma + 1.0));
            }
        }
        None
    }

    /// Appends the sketch: zeros, the bucket count, then each bucket as a delta from the
    /// previous one and its count, all varints.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.zeros);
        put_varint(out, self.buckets.len() as u64);
        let mut previous = 0u16;
        for &(bucket, count) in &self.buckets {
            put_varint(out, u64::from(bucket - previous));
            put_varint(out, count);
            previous = bucket;
        }
    }

    pub fn decode(input: &mut &[u8]) -> Result<Sketch, DecodeError> {
        let zeros = take_varint(input)?;
        let len = take_varint(input)?;
        if len > u64::from(u16::MAX) + 1 {
            return Err(DecodeError("too many sketch buckets"));
        }
        let mut buckets = Vec::with_capacity(len as usize);
        let mut previous = 0u64;
        for _ in 0..len {
            let bucket = previous + take_varint(input)?;
            let count = take_varint(input)?;
            if bucket > u64::from(u16::MAX) || count == 0 {
                return Err(DecodeError("bad sketch bucket"));
            }
            buckets.push((bucket as u16, count));
            previous = bucket;
        }
        Ok(Sketch { zeros, buckets })
    }
}

/// Stored analytics bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt rollup: {0}")]
pub struct DecodeError(pub &'static str);

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn take_varint(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first().ok_or(DecodeError("cut short"))?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(DecodeError("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &mut [u64], q: f64) -> f64 {
        values.sort_unstable();
        let rank = ((q * values.len() as f64).ceil() as usize).max(1);
        values[rank - 1] as f64
    }

    #[test]
    fn quantiles_are_within_the_stated_error() {
        let mut values: Vec<u64> = (0..10_000u64).map(|i| 200 + (i * 7919) % 30_000).collect();
        let mut sketch = Sketch::new();
        for &value in &values {
            sketch.record(value);
        }
        for q in [0.01, 0.5, 0.95, 0.99, 1.0] {
            let truth = exact(&mut values, q);
            let estimate = sketch.quantile(q).unwrap();
            assert!(
                (estimate - truth).abs() <= truth * RELATIVE_ERROR + 1e-9,
                "q {q}: {estimate} vs {truth}"
            );
        }
    }

    #[test]
    fn a_merge_equals_recording_everything_in_one() {
        let mut all = Sketch::new();
        let mut parts = [Sketch::new(), Sketch::new(), Sketch::new()];
        for value in 0..3_000u64 {
            all.record(value * 13 % 5_000);
            parts[(value % 3) as usize].record(value * 13 % 5_000);
        }
        let mut merged = Sketch::new();
        for part in &parts {
            merged.merge(part);
        }
        assert_eq!(merged, all);
    }

    #[test]
    fn encoding_round_trips_and_garbage_is_an_error() {
        let mut sketch = Sketch::new();
        for value in [0, 1, 2, 900, 900, 60_000, u64::MAX] {
            sketch.record(value);
        }
        let mut bytes = Vec::new();
        sketch.encode(&mut bytes);
        assert_eq!(Sketch::decode(&mut bytes.as_slice()).unwrap(), sketch);
        assert!(Sketch::decode(&mut &bytes[..bytes.len() - 1]).is_err());
        assert!(Sketch::decode(&mut [0xff; 12].as_slice()).is_err());
        assert_eq!(Sketch::new().quantile(0.5), None);
    }
}
