//! `playpulse`: the PlayPulse service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use event_cql::{CassandraConfig, SchemaParams};
use platform::keys::Role;
use playpulse::logging::init_logging;
use playpulse::{Application, Overrides, Settings};

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
    /// API keys in the command store: create (printed once), list, revoke.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        /// A configuration profile (TOML), layered over config/default.toml.
        #[arg(long, env = "PLAYPULSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// Directory of the embedded store (holds the SQLite command store) [default: ./data].
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// The catalog's search index.
    Search {
        #[command(subcommand)]
        action: SearchAction,
        /// A configuration profile (TOML), layered over config/default.toml.
        #[arg(long, env = "PLAYPULSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// Directory of the embedded store [default: ./data].
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// The Cassandra schema (event-cql/schema.cql) for the settings' keyspace, replication and
    /// retention.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key; it is printed once, on stdout, and only its hash is kept.
    Create {
        /// ingest (post events), read (history, profiles, recommendations) or admin (all).
        #[arg(long)]
        role: Role,
        /// A name to list and revoke it by.
        #[arg(long)]
        name: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke the active key of this name (`keys revoke NAME` or `keys revoke --name NAME`).
    Revoke {
        #[arg(required_unless_present = "name_flag", conflicts_with = "name_flag")]
        name: Option<String>,
        #[arg(long = "name", value_name = "NAME")]
        name_flag: Option<String>,
    },
}

#[derive(Subcommand)]
enum SearchAction {
    /// Rebuild the index from the command store into a new generation, then switch the alias
    /// to it; searches keep answering from the old one meanwhile.
    Reindex {
        /// Ask the running server at this URL to do it (needed for the embedded index, which
        /// the server holds open) instead of doing it in this process.
        #[arg(long)]
        url: Option<String>,
        /// An admin API key for `--url` (when the server has auth.enabled).
        #[arg(long, env = "PLAYPULSE_API_KEY")]
        key: Option<String>,
    },
}

#[derive(Subcommand)]
enum SchemaAction {
    /// Create the keyspace and tables where missing (IF NOT EXISTS: safe to run again).
    Apply {
        /// A configuration profile (TOML), layered over config/default.toml.
        #[arg(long, env = "PLAYPULSE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the CQL that `apply` would run, filled from the settings.
    Print {
        /// A configuration profile (TOML), layered over config/default.toml.
        #[arg(long, env = "PLAYPULSE_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Schema { action } => schema(action),
        Command::Search {
            action: SearchAction::Reindex { url, key },
            config,
            data_dir,
        } => reindex(url, key, config, data_dir),
        Command::Keys {
            action,
            config,
            data_dir,
        } => keys(action, config, data_dir),
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let overrides = Overrides { listen, data_dir };
            let settings = match load_settings(config.as_deref(), &overrides) {
                Ok(settings) => settings,
                Err(code) => return code,
            };
            init_logging(&settings.log);
            let runtime = match runtime(&mut tokio::runtime::Builder::new_multi_thread()) {
                Ok(runtime) => runtime,
                Err(code) => return code,
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

/// The layered settings; a bad one is said on stderr and exits 2.
fn load_settings(
    config: Option<&std::path::Path>,
    overrides: &Overrides,
) -> Result<Settings, ExitCode> {
    Settings::load(config, std::env::vars(), overrides).map_err(|error| {
        eprintln!("playpulse: {error}");
        ExitCode::from(2)
    })
}

fn runtime(builder: &mut tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|error| {
        eprintln!("playpulse: cannot start the runtime: {error}");
        ExitCode::FAILURE
    })
}

/// `playpulse keys create|list|revoke`.
fn keys(action: KeysAction, config: Option<PathBuf>, data_dir: Option<PathBuf>) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    one_shot(config, data_dir, &mut builder, |settings| async move {
        let keys = platform::open_api_keys(&settings.platform()).await?;
        match action {
            KeysAction::Create { role, name } => {
                let (plaintext, key) = keys.create(role, &name).await?;
                eprintln!(
                    "created key `{}` (role {}, id {}); this is the only time it is shown:",
                    key.name, key.role, key.id
                );
                println!("{plaintext}");
            }
            KeysAction::List => {
                println!(
                    "{:<6} {:<24} {:<7} {:<9} {:<25} revoked_at",
                    "id", "name", "role", "prefix", "created_at"
                );
                for key in keys.list().await? {
                    println!(
                        "{:<6} {:<24} {:<7} {:<9} {:<25} {}",
                        key.id,
                        key.name,
                        key.role,
                        key.prefix,
                        platform::domain::rfc3339(key.created_at),
                        key.revoked_at
                            .map_or_else(|| "-".to_owned(), platform::domain::rfc3339)
                    );
                }
            }
            KeysAction::Revoke { name, name_flag } => {
                let name = name.or(name_flag).unwrap_or_default();
                match keys.revoke(&name).await? {
                    Some(key) => println!("revoked key `{}` (role {})", key.name, key.role),
                    None => anyhow::bail!("no active key is named `{name}`"),
                }
            }
        }
        anyhow::Ok(())
    })
}

/// `playpulse search reindex`: in this process, or through the running server with `--url`.
fn reindex(
    url: Option<String>,
    key: Option<String>,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    one_shot(config, data_dir, &mut builder, |settings| async move {
        let report = match url {
            Some(url) => {
                let mut request = reqwest::Client::new()
                    .post(format!("{}/v1/search/reindex", url.trim_end_matches('/')));
                if let Some(key) = key {
                    request = request.bearer_auth(key);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|error| anyhow::anyhow!("cannot reach {url}: {error}"))?;
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if !status.is_success() {
                    anyhow::bail!("the server answered {status}: {body}");
                }
                body
            }
            None => {
                let platform_settings = settings.platform();
                let store = platform::open_store(&platform_settings).await?;
                let index = platform::open_search(&platform_settings).map_err(|error| {
                    anyhow::anyhow!("{error}; to rebuild through a running server, pass --url")
                })?;
                let report = platform::catalog::reindex::reindex(&store, &index).await?;
                serde_json::to_value(report)?
            }
        };
        println!("{report}");
        anyhow::Ok(())
    })
}

/// A one-shot command: the layered settings, a runtime, `body`; its error said on stderr.
fn one_shot<F, Fut>(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    builder: &mut tokio::runtime::Builder,
    body: F,
) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let overrides = Overrides {
        listen: None,
        data_dir,
    };
    let settings = match load_settings(config.as_deref(), &overrides) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let runtime = match runtime(builder) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(body(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("playpulse: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `playpulse schema apply|print`.
fn schema(action: SchemaAction) -> ExitCode {
    let (SchemaAction::Apply { config } | SchemaAction::Print { config }) = &action;
    let settings = match load_settings(config.as_deref(), &Overrides::default()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let cassandra =
        match CassandraConfig::from_settings(&settings.cassandra, settings.sink.retention) {
            Ok(cassandra) => cassandra,
            Err(error) => {
                eprintln!("playpulse: {error}");
                return ExitCode::from(2);
            }
        };
    if let SchemaAction::Print { .. } = action {
        print!("{}", SchemaParams::new(&cassandra).render());
        return ExitCode::SUCCESS;
    }
    // The driver's connection chatter is noise for a one-shot command; RUST_LOG still rules.
    let mut log = settings.log.clone();
    log.level = "warn".into();
    init_logging(&log);
    let runtime = match runtime(&mut tokio::runtime::Builder::new_current_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    println!(
        "applying event-cql/schema.cql to {} (keyspace {})",
        cassandra.nodes.join(","),
        cassandra.keyspace
    );
    match runtime.block_on(event_cql::apply_schema(&cassandra)) {
        Ok((_session, report)) => {
            for line in report {
                println!("  {line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("playpulse: {error}");
            ExitCode::FAILURE
        }
    }
}
