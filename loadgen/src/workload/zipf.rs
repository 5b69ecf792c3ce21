//! The catalog: titles whose popularity follows Zipf's law, P(rank k) ∝ 1 / k^s.
//!
//! Sampled by inverting a precomputed cumulative table (8 bytes per title, binary search per
//! draw), which is exact for any exponent and cheap next to building an event.

use super::rng::{mix, Rng};
use super::WorkloadError;

/// Content ids start here, so that a content id never looks like a small counter or a user id.
const FIRST_CONTENT_ID: u64 = 100_000;

/// Largest catalog accepted: the table takes 8 bytes per title.
pub const MAX_TITLES: usize = 10_000_000;

#[derive(Debug, Clone)]
pub struct ZipfCatalog {
    /// cumulative[k] = P(rank <= k), with cumulative[last] = 1.
    cumulative: Vec<f64>,
    exponent: f64,
    taste: Taste,
}

/// Taste, so that co-watching carries signal: every title has one of `genres` genres (by a
/// hash of its id); every viewer belongs to one of `segments` taste segments (by a hash of the
/// seed and their number); segment `s` prefers the genres `g` with `g % segments == s`. A new
/// session picks, with probability `loyalty`, a title of a preferred genre (drawn by Zipf
/// popularity among them), otherwise any title by Zipf popularity. `segments = 0`: no taste.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Taste {
    pub segments: u32,
    pub genres: u32,
    pub loyalty: f64,
}

impl Default for Taste {
    fn default() -> Self {
        Taste {
            segments: 8,
            genres: 16,
            loyalty: 0.8,
        }
    }
}

impl Taste {
    /// No taste: every session draws from the whole catalog by popularity.
    pub const NONE: Taste = Taste {
        segments: 0,
        genres: 1,
        loyalty: 0.0,
    };

    pub fn validate(&self) -> Result<(), WorkloadError> {
        if !(self.loyalty.is_finite() && (0.0..=1.0).contains(&self.loyalty)) {
            return Err(WorkloadError::Taste(format!(
                "--loyalty must be between 0 and 1, got {}",
                self.loyalty
            )));
        }
        if self.genres == 0 || self.segments > self.genres {
            return Err(WorkloadError::Taste(format!(
                "--genres must be at least 1 and at least --segments ({}), got {}",
                self.segments, self.genres
            )));
        }
        Ok(())
    }

    /// The taste segment of viewer number `index` of run `seed`.
    pub fn segment_of(&self, seed: u64, index: u64) -> u32 {
        if self.segments == 0 {
            return 0;
        }
        (mix(seed ^ 0x7A57_E5E6, index) % u64::from(self.segments)) as u32
    }

    /// The genre of a title.
    pub fn genre_of(&self, content_id: u64) -> u32 {
        (mix(content_id, 0x6E_4E_E5) % u64::from(self.genres.max(1))) as u32
    }

    pub fn prefers(&self, segment: u32, genre: u32) -> bool {
        self.segments > 0 && genre % self.segments == segment
    }
}

/// Draws of a popular title before a loyal pick settles for any title: with 2 preferred genres
/// of 16 a draw hits one 1 time in 8, so 64 draws miss with probability ~2e-4.
const LOYAL_DRAWS: u32 = 64;

impl ZipfCatalog {
    pub fn new(titles: usize, exponent: f64) -> Result<ZipfCatalog, WorkloadError> {
        if titles == 0 || titles > MAX_TITLES {
            return Err(WorkloadError::CatalogSize {
                titles,
                max: MAX_TITLES,
            });
        }
        if !(exponent.is_finite() && exponent >= 0.0) {
            return Err(WorkloadError::ZipfExponent(exponent));
        }
        let mut running = 0.0;
        let mut cumulative: Vec<f64> = (1..=titles)
            .map(|rank| {
                running += (rank as f64).powf(-exponent);
                running
            })
            .collect();
        let total = running;
        for value in &mut cumulative {
            *value /= total;
        }
        // Rounding must never leave the top of the table below a draw of 0.999...
        if let Some(last) = cumulative.last_mut() {
            *last = 1.0;
        }
        Ok(ZipfCatalog {
            cumulative,
            exponent,
            taste: Taste::NONE,
        })
    }

    /// This catalog with genres, for viewers with taste.
    pub fn with_taste(mut self, taste: Taste) -> Result<ZipfCatalog, WorkloadError> {
        taste.validate()?;
        self.taste = taste;
        Ok(self)
    }

    pub fn taste(&self) -> &Taste {
        &self.taste
    }

