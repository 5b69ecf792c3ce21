//! The PlayPulse wire model, version 1.
//!
//! Clients post [`WireEvent`]s; the server reads each one leniently into a [`RawEvent`] (so that a
//! bad field rejects only its own event) and validates it into a [`PlaybackEvent`], the domain type
//! the pipeline and the stores work with. `loadgen` builds [`WireEvent`]s from this same crate, so
//! it produces exactly what `ingest` accepts.

mod country;
mod event;
pub mod keys;
mod kind;
pub mod limits;
mod raw;
mod validate;

pub use country::CountryCode;
pub use event::{PlaybackEvent, SmolStr, WireEvent};
pub use kind::EventKind;
pub use raw::{Element, ElementCount, ElementSeed, ElementsSeed, RawEvent, Scalar, Shape};
pub use validate::{echo, validate, validate_read, EventError, ValidationContext};

/// Milliseconds in a day: a viewing-history partition is `(user_id, ts / MS_PER_DAY)`.
pub const MS_PER_DAY: i64 = 86_400_000;

/// The day (days since the Unix epoch) a client timestamp falls in: the partition's second key.
pub fn day_of(ts_ms: i64) -> i32 {
    ts_ms.div_euclid(MS_PER_DAY) as i32
}
