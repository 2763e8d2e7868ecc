//! `broker admin` through the real binary against a real `broker` process, on the log store
//! and on the postgres store (DATABASE_URL, else a throwaway cluster made by scripts/pg):
//! topics, settings, consumer-group offset resets, queues, errors and exit codes; then the
//! operator metrics on `/metrics` after that traffic.

#[path = "../../store-postgres/tests/support/cluster.rs"]
mod cluster;
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use broker_api::StoredRecord;
use broker_server::kafka::client::RawClient;
use broker_server::kafka::records::encode_batch;
use bytes::Bytes;
use kafka_protocol::messages::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_broker");

/// Environment variables that would change what the spawned processes do.
const CLEARED: &[&str] = &[
    "DATABASE_URL",
    "BROKER_STORE",
    "BROKER_DATABASE_URL",
    "BROKER_CONFIG",
    "BROKER_SQS_ACCESS_KEY_ID",
    "BROKER_SQS_SECRET_ACCESS_KEY",
    "BROKER_SQS_CREDENTIALS_FILE",
    "BROKER_BOOTSTRAP",
    "BROKER_HTTP_URL",
];

/// A running `broker` process and its bound addresses.
struct Broker {
    child: Child,
    kafka: String,
    http: String,
}

impl Broker {
    fn start(args: &[&str]) -> Broker {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(["--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for v in CLEARED {
            cmd.env_remove(v);
        }
        let mut child = cmd.spawn().expect("spawn broker");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[broker] {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let line = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains("broker listening") => break l,
                Ok(l) => seen.push(l),
                Err(_) => panic!("the broker did not start:\n{}", seen.join("\n")),
            }
        };
        let field = |key: &str| {
            let at = line.find(&format!("{key}=")).expect(key) + key.len() + 1;
            line[at..].split_whitespace().next().unwrap().to_string()
        };
        Broker {
            kafka: field("kafka"),
            http: format!("http://{}", field("http")),
            child,
        }
    }

    /// `broker admin --bootstrap ... --http ... ARGS`: (exit code, stdout, stderr).
    fn admin(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(BIN);
        cmd.arg("admin")
            .args(["--bootstrap", &self.kafka, "--http", &self.http])
            .args(args);
        for v in CLEARED {
            cmd.env_remove(v);
        }
        let out = cmd.output().expect("run broker admin");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        eprintln!("$ broker admin {}\n{stdout}{stderr}", args.join(" "));
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }

    /// Runs an admin command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.admin(args);
        assert_eq!(code, 0, "broker admin {args:?} failed: {err}");
        out
    }

    /// Runs an admin command with `--json` that must succeed; its parsed output.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("JSON output")
    }

    /// `GET /metrics`.
    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// One SQS JSON action.
    async fn sqs(&self, action: &str, input: Value) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/", self.http))
            .header("X-Amz-Target", format!("AmazonSQS.{action}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .body(input.to_string())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{action}: {}", resp.status());
        resp.json().await.unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rows<'a>(v: &'a Value, key: &str, value: &str) -> Vec<&'a Value> {
    v.as_array()
        .expect("an array")
        .iter()
        .filter(|r| r[key] == json!(value))
        .collect()
}

/// The value of the first sample of `series` (name and labels as printed), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn must(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

async fn produce_records(c: &mut RawClient, topic: &str, partition: i32, n: usize) {
    let records: Vec<StoredRecord> = (0..n)
        .map(|i| StoredRecord {
            offset: i as i64,
            timestamp_ms: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: vec![],
            not_before_ms: None,
        })
        .collect();
    let p = common::produce(c, topic, partition, encode_batch(&records, false)).await;
    assert_eq!(p.error_code, 0, "{p:?}");
}

