//! A Cassandra node that goes away under the service and comes back.

use std::sync::Arc;
use std::time::Duration;

use event_cql::WriteMode;
use testkit::cassandra::TestKeyspace;

/// A TCP proxy in front of Cassandra whose connections a test can cut (all current ones closed,
/// new ones dropped on accept) and restore: a node going away, for real, without stopping the
/// engine other tests share.
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(upstream: String) -> CutProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = {
            let (cut, connections) = (cut.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: the connection closes at once
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().unwrap().push(task.abort_handle());
                }
            })
        };
        CutProxy {
            addr,
            cut,
            connections,
            accept,
        }
    }

    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test]
async fn while_cassandra_is_unreachable_clients_get_503_and_the_service_recovers_by_itself() {
    let Some(address) = testkit::engines::cassandra() else {
        return;
    };
    let keyspace = TestKeyspace::create(
        &address,
        Duration::from_secs(3_600),
        WriteMode::PartitionBatches,
    )
    .await;
    let proxy = CutProxy::start(address).await;
    let nodes = format!("[\"{}\"]", proxy.addr);
    let app = crate::helpers::spawn_app_with(&[
        ("PLAYPULSE_SINK__KIND", "cassandra"),
        ("PLAYPULSE_CASSANDRA__NODES", &nodes),
        ("PLAYPULSE_CASSANDRA__KEYSPACE", &keyspace.config.keyspace),
        ("PLAYPULSE_CASSANDRA__REQUEST_TIMEOUT", "500ms"),
        ("PLAYPULSE_CASSANDRA__MAX_RETRIES", "2"),
        ("PLAYPULSE_SERVER__REQUEST_TIMEOUT", "3s"),
    ])
    .await;

    let before = crate::helpers::fresh_user();
    let acknowledged = crate::helpers::events_for(before, 20);
    assert_eq!(app.post_events(&acknowledged).await.status(), 200);

    proxy.cut();
    let during = crate::helpers::fresh_user();
    let refused = crate::helpers::events_for(during, 20);
    let response = app.post_events(&refused).await;
    assert_eq!(
        response.status(),
        503,
        "a write Cassandra never took must not be acknowledged"
    );
    assert!(response.headers().contains_key("retry-after"));
    let readiness = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readiness.status(), 503, "not ready while Cassandra is away");

    proxy.restore();
    // The client retries, as a 503 asks it to; the driver reconnects by itself.
    let recovered = crate::helpers::eventually(Duration::from_secs(60), || {
        let (app, refused) = (&app, &refused);
        async move { app.post_events(refused).await.status() == 200 }
    })
    .await;
    assert!(
        recovered,
        "the service did not come back after Cassandra did"
    );

    let ids = crate::helpers::ids;
    assert_eq!(
        ids(&app.history(before, "limit=100").await),
        ids(&acknowledged),
        "an acknowledged event was lost"
    );
    assert_eq!(
        ids(&app.history(during, "limit=100").await),
        ids(&refused),
        "the retried events are stored once each"
    );
    app.stop().await;
}
