//! Where a run's requests go, and how a request can fail: the one switch between loading the
//! service over HTTP and writing Cassandra directly. Workers draw the same audience either way.

use std::sync::Arc;
use std::time::Duration;

use wire::PlaybackEvent;

use crate::cassandra::CassandraWriter;
use crate::http::{Ack, BodyFormat, Compression, EventPoster, HttpError};
use crate::settings::TargetSettings;

/// A run's target, shared by its workers (cheap to clone).
#[derive(Clone)]
pub enum Target {
    Http {
        poster: EventPoster,
        format: BodyFormat,
        compression: Compression,
    },
    Cassandra(Arc<CassandraWriter>),
}

/// One request, as prepared for its target.
pub enum Payload {
    /// An encoded (and maybe compressed) request body.
    Body(Vec<u8>),
    /// Events to write.
    Events(Vec<PlaybackEvent>),
}

impl Target {
    /// The HTTP target of `settings`, or None for Cassandra (which needs [`Target::cassandra`]:
    /// connecting is async and applies the schema).
    pub fn http(
        settings: &TargetSettings,
        connections: usize,
        timeout: Duration,
    ) -> Result<Option<Target>, HttpError> {
        match settings {
            TargetSettings::Http {
                url,
                format,
                compression,
                api_key,
            } => Ok(Some(Target::Http {
                poster: EventPoster::new(
                    url,
                    connections,
                    timeout,
                    *format,
                    *compression,
                    api_key.as_ref(),
                )?,
                format: *format,
                compression: *compression,
            })),
            TargetSettings::Cassandra(_) => Ok(None),
        }
    }

    /// Sends one request and waits for its acknowledgement.
    pub async fn send(&self, payload: Payload) -> Result<Ack, Failure> {
        match (self, payload) {
            (Target::Http { poster, .. }, Payload::Body(body)) => poster.post(body).await,
            (Target::Cassandra(writer), Payload::Events(events)) => {
                let accepted = writer.write(&events).await?;
                Ok(Ack {
                    accepted,
                    rejected: Vec::new(),
                })
            }
            _ => Err(Failure::WrongPayload),
        }
    }
}

/// Why a request was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with another status (503 when overloaded, 4xx for a bad request).
    Status(u16),
    /// No connection could be made.
    Connect,
    /// No complete answer within `--timeout`.
    Timeout,
    /// The connection broke mid-request or mid-answer.
    Transport,
    /// A 200 whose body is not an acknowledgement.
    BadAck,
    /// Cassandra refused or did not answer a write; the driver's error, by kind
    /// (`event_cql::error_kind`).
    Cassandra(&'static str),
    /// A request prepared for the other target (a bug in the generator, counted, not hidden).
    WrongPayload,
}

impl Failure {
    /// The key under `errors` in the report.
    pub fn label(&self) -> String {
        match self {
            Failure::Status(code) => format!("status_{code}"),
            Failure::Connect => "connect".to_owned(),
            Failure::Timeout => "timeout".to_owned(),
            Failure::Transport => "transport".to_owned(),
            Failure::BadAck => "bad_ack".to_owned(),
            Failure::Cassandra(kind) => format!("cassandra_{kind}"),
            Failure::WrongPayload => "wrong_payload".to_owned(),
        }
    }

    pub(crate) fn of_reqwest(error: &reqwest::Error) -> Failure {
        if error.is_timeout() {
            Failure::Timeout
        } else if error.is_connect() {
            Failure::Connect
        } else {
            Failure::Transport
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_have_stable_report_labels() {
        assert_eq!(Failure::Status(503).label(), "status_503");
        assert_eq!(Failure::Connect.label(), "connect");
        assert_eq!(Failure::Timeout.label(), "timeout");
        assert_eq!(
            Failure::Cassandra("write_timeout").label(),
            "cassandra_write_timeout"
        );
    }
}
