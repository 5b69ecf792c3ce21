//! `playpulse`: the PlayPulse service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ingest::config::{Overrides, Settings};
use ingest::Application;

#[derive(Parser)]
#[command(
    name = "playpulse",
    version,
    about = "PlayPulse: playback events in, durable, at a million a second"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the embedded default when no config file is given).
    Serve {
        /// A configuration profile (TOML), layered over config/default.toml.
        #[arg(long, env = "PLAYPULSE_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Directory of the embedded store [default: ./data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let overrides = Overrides { listen, data_dir };
            let settings = match Settings::load(config.as_deref(), std::env::vars(), &overrides) {
                Ok(settings) => settings,
                Err(error) => {
                    eprintln!("playpulse: {error}");
                    return ExitCode::from(2);
                }
            };
            ingest::telemetry::init_logging(&settings.log);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("playpulse: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(async {
                let app = Application::build(settings).await?;
                app.run_until_stopped().await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    eprintln!("playpulse: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
