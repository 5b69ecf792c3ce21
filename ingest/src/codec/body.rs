use std::io::Read;

use super::CodecError;

/// How events are laid out in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// A JSON array of event objects.
    JsonArray,
    /// One event object per line.
    Ndjson,
}

impl BodyFormat {
    /// From the Content-Type header; none means JSON.
    pub fn from_content_type(header: Option<&str>) -> Result<BodyFormat, CodecError> {
        let Some(header) = header else {
            return Ok(BodyFormat::JsonArray);
        };
        let media_type = header
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media_type.as_str() {
            "application/json" | "text/json" => Ok(BodyFormat::JsonArray),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonlines"
            | "application/jsonl" => Ok(BodyFormat::Ndjson),
            _ => Err(CodecError::UnsupportedContentType(header.to_owned())),
        }
    }
}

/// How a body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Identity,
    Gzip,
    Zstd,
}

impl BodyEncoding {
    /// From the Content-Encoding header; none means identity.
    pub fn from_content_encoding(header: Option<&str>) -> Result<BodyEncoding, CodecError> {
        let Some(header) = header else {
            return Ok(BodyEncoding::Identity);
        };
        match header.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(BodyEncoding::Identity),
            "gzip" | "x-gzip" => Ok(BodyEncoding::Gzip),
            "zstd" => Ok(BodyEncoding::Zstd),
            _ => Err(CodecError::UnsupportedEncoding(header.to_owned())),
        }
    }
}

/// Decompresses a body into a buffer of at most `limit` bytes. A body that would inflate past
/// the limit is refused after `limit + 1` bytes, never inflated whole.
pub fn decompress(
    body: &[u8],
    encoding: BodyEncoding,
    limit: usize,
) -> Result<Vec<u8>, CodecError> {
    match encoding {
        BodyEncoding::Identity => {
            if body.len() > limit {
                return Err(CodecError::BodyTooLarge { limit });
            }
            Ok(body.to_vec())
        }
        BodyEncoding::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(body), limit, "gzip"),
        BodyEncoding::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(|error| {
                CodecError::Malformed(format!("body is not valid zstd: {error}"))
            })?;
            read_bounded(decoder, limit, "zstd")
        }
    }
}

fn read_bounded(reader: impl Read, limit: usize, name: &str) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(limit.min(1 << 20));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|error| CodecError::Malformed(format!("body is not valid {name}: {error}")))?;
    if out.len() > limit {
        return Err(CodecError::BodyTooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn content_types_map_to_formats() {
        assert_eq!(
            BodyFormat::from_content_type(None),
            Ok(BodyFormat::JsonArray)
        );
        assert_eq!(
            BodyFormat::from_content_type(Some("application/json; charset=utf-8")),
            Ok(BodyFormat::JsonArray)
        );
        assert_eq!(
            BodyFormat::from_content_type(Some("application/x-ndjson")),
            Ok(BodyFormat::Ndjson)
        );
        assert!(matches!(
            BodyFormat::from_content_type(Some("text/plain")),
            Err(CodecError::UnsupportedContentType(_))
        ));
    }

    #[test]
    fn encodings_are_recognised_and_others_refused() {
        assert_eq!(
            BodyEncoding::from_content_encoding(Some("GZIP")),
            Ok(BodyEncoding::Gzip)
        );
        assert_eq!(
            BodyEncoding::from_content_encoding(Some("zstd")),
            Ok(BodyEncoding::Zstd)
        );
        assert!(matches!(
            BodyEncoding::from_content_encoding(Some("br")),
            Err(CodecError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn gzip_and_zstd_round_trip() {
        let plain = b"[1,2,3]".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decompress(&gz, BodyEncoding::Gzip, 1 << 20).unwrap(), plain);
        let zst = zstd::bulk::compress(&plain, 1).unwrap();
        assert_eq!(
            decompress(&zst, BodyEncoding::Zstd, 1 << 20).unwrap(),
            plain
        );
    }

    #[test]
    fn a_decompression_bomb_is_refused_at_the_limit() {
        let bomb = zstd::bulk::compress(&vec![b' '; 64 << 20], 3).unwrap();
        assert!(bomb.len() < 64 << 10);
        assert_eq!(
            decompress(&bomb, BodyEncoding::Zstd, 1 << 20),
            Err(CodecError::BodyTooLarge { limit: 1 << 20 })
        );
    }

    #[test]
    fn corrupt_compression_is_malformed() {
        assert!(matches!(
            decompress(b"not gzip", BodyEncoding::Gzip, 100),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            decompress(b"not zstd", BodyEncoding::Zstd, 100),
            Err(CodecError::Malformed(_))
        ));
    }
}
