//! `broker admin`: operate a running broker without Java. Topics and consumer groups go
//! through the Kafka protocol at `--bootstrap`, queues through the SQS API at `--http`.
//! Output is an aligned table, or JSON with `--json`; errors go to stderr with exit code 1
//! (2 for bad arguments).

pub mod kafka;
pub mod secure;
pub mod sqs;
pub mod table;
pub mod transport;

use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};

use kafka::{parse_kv, KafkaAdmin, ResetTarget};
use table::Output;

/// Command line of `broker admin`.
#[derive(Debug, Parser)]
#[command(
    name = "broker admin",
    about = "Inspect and change a running broker: topics and consumer groups over the Kafka protocol, queues over the SQS API.",
    after_help = "Examples:\n  broker admin --bootstrap 127.0.0.1:9092 topics list\n  broker admin topics create orders --partitions 6 --config retention.ms=86400000\n  broker admin groups reset-offsets billing --topic orders --to-earliest --execute\n  broker admin --http http://127.0.0.1:9324 queues purge jobs"
)]
pub struct AdminCli {
    /// Kafka address of the broker.
    #[arg(
        long,
        global = true,
        env = "BROKER_BOOTSTRAP",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// Base URL of the broker's HTTP API (SQS), for `queues`.
    #[arg(
        long,
        global = true,
        env = "BROKER_HTTP_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:9324"
    )]
    pub http: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for the broker to connect and answer each request, in seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    pub timeout_secs: u64,
    /// Security protocol of the --bootstrap listener: PLAINTEXT, SSL, SASL_PLAINTEXT or
    /// SASL_SSL.
    #[arg(
        long,
        global = true,
        env = "BROKER_SECURITY_PROTOCOL",
        value_name = "PROTOCOL",
        default_value = "PLAINTEXT"
    )]
    pub security_protocol: String,
    /// PEM CA certificates that signed the broker's certificate (SSL, SASL_SSL).
    #[arg(long, global = true, env = "BROKER_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate chain, for listeners that require one (mTLS).
    #[arg(
        long,
        global = true,
        env = "BROKER_TLS_CLIENT_CERT",
        value_name = "FILE"
    )]
    pub tls_client_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-client-cert.
    #[arg(
        long,
        global = true,
        env = "BROKER_TLS_CLIENT_KEY",
        value_name = "FILE"
    )]
    pub tls_client_key: Option<std::path::PathBuf>,
    /// SASL mechanism (SASL_PLAINTEXT, SASL_SSL): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(
        long,
        global = true,
        env = "BROKER_SASL_MECHANISM",
        value_name = "MECHANISM",
        default_value = "SCRAM-SHA-512"
    )]
    pub sasl_mechanism: String,
    /// SASL user; the password is read from the environment variable BROKER_SASL_PASSWORD.
    #[arg(long, global = true, env = "BROKER_SASL_USERNAME", value_name = "USER")]
    pub sasl_username: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// What to operate on.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCmd),
    /// Kafka consumer groups.
    #[command(subcommand)]
    Groups(GroupsCmd),
    /// SQS queues.
    #[command(subcommand)]
    Queues(QueuesCmd),
}

/// `broker admin topics ...`
#[derive(Debug, Subcommand)]
pub enum TopicsCmd {
    /// Every topic with its partition count.
    List,
    /// Partitions (offsets) and settings of one topic.
    Describe { name: String },
    /// Creates a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replication factor (kept as a setting; the store keeps the data safe).
        #[arg(long, default_value_t = 1)]
        replication_factor: i16,
        /// A topic setting, KEY=VALUE (repeatable), e.g. retention.ms=86400000.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// Deletes a topic and its data.
    Delete { name: String },
    /// Raises a topic's partition count (CreatePartitions); existing partitions keep their data.
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: i32,
    },
    /// Sets or removes topic settings (IncrementalAlterConfigs).
    AlterConfig {
        name: String,
        /// A setting to set, KEY=VALUE (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A setting to reset to its default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

/// `broker admin groups ...`
#[derive(Debug, Subcommand)]
pub enum GroupsCmd {
    /// Every consumer group with its state.
    List,
    /// Members and per-partition committed offsets and lag of one group.
    Describe { group: String },
    /// Moves a group's committed offsets on one topic; a dry run unless --execute.
    #[command(group(
        ArgGroup::new("to")
            .required(true)
            .args(["to_earliest", "to_latest", "to_timestamp", "to_offset"])
    ))]
    ResetOffsets {
        group: String,
        /// The topic whose partitions are reset.
        #[arg(long)]
        topic: String,
        /// To the first offset still stored.
        #[arg(long)]
        to_earliest: bool,
        /// To the end of each partition.
        #[arg(long)]
        to_latest: bool,
        /// To the first record at or after this time (ms since the epoch).
        #[arg(long, value_name = "MS")]
        to_timestamp: Option<i64>,
        /// To this offset (clamped to each partition's range).
        #[arg(long, value_name = "N")]
        to_offset: Option<i64>,
        /// Commit the new offsets (without it, only the plan is printed).
        #[arg(long)]
        execute: bool,
    },
}

