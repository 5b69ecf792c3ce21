//! The real engines a test needs, from the addresses `scripts/test-all.sh` exports once it has
//! started them. Unset, a test fails loudly (CI must never pass without its engines), unless
//! `PLAYPULSE_SKIP_ENGINE_TESTS=1` says to skip engine-backed tests: then it is skipped, said.

/// `PLAYPULSE_TEST_CASSANDRA`: a node's `host:port`.
pub fn cassandra() -> Option<String> {
    engine(
        "Cassandra",
        "PLAYPULSE_TEST_CASSANDRA",
        "cassandra",
        "127.0.0.1:9042",
    )
}

/// `PLAYPULSE_TEST_REDIS`: a `redis://` URL.
pub fn redis() -> Option<String> {
    engine(
        "Redis",
        "PLAYPULSE_TEST_REDIS",
        "redis",
        "redis://127.0.0.1:6379",
    )
}

/// `PLAYPULSE_TEST_POSTGRES`: a `postgres://` URL of a database the tests may use.
pub fn postgres() -> Option<String> {
    engine(
        "PostgreSQL",
        "PLAYPULSE_TEST_POSTGRES",
        "postgres",
        "postgres://postgres@127.0.0.1:5432/playpulse",
    )
}

/// `PLAYPULSE_TEST_NEO4J`: the Bolt connector's `host:port`.
pub fn neo4j() -> Option<String> {
    engine("Neo4j", "PLAYPULSE_TEST_NEO4J", "neo4j", "127.0.0.1:7687")
}

/// `PLAYPULSE_TEST_OPENSEARCH`: OpenSearch's HTTP URL.
pub fn opensearch() -> Option<String> {
    engine(
        "OpenSearch",
        "PLAYPULSE_TEST_OPENSEARCH",
        "opensearch",
        "http://127.0.0.1:9200",
    )
}

/// Drops the OpenSearch indices that earlier runs left behind under aliases made by
/// `unique_name(prefix)` (generations are `{alias}-{n}`): a shard each, and a node holds 1,000.
pub async fn drop_stale_opensearch_indices(url: &str, prefix: &str) {
    let Ok(response) = reqwest::get(format!("{url}/_cat/indices/{prefix}_*?h=index")).await else {
        return;
    };
    let Ok(listing) = response.text().await else {
        return;
    };
    let client = reqwest::Client::new();
    for index in listing.split_whitespace() {
        let alias = index.rsplit_once('-').map_or(index, |(alias, _)| alias);
        if crate::is_stale(prefix, alias) {
            // Another run may be dropping it too; either way it goes.
            let _ = client.delete(format!("{url}/{index}")).send().await;
        }
    }
}

/// Whether engine-backed tests are to be skipped.
pub fn skipped() -> bool {
    std::env::var("PLAYPULSE_SKIP_ENGINE_TESTS").as_deref() == Ok("1")
}

fn engine(name: &str, var: &str, up: &str, example: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ if skipped() => {
            eprintln!("skipped: a {name} test ({var} is unset and PLAYPULSE_SKIP_ENGINE_TESTS=1)");
            None
        }
        _ => panic!(
            "{var} is not set, and this test needs a real {name}: run scripts/test-all.sh (it \
             starts the engines), or `engines/up {up}` and then `{var}={example} cargo test`; \
             PLAYPULSE_SKIP_ENGINE_TESTS=1 skips the engine tests instead"
        ),
    }
}
