//! A throwaway PostgreSQL cluster owned by a test process, made the way `scripts/pg` makes one
//! (it runs that script): initdb into a fresh directory under the temp dir, as the `postgres`
//! user when running as root, on a free loopback port; stopped and removed when dropped and,
//! for the shared one, when the process exits.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// One cluster: its directory, port and URL.
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
}

/// `scripts/pg` of this repository.
fn script() -> PathBuf {
    // Both store-postgres and broker-server sit one level below the repository root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("pg")
}

/// A free loopback port (free when asked; PostgreSQL binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    /// A cluster that is not started yet, on `port`.
    pub fn on_port(port: u16) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "broker-test-pg-{}-{}-{:x}",
            std::process::id(),
            port,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        Cluster { dir, port }
    }

    /// Makes and starts a cluster on a free port.
    pub fn start() -> Cluster {
        let c = Cluster::on_port(free_port());
        c.run("start");
        c
    }

    /// `scripts/pg <cmd>` for this cluster; panics with its output when it fails.
    pub fn run(&self, cmd: &str) -> String {
        let out = Command::new(script())
            .arg(cmd)
            .env("BROKER_PG_DIR", &self.dir)
            .env("BROKER_PG_PORT", self.port.to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        assert!(
            out.status.success(),
            "scripts/pg {cmd} (dir {}, port {}) failed: {}{}",
            self.dir.display(),
            self.port,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The URL of its `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// An immediate restart: what a crash of the database looks like to its clients.
    pub fn restart(&self) {
        self.run("restart");
    }

    /// Stops the server and removes its directory.
    pub fn stop(&self) {
        let _ = Command::new(script())
            .arg("stop")
            .env("BROKER_PG_DIR", &self.dir)
            .env("BROKER_PG_PORT", self.port.to_string())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<Cluster> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(c) = SHARED.get() {
        c.stop();
    }
}

/// `DATABASE_URL` when set; else the URL of a cluster this process starts on first use and
/// stops at exit, so `cargo test -p store-postgres` needs no set-up.
pub fn shared_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if !url.is_empty() {
            return url;
        }
    }
    SHARED
        .get_or_init(|| {
            eprintln!("DATABASE_URL is not set: starting a throwaway PostgreSQL cluster");
            let c = Cluster::start();
            // SAFETY: registers a plain function to run at process exit.
            unsafe {
                libc::atexit(stop_shared);
            }
            c
        })
        .url()
}
