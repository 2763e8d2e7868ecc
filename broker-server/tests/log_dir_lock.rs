//! The log store is single-node: a second `broker` process on a data directory a running
//! broker holds exits at once with a message naming the directory, and the lock dies with
//! its holder (`kill -9` included), so the next broker starts without any clean-up.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_broker");

fn command(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "--store",
        "log",
        "--data-dir",
        dir.to_str().unwrap(),
        "--kafka-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ])
    .env_remove("DATABASE_URL")
    .env_remove("BROKER_STORE")
    .env_remove("BROKER_DATABASE_URL")
    .env_remove("BROKER_DATA_DIR")
    .env_remove("BROKER_CONFIG")
    .env("RUST_LOG", "info");
    c
}

/// A running broker whose stderr lines arrive on a channel; killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(dir: &Path) -> Running {
        let mut child = command(dir)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn broker");
        let stderr = child.stderr.take().unwrap();
        let pid = child.id();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[broker {pid}] {line}");
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

    /// Waits until the broker listens and answers `/healthz`.
    fn wait_serving(&mut self) {
        let line = self.wait_for("broker listening", Duration::from_secs(30));
        let http = port_of(&line, "http");
        let mut conn = std::net::TcpStream::connect(&http).expect("connect to /healthz");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "/healthz: {answer}");
    }

    /// SIGTERM; the exit code.
    fn terminate(&mut self) -> i32 {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().expect("wait");
        status.code().unwrap_or(-1)
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

/// Runs a broker that is expected to exit by itself within `timeout`: (exit code, stderr
/// and stdout). Killed, and the test failed, if it is still running then.
fn run_expecting_exit(dir: &Path, timeout: Duration) -> (i32, String) {
    let mut child = command(dir)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn broker");
    let (mut err, mut out) = (child.stderr.take().unwrap(), child.stdout.take().unwrap());
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let text = readers.0.join().unwrap() + &readers.1.join().unwrap();
            panic!("the second broker was still running after {timeout:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = readers.0.join().unwrap() + &readers.1.join().unwrap();
    (status.code().unwrap_or(-1), text)
}

#[test]
fn a_second_broker_on_a_data_dir_is_refused_and_the_lock_dies_with_its_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let lock_file = dir.join(store_log::LOCK_FILE);

    let mut first = Running::start(&dir);
    first.wait_serving();
    let first_pid = first.child.id();
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap().trim(),
        first_pid.to_string()
    );

    // The second one: out at once, with the whole message, naming the holder.
    let (code, text) = run_expecting_exit(&dir, Duration::from_secs(10));
    assert_ne!(code, 0, "{text}");
    let expected = format!(
        "data directory {} is in use by another broker process (pid {first_pid}, lock file {}); \
         the log store is single-node: run one broker per data directory, or use --store \
         postgres to run several brokers over one database",
        dir.display(),
        lock_file.display()
    );
    assert!(
        text.lines().any(|l| l == format!("broker: {expected}")),
        "expected the line\nbroker: {expected}\nin:\n{text}"
    );
    assert!(!text.contains("broker listening"), "{text}");
    // The refused broker changed nothing: the first one still serves, and holds the lock.
    first.wait_serving();
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap().trim(),
        first_pid.to_string()
    );

    // kill -9: no close, no clean-shutdown marker, the lock file stays behind; the kernel
    // dropped the lock with the process.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(lock_file.exists());

    let mut third = Running::start(&dir);
    let opened = third.wait_for("opened log store", Duration::from_secs(30));
    assert!(opened.contains("unclean"), "{opened}");
    third.wait_serving();
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap().trim(),
        third.child.id().to_string()
    );
    assert_eq!(third.terminate(), 0);
    drop(third);
    drop(first);
    tmp.close().unwrap();
}