/// The whole admin tour and the metrics check on one running broker.
async fn exercise(b: &Broker, store: &str) {
    // Topics: create, list, settings.
    let out = b.ok(&[
        "topics",
        "create",
        "orders",
        "--partitions",
        "2",
        "--config",
        "retention.ms=86400000",
    ]);
    assert!(
        out.contains("Created topic orders with 2 partitions"),
        "{out}"
    );
    let list = b.ok(&["topics", "list"]);
    assert!(list.starts_with("TOPIC"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().take(2).eq(["orders", "2"])),
        "{list}"
    );
    let listed = b.json(&["topics", "list"]);
    assert_eq!(rows(&listed, "topic", "orders")[0]["partitions"], json!(2));

    let (code, _, err) = b.admin(&["topics", "create", "orders", "--partitions", "2"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("\"orders\"") && err.contains("TOPIC_ALREADY_EXISTS"),
        "{err}"
    );
    let (code, _, err) = b.admin(&["topics", "describe", "no-such-topic"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no-such-topic") && err.contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{err}"
    );
    let (code, _, err) = b.admin(&["topics", "alter-config", "orders", "--set", "retention.ms"]);
    assert_eq!(code, 1);
    assert!(err.contains("--set expects KEY=VALUE"), "{err}");

    b.ok(&[
        "topics",
        "alter-config",
        "orders",
        "--set",
        "retention.ms=3600000",
        "--set",
        "cleanup.policy=delete",
    ]);
    let d = b.json(&["topics", "describe", "orders"]);
    let retention = &rows(&d["configs"], "config", "retention.ms")[0];
    assert_eq!(retention["value"], json!("3600000"), "{d}");
    assert_eq!(retention["source"], json!("topic"), "{d}");
    assert_eq!(
        rows(&d["configs"], "config", "cleanup.policy")[0]["value"],
        json!("delete")
    );
    let text = b.ok(&["topics", "describe", "orders"]);
    assert!(
        text.contains("Partitions: 2") && text.contains("retention.ms"),
        "{text}"
    );
    b.ok(&[
        "topics",
        "alter-config",
        "orders",
        "--delete",
        "cleanup.policy",
    ]);
    let d = b.json(&["topics", "describe", "orders"]);
    assert_eq!(
        rows(&d["configs"], "config", "cleanup.policy")[0]["source"],
        json!("default")
    );

    // Consumer groups: commit, then reset to earliest (dry run, then for real).
    let mut c = RawClient::connect(b.kafka.as_str()).await.unwrap();
    produce_records(&mut c, "orders", 0, 5).await;
    produce_records(&mut c, "orders", 1, 3).await;
    common::commit(&mut c, "billing", "orders", &[(0, 4), (1, 3)]).await;
    let groups = b.json(&["groups", "list"]);
    assert_eq!(rows(&groups, "group", "billing").len(), 1, "{groups}");
    let g = b.json(&["groups", "describe", "billing"]);
    let p0 = &g["offsets"].as_array().unwrap()[0];
    assert_eq!(
        (
            &p0["partition"],
            &p0["current_offset"],
            &p0["end_offset"],
            &p0["lag"]
        ),
        (&json!(0), &json!(4), &json!(5), &json!(1)),
        "{g}"
    );

    let dry = b.ok(&[
        "groups",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
    ]);
    assert!(dry.contains("Dry run"), "{dry}");
    let plan = b.json(&[
        "groups",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
    ]);
    assert_eq!(plan["executed"], json!(false));
    assert_eq!(
        plan["offsets"],
        json!([
            {"topic": "orders", "partition": 0, "current_offset": 4, "new_offset": 0},
            {"topic": "orders", "partition": 1, "current_offset": 3, "new_offset": 0},
        ])
    );
    let g = b.json(&["groups", "describe", "billing"]);
    assert_eq!(
        g["offsets"][0]["current_offset"],
        json!(4),
        "a dry run changed offsets: {g}"
    );
    assert_eq!(
        g["offsets"][1]["current_offset"],
        json!(3),
        "a dry run changed offsets: {g}"
    );

    let done = b.ok(&[
        "groups",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
        "--execute",
    ]);
    assert!(
        done.contains("Reset the offsets of group billing"),
        "{done}"
    );
    let g = b.json(&["groups", "describe", "billing"]);
    assert_eq!(g["offsets"][0]["current_offset"], json!(0), "{g}");
    assert_eq!(g["offsets"][1]["current_offset"], json!(0), "{g}");
    assert_eq!(g["offsets"][0]["lag"], json!(5), "{g}");

    b.ok(&[
        "groups",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-offset",
        "2",
        "--execute",
    ]);
    let g = b.json(&["groups", "describe", "billing"]);
    assert_eq!(g["offsets"][0]["current_offset"], json!(2), "{g}");
    b.ok(&[
        "groups",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-latest",
        "--execute",
    ]);
    let g = b.json(&["groups", "describe", "billing"]);
    assert_eq!(
        (
            &g["offsets"][0]["current_offset"],
            &g["offsets"][1]["current_offset"]
        ),
        (&json!(5), &json!(3)),
        "{g}"
    );

    let (code, _, err) = b.admin(&["groups", "reset-offsets", "billing", "--topic", "orders"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--to-earliest"), "{err}");
    let (code, _, err) = b.admin(&[
        "groups",
        "reset-offsets",
        "billing",
        "--topic",
        "no-such-topic",
        "--to-earliest",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no-such-topic") && err.contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{err}"
    );

    // A group with an active member is refused, naming it.
    let mut member = RawClient::connect(b.kafka.as_str()).await.unwrap();
    let join = common::consumer_join("busy");
    let joined: JoinGroupResponse = member.call(ApiKey::JoinGroup, 3, &join).await.unwrap();
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let (code, _, err) = b.admin(&[
        "groups",
        "reset-offsets",
        "busy",
        "--topic",
        "orders",
        "--to-earliest",
        "--execute",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("\"busy\"") && err.contains("1 active member"),
        "{err}"
    );

    // Queues over SQS: create, send, list, purge.
    let url = b.sqs("CreateQueue", json!({"QueueName": "jobs"})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..3 {
        b.sqs(
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": format!("m{i}")}),
        )
        .await;
    }
    let queues = b.json(&["queues", "list"]);
    let jobs = rows(&queues, "queue", "jobs");
    assert_eq!(jobs[0]["visible"], json!(3), "{queues}");
    assert_eq!(jobs[0]["url"], json!(url));
    assert!(b.ok(&["queues", "list"]).contains("jobs"));
    let purged = b.ok(&["queues", "purge", "jobs"]);
    assert!(purged.contains("Purged queue jobs"), "{purged}");
    let queues = b.json(&["queues", "list"]);
    assert_eq!(
        rows(&queues, "queue", "jobs")[0]["visible"],
        json!(0),
        "{queues}"
    );
    let (code, _, err) = b.admin(&["queues", "purge", "no-such-queue"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no-such-queue") && err.contains("QueueDoesNotExist"),
        "{err}"
    );

    // Delete.
    b.ok(&["topics", "create", "scratch"]);
    assert!(b
        .ok(&["topics", "delete", "scratch"])
        .contains("Deleted topic scratch"));
    let (code, _, err) = b.admin(&["topics", "delete", "scratch"]);
    assert_eq!(code, 1);
    assert!(err.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{err}");

    // A produce to a partition that does not exist counts as a per-partition error.
    let records = encode_batch(
        &[StoredRecord {
            offset: 0,
            timestamp_ms: 1,
            key: None,
            value: Some(Bytes::from_static(b"x")),
            headers: vec![],
            not_before_ms: None,
        }],
        false,
    );
    let p = common::produce(&mut c, "orders", 7, records).await;
    assert_eq!(p.error_code, 3);

    // Metrics after that traffic; the Kafka connection above is still open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = b.metrics().await;
    assert!(must(&m, "broker_connections_open{protocol=\"kafka\"}") >= 1.0);
    assert!(must(&m, "broker_connections_open{protocol=\"http\"}") >= 1.0);
    assert!(must(&m, "broker_connections_accepted_total{protocol=\"kafka\"}") >= 20.0);
    assert!(must(&m, "broker_received_bytes_total{protocol=\"kafka\"}") > 1000.0);
    assert!(must(&m, "broker_sent_bytes_total{protocol=\"kafka\"}") > 1000.0);
    assert!(must(&m, "broker_received_bytes_total{protocol=\"http\"}") > 500.0);
    assert!(must(&m, "broker_sent_bytes_total{protocol=\"http\"}") > 500.0);
    assert!(
        must(
            &m,
            "broker_kafka_errors_total{api=\"CreateTopics\",error=\"TOPIC_ALREADY_EXISTS\",code=\"36\"}"
        ) >= 1.0
    );
    assert!(
        must(
            &m,
            "broker_kafka_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\",code=\"3\"}"
        ) >= 1.0
    );
    assert!(
        must(
            &m,
            "broker_kafka_request_duration_seconds_count{api=\"Produce\"}"
        ) >= 3.0
    );
    assert_eq!(
        must(
            &m,
            "broker_consumer_group_lag{group=\"billing\",topic=\"orders\"}"
        ),
        0.0
    );
    assert!(
        m.contains("broker_queue_messages{queue=\"jobs\",state=\"visible\"} 0"),
        "{m}"
    );
    match store {
        "log" => {
            let p0 = must(
                &m,
                "broker_log_partition_disk_bytes{topic=\"orders\",partition=\"0\"}",
            );
            assert!(p0 > 0.0 && p0 < 1e9, "{p0}");
            assert!(must(&m, "broker_log_disk_bytes") >= p0);
            assert!(must(&m, "broker_log_partitions") >= 3.0);
            assert!(must(&m, "broker_log_fsync_duration_seconds_count") >= 1.0);
            assert!(m.contains("broker_log_fsync_duration_seconds_bucket{le=\"+Inf\"}"));
            assert!(!m.contains("broker_pg_"), "{m}");
        }
        "postgres" => {
            assert!(must(&m, "broker_pg_pool_connections{pool=\"main\"}") >= 1.0);
            assert_eq!(
                must(&m, "broker_pg_pool_max_connections{pool=\"main\"}"),
                16.0
            );
            assert!(must(&m, "broker_pg_pool_idle_connections{pool=\"main\"}") >= 0.0);
            assert!(must(&m, "broker_pg_pool_waits_total{pool=\"main\"}") >= 0.0);
            assert!(
                must(
                    &m,
                    "broker_pg_pool_wait_duration_seconds_count{pool=\"main\"}"
                ) >= 10.0
            );
            let appends = must(&m, "broker_pg_query_duration_seconds_count{op=\"append\"}");
            assert!(appends >= 2.0, "{appends}");
            let sum = must(&m, "broker_pg_query_duration_seconds_sum{op=\"append\"}");
            assert!(sum > 0.0 && sum < 60.0, "{sum}");
            assert!(!m.contains("broker_log_partition_disk_bytes"), "{m}");
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_and_metrics_on_the_log_store() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(&["--store", "log", "--data-dir", dir.path().to_str().unwrap()]);
    exercise(&b, "log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_and_metrics_on_the_postgres_store() {
    let url = cluster::shared_url();
    let schema = format!("admin_cli_{}", std::process::id());
    let b = Broker::start(&["--database-url", &url, "--pg-schema", &schema]);
    exercise(&b, "postgres").await;
    drop(b);
    store_postgres::PgStore::drop_schema(&url, &schema)
        .await
        .unwrap();
}

#[test]
fn admin_errors_name_the_unreachable_broker_and_bad_arguments() {
    let port = cluster::free_port();
    let out = Command::new(BIN)
        .args([
            "admin",
            "--bootstrap",
            &format!("127.0.0.1:{port}"),
            "topics",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot connect to the broker at 127.0.0.1:{port}")),
        "{err}"
    );
    let out = Command::new(BIN)
        .args([
            "admin",
            "--http",
            &format!("http://127.0.0.1:{port}"),
            "queues",
            "list",
        ])
        .env_remove("BROKER_SQS_ACCESS_KEY_ID")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("http://127.0.0.1:{port}")) && err.contains("cannot connect"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["admin", "topics", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));
}
