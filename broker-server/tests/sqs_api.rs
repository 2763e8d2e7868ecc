//! The SQS API over real HTTP, served by the router over a MemoryStore with a manual clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker_api::{AppendBatch, FetchLimits, ManualClock, Record, SharedClock, Store, TopicConfig};
use broker_server::http::sqs::sigv4;
use broker_server::http::{router, HttpConfig, SigV4Credentials};
use broker_server::metrics::Metrics;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use store_memory::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    addr: SocketAddr,
    clock: ManualClock,
    store: Arc<dyn Store>,
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn serve(
    store: Arc<dyn Store>,
    clock: ManualClock,
    credentials: Option<SigV4Credentials>,
) -> Server {
    let shared: SharedClock = Arc::new(clock.clone());
    let app = router(
        store.clone(),
        Arc::new(Metrics::new()),
        HttpConfig {
            base_url: String::new(),
            credentials,
            clock: Some(shared),
            shutdown: None,
            ..Default::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { addr, clock, store }
}

async fn start() -> Server {
    let clock = ManualClock::default();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
    serve(store, clock, None).await
}

/// One HTTP/1.1 request on a fresh connection.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 4 + n..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body,
    }
}

impl Server {
    async fn call(&self, action: &str, input: Value) -> Reply {
        http(
            self.addr,
            "POST",
            "/",
            &[
                ("X-Amz-Target", format!("AmazonSQS.{action}")),
                ("Content-Type", "application/x-amz-json-1.0".into()),
            ],
            input.to_string().as_bytes(),
        )
        .await
    }

    /// Calls `action` and returns its JSON reply, failing on an error reply.
    async fn ok(&self, action: &str, input: Value) -> Value {
        let r = self.call(action, input).await;
        assert_eq!(r.status, 200, "{action} failed: {}", r.text());
        r.json()
    }

    /// Calls `action`, expects an error, and returns (`__type` shape, query code).
    async fn err(&self, action: &str, input: Value) -> (u16, String, String) {
        let r = self.call(action, input).await;
        assert_ne!(
            r.status,
            200,
            "{action} unexpectedly succeeded: {}",
            r.text()
        );
        let v = r.json();
        let shape = v["__type"]
            .as_str()
            .unwrap()
            .rsplit('#')
            .next()
            .unwrap()
            .to_string();
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        let code = r.headers["x-amzn-query-error"].clone();
        (r.status, shape, code)
    }

    async fn create(&self, name: &str, attrs: Value) -> String {
        self.ok(
            "CreateQueue",
            json!({"QueueName": name, "Attributes": attrs}),
        )
        .await["QueueUrl"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn receive(&self, url: &str, extra: Value) -> Vec<Value> {
        let mut input = json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "MessageSystemAttributeNames": ["All"], "MessageAttributeNames": ["All"]});
        for (k, v) in extra.as_object().unwrap() {
            input[k] = v.clone();
        }
        let r = self.ok("ReceiveMessage", input).await;
        r["Messages"].as_array().cloned().unwrap_or_default()
    }

    async fn attrs(&self, url: &str) -> Value {
        self.ok(
            "GetQueueAttributes",
            json!({"QueueUrl": url, "AttributeNames": ["All"]}),
        )
        .await["Attributes"]
            .clone()
    }
}

