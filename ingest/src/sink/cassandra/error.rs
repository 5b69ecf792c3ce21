//! The one place Cassandra errors become [`SinkError`]s (and so HTTP statuses:
//! `Unavailable` -> 503, `Failed` -> 500).

use event_cql::CassandraError;

use crate::sink::SinkError;

impl From<CassandraError> for SinkError {
    fn from(error: CassandraError) -> SinkError {
        match &error {
            CassandraError::Transient { .. }
            | CassandraError::Deadline(_)
            | CassandraError::Connect { .. } => SinkError::Unavailable(error.to_string()),
            _ => SinkError::Failed(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scylla::errors::{DbError, ExecutionError, RequestAttemptError};

    use super::*;

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "test".into()))
    }

    #[test]
    fn retries_that_ran_out_tell_clients_to_come_back_and_bad_requests_do_not() {
        let transient = CassandraError::Transient {
            what: "write",
            attempts: 4,
            source: Box::new(db(DbError::Overloaded)),
        };
        assert!(matches!(
            SinkError::from(transient),
            SinkError::Unavailable(_)
        ));
        let permanent = CassandraError::Permanent {
            what: "write",
            source: Box::new(db(DbError::Invalid)),
        };
        assert!(matches!(SinkError::from(permanent), SinkError::Failed(_)));
        assert!(matches!(
            SinkError::from(CassandraError::Deadline(Duration::from_secs(1))),
            SinkError::Unavailable(_)
        ));
    }
}
