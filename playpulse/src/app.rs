//! The application: the service built from settings and its listener, served until a shutdown
//! signal, then drained.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use anyhow::Context;
use tokio::net::TcpListener;

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

    /// Serves until `shutdown` resolves; then readiness turns false, requests in flight finish,
    /// batchers write what they hold, side paths flush, and this returns, all within
    /// `server.shutdown_timeout`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            service,
            settings,
        } = self;
        let ready = service.state.ready.clone();
        let addr = listener.local_addr()?;
        let router = service.router();
        ready.store(true, Ordering::Release);
        tracing::info!(%addr, sink = ?settings.sink.kind, side_paths = ?service.side_paths(), "serving");

        let (drain_started, drain_signal) = tokio::sync::oneshot::channel::<()>();
        let ready_flag = ready.clone();
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            ready_flag.store(false, Ordering::Release);
            tracing::info!("shutting down: draining requests in flight");
            let _ = drain_started.send(());
        });
        let server = tokio::spawn(async move { serve.await });

        // The drain is bounded from the moment the signal arrives.
        let _ = drain_signal.await;
        let timeout = settings.server.shutdown_timeout;
        let drained = tokio::time::timeout(timeout, async {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "server error"),
                Err(error) => tracing::error!(%error, "server task failed"),
            }
            // The router (and with it every pipeline handle) is gone: batchers flush and stop,
            // then the platform and the side paths.
            service.drain().await;
        })
        .await;
        match drained {
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
