//! The web console's JSON API (`/api/v1`) and pages (`/ui`) over real HTTP, served by an
//! in-process broker on a MemoryStore: every endpoint, the errors that name bad values, the
//! write actions (through the broker's own Kafka handlers), the dead-letter redrive, `--ui
//! false`, and that the console starts no tasks of its own.

mod common;

use std::time::Duration;

use broker_server::config::Config;
use broker_server::kafka::client::RawClient;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use serde_json::{json, Value};

/// An in-process broker on a MemoryStore with the console on or off, and an HTTP client.
struct Broker {
    server: common::TestServer,
    kafka: std::net::SocketAddr,
    base: String,
    http: reqwest::Client,
}

impl Broker {
    async fn start(ui: bool) -> Broker {
        let server = common::TestServer::start_with(Config {
            ui,
            ..Config::default()
        })
        .await;
        Broker {
            kafka: server.addr,
            base: format!("http://{}", server.http),
            http: reqwest::Client::new(),
            server,
        }
    }

    async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// A request to the console API; (status, JSON body).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self
            .http
            .request(method.parse().unwrap(), &url)
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path} answered {status} with non-JSON: {text}"));
        (status, json)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// The error message of a call that must fail with `status`.
    async fn error(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> String {
        let (got, v) = self.call(method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {v}");
        v["error"].as_str().expect("an error message").to_string()
    }

    /// One SQS action in AWS JSON 1.0.
    async fn sqs(&self, action: &str, input: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}/", self.base))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .body(input.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{action}: {v}");
        v
    }
}