async fn queue_arn_of(s: &Server, url: &str) -> String {
    s.ok(
        "GetQueueAttributes",
        json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
    )
    .await["Attributes"]["QueueArn"]
        .as_str()
        .unwrap()
        .to_string()
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

#[tokio::test]
async fn send_receive_delete_round_trip() {
    let s = start().await;
    let url = s.create("orders", json!({})).await;
    assert!(url.ends_with("/000000000000/orders"), "{url}");
    assert_eq!(
        s.ok("GetQueueUrl", json!({"QueueName": "orders"})).await["QueueUrl"],
        url
    );

    let sent = s
        .ok(
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "hello ✓",
                   "MessageAttributes": {
                       "City": {"DataType": "String", "StringValue": "Any City"},
                       "Blob": {"DataType": "Binary", "BinaryValue": "AAEC"},
                       "N": {"DataType": "Number.int", "StringValue": "12"}}}),
        )
        .await;
    assert_eq!(sent["MD5OfMessageBody"], md5_hex("hello ✓"));
    assert!(sent["MD5OfMessageAttributes"]
        .as_str()
        .is_some_and(|m| m.len() == 32));

    let msgs = s.receive(&url, json!({})).await;
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m["Body"], "hello ✓");
    assert_eq!(m["MessageId"], sent["MessageId"]);
    assert_eq!(m["MD5OfBody"], sent["MD5OfMessageBody"]);
    assert_eq!(m["MD5OfMessageAttributes"], sent["MD5OfMessageAttributes"]);
    assert_eq!(
        m["MessageAttributes"]["Blob"],
        json!({"DataType": "Binary", "BinaryValue": "AAEC"})
    );
    assert_eq!(m["MessageAttributes"]["N"]["StringValue"], "12");
    assert_eq!(m["Attributes"]["ApproximateReceiveCount"], "1");
    assert_eq!(m["Attributes"]["SentTimestamp"], s.clock.now_ms_string());

    // In flight: not visible; then deleted for good.
    assert!(s.receive(&url, json!({})).await.is_empty());
    let a = s.attrs(&url).await;
    assert_eq!(a["ApproximateNumberOfMessagesNotVisible"], "1");
    assert_eq!(a["ApproximateNumberOfMessages"], "0");
    s.ok(
        "DeleteMessage",
        json!({"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]}),
    )
    .await;
    s.clock.advance(60_000);
    assert!(s.receive(&url, json!({})).await.is_empty());
    assert_eq!(
        s.attrs(&url).await["ApproximateNumberOfMessagesNotVisible"],
        "0"
    );
}

trait NowString {
    fn now_ms_string(&self) -> String;
}
impl NowString for ManualClock {
    fn now_ms_string(&self) -> String {
        use broker_api::Clock;
        self.now_ms().to_string()
    }
}

#[tokio::test]
async fn visibility_timeout_and_change_visibility() {
    let s = start().await;
    let url = s.create("vis", json!({"VisibilityTimeout": "5"})).await;
    s.ok("SendMessage", json!({"QueueUrl": url, "MessageBody": "a"}))
        .await;
    let first = s.receive(&url, json!({})).await;
    assert_eq!(first.len(), 1);
    s.clock.advance(4_000);
    assert!(s.receive(&url, json!({})).await.is_empty());
    s.clock.advance(1_001);
    let second = s.receive(&url, json!({"VisibilityTimeout": 10})).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["Attributes"]["ApproximateReceiveCount"], "2");

    // A stale handle: delete succeeds without deleting; visibility change is refused.
    s.ok(
        "DeleteMessage",
        json!({"QueueUrl": url, "ReceiptHandle": first[0]["ReceiptHandle"]}),
    )
    .await;
    assert_eq!(
        s.attrs(&url).await["ApproximateNumberOfMessagesNotVisible"],
        "1"
    );
    let (status, shape, code) = s
        .err(
            "ChangeMessageVisibility",
            json!({"QueueUrl": url, "ReceiptHandle": first[0]["ReceiptHandle"], "VisibilityTimeout": 5}),
        )
        .await;
    assert_eq!(
        (status, shape.as_str(), code.as_str()),
        (400, "InvalidParameterValue", "InvalidParameterValue;Sender")
    );

    // Extend: still hidden past the old timeout; zero: visible at once.
    let h = second[0]["ReceiptHandle"].clone();
    s.ok(
        "ChangeMessageVisibility",
        json!({"QueueUrl": url, "ReceiptHandle": h, "VisibilityTimeout": 100}),
    )
    .await;
    s.clock.advance(50_000);
    assert!(s.receive(&url, json!({})).await.is_empty());
    s.ok(
        "ChangeMessageVisibility",
        json!({"QueueUrl": url, "ReceiptHandle": h, "VisibilityTimeout": 0}),
    )
    .await;
    let third = s.receive(&url, json!({})).await;
    assert_eq!(third.len(), 1);
    assert_eq!(third[0]["Attributes"]["ApproximateReceiveCount"], "3");

    // Batch change and batch delete, with one bad handle each.
    let r = s
        .ok(
            "ChangeMessageVisibilityBatch",
            json!({"QueueUrl": url, "Entries": [
                {"Id": "ok", "ReceiptHandle": third[0]["ReceiptHandle"], "VisibilityTimeout": 30},
                {"Id": "bad", "ReceiptHandle": "nonsense", "VisibilityTimeout": 30}]}),
        )
        .await;
    assert_eq!(r["Successful"], json!([{"Id": "ok"}]));
    assert_eq!(r["Failed"][0]["Id"], "bad");
    assert_eq!(r["Failed"][0]["Code"], "ReceiptHandleIsInvalid");
    let r = s
        .ok(
            "DeleteMessageBatch",
            json!({"QueueUrl": url, "Entries": [
                {"Id": "ok", "ReceiptHandle": third[0]["ReceiptHandle"]},
                {"Id": "bad", "ReceiptHandle": "AAAA"}]}),
        )
        .await;
    assert_eq!(r["Successful"], json!([{"Id": "ok"}]));
    assert_eq!(r["Failed"][0]["Code"], "ReceiptHandleIsInvalid");
    s.clock.advance(100_000);
    assert!(s.receive(&url, json!({})).await.is_empty());
}

#[tokio::test]
async fn batches_delays_and_purge() {
    let s = start().await;
    let url = s.create("batch", json!({})).await;
    let entries: Vec<Value> = (0..10)
        .map(|i| json!({"Id": format!("m{i}"), "MessageBody": format!("body {i}")}))
        .collect();
    let r = s
        .ok(
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": entries}),
        )
        .await;
    assert_eq!(r["Successful"].as_array().unwrap().len(), 10);
    assert_eq!(r["Failed"], json!([]));
    assert_eq!(r["Successful"][3]["MD5OfMessageBody"], md5_hex("body 3"));
    let got = s.receive(&url, json!({})).await;
    let bodies: Vec<&str> = got.iter().map(|m| m["Body"].as_str().unwrap()).collect();
    assert_eq!(
        bodies,
        (0..10).map(|i| format!("body {i}")).collect::<Vec<_>>()
    );

    // A batch entry that fails alone.
    let r = s
        .ok(
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": [
                {"Id": "good", "MessageBody": "x"},
                {"Id": "bad", "MessageBody": "y", "DelaySeconds": 901}]}),
        )
        .await;
    assert_eq!(r["Successful"][0]["Id"], "good");
    assert_eq!(r["Failed"][0]["Id"], "bad");
    assert_eq!(r["Failed"][0]["Code"], "InvalidParameterValue");
    assert_eq!(r["Failed"][0]["SenderFault"], true);

    // Per-message delay on a standard queue.
    s.ok(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "later", "DelaySeconds": 10}),
    )
    .await;
    assert_eq!(
        s.attrs(&url).await["ApproximateNumberOfMessagesDelayed"],
        "1"
    );
    let now = s.receive(&url, json!({})).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["Body"], "x");
    s.clock.advance(10_000);
    let later = s.receive(&url, json!({})).await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0]["Body"], "later");

    s.ok(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "gone"}),
    )
    .await;
    s.ok("PurgeQueue", json!({"QueueUrl": url})).await;
    s.clock.advance(3_600_000);
    assert!(s.receive(&url, json!({})).await.is_empty());
}

