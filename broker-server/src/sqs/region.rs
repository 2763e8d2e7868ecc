//! Regions: which region a request addresses (SigV4 credential scope, host, queue URL), and
//! how a queue of a region is named in the store.

use axum::http::{header, HeaderMap, Uri};

/// The region of requests that name none, and of every queue made before regions existed:
/// its queues are stored under their plain names.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Longest region name accepted.
const MAX_REGION_LEN: usize = 32;

/// True for names shaped like AWS regions: lowercase words joined by `-`, the first of at
/// least two letters and the last a number of one or two digits (`us-east-1`, `eu-west-1`,
/// `us-gov-west-1`, `ap-southeast-2`).
pub fn is_region(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_REGION_LEN {
        return false;
    }
    let parts: Vec<&str> = s.split('-').collect();
    let Some((last, words)) = parts.split_last() else {
        return false;
    };
    parts.len() >= 3
        && words[0].len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=2).contains(&last.len())
        && last.bytes().all(|b| b.is_ascii_digit())
}

/// The region of a request: the SigV4 credential scope (`Authorization` header, or the
/// `X-Amz-Credential` query parameter of a presigned URL), else an AWS-style `Host`
/// (`sqs.<region>.amazonaws.com`, `<region>.queue.amazonaws.com`), else [`DEFAULT_REGION`].
/// Always a name [`is_region`] accepts.
pub fn of_request(headers: &HeaderMap, uri: &Uri) -> String {
    let from_auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split_once("Credential="))
        .and_then(|(_, rest)| scope_region(rest.split([',', ' ']).next().unwrap_or("")));
    let from_query = || {
        uri.query()?
            .split('&')
            .find_map(|p| p.strip_prefix("X-Amz-Credential="))
            .and_then(|c| scope_region(&c.replace("%2F", "/").replace("%2f", "/")))
    };
    let from_host = || {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(of_host)
    };
    from_auth
        .or_else(from_query)
        .or_else(from_host)
        .unwrap_or_else(|| DEFAULT_REGION.to_string())
}

/// The region of a credential `AKID/date/region/service/aws4_request`.
fn scope_region(credential: &str) -> Option<String> {
    let region = credential.split('/').nth(2)?;
    is_region(region).then(|| region.to_string())
}

/// The region an AWS-style host names in its first two labels (`sqs.eu-west-1.amazonaws.com`,
/// `eu-west-1.queue.amazonaws.com`, `sqs.eu-west-1.localhost.localstack.cloud`).
pub fn of_host(host: &str) -> Option<String> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    host.split('.')
        .take(2)
        .find(|l| is_region(l))
        .map(str::to_string)
}

/// The region a queue URL names: an AWS-style host (see [`of_host`]) or a path
/// `/queue/<region>/<account>/<name>`; `None` when it names none.
pub fn of_url(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next().unwrap_or("");
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').unwrap_or((rest, "")),
        None => ("", url),
    };
    if let Some(r) = of_host(host) {
        return Some(r);
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next()) {
        (Some("queue"), Some(r)) if is_region(r) => Some(r.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn region_names() {
        for r in ["us-east-1", "eu-west-1", "us-gov-west-1", "ap-southeast-2"] {
            assert!(is_region(r), "{r}");
        }
        for r in [
            "",
            "us",
            "us-east",
            "US-east-1",
            "u-east-1",
            "us-east-123",
            "us--1",
            "1-2-3",
        ] {
            assert!(!is_region(r), "{r}");
        }
    }

    #[test]
    fn request_regions() {
        let uri: Uri = "/".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(of_request(&h, &uri), DEFAULT_REGION);
        h.insert(
            "host",
            HeaderValue::from_static("sqs.ap-south-1.amazonaws.com"),
        );
        assert_eq!(of_request(&h, &uri), "ap-south-1");
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AK/20260101/eu-west-1/sqs/aws4_request, SignedHeaders=host, Signature=00",
            ),
        );
        assert_eq!(of_request(&h, &uri), "eu-west-1");
        let presigned: Uri = "/?X-Amz-Credential=AK%2F20260101%2Fca-central-1%2Fsqs%2Faws4_request"
            .parse()
            .unwrap();
        assert_eq!(of_request(&HeaderMap::new(), &presigned), "ca-central-1");
        h.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AK/x/not a region/sqs"),
        );
        assert_eq!(of_request(&h, &uri), "ap-south-1");
    }

    #[test]
    fn url_regions() {
        assert_eq!(
            of_url("https://sqs.eu-west-1.amazonaws.com/1/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            of_url("http://127.0.0.1:9324/queue/eu-west-2/000000000000/q").as_deref(),
            Some("eu-west-2")
        );
        assert_eq!(
            of_url("/queue/us-west-2/000000000000/q").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(of_url("http://127.0.0.1:9324/000000000000/q"), None);
        assert_eq!(of_url("q"), None);
        assert_eq!(of_host("localhost:9324"), None);
    }
}
