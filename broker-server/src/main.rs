//! The `broker` binary: parses settings, runs the server until SIGINT or SIGTERM.

use std::process::ExitCode;

use broker_server::config::{Cli, Config};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("verify") => return verify_command(std::env::args().skip(2).collect()),
        Some("admin") => return broker_server::admin::main(std::env::args().skip(2).collect()),
        Some("users") => {
            return broker_server::security::users_cli::main(std::env::args().skip(2).collect())
        }
        _ => {}
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One clear line: clap's first line, without the usage block.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "broker: {} (see broker --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            // The driver logs PostgreSQL NOTICEs of pooled connections at INFO; they are
            // routine ("already exists, skipping"), so they show only when asked for.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::resolve(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("broker: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = {
        let _entered = runtime.enter();
        shutdown_signal()
    };
    match runtime.block_on(broker_server::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed now, before start-up
/// work begins, so a signal that arrives while the store opens or the listeners bind is a
/// clean shutdown rather than the default (immediate) termination. Needs the runtime entered.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `broker verify --data-dir DIR [--repair]`: checks the log store's files offline (see
/// `store_log::verify`); prints one line per problem and a summary; exits 1 on damage, 2 on
/// bad arguments or when the directory cannot be checked (a running broker holds it).
fn verify_command(args: Vec<String>) -> ExitCode {
    const USAGE: &str = "usage: broker verify --data-dir DIR [--repair]";
    let (mut dir, mut repair) = (None, false);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--repair" => repair = true,
            "--data-dir" => dir = it.next(),
            "-h" | "--help" => {
                println!("{USAGE}\nChecks every segment, index, time index and metadata file of a log store that no broker is running on; --repair rebuilds indexes and cuts damaged tails into quarantine files.");
                return ExitCode::SUCCESS;
            }
            _ => match a.strip_prefix("--data-dir=") {
                Some(d) => dir = Some(d.to_string()),
                None => {
                    eprintln!("broker verify: unexpected argument {a:?} ({USAGE})");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let Some(dir) = dir.or_else(|| std::env::var("BROKER_DATA_DIR").ok()) else {
        eprintln!("broker verify: --data-dir is required ({USAGE})");
        return ExitCode::from(2);
    };
    match store_log::verify(std::path::Path::new(&dir), repair) {
        Ok(report) => {
            for p in &report.problems {
                println!("{p}");
            }
            println!("{}", report.summary());
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("broker verify: {e}");
            ExitCode::from(2)
        }
    }
}
