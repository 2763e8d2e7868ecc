//! `broker users add|list|remove`: SCRAM credentials written straight into the store, with
//! the server's store flags, to bootstrap the first user before the broker runs (the log
//! store is locked by a running broker; use AlterUserScramCredentials then).

use std::io::Read;
use std::process::ExitCode;

use broker_api::ScramMechanism;
use clap::{Parser, Subcommand};

use crate::config::{Cli, Config};
use crate::security::scram;

#[derive(Debug, Parser)]
#[command(
    name = "broker users",
    about = "Manage SCRAM credentials in the store (offline: stop the broker of a log store first)."
)]
struct UsersCli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Settings file of the server (its store settings are used).
    #[arg(long, global = true, env = "BROKER_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Storage engine: log or postgres.
    #[arg(long, global = true, env = "BROKER_STORE")]
    store: Option<String>,
    /// Directory of the log store.
    #[arg(long, global = true, env = "BROKER_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// PostgreSQL URL of the postgres store.
    #[arg(long, global = true, env = "BROKER_DATABASE_URL")]
    database_url: Option<String>,
    /// PostgreSQL schema of the postgres store.
    #[arg(long, global = true, env = "BROKER_PG_SCHEMA")]
    pg_schema: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Adds or replaces NAME's credential; the password is read from standard input.
    Add {
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN logins are checked against either).
        #[arg(long)]
        mechanism: ScramMechanism,
        /// Read the password from standard input (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// PBKDF2 iterations (4096-16384).
        #[arg(long, default_value_t = scram::MIN_ITERATIONS)]
        iterations: u32,
    },
    /// Lists users with their mechanisms and iteration counts.
    List,
    /// Removes NAME's credential of one mechanism, or of both.
    Remove {
        name: String,
        #[arg(long)]
        mechanism: Option<ScramMechanism>,
    },
}

/// Runs `broker users ARGS`.
pub fn main(args: Vec<String>) -> ExitCode {
    let cli =
        match UsersCli::try_parse_from(std::iter::once("broker users".to_string()).chain(args)) {
            Ok(c) => c,
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
        };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("broker users: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker users: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: UsersCli) -> Result<(), String> {
    let mut server_args = vec!["broker".to_string()];
    let mut flag = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            server_args.push(format!("--{name}"));
            server_args.push(v);
        }
    };
    flag("config", cli.config.map(|p| p.display().to_string()));
    flag("store", cli.store);
    flag("data-dir", cli.data_dir.map(|p| p.display().to_string()));
    flag("database-url", cli.database_url);
    flag("pg-schema", cli.pg_schema);
    let server_cli = <Cli as Parser>::try_parse_from(&server_args).map_err(|e| e.to_string())?;
    let config = Config::resolve(server_cli).map_err(|e| e.to_string())?;
    if config.store == crate::config::StoreKind::Memory {
        return Err("the memory store keeps nothing: use --store log or postgres".into());
    }
    if let Cmd::Add { iterations, .. } = &cli.cmd {
        if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(iterations) {
            return Err(format!(
                "--iterations must be {}-{}",
                scram::MIN_ITERATIONS,
                scram::MAX_ITERATIONS
            ));
        }
    }
    let password = match &cli.cmd {
        Cmd::Add { .. } => {
            let mut text = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut text)
                .map_err(|e| format!("reading the password from standard input: {e}"))?;
            let pw = text.strip_suffix('\n').unwrap_or(&text);
            let pw = pw.strip_suffix('\r').unwrap_or(pw).to_string();
            if pw.is_empty() {
                return Err("the password on standard input is empty".into());
            }
            Some(pw)
        }
        _ => None,
    };
    let clock: broker_api::SharedClock = std::sync::Arc::new(broker_api::SystemClock);
    let store = crate::open_store(&config, clock).await.map_err(|e| {
        let text = e.to_string();
        if text.contains("lock") {
            format!("{text} (a broker is running on this data directory: stop it, or use AlterUserScramCredentials, e.g. kafka-configs --alter --add-config SCRAM-SHA-256=[password=...])")
        } else {
            text
        }
    })?;
    let result = async {
        match cli.cmd {
            Cmd::Add {
                name,
                mechanism,
                iterations,
                ..
            } => {
                let pw = password.unwrap_or_default();
                let cred = tokio::task::spawn_blocking(move || {
                    scram::new_credential(&name, mechanism, &pw, iterations)
                })
                .await
                .map_err(|e| e.to_string())?;
                let (user, m) = (cred.user.clone(), cred.mechanism);
                store
                    .put_credential(cred)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("stored the {m} credential of {user} ({iterations} iterations)");
            }
            Cmd::List => {
                for c in store.list_credentials().await.map_err(|e| e.to_string())? {
                    println!("{}\t{}\t{}", c.user, c.mechanism, c.iterations);
                }
            }
            Cmd::Remove { name, mechanism } => {
                let mechanisms = match mechanism {
                    Some(m) => vec![m],
                    None => ScramMechanism::ALL.to_vec(),
                };
                let mut removed = 0;
                for m in mechanisms {
                    if store
                        .delete_credential(&name, m)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        println!("removed the {m} credential of {name}");
                        removed += 1;
                    }
                }
                if removed == 0 {
                    return Err(format!("{name} has no such credential"));
                }
            }
        }
        Ok::<(), String>(())
    }
    .await;
    let _ = store.close().await;
    result
}