/// Joins `group` as its only member and syncs an assignment of `topic` partition 0.
async fn join_and_sync(c: &mut RawClient, group: &str, topic: &str) -> String {
    let gid = || GroupId(StrBytes::from_string(group.into()));
    let join = common::consumer_join(group);
    let mut joined: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join).await.unwrap();
    if joined.error_code == 79 {
        // MEMBER_ID_REQUIRED: join again with the id handed out.
        let join = join.with_member_id(joined.member_id.clone());
        joined = c.call(ApiKey::JoinGroup, 5, &join).await.unwrap();
    }
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        TopicPartition::default()
            .with_topic(common::name(topic))
            .with_partitions(vec![0]),
    ]);
    let mut bytes = bytes::BytesMut::new();
    bytes.extend_from_slice(&1i16.to_be_bytes());
    assignment.encode(&mut bytes, 1).unwrap();
    let sync = SyncGroupRequest::default()
        .with_group_id(gid())
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(joined.member_id.clone())
                .with_assignment(bytes.freeze()),
        ]);
    let synced: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync).await.unwrap();
    assert_eq!(synced.error_code, 0, "{synced:?}");
    joined.member_id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_records_and_configs() {
    let b = Broker::start(true).await;
    let created = b
        .call(
            "POST",
            "/topics",
            Some(json!({"name": "orders", "partitions": 2, "configs": {"retention.ms": 86400000}})),
        )
        .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let e = b
        .error("POST", "/topics", Some(json!({"name": "orders"})), 409)
        .await;
    assert!(
        e.contains("orders") && e.contains("TOPIC_ALREADY_EXISTS"),
        "{e}"
    );
    let e = b
        .error("POST", "/topics", Some(json!({"name": "bad name"})), 400)
        .await;
    assert!(e.contains("\"bad name\""), "{e}");
    let e = b
        .error(
            "POST",
            "/topics",
            Some(json!({"name": "x", "partitions": 0})),
            400,
        )
        .await;
    assert!(e.contains("partitions") && e.contains('0'), "{e}");
    let e = b
        .error("POST", "/topics", Some(json!({"nam": "x"})), 400)
        .await;
    assert!(e.contains("nam"), "{e}");

    for i in 0..5 {
        let (s, v) = b
            .call(
                "POST",
                "/topics/orders/records",
                Some(
                    json!({"key": format!("k{i}"), "value": format!("{{\"n\":{i}}}"),
                            "headers": [{"key": "h", "value": "v"}]}),
                ),
            )
            .await;
        assert_eq!((s, v["offset"].as_i64()), (201, Some(i)), "{v}");
    }
    let e = b
        .error(
            "POST",
            "/topics/orders/records",
            Some(json!({"partition": 7, "value": "x"})),
            400,
        )
        .await;
    assert!(e.contains("partition 7"), "{e}");
    b.error(
        "POST",
        "/topics/missing/records",
        Some(json!({"value": "x"})),
        404,
    )
    .await;

    let topics = b.get("/topics").await;
    assert_eq!(topics[0]["topic"], "orders");
    assert_eq!(topics[0]["records"], 5);
    assert_eq!(topics[0]["appended_records"], 5);
    let t = b.get("/topics/orders").await;
    assert_eq!(t["partitions"][0]["end"], 5);
    assert_eq!(t["partitions"][1]["end"], 0);
    assert_eq!(t["config"]["retention_ms"], 86400000);
    b.error("GET", "/topics/missing", None, 404).await;

    // Browsing: from an offset, the newest, by time, by key, and the errors.
    let page = b
        .get("/topics/orders/partitions/0/records?offset=1&limit=2")
        .await;
    let offsets: Vec<i64> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    assert_eq!((offsets, page["next"].as_i64()), (vec![1, 2], Some(3)));
    let r = &page["records"][0];
    assert_eq!(r["key"]["text"], "k1");
    assert_eq!(r["value"]["text"], "{\"n\":1}");
    assert_eq!(r["headers"][0]["key"], "h");
    assert_eq!(r["headers"][0]["value"]["text"], "v");
    let newest = b.get("/topics/orders/partitions/0/records?limit=2").await;
    assert_eq!(newest["from"], 3);
    let by_key = b.get("/topics/orders/partitions/0/records?key=k3").await;
    assert_eq!(by_key["records"].as_array().unwrap().len(), 1);
    assert_eq!(by_key["records"][0]["offset"], 3);
    let future = b
        .get("/topics/orders/partitions/0/records?timestamp=99999999999999")
        .await;
    assert_eq!(
        (
            future["from"].as_i64(),
            future["records"].as_array().unwrap().len()
        ),
        (Some(5), 0)
    );
    let past = b
        .get("/topics/orders/partitions/0/records?timestamp=0&limit=1")
        .await;
    assert_eq!(past["records"][0]["offset"], 0);
    let e = b
        .error(
            "GET",
            "/topics/orders/partitions/0/records?offset=9",
            None,
            400,
        )
        .await;
    assert!(e.contains("offset 9") && e.contains("0 to 5"), "{e}");
    let e = b
        .error(
            "GET",
            "/topics/orders/partitions/0/records?offset=abc",
            None,
            400,
        )
        .await;
    assert!(e.contains("offset=\"abc\""), "{e}");
    let e = b
        .error(
            "GET",
            "/topics/orders/partitions/0/records?limit=501",
            None,
            400,
        )
        .await;
    assert!(e.contains("limit 501"), "{e}");
    let e = b
        .error("GET", "/topics/orders/partitions/x/records", None, 400)
        .await;
    assert!(e.contains("\"x\""), "{e}");
    let e = b
        .error("GET", "/topics/orders/partitions/9/records", None, 404)
        .await;
    assert!(e.contains("orders"), "{e}");

    // Settings through IncrementalAlterConfigs, read back through DescribeConfigs.
    let configs = b.get("/topics/orders/configs").await;
    let retention = configs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "retention.ms")
        .unwrap()
        .clone();
    assert_eq!(
        retention,
        json!({"name": "retention.ms", "value": "86400000", "source": "topic"})
    );
    let (s, v) = b
        .call(
            "POST",
            "/topics/orders/configs",
            Some(json!({"set": {"retention.ms": "1000"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        b.get("/topics/orders").await["config"]["retention_ms"],
        1000
    );
    let e = b
        .error(
            "POST",
            "/topics/orders/configs",
            Some(json!({"set": {"retention.ms": "soon"}})),
            400,
        )
        .await;
    assert!(e.contains("retention.ms"), "{e}");
    b.error("POST", "/topics/orders/configs", Some(json!({})), 400)
        .await;

    // Deleting: then it is gone.
    let (s, v) = b.call("DELETE", "/topics/orders", None).await;
    assert_eq!(s, 200, "{v}");
    let e = b.error("DELETE", "/topics/orders", None, 404).await;
    assert!(e.contains("orders") && e.contains("UNKNOWN_TOPIC"), "{e}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_lag_members_and_offset_resets() {
    let b = Broker::start(true).await;
    let mut k = RawClient::connect(b.kafka).await.unwrap();
    common::create_topic(&mut k, "events", 2).await;
    for i in 0..10 {
        b.call(
            "POST",
            "/topics/events/records",
            Some(json!({"value": format!("e{i}")})),
        )
        .await;
    }
    common::commit(&mut k, "billing", "events", &[(0, 4)]).await;

    let groups = b.get("/groups").await;
    assert_eq!(groups[0]["group"], "billing");
    assert_eq!(groups[0]["lag"], 6);
    assert_eq!(groups[0]["state"], "Empty");
    let g = b.get("/groups/billing").await;
    assert_eq!(g["partitions"][0]["committed"], 4);
    assert_eq!(g["partitions"][0]["end"], 10);
    assert_eq!(g["partitions"][0]["lag"], 6);
    let e = b.error("GET", "/groups/nobody", None, 404).await;
    assert!(e.contains("\"nobody\""), "{e}");

    // A dry run plans and changes nothing; the reset commits.
    let plan = b
        .call(
            "POST",
            "/groups/billing/reset-offsets",
            Some(json!({"topic": "events", "to": "earliest"})),
        )
        .await;
    assert_eq!(plan.0, 200, "{}", plan.1);
    assert_eq!(plan.1["executed"], false);
    assert_eq!(plan.1["offsets"][0]["current_offset"], 4);
    assert_eq!(plan.1["offsets"][0]["new_offset"], 0);
    assert_eq!(b.get("/groups/billing").await["lag"], 6);
    let done = b
        .call(
            "POST",
            "/groups/billing/reset-offsets",
            Some(json!({"topic": "events", "to": "offset", "offset": 7, "execute": true})),
        )
        .await;
    assert_eq!(
        (done.0, &done.1["executed"]),
        (200, &json!(true)),
        "{}",
        done.1
    );
    assert_eq!(
        b.get("/groups/billing").await["partitions"][0]["committed"],
        7
    );
    for (body, what) in [
        (json!({"topic": "events", "to": "soon"}), "soon"),
        (json!({"topic": "events", "to": "offset"}), "offset"),
        (
            json!({"topic": "events", "to": "offset", "offset": -1}),
            "-1",
        ),
    ] {
        let e = b
            .error("POST", "/groups/billing/reset-offsets", Some(body), 400)
            .await;
        assert!(e.contains(what), "{e}");
    }
    let e = b
        .error(
            "POST",
            "/groups/billing/reset-offsets",
            Some(json!({"topic": "nope", "to": "latest"})),
            404,
        )
        .await;
    assert!(e.contains("nope"), "{e}");

    // A member: listed with its assignment; resets are refused while it is there.
    let mut member = RawClient::connect(b.kafka).await.unwrap();
    let id = join_and_sync(&mut member, "live", "events").await;
    let g = b.get("/groups/live").await;
    assert_eq!(g["state"], "Stable");
    assert_eq!(g["members"][0]["member_id"], id.as_str());
    assert_eq!(g["members"][0]["assignments"], json!([["events", [0]]]));
    assert_eq!(g["partitions"][0]["member"], id.as_str());
    assert_eq!(g["partitions"][0]["committed"], Value::Null);
    let e = b
        .error(
            "POST",
            "/groups/live/reset-offsets",
            Some(json!({"topic": "events", "to": "earliest", "execute": true})),
            409,
        )
        .await;
    assert!(e.contains("1 active member"), "{e}");
    let overview = b.get("/overview").await;
    assert_eq!(overview["totals"]["groups"], 2);
    assert_eq!(overview["totals"]["live_groups"], 1);
    assert_eq!(overview["counters"]["committed_offsets"], 7);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_depths_and_dead_letter_redrive() {
    let b = Broker::start(true).await;
    let dlq = b.sqs("CreateQueue", json!({"QueueName": "jobs-dlq"})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let policy = json!({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:jobs-dlq",
                        "maxReceiveCount": 1})
    .to_string();
    let url = b
        .sqs(
            "CreateQueue",
            json!({"QueueName": "jobs", "Attributes": {"RedrivePolicy": policy}}),
        )
        .await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let entries: Vec<Value> = (0..3)
        .map(|i| json!({"Id": format!("m{i}"), "MessageBody": format!("job {i}")}))
        .collect();
    let sent = b
        .sqs(
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": entries}),
        )
        .await;
    assert_eq!(sent["Successful"].as_array().unwrap().len(), 3, "{sent}");
    let queue = |list: &Value, name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|q| q["queue"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {list}"))
            .clone()
    };
    let list = b.get("/queues").await;
    let jobs = queue(&list, "jobs");
    assert_eq!(
        (
            &jobs["available"],
            &jobs["in_flight"],
            &jobs["dead_letter_queue"]
        ),
        (&json!(3), &json!(0), &json!("jobs-dlq"))
    );
    assert!(jobs["oldest_age_ms"].as_i64().unwrap() >= 0, "{jobs}");
    assert_eq!(queue(&list, "jobs-dlq")["sources"], json!(["jobs"]));
    assert_eq!(queue(&list, "jobs-dlq")["oldest_age_ms"], Value::Null);

    // Two receives dead-letter every message (maxReceiveCount 1).
    let got = b
        .sqs(
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 0}),
        )
        .await;
    assert_eq!(got["Messages"].as_array().unwrap().len(), 3);
    let list = b.get("/queues").await;
    assert_eq!(
        queue(&list, "jobs")["available"],
        3,
        "visibility 0: back at once"
    );
    b.sqs(
        "ReceiveMessage",
        json!({"QueueUrl": url, "MaxNumberOfMessages": 10}),
    )
    .await;
    let list = b.get("/queues").await;
    assert_eq!(queue(&list, "jobs")["dead_lettered"], 3);
    assert_eq!(queue(&list, "jobs")["available"], 0);
    assert_eq!(queue(&list, "jobs")["oldest_age_ms"], Value::Null);
    assert_eq!(queue(&list, "jobs-dlq")["available"], 3);

    // Redrive: back to the source, receivable there, gone from the dead-letter queue.
    let (s, moved) = b
        .call(
            "POST",
            "/queues/jobs-dlq/redrive",
            Some(json!({"max_messages": 2})),
        )
        .await;
    assert_eq!(s, 200, "{moved}");
    assert_eq!(
        (&moved["moved"], &moved["destinations"]),
        (&json!(2), &json!({"jobs": 2}))
    );
    let (_, moved) = b
        .call("POST", "/queues/jobs-dlq/redrive", Some(json!({})))
        .await;
    assert_eq!(moved["moved"], 1);
    let list = b.get("/queues").await;
    assert_eq!(queue(&list, "jobs")["available"], 3);
    assert_eq!(queue(&list, "jobs-dlq")["available"], 0);
    let got = b
        .sqs(
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10,
                                      "MessageAttributeNames": ["All"], "AttributeNames": ["All"]}),
        )
        .await;
    let mut bodies: Vec<&str> = got["Messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Body"].as_str().unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, vec!["job 0", "job 1", "job 2"]);
    assert_eq!(
        got["Messages"][0]["Attributes"]["ApproximateReceiveCount"],
        "1"
    );
    let _ = dlq;

    let e = b
        .error("POST", "/queues/nope/redrive", Some(json!({})), 404)
        .await;
    assert!(e.contains("nope"), "{e}");
    let e = b
        .error(
            "POST",
            "/queues/jobs-dlq/redrive",
            Some(json!({"destination": "gone"})),
            404,
        )
        .await;
    assert!(e.contains("gone"), "{e}");
    b.error(
        "POST",
        "/queues/jobs-dlq/redrive",
        Some(json!({"max_messages": 0})),
        400,
    )
    .await;
    let o = b.get("/overview").await;
    assert_eq!(o["totals"]["queues"], 2);
    assert_eq!(o["store"]["kind"], "memory");
    assert_eq!(o["counters"]["sqs_requests"]["SendMessageBatch"], 1, "{o}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_store_report_and_refusals() {
    let b = Broker::start(true).await;
    let resp = b.http.get(format!("{}/ui", b.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("/ui/console.js") && !html.contains("http"),
        "no external URL: {html}"
    );
    for (file, kind) in [
        ("console.js", "javascript"),
        ("console.css", "css"),
        ("favicon.svg", "svg"),
    ] {
        let resp = b
            .http
            .get(format!("{}/ui/{file}", b.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{file}");
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains(kind));
    }
    let resp = b
        .http
        .get(format!("{}/ui/other.js", b.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let store = b.get("/store").await;
    assert_eq!(
        (&store["kind"], &store["healthy"]),
        (&json!("memory"), &json!(true))
    );
    assert_eq!(store["report"]["tables"], json!([]));
    let e = b.error("GET", "/nothing/here", None, 404).await;
    assert!(e.contains("/nothing/here"), "{e}");

    // A write from another site's page is refused.
    let resp = b
        .http
        .post(format!("{}/api/v1/topics", b.base))
        .header("origin", "http://evil.example")
        .json(&json!({"name": "pwned"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(b.get("/topics").await, json!([]));
    b.shutdown().await;

    let off = Broker::start(false).await;
    let e = off.error("GET", "/overview", None, 404).await;
    assert!(e.contains("--ui false"), "{e}");
    let resp = off
        .http
        .get(format!("{}/ui", off.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // The rest of the HTTP listener is unaffected.
    let health = off
        .http
        .get(format!("{}/healthz", off.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    off.shutdown().await;
}

/// Tasks alive on this runtime, after letting finished ones wind down.
async fn settled_tasks() -> usize {
    let mut last = usize::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let n = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        if n == last {
            return n;
        }
        last = n;
    }
    last
}

/// The console runs nothing of its own: a broker with it has as many tasks as one without,
/// and after pages and API calls were served (and their connections closed) it is back to
/// that number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_starts_no_tasks() {
    let base = settled_tasks().await;
    let off = Broker::start(false).await;
    let without = settled_tasks().await - base;
    off.shutdown().await;
    let on = Broker::start(true).await;
    let with = settled_tasks().await - base;
    assert_eq!(
        with, without,
        "tasks of a broker with the console vs without"
    );
    {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        for path in [
            "/ui",
            "/ui/console.js",
            "/api/v1/overview",
            "/api/v1/topics",
            "/api/v1/groups",
            "/api/v1/queues",
            "/api/v1/store",
        ] {
            let resp = client
                .get(format!("{}{path}", on.base))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            resp.bytes().await.unwrap();
        }
    }
    let mut after = settled_tasks().await - base;
    for _ in 0..50 {
        if after == with {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = settled_tasks().await - base;
    }
    assert_eq!(after, with, "tasks left behind by serving the console");
    on.shutdown().await;
}
