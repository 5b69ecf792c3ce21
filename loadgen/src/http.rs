//! Posting batches to `POST /v1/events`: body encoding (JSON array or NDJSON, optionally gzip or
//! zstd) and the answer, classified.

use std::io::Write;
use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use crate::settings::ApiKey;
use crate::target::Failure;
use crate::workload::EventDraft;

/// zstd level for request bodies: level 1 is what a client would pick to save CPU.
const ZSTD_LEVEL: i32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// One JSON array of events.
    Json,
    /// One event per line (`application/x-ndjson`).
    Ndjson,
}

impl BodyFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Json => "application/json",
            BodyFormat::Ndjson => "application/x-ndjson",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

/// Why a request could not be built or the client not started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The compressor failed.
    #[error("cannot compress the body: {0}")]
    Compress(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    /// The API key holds characters a header cannot.
    #[error("--api-key is not a valid header value")]
    BadApiKey,
    /// The base URL is not http(s)://host[:port].
    #[error("--url must look like http://127.0.0.1:8080, got {0:?}")]
    BadUrl(String),
}

/// A request body written event by event, as the format says, straight from the audience's
/// drafts: no wire event in between, no allocation once `out` has grown.
pub struct BodyWriter<'a> {
    out: &'a mut Vec<u8>,
    format: BodyFormat,
    events: usize,
}

impl<'a> BodyWriter<'a> {
    /// Starts a body in `out` (cleared first).
    pub fn new(out: &'a mut Vec<u8>, format: BodyFormat) -> BodyWriter<'a> {
        out.clear();
        if format == BodyFormat::Json {
            out.push(b'[');
        }
        BodyWriter {
            out,
            format,
            events: 0,
        }
    }

    pub fn push(&mut self, draft: &EventDraft, ts: i64, sent_at: Option<i64>) {
        if self.format == BodyFormat::Json && self.events > 0 {
            self.out.push(b',');
        }
        draft.write_json(self.out, ts, sent_at);
        if self.format == BodyFormat::Ndjson {
            self.out.push(b'\n');
        }
        self.events += 1;
    }

    /// Ends the body; answers its length.
    pub fn finish(self) -> usize {
        if self.format == BodyFormat::Json {
            self.out.push(b']');
        }
        self.out.len()
    }
}

/// The body as it goes on the wire.
pub fn compress(raw: &[u8], compression: Compression) -> Result<Vec<u8>, HttpError> {
    Ok(match compression {
        Compression::None => raw.to_vec(),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 4),
                flate2::Compression::fast(),
            );
            encoder.write_all(raw)?;
            encoder.finish()?
        }
        Compression::Zstd => zstd::bulk::compress(raw, ZSTD_LEVEL)?,
    })
}

/// The 200 answer of `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ack {
    pub accepted: usize,
    #[serde(default)]
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rejection {
    pub index: usize,
    pub error: String,
}

/// Posts bodies over a pool of keep-alive connections (one per worker: each worker has at most
/// one request in flight).
#[derive(Debug, Clone)]
pub struct EventPoster {
    client: reqwest::Client,
    events_url: String,
    content_type: &'static str,
    content_encoding: Option<&'static str>,
}

impl EventPoster {
    pub fn new(
        base_url: &str,
        connections: usize,
        timeout: Duration,
        format: BodyFormat,
        compression: Compression,
        api_key: Option<&ApiKey>,
    ) -> Result<EventPoster, HttpError> {
        Ok(EventPoster {
            client: client(connections, timeout, api_key)?,
            events_url: format!("{}/v1/events", base_url_of(base_url)?),
            content_type: format.content_type(),
            content_encoding: compression.content_encoding(),
        })
    }

    pub async fn post(&self, body: Vec<u8>) -> Result<Ack, Failure> {
        let mut request = self
            .client
            .post(&self.events_url)
            .header(CONTENT_TYPE, self.content_type)
            .body(body);
        if let Some(encoding) = self.content_encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        let response = request
            .send()
            .await
            .map_err(|error| Failure::of_reqwest(&error))?;
        let status = response.status();
        // Read the whole body either way, so the connection goes back to the pool.
        let body = response
            .bytes()
            .await
            .map_err(|error| Failure::of_reqwest(&error))?;
        if status != reqwest::StatusCode::OK {
            return Err(Failure::Status(status.as_u16()));
        }
        serde_json::from_slice(&body).map_err(|_| Failure::BadAck)
    }
}

/// A keep-alive client for loopback benchmarks: no proxy lookups, Nagle off; with `api_key`,
/// every request carries it.
pub fn client(
    connections: usize,
    timeout: Duration,
    api_key: Option<&ApiKey>,
) -> Result<reqwest::Client, HttpError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(ApiKey(key)) = api_key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| HttpError::BadApiKey)?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(connections)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .no_proxy()
        .build()
        .map_err(HttpError::Client)
}

/// `http://host:port` without a trailing slash.
pub fn base_url_of(url: &str) -> Result<&str, HttpError> {
    let trimmed = url.trim_end_matches('/');
    let scheme_ok = trimmed.starts_with("http://") || trimmed.starts_with("https://");
    let has_host = trimmed
        .split("://")
        .nth(1)
        .is_some_and(|rest| !rest.is_empty());
    if scheme_ok && has_host {
        Ok(trimmed)
    } else {
        Err(HttpError::BadUrl(url.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use wire::WireEvent;

    fn drafts() -> Vec<EventDraft> {
        let config = crate::workload::WorkloadConfig {
            seed: 3,
            viewers: 5,
            heartbeat: Duration::from_secs(10),
            catalog_titles: 10,
            zipf_exponent: 1.0,
            taste: crate::workload::Taste::default(),
        };
        let mut audience = crate::workload::Audience::whole(
            &config,
            std::sync::Arc::new(config.catalog().unwrap()),
        );
        (0..3).map(|_| audience.next_event().unwrap()).collect()
    }

    fn written(format: BodyFormat) -> Vec<u8> {
        let mut out = b"left over".to_vec();
        let mut body = BodyWriter::new(&mut out, format);
        for draft in &drafts() {
            body.push(draft, 7, Some(8));
        }
        assert_eq!(body.finish(), out.len());
        out
    }

    #[test]
    fn json_bodies_are_one_array_and_ndjson_bodies_one_event_per_line() {
        let expected: Vec<WireEvent> = drafts().iter().map(|d| d.to_wire(7, Some(8))).collect();
        let parsed: Vec<WireEvent> = serde_json::from_slice(&written(BodyFormat::Json)).unwrap();
        assert_eq!(parsed, expected);

        let text = String::from_utf8(written(BodyFormat::Ndjson)).unwrap();
        let lines: Vec<WireEvent> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines, expected);

        let mut out = Vec::new();
        assert_eq!(BodyWriter::new(&mut out, BodyFormat::Json).finish(), 2);
        assert_eq!(out, b"[]");
    }

    #[test]
    fn compressed_bodies_decompress_to_the_original() {
        let raw = b"[{\"event_id\":\"x\"}]".repeat(100);
        let gzip = compress(&raw, Compression::Gzip).unwrap();
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(gzip.as_slice())
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, raw);
        let zstd = compress(&raw, Compression::Zstd).unwrap();
        assert_eq!(zstd::decode_all(zstd.as_slice()).unwrap(), raw);
        assert_eq!(compress(&raw, Compression::None).unwrap(), raw);
    }

    #[test]
    fn base_urls_lose_their_trailing_slash_and_must_be_http() {
        assert_eq!(
            base_url_of("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(base_url_of("127.0.0.1:8080").is_err());
        assert!(base_url_of("http://").is_err());
    }
}
