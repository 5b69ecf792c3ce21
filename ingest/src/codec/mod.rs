//! Request bodies to validated events: content negotiation, bounded decompression, simd-json
//! parsing (JSON array or NDJSON) and per-event validation.

mod body;
mod parse;
mod scan;
mod tape;

pub use body::{decompress, BodyEncoding, BodyFormat};
pub use parse::{decode_events, Decoded, Rejection};

/// Why a whole body is refused (a bad event alone is a [`Rejection`], not an error).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The Content-Type is neither JSON nor NDJSON.
    #[error("unsupported content type `{0}`: use application/json or application/x-ndjson")]
    UnsupportedContentType(String),
    /// The Content-Encoding is not one we decode.
    #[error("unsupported content encoding `{0}`: use gzip, zstd or none")]
    UnsupportedEncoding(String),
    /// The body, decompressed, is larger than the limit.
    #[error("body is larger than {limit} bytes (decompressed)")]
    BodyTooLarge { limit: usize },
    /// More events than a request may carry.
    #[error("request holds more than {limit} events")]
    TooManyEvents { limit: usize },
    /// The body is not JSON / NDJSON at all, or its compression is corrupt.
    #[error("malformed body: {0}")]
    Malformed(String),
}
