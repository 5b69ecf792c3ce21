//! A small seeded pseudo-random generator: xoshiro256++ seeded through SplitMix64.
//!
//! Written here rather than pulled in because the workload needs only a handful of draws
//! (uniform, exponential, weighted choice, UUID bytes) and must stay bit-for-bit reproducible
//! across dependency upgrades: the same `--seed` has to give the same events next year.

use uuid::Uuid;

/// One SplitMix64 step: a good 64-bit mixer, used to expand seeds and to hash ids.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes two numbers into one well-spread 64-bit value (for per-viewer seeds and ids).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut state = a ^ b.wrapping_mul(0xD605_BBB5_8C8A_BBD5);
    splitmix64(&mut state)
}

#[derive(Debug, Clone)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    pub fn seeded(seed: u64) -> Rng {
        let mut expander = seed;
        let state = [
            splitmix64(&mut expander),
            splitmix64(&mut expander),
            splitmix64(&mut expander),
            splitmix64(&mut expander),
        ];
        // SplitMix64 never yields four zeros in a row, the one state xoshiro cannot leave.
        debug_assert!(state.iter().any(|word| *word != 0));
        Rng { state }
    }

    /// An independent stream for one member of a population (a viewer), from the run's seed.
    pub fn for_stream(seed: u64, stream: u64) -> Rng {
        Rng::seeded(mix(seed, stream))
    }

    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.state;
        let result = s0.wrapping_add(*s3).rotate_left(23).wrapping_add(*s0);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    /// Uniform in [0, 1), with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        // Multiply-shift: the bias is at most n / 2^64, far below anything a workload notices.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [low, high] (inclusive).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high);
        low + self.below(high - low + 1)
    }

    pub fn chance(&mut self, probability: f64) -> bool {
        self.unit() < probability
    }

    /// An exponentially distributed wait with the given mean, in whole milliseconds (at least 1,
    /// so that simulated time always moves forward).
    pub fn exponential_ms(&mut self, mean_ms: f64) -> u64 {
        // 1 - unit() lies in (0, 1], so the logarithm is finite.
        let wait = -mean_ms * (1.0 - self.unit()).ln();
        (wait.round() as u64).max(1)
    }

    /// A standard normal draw (Box-Muller; one of the pair is dropped, as draws are rare).
    pub fn normal(&mut self) -> f64 {
        // 1 - unit() lies in (0, 1], so the logarithm is finite.
        let radius = (-2.0 * (1.0 - self.unit()).ln()).sqrt();
        radius * (std::f64::consts::TAU * self.unit()).cos()
    }

    /// A log-normal draw with the given median and log-space standard deviation `sigma`:
    /// skewed, with a long tail to the right (`median * e^(2.33 sigma)` at the 99th percentile).
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Picks an entry with probability proportional to its weight.
    pub fn weighted<'t, T>(&mut self, table: &'t [(T, u32)]) -> &'t T {
        let total: u64 = table.iter().map(|(_, weight)| u64::from(*weight)).sum();
        debug_assert!(total > 0, "a weighted table needs a positive weight");
        let mut ticket = self.below(total);
        for (item, weight) in table {
            let weight = u64::from(*weight);
            if ticket < weight {
                return item;
            }
            ticket -= weight;
        }
        &table[table.len() - 1].0
    }

    /// A version 4 UUID whose random bits come from this generator (never the nil UUID).
    pub fn uuid(&mut self) -> Uuid {
        let high = self.next_u64().to_be_bytes();
        let low = self.next_u64().to_be_bytes();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&high);
        bytes[8..].copy_from_slice(&low);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream_and_another_seed_another() {
        let draw = |seed| {
            let mut rng = Rng::seeded(seed);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn unit_draws_stay_in_range_and_average_a_half() {
        let mut rng = Rng::seeded(1);
        let draws: Vec<f64> = (0..100_000).map(|_| rng.unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn exponential_waits_have_the_requested_mean() {
        let mut rng = Rng::seeded(2);
        let n = 200_000;
        let total: u64 = (0..n).map(|_| rng.exponential_ms(10_000.0)).sum();
        let mean = total as f64 / n as f64;
        assert!((mean - 10_000.0).abs() < 150.0, "mean {mean}");
    }

    #[test]
    fn log_normal_draws_have_the_requested_median_and_a_right_tail() {
        let mut rng = Rng::seeded(6);
        let mut draws: Vec<f64> = (0..100_000).map(|_| rng.log_normal(1_000.0, 0.6)).collect();
        assert!(draws.iter().all(|x| x.is_finite() && *x > 0.0));
        draws.sort_by(f64::total_cmp);
        let median = draws[draws.len() / 2];
        let p99 = draws[draws.len() * 99 / 100];
        assert!((970.0..1_030.0).contains(&median), "median {median}");
        // e^(2.326 x 0.6) = 4.04.
        assert!((3_800.0..4_300.0).contains(&p99), "p99 {p99}");
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(mean > median, "skewed right: mean {mean}, median {median}");
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        let mut rng = Rng::seeded(3);
        let table = [("a", 1), ("b", 3)];
        let bs = (0..100_000)
            .filter(|_| *rng.weighted(&table) == "b")
            .count();
        assert!((74_000..76_000).contains(&bs), "{bs}");
    }

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let mut rng = Rng::seeded(4);
        let a = rng.uuid();
        let b = rng.uuid();
        assert_eq!(a.get_version_num(), 4);
        assert_ne!(a, b);
        assert!(!a.is_nil());
    }

    #[test]
    fn below_never_reaches_its_bound() {
        let mut rng = Rng::seeded(5);
        assert!((0..10_000).all(|_| rng.below(3) < 3));
        assert!((0..10_000).all(|_| (5..=9).contains(&rng.between(5, 9))));
    }
}