#[tokio::test]
async fn dead_letter_queue_after_max_receive_count() {
    let s = start().await;
    let dlq = s.create("orders-dlq", json!({})).await;
    let dlq_arn = s
        .ok(
            "GetQueueAttributes",
            json!({"QueueUrl": dlq, "AttributeNames": ["QueueArn"]}),
        )
        .await["Attributes"]["QueueArn"]
        .as_str()
        .unwrap()
        .to_string();
    let policy = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string();
    let url = s
        .create(
            "orders2",
            json!({"RedrivePolicy": policy, "VisibilityTimeout": "1"}),
        )
        .await;
    // Stored normalised, as AWS returns it: maxReceiveCount is a number.
    assert_eq!(
        s.attrs(&url).await["RedrivePolicy"],
        json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}).to_string()
    );
    s.ok(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "poison",
        "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}}),
    )
    .await;
    for n in 1..=2 {
        let m = s.receive(&url, json!({})).await;
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["Attributes"]["ApproximateReceiveCount"], n.to_string());
        s.clock.advance(1_001);
    }
    assert!(s.receive(&url, json!({})).await.is_empty());
    let moved = s.receive(&dlq, json!({})).await;
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0]["Body"], "poison");
    assert_eq!(moved[0]["MessageAttributes"]["k"]["StringValue"], "v");
    assert_eq!(
        moved[0]["Attributes"]["DeadLetterQueueSourceArn"],
        dlq_arn.replace("orders-dlq", "orders2")
    );

    // A policy naming a missing queue is refused.
    let bad = json!({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:nope", "maxReceiveCount": 1}).to_string();
    let (_, shape, _) = s
        .err(
            "SetQueueAttributes",
            json!({"QueueUrl": url, "Attributes": {"RedrivePolicy": bad}}),
        )
        .await;
    assert_eq!(shape, "InvalidParameterValue");
}

#[tokio::test]
async fn fifo_order_groups_and_deduplication() {
    let s = start().await;
    let url = s.create("jobs.fifo", json!({"FifoQueue": "true"})).await;
    let a = s.attrs(&url).await;
    assert_eq!(a["FifoQueue"], "true");
    assert_eq!(a["ContentBasedDeduplication"], "false");
    for (g, i) in [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)] {
        let r = s
            .ok(
                "SendMessage",
                json!({"QueueUrl": url, "MessageBody": format!("{g}{i}"),
                "MessageGroupId": g, "MessageDeduplicationId": format!("{g}-{i}")}),
            )
            .await;
        assert_eq!(r["SequenceNumber"].as_str().unwrap().len(), 20);
    }
    // As many messages of a group as fit, in order; a group stays locked while any of its
    // messages is in flight; groups proceed independently.
    let first = s.receive(&url, json!({"MaxNumberOfMessages": 3})).await;
    let bodies: Vec<&str> = first.iter().map(|m| m["Body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["a1", "b1", "a2"]);
    assert_eq!(first[0]["Attributes"]["MessageGroupId"], "a");
    assert_eq!(first[0]["Attributes"]["MessageDeduplicationId"], "a-1");
    assert!(s.receive(&url, json!({})).await.is_empty());
    s.ok(
        "DeleteMessage",
        json!({"QueueUrl": url, "ReceiptHandle": first[1]["ReceiptHandle"]}),
    )
    .await;
    let next = s.receive(&url, json!({})).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["Body"], "b2");
    s.ok(
        "DeleteMessage",
        json!({"QueueUrl": url, "ReceiptHandle": first[0]["ReceiptHandle"]}),
    )
    .await;
    assert!(
        s.receive(&url, json!({})).await.is_empty(),
        "a2 of group a is still in flight"
    );
    s.ok(
        "DeleteMessage",
        json!({"QueueUrl": url, "ReceiptHandle": first[2]["ReceiptHandle"]}),
    )
    .await;
    assert_eq!(s.receive(&url, json!({})).await[0]["Body"], "a3");

    // Deduplication: same id within five minutes returns the original.
    let one = s
        .ok("SendMessage", json!({"QueueUrl": url, "MessageBody": "x", "MessageGroupId": "c", "MessageDeduplicationId": "d1"}))
        .await;
    let two = s
        .ok("SendMessage", json!({"QueueUrl": url, "MessageBody": "x", "MessageGroupId": "c", "MessageDeduplicationId": "d1"}))
        .await;
    assert_eq!(one["MessageId"], two["MessageId"]);
    assert_eq!(one["SequenceNumber"], two["SequenceNumber"]);
    let c_msgs = |v: Vec<Value>| {
        v.into_iter()
            .filter(|m| m["Attributes"]["MessageGroupId"] == "c")
            .count()
    };
    assert_eq!(c_msgs(s.receive(&url, json!({})).await), 1);

    // It holds for a new server over the same store (a restart), and lapses after 5 minutes.
    let s2 = serve(s.store.clone(), s.clock.clone(), None).await;
    let three = s2
        .ok("SendMessage", json!({"QueueUrl": url, "MessageBody": "x", "MessageGroupId": "c", "MessageDeduplicationId": "d1"}))
        .await;
    assert_eq!(three["MessageId"], one["MessageId"]);
    s.clock.advance(5 * 60_000 + 1);
    let four = s2
        .ok("SendMessage", json!({"QueueUrl": url, "MessageBody": "x", "MessageGroupId": "c", "MessageDeduplicationId": "d1"}))
        .await;
    assert_ne!(four["MessageId"], one["MessageId"]);

    // Content-based deduplication, also inside one batch.
    let cb = s
        .create(
            "cb.fifo",
            json!({"FifoQueue": "true", "ContentBasedDeduplication": "true"}),
        )
        .await;
    let r = s
        .ok(
            "SendMessageBatch",
            json!({"QueueUrl": cb, "Entries": [
            {"Id": "1", "MessageBody": "same", "MessageGroupId": "g"},
            {"Id": "2", "MessageBody": "same", "MessageGroupId": "g"},
            {"Id": "3", "MessageBody": "other", "MessageGroupId": "g"}]}),
        )
        .await;
    let ok = r["Successful"].as_array().unwrap();
    assert_eq!(ok.len(), 3);
    assert_eq!(ok[0]["MessageId"], ok[1]["MessageId"]);
    assert_ne!(ok[0]["MessageId"], ok[2]["MessageId"]);
    assert_eq!(s.attrs(&cb).await["ApproximateNumberOfMessages"], "2");

    // FIFO rules.
    let (_, shape, _) = s
        .err(
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x", "MessageDeduplicationId": "z"}),
        )
        .await;
    assert_eq!(shape, "MissingParameter");
    let (_, shape, _) = s
        .err(
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x", "MessageGroupId": "g"}),
        )
        .await;
    assert_eq!(shape, "InvalidParameterValue");
    let (_, shape, _) = s.err("SendMessage", json!({"QueueUrl": url, "MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "q", "DelaySeconds": 5})).await;
    assert_eq!(shape, "InvalidParameterValue");
    let (_, shape, _) = s
        .err(
            "CreateQueue",
            json!({"QueueName": "nofifo", "Attributes": {"FifoQueue": "true"}}),
        )
        .await;
    assert_eq!(shape, "InvalidParameterValue");
}

#[tokio::test]
async fn every_limit_has_its_error() {
    let s = start().await;
    let url = s.create("limits", json!({})).await;
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "SendMessage",
            json!({"QueueUrl": format!("{url}-missing"), "MessageBody": "x"}),
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue;Sender",
        ),
        (
            "GetQueueUrl",
            json!({"QueueName": "missing"}),
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue;Sender",
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 11}),
            "InvalidParameterValue",
            "InvalidParameterValue;Sender",
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 0}),
            "InvalidParameterValue",
            "InvalidParameterValue;Sender",
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "VisibilityTimeout": 43201}),
            "InvalidParameterValue",
            "InvalidParameterValue;Sender",
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "WaitTimeSeconds": 21}),
            "InvalidParameterValue",
            "InvalidParameterValue;Sender",
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x", "DelaySeconds": 901}),
            "InvalidParameterValue",
            "InvalidParameterValue;Sender",
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x".repeat(1_048_577)}),
            "InvalidParameterValue",
            "InvalidParameterValue;Sender",
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "bad \u{1} char"}),
            "InvalidMessageContents",
            "InvalidMessageContents;Sender",
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url}),
            "MissingParameter",
            "MissingParameter;Sender",
        ),
        (
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": (0..11).map(|i| json!({"Id": i.to_string(), "MessageBody": "x"})).collect::<Vec<_>>()}),
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest;Sender",
        ),
        (
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": []}),
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest;Sender",
        ),
        (
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": [{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}]}),
            "BatchEntryIdsNotDistinct",
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct;Sender",
        ),
        (
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": [{"Id": "a b", "MessageBody": "x"}]}),
            "InvalidBatchEntryId",
            "AWS.SimpleQueueService.InvalidBatchEntryId;Sender",
        ),
        (
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": [{"Id": "a", "MessageBody": "x".repeat(600_000)}, {"Id": "b", "MessageBody": "x".repeat(600_000)}]}),
            "BatchRequestTooLong",
            "AWS.SimpleQueueService.BatchRequestTooLong;Sender",
        ),
        (
            "DeleteMessage",
            json!({"QueueUrl": url, "ReceiptHandle": "not-a-handle"}),
            "ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid;Sender",
        ),
        (
            "DeleteMessageBatch",
            json!({"QueueUrl": url, "Entries": []}),
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest;Sender",
        ),
        (
            "ChangeMessageVisibility",
            json!({"QueueUrl": url, "ReceiptHandle": "x", "VisibilityTimeout": 43201}),
            "InvalidParameterValue",
            "InvalidParameterValue;Sender",
        ),
        (
            "CreateQueue",
            json!({"QueueName": "bad name"}),
            "InvalidParameterValue",
            "InvalidParameterValue;Sender",
        ),
        (
            "CreateQueue",
            json!({"QueueName": "q", "Attributes": {"Bogus": "1"}}),
            "InvalidAttributeName",
            "InvalidAttributeName;Sender",
        ),
        (
            "CreateQueue",
            json!({"QueueName": "q", "Attributes": {"VisibilityTimeout": "43201"}}),
            "InvalidAttributeValue",
            "InvalidAttributeValue;Sender",
        ),
        (
            "CreateQueue",
            json!({"QueueName": "q", "Attributes": {"DelaySeconds": "901"}}),
            "InvalidAttributeValue",
            "InvalidAttributeValue;Sender",
        ),
        (
            "CreateQueue",
            json!({"QueueName": "limits", "Attributes": {"VisibilityTimeout": "7"}}),
            "QueueNameExists",
            "QueueAlreadyExists;Sender",
        ),
        (
            "GetQueueAttributes",
            json!({"QueueUrl": url, "AttributeNames": ["Bogus"]}),
            "InvalidAttributeName",
            "InvalidAttributeName;Sender",
        ),
        (
            "NoSuchAction",
            json!({}),
            "InvalidAction",
            "InvalidAction;Sender",
        ),
    ];
    for (action, input, shape, code) in cases {
        let (status, got_shape, got_code) = s.err(action, input.clone()).await;
        assert_eq!(
            (status, got_shape.as_str(), got_code.as_str()),
            (400, shape, code),
            "{action} {input:.200}"
        );
    }
    // Malformed JSON, and a body over the limit: clear errors, no panic.
    let r = http(
        s.addr,
        "POST",
        "/",
        &[("X-Amz-Target", "AmazonSQS.SendMessage".into())],
        b"{not json",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["__type"]
        .as_str()
        .unwrap()
        .ends_with("SerializationException"));
    let big = vec![b'x'; 5 << 20];
    let r = http(
        s.addr,
        "POST",
        "/",
        &[("X-Amz-Target", "AmazonSQS.SendMessage".into())],
        &big,
    )
    .await;
    assert_eq!(r.status, 413);
    // The server still serves.
    s.ok(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "still fine"}),
    )
    .await;
}

