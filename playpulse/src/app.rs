//! The application: the service built from settings and its listener, served until a shutdown
//! signal, then drained.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::server::{self, fit_connections, ConnectionLimits};
use crate::service::Service;
use crate::settings::Settings;

pub struct Application {
    listener: TcpListener,
    service: Service,
    settings: Settings,
}

impl Application {
    /// Starts the service and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let service = Service::start(&settings).await?;
        let listen = settings.server.listen;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
        Ok(Application {
            listener,
            service,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until SIGTERM or ctrl-c, then drains.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves; then readiness turns false, requests in flight finish
    /// (connections still open after the grace are dropped), batchers write what they hold,
    /// side paths flush, and this returns, all within `server.shutdown_timeout`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            service,
            settings,
        } = self;
        let server_settings = &settings.server;
        let ready = service.state.ready.clone();
        let addr = listener.local_addr()?;
        let router = service.router()?;
        let limits = ConnectionLimits {
            max_connections: fit_connections(server_settings.max_connections.get()),
            max_connections_per_client: server_settings.max_connections_per_client.get(),
            header_timeout: server_settings.header_timeout,
        };
        ready.store(true, Ordering::Release);
        tracing::info!(%addr, sink = ?settings.sink.kind, side_paths = ?service.side_paths(), max_connections = limits.max_connections, "serving");

        let timeout = server_settings.shutdown_timeout;
        // Requests in flight get up to their own timeout to be answered; the rest of the
        // shutdown timeout is the drain's, which always runs.
        let grace = (server_settings.request_timeout + Duration::from_secs(1)).min(timeout / 2);
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<Instant>();
        let ready_flag = ready.clone();
        let stop = async move {
            shutdown.await;
            ready_flag.store(false, Ordering::Release);
            tracing::info!("shutting down: finishing requests in flight");
            let _ = stopping_tx.send(Instant::now());
        };
        server::serve(listener, router, limits, stop, grace).await;
        let stop_started = stopping_rx.await.unwrap_or_else(|_| Instant::now());

        // The router (and with it every pipeline handle) is gone: batchers flush and stop,
        // then the platform and the side paths.
        let left = timeout.saturating_sub(stop_started.elapsed());
        match tokio::time::timeout(left, service.drain()).await {
            Ok(()) => tracing::info!("drained; bye"),
            Err(_) => tracing::warn!(?timeout, "shutdown timed out with work in flight"),
        }
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
