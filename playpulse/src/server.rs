//! The listener: HTTP/1.1 connections served by hyper under limits a hostile client cannot
//! outlast. axum's own `serve` has no connection limit and no timeouts, so one client sending a
//! byte a second, or enough idle connections to use up the file descriptors, could take the
//! service down.
//!
//! - **Connections** are bounded by `server.max_connections`, and per client address by
//!   `server.max_connections_per_client` (so one address cannot take them all, and a probe from
//!   elsewhere still gets in): past either, a new connection gets a JSON 503 and is closed at
//!   once, so the ones already served keep their file descriptors.
//! - **Headers** must arrive whole within `server.header_timeout` of the connection becoming
//!   idle (hyper's header read timer starts when it waits for a request head), so the same limit
//!   closes idle keep-alive connections and header tricklers.
//! - **Bodies** are bounded by the handlers (`server.body_timeout`, see `ingest::http`).
//! - **Shutdown**: every connection is told to finish its request and close; those still open
//!   after `grace` are dropped, so a half-sent request cannot hold the drain.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// What bounds each connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub header_timeout: Duration,
}

/// The body of the answer to a connection past a limit, written without parsing the request.
const TOO_MANY_CONNECTIONS: &str =
    "{\"error\":\"too many connections: retry later or use keep-alive\"}";

/// Serves `router` on `listener` until `shutdown` resolves, then lets each connection finish
/// its request for at most `grace` before dropping it.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_client = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set does not grow with the connections served.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and the like: back off briefly rather than spin; the connections
                // already open keep being served meanwhile.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            connections.spawn(refuse(stream));
            continue;
        };
        let Some(client_slot) =
            ClientSlot::take(&per_client, peer.ip(), limits.max_connections_per_client)
        else {
            connections.spawn(refuse(stream));
            continue;
        };
        let router = router.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            serve_connection(stream, peer, router, limits, stop).await;
            drop(client_slot);
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let finished = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            open = connections.len(),
            ?grace,
            "connections still open after the shutdown grace: dropped"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(router.map_request(
        move |mut request: hyper::Request<Incoming>| {
            // What axum's `ConnectInfo` extractor reads: per-client limits key on it.
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        },
    ));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut stopping = *stop.borrow();
    if stopping {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection closed with an error");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One connection counted against its client address; given back on drop. The map holds only
/// addresses with connections open, so it is bounded by `max_connections`.
struct ClientSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientSlot {
    fn take(
        counts: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        max: usize,
    ) -> Option<ClientSlot> {
        let mut map = counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let open = map.entry(ip).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(ClientSlot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(open) = map.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Answers a connection past the limit with a 503, without reading its request.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{TOO_MANY_CONNECTIONS}",
            TOO_MANY_CONNECTIONS.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Raises the soft limit on open files to the hard limit, and returns how many connections fit
/// under it with room for the store's own files.
pub fn fit_connections(wanted: usize) -> usize {
    /// Files kept for the store's segments and indexes, the command store and the engines'
    /// sockets.
    const RESERVED_FILES: u64 = 1024;
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-files limit");
            return wanted;
        }
    };
    let available = open_files.saturating_sub(RESERVED_FILES).max(16) as usize;
    if wanted > available {
        tracing::warn!(
            wanted,
            available,
            "server.max_connections is above what the open-files limit allows: lowered"
        );
    }
    wanted.min(available)
}
