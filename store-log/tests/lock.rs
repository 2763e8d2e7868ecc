//! The data directory is single-node: an open store holds `<dir>/lock` and a second open of
//! the directory fails with [`LogError::DataDirLocked`] until the first store is closed or
//! dropped. (A second process is refused the same way; broker-server's tests/log_dir_lock.rs
//! runs the real binary twice.)

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use broker_api::{AppendBatch, ManualClock, Record, Store, StoreError, TopicConfig};
use bytes::Bytes;
use store_log::{verify, LogError, LogOptions, LogStore, LOCK_FILE};

fn open(dir: &Path) -> Result<LogStore, LogError> {
    LogStore::open(
        dir,
        LogOptions::default(),
        Arc::new(ManualClock::new(1_000)),
    )
}

/// Asserts `r` is the lock refusal for `dir`, naming the holder `pid`; returns its message.
fn refused(r: Result<LogStore, LogError>, dir: &Path, pid: Option<u32>) -> String {
    let e = match r {
        Ok(_) => panic!("a second open of {} succeeded", dir.display()),
        Err(e) => e,
    };
    let msg = e.to_string();
    match &e {
        LogError::DataDirLocked {
            dir: d,
            lock_file,
            pid: p,
        } => {
            assert_eq!(d, dir);
            assert_eq!(lock_file, &dir.join(LOCK_FILE));
            assert_eq!(*p, pid, "{msg}");
        }
        other => panic!("expected DataDirLocked, got {other:?}"),
    }
    assert!(
        msg.starts_with(&format!(
            "data directory {} is in use by another broker process (",
            dir.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("lock file {}", dir.join(LOCK_FILE).display())),
        "{msg}"
    );
    assert!(
        msg.contains("the log store is single-node")
            && msg.contains("run one broker per data directory")
            && msg.contains("--store postgres"),
        "{msg}"
    );
    msg
}

#[tokio::test]
async fn a_second_open_is_refused_until_the_first_store_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = open(&dir).unwrap();
    first
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    first
        .append(
            "t",
            0,
            AppendBatch::new(vec![Record::from_value(Bytes::from_static(b"one"))]),
        )
        .await
        .unwrap();
    // The lock file names the holder.
    let held = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
    assert_eq!(held, format!("{}\n", std::process::id()));

    let msg = refused(open(&dir), &dir, Some(std::process::id()));
    assert!(
        msg.contains(&format!("(pid {}, lock file", std::process::id())),
        "{msg}"
    );
    // The refusal changed nothing: the first store still works, and the pid is still there.
    first
        .append(
            "t",
            0,
            AppendBatch::new(vec![Record::from_value(Bytes::from_static(b"two"))]),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(), held);
    // As a contract error it is "unavailable".
    let e = match open(&dir) {
        Err(e) => StoreError::from(e),
        Ok(_) => panic!("opened twice"),
    };
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");

    first.close().await.unwrap();
    let second = open(&dir).expect("open after close");
    assert_eq!(
        second
            .partition_offsets("t", 0)
            .await
            .unwrap()
            .high_watermark,
        2
    );
    second.close().await.unwrap();
    // Close, reopen, close again: each close lets go.
    open(&dir).unwrap().close().await.unwrap();
}

#[tokio::test]
async fn dropping_an_open_store_lets_go_of_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path()).unwrap();
    refused(open(tmp.path()), tmp.path(), Some(std::process::id()));
    drop(first);
    let again = open(tmp.path()).expect("open after drop");
    again.close().await.unwrap();
}

#[test]
fn a_lock_held_elsewhere_refuses_the_open_and_names_the_pid_it_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Another holder: its own open file description of the lock file, as another process has.
    let path = dir.join(LOCK_FILE);
    let other = File::create(&path).unwrap();
    other.try_lock().unwrap();
    std::fs::write(&path, "4242\n").unwrap();
    let msg = refused(open(dir), dir, Some(4242));
    assert!(msg.contains("(pid 4242, lock file"), "{msg}");
    // Nothing was written: no metadata, no format version, and the pid is the holder's.
    assert!(!dir.join("meta").exists());
    assert!(!dir.join(store_log::FORMAT_VERSION_FILE).exists());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242\n");

    // A holder that has not written its pid (yet), or an earlier release, which wrote none.
    std::fs::write(&path, "").unwrap();
    let msg = refused(open(dir), dir, None);
    assert!(msg.contains("(pid unknown, lock file"), "{msg}");

    drop(other);
    let s = open(dir).expect("open once the holder let go");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}\n", std::process::id())
    );
    drop(s);
}

#[tokio::test]
async fn verify_refuses_a_directory_an_open_store_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = open(dir).unwrap();
    for repair in [false, true] {
        match verify(dir, repair) {
            Err(LogError::DataDirLocked { dir: d, pid, .. }) => {
                assert_eq!(d, dir);
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("verify (repair {repair}) of a held directory: {other:?}"),
        }
    }
    s.close().await.unwrap();
    let report = verify(dir, true).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    // verify let go too.
    open(dir).unwrap().close().await.unwrap();
}

#[tokio::test]
async fn an_open_store_is_refused_while_verify_holds_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    open(dir).unwrap().close().await.unwrap();
    // What verify takes, taken the same way (verify itself returns before a test could look).
    let held = File::options()
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .unwrap();
    held.try_lock().unwrap();
    assert!(matches!(
        verify(dir, false),
        Err(LogError::DataDirLocked { .. })
    ));
    assert!(matches!(open(dir), Err(LogError::DataDirLocked { .. })));
    held.unlock().unwrap();
    open(dir).unwrap().close().await.unwrap();
}
