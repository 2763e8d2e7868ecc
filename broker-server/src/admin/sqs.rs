//! The queue side of `broker admin`: SQS actions in AWS JSON 1.0 over HTTP, signed with
//! SigV4 when `BROKER_SQS_ACCESS_KEY_ID` and `BROKER_SQS_SECRET_ACCESS_KEY` are set (the same
//! variables the server reads for its one key).

use std::time::Duration;

use anyhow::{bail, Context};
use http::{HeaderMap, HeaderValue, Uri};
use serde_json::{json, Value};

use super::table::{Output, Table};
use crate::http::sqs::sigv4;

/// Region and service the signature is scoped to (the broker accepts any region).
const REGION: &str = "us-east-1";
const SERVICE: &str = "sqs";

/// A client of the broker's SQS API at one base URL.
pub struct SqsAdmin {
    http: reqwest::Client,
    base: String,
    uri: Uri,
    key: Option<(String, String)>,
}

impl SqsAdmin {
    /// A client for `base` (e.g. `http://127.0.0.1:9324`); signs when the key variables are
    /// set.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<SqsAdmin> {
        let base = base.trim_end_matches('/').to_string();
        let uri: Uri = format!("{base}/")
            .parse()
            .with_context(|| format!("--http {base:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            bail!("--http {base:?} must be an http:// URL with a host, e.g. http://127.0.0.1:9324");
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("cannot build the HTTP client")?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let key = match (
            env(sigv4::ENV_ACCESS_KEY_ID),
            env(sigv4::ENV_SECRET_ACCESS_KEY),
        ) {
            (Some(id), Some(secret)) => Some((id, secret)),
            _ => None,
        };
        Ok(SqsAdmin {
            http,
            base,
            uri,
            key,
        })
    }

    /// Calls one action; returns its JSON answer, or an error naming the action, the URL and
    /// the AWS error.
    pub async fn call(&self, action: &str, input: Value) -> anyhow::Result<Value> {
        let body = serde_json::to_vec(&input)?;
        let mut headers = HeaderMap::new();
        let host = self
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        headers.insert("host", HeaderValue::from_str(&host)?);
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        headers.insert(
            "x-amz-target",
            HeaderValue::from_str(&format!("AmazonSQS.{action}"))?,
        );
        if let Some((id, secret)) = &self.key {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            headers.insert(
                "x-amz-date",
                HeaderValue::from_str(&sigv4::amz_date(now_ms))?,
            );
            let auth = sigv4::sign(
                id, secret, REGION, SERVICE, "POST", &self.uri, &headers, &body,
            )
            .context("cannot sign the request")?;
            headers.insert("authorization", HeaderValue::from_str(&auth)?);
        }
        let url = format!("{}/", self.base);
        let resp = self
            .http
            .post(&url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let why = if e.is_connect() {
                    "cannot connect"
                } else if e.is_timeout() {
                    "no answer in time"
                } else {
                    "request failed"
                };
                anyhow::anyhow!("SQS {action} at {}: {why}: {}", self.base, error_chain(&e))
            })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("SQS {action} at {}: reading the answer", self.base))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let kind = value
                .get("__type")
                .and_then(Value::as_str)
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
                .unwrap_or_else(|| format!("HTTP {status}"));
            let message = value
                .get("message")
                .or_else(|| value.get("Message"))
                .and_then(Value::as_str)
                .unwrap_or(text.trim());
            bail!("SQS {action} at {} failed: {kind}: {message}", self.base);
        }
        if value.is_null() {
            bail!(
                "SQS {action} at {}: the answer is not JSON: {}",
                self.base,
                text.chars().take(200).collect::<String>()
            );
        }
        Ok(value)
    }

    /// `queues list`: every queue with its URL and approximate message counts.
    pub async fn list(&self) -> anyhow::Result<Output> {
        let mut urls: Vec<String> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut input = json!({"MaxResults": 1000});
            if let Some(t) = &token {
                input["NextToken"] = json!(t);
            }
            let page = self.call("ListQueues", input).await?;
            if let Some(list) = page.get("QueueUrls").and_then(Value::as_array) {
                urls.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
            }
            match page.get("NextToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        let mut t = Table::new(&["queue", "visible", "in_flight", "delayed", "url"]);
        for url in urls {
            let name = url.rsplit('/').next().unwrap_or(&url).to_string();
            let attrs = self
                .call(
                    "GetQueueAttributes",
                    json!({"QueueUrl": url, "AttributeNames": [
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed"
                    ]}),
                )
                .await
                .ok();
            let count = |k: &str| -> Value {
                attrs
                    .as_ref()
                    .and_then(|a| a.get("Attributes"))
                    .and_then(|a| a.get(k))
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(Value::Null, |n| json!(n))
            };
            t.row(vec![
                json!(name),
                count("ApproximateNumberOfMessages"),
                count("ApproximateNumberOfMessagesNotVisible"),
                count("ApproximateNumberOfMessagesDelayed"),
                json!(url),
            ]);
        }
        Ok(Output::table(&t))
    }

    /// `queues purge NAME`.
    pub async fn purge(&self, name: &str) -> anyhow::Result<Output> {
        let url = self
            .call("GetQueueUrl", json!({"QueueName": name}))
            .await
            .with_context(|| format!("queue {name:?}"))?;
        let url = url
            .get("QueueUrl")
            .and_then(Value::as_str)
            .context("GetQueueUrl answered without a QueueUrl")?
            .to_string();
        self.call("PurgeQueue", json!({"QueueUrl": url}))
            .await
            .with_context(|| format!("queue {name:?}"))?;
        Ok(Output::message(
            format!("Purged queue {name} ({url})."),
            json!({"queue": name, "url": url, "purged": true}),
        ))
    }
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = c.source();
    }
    text
}
