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

/// Bytes inflated between two calls of `reserve`.
const INFLATE_STEP: usize = 256 << 10;

/// Decompresses a body into a buffer of at most `limit` bytes. A body that would inflate past
/// the limit is refused after `limit + 1` bytes, never inflated whole. Before each step of
/// inflation `reserve(n)` is asked for room for `n` inflated bytes in all (the caller's memory
/// budget); its refusal stops the decompression.
pub fn decompress<E: From<CodecError>>(
    body: &[u8],
    encoding: BodyEncoding,
    limit: usize,
    reserve: impl FnMut(usize) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    match encoding {
        BodyEncoding::Identity => {
            if body.len() > limit {
                return Err(CodecError::BodyTooLarge { limit }.into());
            }
            Ok(body.to_vec())
        }
        BodyEncoding::Gzip => read_bounded(
            flate2::read::MultiGzDecoder::new(body),
            limit,
            "gzip",
            reserve,
        ),
        BodyEncoding::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(body)
                .map_err(|_| CodecError::Malformed("body is not valid zstd".to_owned()))?;
            read_bounded(decoder, limit, "zstd", reserve)
        }
    }
}

fn read_bounded<E: From<CodecError>>(
    mut reader: impl Read,
    limit: usize,
    name: &str,
    mut reserve: impl FnMut(usize) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    let mut out = Vec::new();
    loop {
        let step = INFLATE_STEP.min(limit + 1 - out.len());
        reserve(out.len() + step)?;
        out.reserve(step);
        let read = (&mut reader)
            .take(step as u64)
            .read_to_end(&mut out)
            .map_err(|error| {
                CodecError::Malformed(format!("body is not valid {name}: {}", io_reason(&error)))
            })?;
        if out.len() > limit {
            return Err(CodecError::BodyTooLarge { limit }.into());
        }
        if read < step {
            return Ok(out);
        }
    }
}

/// The kind of a decoder's failure, without its internals.
fn io_reason(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof => "it ends early",
        _ => "corrupt data",
    }
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
        assert_eq!(
            decompress(&gz, BodyEncoding::Gzip, 1 << 20, unbounded).unwrap(),
            plain
        );
        let zst = zstd::bulk::compress(&plain, 1).unwrap();
        assert_eq!(
            decompress(&zst, BodyEncoding::Zstd, 1 << 20, unbounded).unwrap(),
            plain
        );
    }

    #[test]
    fn a_decompression_bomb_is_refused_at_the_limit() {
        let bomb = zstd::bulk::compress(&vec![b' '; 64 << 20], 3).unwrap();
        assert!(bomb.len() < 64 << 10);
        assert_eq!(
            decompress(&bomb, BodyEncoding::Zstd, 1 << 20, unbounded),
            Err(CodecError::BodyTooLarge { limit: 1 << 20 })
        );
    }

    #[test]
    fn inflation_asks_for_room_before_it_produces_bytes_and_stops_when_refused() {
        let plain = vec![b'x'; 3 << 20];
        let zst = zstd::bulk::compress(&plain, 1).unwrap();
        let mut asked = Vec::new();
        let out = decompress(&zst, BodyEncoding::Zstd, 8 << 20, |bytes| {
            asked.push(bytes);
            Ok::<(), CodecError>(())
        })
        .unwrap();
        assert_eq!(out.len(), plain.len());
        assert!(asked.windows(2).all(|pair| pair[0] < pair[1]), "{asked:?}");
        assert!(*asked.last().unwrap() >= plain.len());

        let budget = 1 << 20;
        let refused = decompress(&zst, BodyEncoding::Zstd, 8 << 20, |bytes| {
            if bytes > budget {
                Err(CodecError::Malformed("over budget".to_owned()))
            } else {
                Ok(())
            }
        });
        assert_eq!(
            refused,
            Err(CodecError::Malformed("over budget".to_owned()))
        );
    }

    fn unbounded(_: usize) -> Result<(), CodecError> {
        Ok(())
    }

    #[test]
    fn corrupt_compression_is_malformed() {
        assert!(matches!(
            decompress(b"not gzip", BodyEncoding::Gzip, 100, unbounded),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            decompress(b"not zstd", BodyEncoding::Zstd, 100, unbounded),
            Err(CodecError::Malformed(_))
        ));
    }
}