/// `broker admin queues ...`
#[derive(Debug, Subcommand)]
pub enum QueuesCmd {
    /// Every queue with its approximate message counts.
    List,
    /// Deletes every message of a queue.
    Purge { name: String },
}

/// Runs `broker admin` with `args` (the words after `admin`); the process exit code.
pub fn main(args: Vec<String>) -> ExitCode {
    let cli =
        match AdminCli::try_parse_from(std::iter::once("broker admin".to_string()).chain(args)) {
            Ok(cli) => cli,
            Err(e) => {
                use clap::error::ErrorKind;
                if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                    || matches!(
                        e.kind(),
                        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    )
                {
                    let _ = e.print();
                    return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    };
                }
                // clap's message without the usage block, on one line.
                let text = e.render().to_string();
                let message: Vec<&str> = text
                    .lines()
                    .take_while(|l| !l.starts_with("Usage:"))
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                    .collect();
                let message = message.join(" ");
                eprintln!(
                    "broker admin: {} (see broker admin --help)",
                    message.trim_start_matches("error: ")
                );
                return ExitCode::from(2);
            }
        };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("broker admin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(out) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out.json).unwrap_or_default()
                );
            } else {
                print!("{}", out.text);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("broker admin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command.
pub async fn run(cli: AdminCli) -> anyhow::Result<Output> {
    let timeout = Duration::from_secs(cli.timeout_secs.max(1));
    let flags = secure::SecurityFlags {
        protocol: cli.security_protocol,
        tls_ca: cli.tls_ca,
        tls_client_cert: cli.tls_client_cert,
        tls_client_key: cli.tls_client_key,
        sasl_mechanism: cli.sasl_mechanism,
        sasl_username: cli.sasl_username,
    };
    let security = || secure::ClientSecurity::from_flags(&flags);
    match cli.command {
        Command::Queues(cmd) => {
            let q = sqs::SqsAdmin::new(&cli.http, timeout)?;
            match cmd {
                QueuesCmd::List => q.list().await,
                QueuesCmd::Purge { name } => q.purge(&name).await,
            }
        }
        Command::Topics(cmd) => {
            // Arguments are checked before connecting.
            let parsed = match &cmd {
                TopicsCmd::Create { configs, .. } => configs
                    .iter()
                    .map(|c| parse_kv("--config", c))
                    .collect::<anyhow::Result<Vec<_>>>()?,
                TopicsCmd::AlterConfig { set, .. } => set
                    .iter()
                    .map(|c| parse_kv("--set", c))
                    .collect::<anyhow::Result<Vec<_>>>()?,
                _ => Vec::new(),
            };
            if let TopicsCmd::Create { partitions, .. } = &cmd {
                if *partitions < 1 {
                    anyhow::bail!("--partitions must be at least 1, got {partitions}");
                }
            }
            let mut k = KafkaAdmin::connect(&cli.bootstrap, timeout, &security()?).await?;
            match cmd {
                TopicsCmd::List => k.topics_list().await,
                TopicsCmd::Describe { name } => k.topics_describe(&name).await,
                TopicsCmd::Create {
                    name,
                    partitions,
                    replication_factor,
                    ..
                } => {
                    k.topics_create(&name, partitions, replication_factor, &parsed)
                        .await
                }
                TopicsCmd::Delete { name } => k.topics_delete(&name).await,
                TopicsCmd::AddPartitions { name, partitions } => {
                    k.topics_add_partitions(&name, partitions).await
                }
                TopicsCmd::AlterConfig { name, delete, .. } => {
                    k.topics_alter_config(&name, &parsed, &delete).await
                }
            }
        }
        Command::Groups(cmd) => {
            let mut k = KafkaAdmin::connect(&cli.bootstrap, timeout, &security()?).await?;
            match cmd {
                GroupsCmd::List => k.groups_list().await,
                GroupsCmd::Describe { group } => k.groups_describe(&group).await,
                GroupsCmd::ResetOffsets {
                    group,
                    topic,
                    to_earliest,
                    to_latest,
                    to_timestamp,
                    to_offset,
                    execute,
                } => {
                    let target = if to_earliest {
                        ResetTarget::Earliest
                    } else if to_latest {
                        ResetTarget::Latest
                    } else if let Some(ms) = to_timestamp {
                        ResetTarget::Timestamp(ms)
                    } else if let Some(n) = to_offset {
                        ResetTarget::Offset(n)
                    } else {
                        anyhow::bail!("give one of --to-earliest, --to-latest, --to-timestamp MS, --to-offset N")
                    };
                    k.groups_reset_offsets(&group, &topic, target, execute)
                        .await
                }
            }
        }
    }
}
