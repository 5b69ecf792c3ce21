//! A PostgreSQL database of one's own: each test that writes to PostgreSQL creates one, named by
//! [`crate::unique_name`], and a later run drops those left behind.

/// What tests name their databases.
const PREFIX: &str = "pp_test";

/// Creates a fresh database on the server of `url` (a `postgres://` URL of a database the tests
/// may use) and returns the URL of the new one.
pub async fn fresh_database(url: &str) -> String {
    let admin = sqlx::PgPool::connect(url)
        .await
        .expect("PostgreSQL answers");
    let database = crate::unique_name(PREFIX);
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&admin)
        .await
        .expect("a test database is created");
    drop_stale_databases(&admin).await;
    admin.close().await;
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    format!("{base}/{database}")
}

async fn drop_stale_databases(admin: &sqlx::PgPool) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname FROM pg_database WHERE datname LIKE 'pp\\_test\\_%'",
    )
    .fetch_all(admin)
    .await
    else {
        return;
    };
    for name in names.iter().filter(|name| crate::is_stale(PREFIX, name)) {
        // Another run may be dropping it too; either way it goes.
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(admin)
            .await;
    }
}