#[tokio::test]
async fn queue_management() {
    let s = start().await;
    let url = s.create("mgmt-a", json!({"VisibilityTimeout": "7", "MaximumMessageSize": "2048", "MessageRetentionPeriod": "120"})).await;
    // Creating again with the same attributes is fine.
    s.create("plain", json!({})).await;
    s.create("plain", json!({"FifoQueue": "false"})).await;
    assert_eq!(
        s.create("mgmt-a", json!({"VisibilityTimeout": "7"})).await,
        url
    );
    s.create("mgmt-b", json!({})).await;
    s.create("other", json!({})).await;
    let r = s
        .ok("ListQueues", json!({"QueueNamePrefix": "mgmt-"}))
        .await;
    assert_eq!(r["QueueUrls"].as_array().unwrap().len(), 2);
    let r = s
        .ok(
            "ListQueues",
            json!({"QueueNamePrefix": "mgmt-", "MaxResults": 1}),
        )
        .await;
    assert_eq!(r["QueueUrls"].as_array().unwrap().len(), 1);
    let r = s
        .ok(
            "ListQueues",
            json!({"QueueNamePrefix": "mgmt-", "MaxResults": 1, "NextToken": r["NextToken"]}),
        )
        .await;
    assert!(r["QueueUrls"][0].as_str().unwrap().ends_with("mgmt-b"));

    let a = s.attrs(&url).await;
    assert_eq!(a["VisibilityTimeout"], "7");
    assert_eq!(a["MaximumMessageSize"], "2048");
    assert_eq!(a["MessageRetentionPeriod"], "120");
    assert!(a["QueueArn"]
        .as_str()
        .unwrap()
        .ends_with(":000000000000:mgmt-a"));
    let info = s.store.describe_topic("mgmt-a").await.unwrap();
    assert_eq!(info.config.retention_ms, Some(120_000));
    let (_, shape, _) = s
        .err(
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x".repeat(2049)}),
        )
        .await;
    assert_eq!(shape, "InvalidParameterValue");

    s.ok(
        "SetQueueAttributes",
        json!({"QueueUrl": url, "Attributes": {"VisibilityTimeout": "9", "DelaySeconds": "3"}}),
    )
    .await;
    let a = s.attrs(&url).await;
    assert_eq!(
        (a["VisibilityTimeout"].as_str(), a["DelaySeconds"].as_str()),
        (Some("9"), Some("3"))
    );
    // Queue-level delay applies to sends.
    s.ok("SendMessage", json!({"QueueUrl": url, "MessageBody": "d"}))
        .await;
    assert!(s.receive(&url, json!({})).await.is_empty());
    s.clock.advance(3_000);
    assert_eq!(s.receive(&url, json!({})).await.len(), 1);

    // Tags.
    let tagged = s
        .ok(
            "CreateQueue",
            json!({"QueueName": "tagged", "tags": {"team": "a"}}),
        )
        .await["QueueUrl"]
        .clone();
    s.ok(
        "TagQueue",
        json!({"QueueUrl": tagged, "Tags": {"env": "test", "team": "b"}}),
    )
    .await;
    s.ok(
        "UntagQueue",
        json!({"QueueUrl": tagged, "TagKeys": ["env"]}),
    )
    .await;
    assert_eq!(
        s.ok("ListQueueTags", json!({"QueueUrl": tagged})).await,
        json!({"Tags": {"team": "b"}})
    );
    // Dead-letter sources.
    let arn = queue_arn_of(&s, &url).await;
    let policy = json!({"deadLetterTargetArn": arn, "maxReceiveCount": 3}).to_string();
    s.ok(
        "SetQueueAttributes",
        json!({"QueueUrl": tagged, "Attributes": {"RedrivePolicy": policy}}),
    )
    .await;
    let r = s
        .ok("ListDeadLetterSourceQueues", json!({"QueueUrl": url}))
        .await;
    assert_eq!(r["queueUrls"], json!([tagged]));

    s.ok("DeleteQueue", json!({"QueueUrl": url})).await;
    let (_, shape, _) = s.err("GetQueueUrl", json!({"QueueName": "mgmt-a"})).await;
    assert_eq!(shape, "QueueDoesNotExist");
}

