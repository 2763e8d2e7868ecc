//! A minimal SQS load client: AWS JSON 1.0 over HTTP (`X-Amz-Target: AmazonSQS.<Action>`).

use serde_json::{json, Value};

use crate::{BenchError, BenchResult};

/// A client of one broker's SQS endpoint.
#[derive(Clone)]
pub struct SqsClient {
    http: reqwest::Client,
    endpoint: String,
}

impl SqsClient {
    /// A client of `http://addr/`.
    pub fn new(addr: std::net::SocketAddr) -> BenchResult<SqsClient> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()
            .map_err(|e| BenchError::Protocol(e.to_string()))?;
        Ok(SqsClient {
            http,
            endpoint: format!("http://{addr}/"),
        })
    }

    async fn call(&self, action: &str, body: Value) -> BenchResult<Value> {
        let resp = self
            .http
            .post(&self.endpoint)
            .header("X-Amz-Target", format!("AmazonSQS.{action}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| BenchError::Protocol(format!("{action}: {e}")))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| BenchError::Protocol(format!("{action}: {e}")))?;
        if !status.is_success() {
            return Err(BenchError::Protocol(format!(
                "{action}: HTTP {status}: {text}"
            )));
        }
        serde_json::from_str(&text)
            .map_err(|e| BenchError::Protocol(format!("{action}: bad JSON reply ({e}): {text}")))
    }

    /// Creates (or finds) a queue; returns its URL.
    pub async fn create_queue(&self, name: &str) -> BenchResult<String> {
        let v = self
            .call("CreateQueue", json!({ "QueueName": name }))
            .await?;
        v["QueueUrl"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| BenchError::Protocol(format!("CreateQueue without QueueUrl: {v}")))
    }

    /// Sends `count` messages of `size` bytes in one SendMessageBatch; returns how many were
    /// accepted (a failed entry is an error).
    pub async fn send_batch(&self, url: &str, count: usize, size: usize) -> BenchResult<u64> {
        let body = "x".repeat(size);
        let entries: Vec<Value> = (0..count)
            .map(|i| json!({ "Id": format!("m{i}"), "MessageBody": body }))
            .collect();
        let v = self
            .call(
                "SendMessageBatch",
                json!({ "QueueUrl": url, "Entries": entries }),
            )
            .await?;
        if v["Failed"].as_array().is_some_and(|f| !f.is_empty()) {
            return Err(BenchError::Protocol(format!(
                "SendMessageBatch failed entries: {v}"
            )));
        }
        Ok(v["Successful"].as_array().map_or(0, |s| s.len() as u64))
    }

    /// Receives up to 10 messages without waiting and deletes them with one
    /// DeleteMessageBatch; returns how many were deleted.
    pub async fn receive_delete(&self, url: &str) -> BenchResult<u64> {
        let v = self
            .call(
                "ReceiveMessage",
                json!({ "QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0, "VisibilityTimeout": 60 }),
            )
            .await?;
        let Some(msgs) = v["Messages"].as_array().filter(|m| !m.is_empty()) else {
            return Ok(0);
        };
        let entries: Vec<Value> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| json!({ "Id": format!("d{i}"), "ReceiptHandle": m["ReceiptHandle"] }))
            .collect();
        let d = self
            .call(
                "DeleteMessageBatch",
                json!({ "QueueUrl": url, "Entries": entries }),
            )
            .await?;
        if d["Failed"].as_array().is_some_and(|f| !f.is_empty()) {
            return Err(BenchError::Protocol(format!(
                "DeleteMessageBatch failed entries: {d}"
            )));
        }
        Ok(d["Successful"].as_array().map_or(0, |s| s.len() as u64))
    }
}
