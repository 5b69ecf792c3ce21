//! Documented limits of the wire format (v1).

/// Longest `error_code`, in bytes.
pub const MAX_ERROR_CODE_BYTES: usize = 64;
/// Longest `device`, `cdn` and `app_version`, in bytes.
pub const MAX_LABEL_BYTES: usize = 32;
/// Largest event, counted as the bytes of its keys and values (unknown fields included).
pub const MAX_EVENT_BYTES: usize = 4096;
/// Deepest nesting accepted inside an event (unknown fields may hold objects and arrays).
pub const MAX_NESTING: u32 = 32;
/// How far ahead of the server clock an event's (skew-corrected) `ts` may be, in ms.
pub const MAX_FUTURE_MS: i64 = 24 * 3_600_000;
/// Longest `startup_ms`: a player still not playing after ten minutes is an exit before start.
pub const MAX_STARTUP_MS: u32 = 600_000;
/// Longest `played_ms` one event may report (a day): more is a broken or hostile client.
pub const MAX_PLAYED_MS: u32 = 86_400_000;
