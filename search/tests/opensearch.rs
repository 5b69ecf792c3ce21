//! What only OpenSearch can do wrong: not answer. The behaviour both indexes share is in
//! `contract.rs`. Skipped unless `PLAYPULSE_TEST_OPENSEARCH` names a running engine.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use search::{
    Day, Filters, OpenSearchIndex, OpenSearchOptions, SearchError, SearchIndex, SearchRequest,
};
use tokio::net::{TcpListener, TcpStream};

const TODAY: Day = 20_000;

fn engine() -> Option<String> {
    match std::env::var("PLAYPULSE_TEST_OPENSEARCH") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("PLAYPULSE_TEST_OPENSEARCH is not set: skipped");
            None
        }
    }
}

fn options(url: &str, name: &str) -> OpenSearchOptions {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    OpenSearchOptions {
        url: url.to_owned(),
        alias: format!("test-{}-{nanos}-{name}", std::process::id()),
        request_timeout: Duration::from_secs(10),
    }
}

fn request(q: &str) -> SearchRequest {
    SearchRequest {
        q: q.to_owned(),
        filters: Filters::default(),
        limit: 10,
        after: None,
        facets: false,
        today: TODAY,
    }
}

/// Forwards to the engine until dropped: then nothing listens on its port.
async fn proxy(to: &str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let target = to
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            connections.spawn(async move {
                if let Ok(mut server) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (format!("http://{address}"), task)
}

#[tokio::test]
async fn an_engine_that_does_not_answer_is_unavailable() {
    let Some(url) = engine() else { return };
    let started = Instant::now();
    match OpenSearchIndex::connect(options("http://127.0.0.1:1", "down")).await {
        Err(SearchError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1:1"), "{message}")
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // Accepts and never answers: the request timeout bounds the wait.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut silent_options = options(&format!("http://{}", silent.local_addr().unwrap()), "mute");
    silent_options.request_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    assert!(matches!(
        OpenSearchIndex::connect(silent_options).await,
        Err(SearchError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    held.abort();

    // Connected, then the engine goes away.
    let (through, forwarding) = proxy(&url).await;
    let gone = options(&through, "gone");
    let index = OpenSearchIndex::connect(gone.clone()).await.unwrap();
    assert!(index.ready().await);
    index.search(&request("heat")).await.unwrap();
    forwarding.abort();
    let _ = forwarding.await;
    let started = Instant::now();
    assert!(matches!(
        index.search(&request("heat")).await,
        Err(SearchError::Unavailable(_))
    ));
    assert!(!index.ready().await);
    assert!(started.elapsed() < Duration::from_secs(2));

    let direct = OpenSearchIndex::connect(OpenSearchOptions { url, ..gone })
        .await
        .unwrap();
    direct.drop_all().await.unwrap();
}

#[tokio::test]
async fn an_index_of_another_versions_mapping_asks_for_a_rebuild() {
    let Some(url) = engine() else { return };
    let options = options(&url, "oldmapping");
    let client = reqwest::Client::new();
    let old = format!("{}-1", options.alias);
    let created = client
        .put(format!("{url}/{old}"))
        .json(&serde_json::json!({
            "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
            "mappings": { "dynamic": "strict", "properties": { "id": { "type": "long" } } },
            "aliases": { (options.alias.clone()): {} }
        }))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap()
    );
    let index = OpenSearchIndex::connect(options).await.unwrap();
    let change = search::TitleChange::Delete { id: 1, version: 1 };
    match index.apply(std::slice::from_ref(&change)).await {
        Err(SearchError::Protocol(message)) => {
            assert!(message.contains("playpulse search reindex"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let fresh = index.create_generation().await.unwrap();
    index.switch_to(&fresh).await.unwrap();
    assert_eq!(index.apply(&[change]).await.unwrap().written, 1);
    index.drop_all().await.unwrap();
    let _ = client.delete(format!("{url}/{old}")).send().await;
}
