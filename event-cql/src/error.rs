//! What can fail talking to Cassandra, and how a driver error is classified: worth a retry or
//! not ([`is_transient`]), and its short name for counts ([`error_kind`]).

use scylla::errors::{DbError, ExecutionError, NewSessionError, PrepareError, RequestAttemptError};

/// Why a Cassandra writer or reader could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CassandraError {
    /// A setting cannot be used; names the setting.
    #[error("invalid setting `{setting}`: {message}")]
    Config { setting: String, message: String },
    /// No session could be opened with the nodes in `cassandra.nodes`.
    #[error("cannot connect to Cassandra at {nodes} (cassandra.nodes): {source}")]
    Connect {
        nodes: String,
        source: Box<NewSessionError>,
    },
    /// A statement could not be prepared (schema missing or different from `schema.cql`).
    #[error("cannot prepare `{cql}`: {source} (has `playpulse schema apply` run?)")]
    Prepare {
        cql: String,
        source: Box<PrepareError>,
    },
    /// A schema statement failed.
    #[error("schema statement failed: {source}\n  {cql}")]
    Schema {
        cql: String,
        source: Box<ExecutionError>,
    },
    /// A request failed with an error that retrying may fix (timeout, overload, a replica or the
    /// connection down), and kept failing until the retries ran out.
    #[error("{what} failed after {attempts} attempt(s): {source}")]
    Transient {
        what: &'static str,
        attempts: u32,
        source: Box<ExecutionError>,
    },
    /// A request failed with an error that retrying will not fix.
    #[error("{what} failed: {source}")]
    Permanent {
        what: &'static str,
        source: Box<ExecutionError>,
    },
    /// A stored row does not map back to an event (written by something else?).
    #[error("cannot read a stored row: {0}")]
    Decode(String),
    /// The sink's own work failed (a planning task panicked).
    #[error("cassandra sink internal error: {0}")]
    Internal(String),
    /// The write did not finish within its deadline (requests waited for a free slot, or
    /// retried, for too long).
    #[error("write did not finish within {0:?}")]
    Deadline(std::time::Duration),
}

impl CassandraError {
    pub fn config(setting: &str, message: impl Into<String>) -> CassandraError {
        CassandraError::Config {
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
}

/// Whether an error is worth another attempt: the request may succeed on another try (or another
/// replica) without anyone changing anything. Only idempotent statements are ever retried, so a
/// request that did land before its error was seen is harmless to repeat.
pub fn is_transient(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::RequestTimeout(_)
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::EmptyPlan => true,
        // Re-preparing after a node restart can fail while the node comes back.
        ExecutionError::PrepareError(_) => true,
        ExecutionError::LastAttemptError(attempt) => is_transient_attempt(attempt),
        _ => false,
    }
}

/// A short, stable name for what went wrong, for error counts in reports and metrics.
pub fn error_kind(error: &ExecutionError) -> &'static str {
    match error {
        ExecutionError::RequestTimeout(_) => "client_timeout",
        ExecutionError::ConnectionPoolError(_) | ExecutionError::EmptyPlan => "no_connection",
        ExecutionError::PrepareError(_) => "prepare",
        ExecutionError::LastAttemptError(attempt) => match attempt {
            RequestAttemptError::UnableToAllocStreamId => "no_stream_id",
            RequestAttemptError::BrokenConnectionError(_) => "broken_connection",
            RequestAttemptError::DbError(db_error, _) => match db_error {
                DbError::Overloaded | DbError::RateLimitReached { .. } => "overloaded",
                DbError::Unavailable { .. } => "unavailable",
                DbError::WriteTimeout { .. } => "write_timeout",
                DbError::ReadTimeout { .. } => "read_timeout",
                DbError::Invalid | DbError::SyntaxError => "invalid_request",
                _ => "server_error",
            },
            _ => "request_failed",
        },
        _ => "request_failed",
    }
}

fn is_transient_attempt(error: &RequestAttemptError) -> bool {
    match error {
        RequestAttemptError::UnableToAllocStreamId
        | RequestAttemptError::BrokenConnectionError(_) => true,
        RequestAttemptError::DbError(db_error, _) => matches!(
            db_error,
            DbError::Overloaded
                | DbError::Unavailable { .. }
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::IsBootstrapping
                | DbError::RateLimitReached { .. }
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scylla::errors::{BadQuery, WriteType};
    use scylla::frame::types::Consistency;

    use super::*;

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "test".into()))
    }

    #[test]
    fn timeouts_overload_and_missing_replicas_are_worth_retrying() {
        assert!(is_transient(&ExecutionError::RequestTimeout(
            Duration::from_secs(2)
        )));
        assert!(is_transient(&db(DbError::Overloaded)));
        assert!(is_transient(&db(DbError::Unavailable {
            consistency: Consistency::LocalQuorum,
            required: 2,
            alive: 1
        })));
        assert!(is_transient(&db(DbError::WriteTimeout {
            consistency: Consistency::LocalQuorum,
            received: 1,
            required: 2,
            write_type: WriteType::UnloggedBatch
        })));
        assert!(is_transient(&ExecutionError::LastAttemptError(
            RequestAttemptError::UnableToAllocStreamId
        )));
    }

    #[test]
    fn bad_statements_are_not_worth_retrying() {
        assert!(!is_transient(&db(DbError::SyntaxError)));
        assert!(!is_transient(&db(DbError::Invalid)));
        assert!(!is_transient(&ExecutionError::BadQuery(
            BadQuery::TooManyQueriesInBatchStatement(70_000)
        )));
    }
}