#[tokio::test]
async fn topics_and_queues_are_the_same_data() {
    let s = start().await;
    // A topic made outside the API is a queue with default attributes.
    s.store
        .create_topic("events", TopicConfig::with_partitions(3))
        .await
        .unwrap();
    for p in 0..3 {
        s.store
            .append(
                "events",
                p,
                AppendBatch::new(vec![Record::keyed("k", format!("from kafka {p}"))]),
            )
            .await
            .unwrap();
    }
    let url = s.ok("GetQueueUrl", json!({"QueueName": "events"})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bodies: Vec<String> = s
        .receive(&url, json!({}))
        .await
        .iter()
        .map(|m| m["Body"].as_str().unwrap().to_string())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["from kafka 0", "from kafka 1", "from kafka 2"]);

    // A message sent through the API is a record with its attributes in headers.
    s.ok(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "from sqs",
        "MessageAttributes": {"color": {"DataType": "String", "StringValue": "red"}}}),
    )
    .await;
    let mut found = None;
    for p in 0..3 {
        let r = s
            .store
            .fetch("events", p, 1, FetchLimits::default())
            .await
            .unwrap();
        if let Some(rec) = r.records.into_iter().next() {
            found = Some(rec);
        }
    }
    let rec = found.expect("the sent message is a record");
    assert_eq!(rec.value.as_deref(), Some(&b"from sqs"[..]));
    let header = |k: &str| {
        rec.headers
            .iter()
            .find(|h| h.key == k)
            .and_then(|h| h.value.clone())
    };
    assert_eq!(header("sqs.attr.color").as_deref(), Some(&b"red"[..]));
    assert_eq!(header("sqs.type.color").as_deref(), Some(&b"String"[..]));
    let a = s.attrs(&url).await;
    assert_eq!(a["ApproximateNumberOfMessages"], "1");
    assert_eq!(a["ApproximateNumberOfMessagesNotVisible"], "3");
}