    /// A popularity rank for a new session of a viewer in `segment` (see [`Taste`]).
    pub fn sample_rank_for(&self, segment: u32, rng: &mut Rng) -> usize {
        let taste = &self.taste;
        if taste.segments == 0 || !rng.chance(taste.loyalty) {
            return self.sample_rank(rng);
        }
        let mut rank = self.sample_rank(rng);
        for _ in 1..LOYAL_DRAWS {
            if taste.prefers(segment, taste.genre_of(ZipfCatalog::content_id(rank))) {
                break;
            }
            rank = self.sample_rank(rng);
        }
        rank
    }

    pub fn titles(&self) -> usize {
        self.cumulative.len()
    }

    pub fn exponent(&self) -> f64 {
        self.exponent
    }

    /// A popularity rank, 0 for the most popular title.
    pub fn sample_rank(&self, rng: &mut Rng) -> usize {
        let draw = rng.unit();
        self.cumulative
            .partition_point(|cumulative| *cumulative <= draw)
            .min(self.cumulative.len() - 1)
    }

    /// The probability of a rank, for tests and reports.
    pub fn probability(&self, rank: usize) -> f64 {
        let below = if rank == 0 {
            0.0
        } else {
            self.cumulative[rank - 1]
        };
        self.cumulative[rank] - below
    }

    pub fn content_id(rank: usize) -> u64 {
        FIRST_CONTENT_ID + rank as u64
    }

    /// The length of a title, fixed per title: about 60% are episodes (22-60 min), the rest
    /// films (85-160 min).
    pub fn duration_ms(content_id: u64) -> u64 {
        let hash = mix(content_id, 0xC0_47E7);
        let minutes = if hash % 10 < 6 {
            22 + (hash >> 8) % 39
        } else {
            85 + (hash >> 8) % 76
        };
        minutes * 60_000 + (hash >> 32) % 60_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_zipf_with_the_requested_exponent() {
        let catalog = ZipfCatalog::new(1000, 1.0).unwrap();
        let mut rng = Rng::seeded(11);
        let mut counts = vec![0u64; 1000];
        let draws = 1_000_000;
        for _ in 0..draws {
            counts[catalog.sample_rank(&mut rng)] += 1;
        }
        // Rank 1 is drawn about twice as often as rank 2 and ten times as often as rank 10.
        let ratio_2 = counts[0] as f64 / counts[1] as f64;
        let ratio_10 = counts[0] as f64 / counts[9] as f64;
        assert!((1.9..2.1).contains(&ratio_2), "{ratio_2}");
        assert!((9.0..11.0).contains(&ratio_10), "{ratio_10}");
        // The slope of log(frequency) against log(rank) over the head is about -s.
        let (x1, x2) = (1.0f64.ln(), 50.0f64.ln());
        let (y1, y2) = ((counts[0] as f64).ln(), (counts[49] as f64).ln());
        let slope = (y2 - y1) / (x2 - x1);
        assert!((-1.08..-0.92).contains(&slope), "{slope}");
        // And the observed share of the top title matches the table.
        let share = counts[0] as f64 / draws as f64;
        assert!((share - catalog.probability(0)).abs() < 0.005, "{share}");
    }

    #[test]
    fn a_zero_exponent_is_uniform() {
        let catalog = ZipfCatalog::new(4, 0.0).unwrap();
        for rank in 0..4 {
            assert!((catalog.probability(rank) - 0.25).abs() < 1e-12);
        }
    }

    #[test]
    fn every_draw_is_a_title_of_the_catalog() {
        let catalog = ZipfCatalog::new(3, 1.2).unwrap();
        let mut rng = Rng::seeded(12);
        assert!((0..10_000).all(|_| catalog.sample_rank(&mut rng) < 3));
    }

    #[test]
    fn absurd_catalogs_are_refused() {
        assert!(ZipfCatalog::new(0, 1.0).is_err());
        assert!(ZipfCatalog::new(MAX_TITLES + 1, 1.0).is_err());
        assert!(ZipfCatalog::new(10, f64::NAN).is_err());
        assert!(ZipfCatalog::new(10, -1.0).is_err());
    }

    #[test]
    fn titles_last_between_twenty_two_minutes_and_under_three_hours() {
        for rank in 0..10_000 {
            let duration = ZipfCatalog::duration_ms(ZipfCatalog::content_id(rank));
            assert!(
                (22 * 60_000..161 * 60_000).contains(&duration),
                "{duration}"
            );
        }
    }
}
