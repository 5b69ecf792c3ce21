//! A keyspace of its own on the test Cassandra, with the event schema applied.

use std::sync::Arc;
use std::time::Duration;

use event_cql::{CassandraConfig, CassandraSettings, WriteMode};
use scylla::client::session::Session;

use crate::{is_stale, unique_name};

/// Settings for a fresh keyspace on the Cassandra at `address`, with this TTL and write mode.
pub fn test_config(address: &str, retention: Duration, mode: WriteMode) -> CassandraConfig {
    let settings = CassandraSettings {
        nodes: vec![address.to_owned()],
        keyspace: unique_name("pp_test"),
        write_mode: mode,
        ..CassandraSettings::default()
    };
    CassandraConfig::from_settings(&settings, retention).expect("test settings are valid")
}

/// A keyspace with the schema applied, and the session that applied it.
pub struct TestKeyspace {
    pub config: CassandraConfig,
    pub session: Arc<Session>,
}

impl TestKeyspace {
    pub async fn create(address: &str, retention: Duration, mode: WriteMode) -> TestKeyspace {
        let config = test_config(address, retention, mode);
        let (session, _report) = event_cql::apply_schema(&config)
            .await
            .expect("the schema applies to a fresh keyspace");
        drop_stale_keyspaces(&session).await;
        TestKeyspace { config, session }
    }

    /// Drops the keyspace (a test that wants its disk back; stale ones go anyway).
    pub async fn drop_keyspace(&self) {
        event_cql::drop_keyspace(&self.session, &self.config.keyspace)
            .await
            .expect("the test keyspace drops");
    }
}

/// Drops test keyspaces that earlier runs left behind, so they do not pile up in the engine.
async fn drop_stale_keyspaces(session: &Session) {
    let Ok(result) = session
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await
    else {
        return;
    };
    let Ok(rows) = result.into_rows_result() else {
        return;
    };
    let Ok(names) = rows.rows::<(String,)>() else {
        return;
    };
    let stale: Vec<String> = names
        .filter_map(Result::ok)
        .map(|(name,)| name)
        .filter(|name| is_stale("pp_test", name))
        .collect();
    for name in stale {
        // Another test run may be dropping it too; either way it goes.
        let _ = event_cql::drop_keyspace(session, &name).await;
    }
}