#[tokio::test]
async fn long_poll_returns_when_a_message_arrives() {
    let s = Arc::new(start().await);
    let url = s.create("poll", json!({})).await;
    // An empty long poll returns empty once its wait has passed.
    assert!(s
        .receive(&url, json!({"WaitTimeSeconds": 1}))
        .await
        .is_empty());
    let waiter = {
        let s = s.clone();
        let url = url.clone();
        tokio::spawn(async move { s.receive(&url, json!({"WaitTimeSeconds": 20})).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.ok(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "wake up"}),
    )
    .await;
    let got = waiter.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["Body"], "wake up");
}

#[tokio::test]
async fn query_protocol_speaks_xml() {
    let s = start().await;
    let form = |body: &str| {
        let b = body.to_string();
        async move {
            http(
                s.addr,
                "POST",
                "/",
                &[("Content-Type", "application/x-www-form-urlencoded".into())],
                b.as_bytes(),
            )
            .await
        }
    };
    let r = form("Action=CreateQueue&QueueName=legacy&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=12&Version=2012-11-05").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("<CreateQueueResult><QueueUrl>http://"),
        "{}",
        r.text()
    );
    let r = form("Action=SendMessage&QueueUrl=http%3A%2F%2Fx%2F000000000000%2Flegacy&MessageBody=a%26b&MessageAttribute.1.Name=k&MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue=v").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains(&format!(
            "<MD5OfMessageBody>{}</MD5OfMessageBody>",
            md5_hex("a&b")
        )),
        "{}",
        r.text()
    );
    // Queue URL as the path, as older clients send it.
    let r = http(
        s.addr,
        "POST",
        "/000000000000/legacy",
        &[("Content-Type", "application/x-www-form-urlencoded".into())],
        b"Action=ReceiveMessage&AttributeName.1=All&MessageAttributeName.1=All",
    )
    .await;
    let text = r.text();
    assert!(text.contains("<Body>a&amp;b</Body>"), "{text}");
    assert!(
        text.contains("<Name>ApproximateReceiveCount</Name><Value>1</Value>"),
        "{text}"
    );
    assert!(text.contains("<MessageAttribute><Name>k</Name><Value><DataType>String</DataType><StringValue>v</StringValue></Value></MessageAttribute>"), "{text}");
    let r = form("Action=GetQueueAttributes&QueueUrl=%2F000000000000%2Flegacy&AttributeName.1=VisibilityTimeout").await;
    assert!(
        r.text()
            .contains("<Attribute><Name>VisibilityTimeout</Name><Value>12</Value></Attribute>"),
        "{}",
        r.text()
    );
    let r = form("Action=GetQueueUrl&QueueName=nope").await;
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("<Code>AWS.SimpleQueueService.NonExistentQueue</Code>"),
        "{}",
        r.text()
    );
    let r = form("Action=SendMessageBatch&QueueUrl=%2F0%2Flegacy&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=1&SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=2").await;
    assert_eq!(
        r.text().matches("<SendMessageBatchResultEntry>").count(),
        2,
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn sigv4_is_enforced_when_configured() {
    let clock = ManualClock::default();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
    let mut creds = SigV4Credentials::new();
    creds.insert("AKIDTEST", "secret-1");
    let s = serve(store, clock.clone(), Some(creds)).await;
    let signed = |secret: &'static str, key: &'static str, body: Value| {
        use broker_api::Clock;
        let body = body.to_string();
        let mut h = axum::http::HeaderMap::new();
        h.insert("host", s.addr.to_string().parse().unwrap());
        h.insert(
            "x-amz-date",
            sigv4::amz_date(clock.now_ms()).parse().unwrap(),
        );
        h.insert("x-amz-target", "AmazonSQS.CreateQueue".parse().unwrap());
        let uri: axum::http::Uri = "/".parse().unwrap();
        let auth = sigv4::sign(
            key,
            secret,
            "us-east-1",
            "sqs",
            "POST",
            &uri,
            &h,
            body.as_bytes(),
        )
        .unwrap();
        let headers: Vec<(&str, String)> = vec![
            ("X-Amz-Date", h["x-amz-date"].to_str().unwrap().to_string()),
            ("X-Amz-Target", "AmazonSQS.CreateQueue".into()),
            ("Authorization", auth),
        ];
        async move { http(s.addr, "POST", "/", &headers, body.as_bytes()).await }
    };
    let r = signed("secret-1", "AKIDTEST", json!({"QueueName": "signed"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = signed("wrong", "AKIDTEST", json!({"QueueName": "signed"})).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["__type"]
        .as_str()
        .unwrap()
        .ends_with("SignatureDoesNotMatch"));
    let r = signed("secret-1", "AKIDOTHER", json!({"QueueName": "signed"})).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["__type"]
        .as_str()
        .unwrap()
        .ends_with("InvalidClientTokenId"));
    let r = s
        .call("CreateQueue", json!({"QueueName": "unsigned"}))
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn metrics_and_health() {
    let s = start().await;
    let url = s.create("metered", json!({})).await;
    for i in 0..3 {
        s.ok(
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": format!("m{i}")}),
        )
        .await;
    }
    s.ok("ReceiveMessage", json!({"QueueUrl": url})).await;
    s.store
        .create_topic("stream", TopicConfig::default())
        .await
        .unwrap();
    s.store
        .append(
            "stream",
            0,
            AppendBatch::new(vec![Record::from_value("a"), Record::from_value("b")]),
        )
        .await
        .unwrap();
    s.store
        .commit_offsets(
            "readers",
            &[broker_api::OffsetCommit {
                topic: "stream".into(),
                partition: 0,
                offset: 0,
                leader_epoch: None,
                metadata: String::new(),
            }],
        )
        .await
        .unwrap();
    let r = http(s.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    for line in [
        "broker_sqs_request_duration_seconds_count{action=\"SendMessage\"} 3",
        "broker_sqs_requests_total{action=\"ReceiveMessage\"} 1",
        "broker_topic_appended_records_total{topic=\"metered\"} 3",
        "broker_queue_messages{queue=\"metered\",state=\"visible\"} 2",
        "broker_queue_messages{queue=\"metered\",state=\"in_flight\"} 1",
        "broker_queue_messages{queue=\"metered\",state=\"dead_lettered\"} 0",
        "broker_consumer_group_lag{group=\"readers\",topic=\"stream\"} 2",
        "broker_store_up 1",
        "broker_log_corrupt_batches_total 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let r = http(s.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);
    s.store.close().await.unwrap();
    let r = http(s.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 503);
}

#[tokio::test]
async fn kafka_made_fifo_topic_orders_by_key_and_trace_header_round_trips() {
    let s = start().await;
    s.store
        .create_topic("made.fifo", TopicConfig::default())
        .await
        .unwrap();
    let recs = vec![
        Record::keyed("a", "a1"),
        Record::keyed("a", "a2"),
        Record::keyed("b", "b1"),
    ];
    s.store
        .append("made.fifo", 0, AppendBatch::new(recs))
        .await
        .unwrap();
    let url = s.ok("GetQueueUrl", json!({"QueueName": "made.fifo"})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let got = s.receive(&url, json!({"MaxNumberOfMessages": 1})).await;
    let bodies: Vec<&str> = got.iter().map(|m| m["Body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["a1"]);
    assert_eq!(got[0]["Attributes"]["MessageGroupId"], "a");
    // Key a is locked while a1 is in flight; b is not.
    let got = s.receive(&url, json!({})).await;
    let bodies: Vec<&str> = got.iter().map(|m| m["Body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["b1"]);

    let q = s.create("traced", json!({})).await;
    let sent = s
        .ok(
            "SendMessage",
            json!({"QueueUrl": q, "MessageBody": "t",
                "MessageSystemAttributes": {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-abc"}}}),
        )
        .await;
    assert_eq!(
        sent["MD5OfMessageSystemAttributes"].as_str().map(str::len),
        Some(32)
    );
    let got = s.receive(&q, json!({})).await;
    assert_eq!(got[0]["Attributes"]["AWSTraceHeader"], "Root=1-abc");
}

#[tokio::test]
async fn shutdown_ends_pending_long_polls() {
    let clock = ManualClock::default();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = router(
        store.clone(),
        Arc::new(Metrics::new()),
        HttpConfig {
            shutdown: Some(stop_rx),
            clock: Some(Arc::new(clock.clone())),
            ..Default::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let s = Arc::new(Server { addr, clock, store });
    let url = s.create("stopping", json!({})).await;
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.receive(&url, json!({"WaitTimeSeconds": 20})).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the long poll ended before shutdown");
    stop_tx.send(true).unwrap();
    let got = waiter.await.unwrap();
    assert!(got.is_empty());
}

/// Concurrent sends, receives and deletes of one queue share store calls (sqs::combine);
/// every request must still get exactly its own messages and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_get_their_own_answers() {
    let s = Arc::new(start().await);
    let url = s.create("shared", json!({})).await;
    let mut senders = Vec::new();
    for t in 0..16 {
        let (s, url) = (s.clone(), url.clone());
        senders.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for b in 0..5 {
                let entries: Vec<Value> = (0..10)
                    .map(
                        |k| json!({"Id": format!("e{k}"), "MessageBody": format!("m-{t}-{b}-{k}")}),
                    )
                    .collect();
                let r = s
                    .ok(
                        "SendMessageBatch",
                        json!({"QueueUrl": url, "Entries": entries}),
                    )
                    .await;
                let ok = r["Successful"].as_array().unwrap();
                assert_eq!(ok.len(), 10, "{r}");
                for e in ok {
                    let k: usize = e["Id"].as_str().unwrap()[1..].parse().unwrap();
                    let body = format!("m-{t}-{b}-{k}");
                    assert_eq!(e["MD5OfMessageBody"], md5_hex(&body));
                    sent.push((body, e["MessageId"].as_str().unwrap().to_string()));
                }
            }
            sent
        }));
    }
    let mut ids: HashMap<String, String> = HashMap::new();
    for t in senders {
        for (body, id) in t.await.unwrap() {
            assert!(ids.insert(body, id).is_none());
        }
    }
    let distinct: std::collections::HashSet<&String> = ids.values().collect();
    assert_eq!(distinct.len(), 800, "every message has its own id");

    let mut receivers = Vec::new();
    for _ in 0..8 {
        let (s, url) = (s.clone(), url.clone());
        receivers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut empty = 0;
            while empty < 3 {
                let msgs = s
                    .receive(&url, json!({"VisibilityTimeout": 60, "WaitTimeSeconds": 0}))
                    .await;
                if msgs.is_empty() {
                    empty += 1;
                    continue;
                }
                empty = 0;
                assert!(msgs.len() <= 10);
                let entries: Vec<Value> = msgs
                    .iter()
                    .enumerate()
                    .map(|(i, m)| json!({"Id": format!("d{i}"), "ReceiptHandle": m["ReceiptHandle"]}))
                    .collect();
                let d = s
                    .ok("DeleteMessageBatch", json!({"QueueUrl": url, "Entries": entries}))
                    .await;
                assert_eq!(d["Successful"].as_array().unwrap().len(), msgs.len(), "{d}");
                assert!(d["Failed"].as_array().unwrap().is_empty(), "{d}");
                for m in msgs {
                    got.push((
                        m["Body"].as_str().unwrap().to_string(),
                        m["MessageId"].as_str().unwrap().to_string(),
                    ));
                }
            }
            got
        }));
    }
    let mut seen = std::collections::HashSet::new();
    for t in receivers {
        for (body, id) in t.await.unwrap() {
            assert_eq!(
                ids.get(&body),
                Some(&id),
                "{body} came with another message's id"
            );
            assert!(seen.insert(body.clone()), "{body} was received twice");
        }
    }
    assert_eq!(seen.len(), 800, "every message received once");
    // Deleted for good: nothing comes back after the visibility timeout.
    s.clock.advance(61_000);
    assert!(s.receive(&url, json!({})).await.is_empty());
    let a = s.attrs(&url).await;
    assert_eq!(a["ApproximateNumberOfMessages"], "0");
    assert_eq!(a["ApproximateNumberOfMessagesNotVisible"], "0");
}

/// Message actions use a queue description read up to a second earlier (sqs::manage); a
/// change through this broker is seen at once, and a queue deleted under it (here through
/// the store, as the Kafka API would) is reported as gone, not served from the cache.
#[tokio::test]
async fn cached_queue_descriptions_never_hide_a_change() {
    let s = start().await;
    let url = s.create("cached", json!({})).await;
    s.ok(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "one"}),
    )
    .await;
    // Through this broker: a new visibility timeout applies to the next receive.
    s.ok(
        "SetQueueAttributes",
        json!({"QueueUrl": url, "Attributes": {"VisibilityTimeout": "5"}}),
    )
    .await;
    let got = s.receive(&url, json!({})).await;
    assert_eq!(got.len(), 1);
    s.clock.advance(5_000);
    assert_eq!(
        s.receive(&url, json!({})).await.len(),
        1,
        "visible again after 5 s"
    );
    // Deleted behind the broker's back: every message action says the queue is gone.
    s.store.delete_topic("cached").await.unwrap();
    let (_, shape, _) = s
        .err(
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "two"}),
        )
        .await;
    assert_eq!(shape, "QueueDoesNotExist");
    let (_, shape, _) = s.err("ReceiveMessage", json!({"QueueUrl": url})).await;
    assert_eq!(shape, "QueueDoesNotExist");
}
