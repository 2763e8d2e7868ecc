//! The `broker` binary as an operator runs it: configuration errors (exit code and the one line
//! on stderr), start-up and shutdown logs, and PostgreSQL trouble at start (a database or role
//! that does not exist, missing rights, a server that is not up yet), against real PostgreSQL
//! clusters made with `scripts/pg`.

#[path = "../../store-postgres/tests/support/cluster.rs"]
mod cluster;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cluster::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_broker");

/// Runs the binary to completion; (exit code, stderr).
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("BROKER_STORE")
        .env_remove("BROKER_DATABASE_URL")
        .output()
        .expect("run broker");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// A running broker whose stderr lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("BROKER_STORE")
            .env_remove("BROKER_DATABASE_URL")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn broker");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[broker] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; panics with everything seen after `timeout`.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {timeout:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// SIGTERM, then the time until the process exited, and its exit code.
    fn terminate(&mut self) -> (Duration, i32) {
        let t = Instant::now();
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().expect("wait");
        let took = t.elapsed();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        (took, status.code().unwrap_or(-1))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_of(line: &str, key: &str) -> String {
    let at = line.find(&format!("{key}=")).expect(key) + key.len() + 1;
    line[at..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_database_url_with_a_conflicting_store_is_refused_naming_both() {
    let (code, err) = run(&["--store", "log", "--database-url", "postgres://u@h/db"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--store log") && err.contains("--database-url"),
        "{err}"
    );
}

#[test]
fn bad_listener_addresses_are_named() {
    for (flag, value) in [
        ("--kafka-addr", "no-such-host.invalid:9092"),
        ("--http-addr", "localhost"),
        ("--kafka-addr", "localhost:70000"),
    ] {
        let (code, err) = run(&["--store", "memory", flag, value]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(flag) && err.contains(value),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn listeners_take_host_names() {
    let mut b = Running::start(&[
        "--store",
        "memory",
        "--kafka-addr",
        "localhost:0",
        "--http-addr",
        "localhost:0",
    ]);
    let line = b.wait_for("broker listening", Duration::from_secs(30));
    assert!(port_of(&line, "kafka").starts_with("127.0.0.1:"), "{line}");
    let (_, code) = b.terminate();
    assert_eq!(code, 0);
}

#[test]
fn settings_file_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.toml");
    std::fs::write(
        &path,
        "store = \"memory\"\n\nkafka_adress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let (code, err) = run(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{} line 3, key kafka_adress", path.display()))
            && err.contains("unknown field"),
        "{err}"
    );
}

#[test]
fn the_example_settings_file_starts_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../broker.example.toml");
    let mut b = Running::start(&[
        "--config",
        example,
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--kafka-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    b.wait_for("broker listening", Duration::from_secs(30));
    assert_eq!(b.terminate().1, 0);
}

#[test]
fn help_documents_every_option_with_its_default() {
    let (code, out) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--pg-connect-timeout-secs",
        "--database-url",
        "--kafka-addr",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
    assert!(out.contains("[default: 60]"), "{out}");
}

#[test]
fn a_fresh_data_dir_is_not_reported_unclean_and_idle_shutdown_is_quick() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--store",
        "log",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--kafka-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ];
    let mut b = Running::start(&args);
    let opened = b.wait_for("opened log store", Duration::from_secs(30));
    assert!(
        opened.contains("new store") && !opened.contains("unclean"),
        "{opened}"
    );
    let listening = b.wait_for("broker listening", Duration::from_secs(30));
    // An idle Kafka connection and an idle HTTP keep-alive connection hold nothing up.
    let _kafka = std::net::TcpStream::connect(port_of(&listening, "kafka")).unwrap();
    let mut http = std::net::TcpStream::connect(port_of(&listening, "http")).unwrap();
    use std::io::{Read, Write};
    http.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let _ = http.read(&mut buf).unwrap();
    let (took, code) = b.terminate();
    assert_eq!(code, 0);
    assert!(
        took < Duration::from_millis(800),
        "idle shutdown took {took:?}"
    );

    let mut again = Running::start(&args);
    let opened = again.wait_for("opened log store", Duration::from_secs(30));
    assert!(opened.contains("last_shutdown=\"clean\""), "{opened}");
    again.wait_for("broker listening", Duration::from_secs(30));
    assert_eq!(again.terminate().1, 0);
}

#[test]
fn the_password_never_appears_and_unreachable_postgres_is_named() {
    let port = cluster::free_port();
    let url = format!("postgres://someone:s3cr3tpw@127.0.0.1:{port}/somedb");
    let (code, err) = run(&["--database-url", &url, "--pg-connect-timeout-secs", "0"]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("s3cr3tpw"), "the password leaked: {err}");
    assert!(
        err.contains(&format!(
            "host 127.0.0.1 port {port}, database somedb, role someone"
        )),
        "{err}"
    );
    assert!(!err.contains("internal error"), "{err}");
}

#[test]
fn postgres_errors_name_the_database_role_and_grant() {
    let base = cluster::shared_url();
    let (host_port, _) = base
        .trim_start_matches("postgres://")
        .split_once('/')
        .unwrap();
    let host_port = host_port.rsplit('@').next().unwrap().to_string();
    let url = |role: &str, db: &str| format!("postgres://{role}@{host_port}/{db}");

    let (code, err) = run(&[
        "--database-url",
        &url("postgres", "no_such_db"),
        "--pg-connect-timeout-secs",
        "30",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("database no_such_db, role postgres")
            && err.contains("database \"no_such_db\" does not exist")
            && err.contains("3D000"),
        "{err}"
    );
    assert!(!err.contains("internal error"), "{err}");

    let (code, err) = run(&["--database-url", &url("no_such_role", "postgres")]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("role \"no_such_role\" does not exist"),
        "{err}"
    );

    // A role that may log in but not create anything.
    psql(&base, "DROP SCHEMA IF EXISTS binary_rights CASCADE");
    psql(&base, "DROP ROLE IF EXISTS broker_norights");
    psql(&base, "CREATE ROLE broker_norights LOGIN");
    psql(&base, "REVOKE CREATE ON DATABASE postgres FROM PUBLIC");
    let args = |schema: &'static str| {
        vec![
            "--database-url".to_string(),
            url("broker_norights", "postgres"),
            "--pg-schema".to_string(),
            schema.to_string(),
        ]
    };
    let a = args("binary_rights");
    let (code, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("GRANT CREATE ON DATABASE \"postgres\" TO \"broker_norights\""),
        "{err}"
    );
    psql(&base, "CREATE SCHEMA binary_rights");
    let (code, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("GRANT USAGE, CREATE ON SCHEMA \"binary_rights\" TO \"broker_norights\""),
        "{err}"
    );
    // With exactly those rights the broker starts.
    psql(
        &base,
        "GRANT USAGE, CREATE ON SCHEMA binary_rights TO broker_norights",
    );
    let mut full = a.clone();
    full.extend(["--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"].map(String::from));
    let mut b = Running::start(&full.iter().map(String::as_str).collect::<Vec<_>>());
    b.wait_for("broker listening", Duration::from_secs(30));
    assert_eq!(b.terminate().1, 0);
    psql(&base, "DROP SCHEMA binary_rights CASCADE");
    psql(&base, "DROP ROLE broker_norights");
}

/// Runs one statement as the cluster's superuser through the `psql` of scripts/pg's install.
fn psql(url: &str, sql: &str) {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|rd| {
            let mut v: Vec<_> = rd.flatten().map(|e| e.path().join("bin/psql")).collect();
            v.sort();
            v.pop()
        })
        .filter(|p| p.exists())
        .unwrap_or_else(|| "psql".into());
    let out = Command::new(bin)
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn start_up_waits_for_postgres_to_come_up() {
    let port = cluster::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut b = Running::start(&[
        "--database-url",
        &url,
        "--pg-schema",
        "binary_wait",
        "--pg-connect-timeout-secs",
        "90",
        "--kafka-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    let warn = b.wait_for("PostgreSQL is not reachable yet", Duration::from_secs(30));
    assert!(
        warn.contains("WARN")
            && warn.contains(&format!("host 127.0.0.1 port {port}"))
            && warn.contains("refused"),
        "{warn}"
    );
    // Now a server comes up on that port; the broker connects and serves.
    let pg = Cluster::on_port(port);
    pg.run("start");
    b.wait_for("connected to PostgreSQL", Duration::from_secs(60));
    b.wait_for("broker listening", Duration::from_secs(30));
    assert_eq!(b.terminate().1, 0);
    drop(pg);
}
