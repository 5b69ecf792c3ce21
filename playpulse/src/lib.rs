//! PlayPulse's composition root: the layered [`settings`], the [`Service`] built from them
//! (ingest's pipeline and sink, the cache, the CQRS platform, and the [`side_paths`] declared in
//! order), and the [`Application`] that serves it until stopped. The binary `playpulse` is
//! `main.rs`.

pub mod access;
pub mod analytics_http;
pub mod app;
pub mod edge;
pub mod logging;
pub mod metric_sources;
pub mod ops;
pub mod readiness;
pub mod server;
pub mod service;
pub mod settings;
pub mod side_paths;

pub use app::Application;
pub use service::Service;
pub use settings::{Overrides, Settings};
