//! Optional AWS Signature Version 4 verification of SQS requests.

use std::collections::HashMap;

use axum::http::{HeaderMap, Uri};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::error::{SqsError, SqsResult};

type HmacSha256 = Hmac<Sha256>;

/// Environment variable naming the one access key id the API accepts.
pub const ENV_ACCESS_KEY_ID: &str = "BROKER_SQS_ACCESS_KEY_ID";
/// Environment variable holding that key's secret.
pub const ENV_SECRET_ACCESS_KEY: &str = "BROKER_SQS_SECRET_ACCESS_KEY";
/// How far a request's `X-Amz-Date` may be from the server's clock.
pub const MAX_SKEW_MS: i64 = 15 * 60 * 1000;

/// Access key ids and their secrets. With credentials configured, every SQS request must carry
/// a valid SigV4 signature by one of them.
#[derive(Clone, Default)]
pub struct SigV4Credentials {
    secrets: HashMap<String, String>,
}

impl std::fmt::Debug for SigV4Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.secrets.keys().collect();
        ids.sort();
        f.debug_struct("SigV4Credentials")
            .field("access_key_ids", &ids)
            .finish_non_exhaustive()
    }
}

impl SigV4Credentials {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a key.
    pub fn insert(&mut self, access_key_id: impl Into<String>, secret: impl Into<String>) {
        self.secrets.insert(access_key_id.into(), secret.into());
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The key in `BROKER_SQS_ACCESS_KEY_ID` / `BROKER_SQS_SECRET_ACCESS_KEY`, when both are set
    /// and not empty.
    pub fn from_env() -> Option<Self> {
        let id = std::env::var(ENV_ACCESS_KEY_ID)
            .ok()
            .filter(|s| !s.is_empty())?;
        let secret = std::env::var(ENV_SECRET_ACCESS_KEY)
            .ok()
            .filter(|s| !s.is_empty())?;
        let mut c = Self::new();
        c.insert(id, secret);
        Some(c)
    }

    /// Parses a credentials file: one `ACCESS_KEY_ID:SECRET` per line (`=` or whitespace also
    /// separate); blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut c = Self::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, secret) = line
                .split_once([':', '=', ' ', '\t'])
                .map(|(a, b)| (a.trim(), b.trim_start_matches([':', '=', ' ', '\t']).trim()))
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .ok_or_else(|| format!("line {}: expected ACCESS_KEY_ID:SECRET", n + 1))?;
            c.insert(id, secret);
        }
        if c.is_empty() {
            return Err("no credentials in file".into());
        }
        Ok(c)
    }

    /// Reads a credentials file (see [`SigV4Credentials::parse`]).
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    /// Ok when the request carries a valid signature by a known key, dated within 15 minutes
    /// of `now_ms`; otherwise the AWS error (403).
    pub fn verify(
        &self,
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> SqsResult<()> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                SqsError::MissingAuthenticationToken(
                    "Request is missing Authentication Token".into(),
                )
            })?;
        let parsed = parse_authorization(auth).ok_or_else(|| {
            SqsError::MissingAuthenticationToken(
                "Authorization header is not a valid AWS4-HMAC-SHA256 header.".into(),
            )
        })?;
        let secret = self
            .secrets
            .get(parsed.access_key_id)
            .ok_or(SqsError::InvalidClientTokenId)?;
        let amz_date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or(SqsError::SignatureDoesNotMatch)?;
        let when = parse_amz_date(amz_date).ok_or(SqsError::SignatureDoesNotMatch)?;
        if (when - now_ms).abs() > MAX_SKEW_MS || !amz_date.starts_with(parsed.date) {
            return Err(SqsError::SignatureDoesNotMatch);
        }
        if !parsed.signed_headers.contains(&"host") {
            return Err(SqsError::SignatureDoesNotMatch);
        }
        let canonical = canonical_request(method, uri, headers, &parsed.signed_headers, body);
        let scope = format!(
            "{}/{}/{}/aws4_request",
            parsed.date, parsed.region, parsed.service
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = signing_key(secret, parsed.date, parsed.region, parsed.service);
        let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(to_sign.as_bytes());
        let given = hex::decode(parsed.signature).map_err(|_| SqsError::SignatureDoesNotMatch)?;
        mac.verify_slice(&given)
            .map_err(|_| SqsError::SignatureDoesNotMatch)
    }
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(auth: &str) -> Option<Authorization<'_>> {
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut c = credential?.split('/');
    let (access_key_id, date, region, service, term) =
        (c.next()?, c.next()?, c.next()?, c.next()?, c.next()?);
    if term != "aws4_request" || c.next().is_some() {
        return None;
    }
    Some(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

/// Milliseconds since the epoch of a `YYYYMMDDTHHMMSSZ` timestamp.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil date (proleptic Gregorian).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

/// `s` percent-encoded as SigV4 wants: everything but `A-Za-z0-9-_.~` (and `/` when
/// `keep_slash`).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_request(
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    signed: &[&str],
    body: &[u8],
) -> String {
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    query.sort();
    let query: Vec<String> = query.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut canonical_headers = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{}",
        uri_encode(path, true),
        query.join("&"),
        signed.join(";"),
        hex::encode(Sha256::digest(body))
    )
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The SigV4 signing key of `secret` for one day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k = hmac(&k, region);
    let k = hmac(&k, service);
    hmac(&k, "aws4_request")
}

#[allow(clippy::too_many_arguments)]
/// Signs a request as a client would (for tests and tools): the `Authorization` header value
/// for the given headers (which must include `host` and `x-amz-date`).
pub fn sign(
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<String> {
    let amz_date = headers.get("x-amz-date")?.to_str().ok()?;
    let date = amz_date.get(..8)?;
    let mut signed: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
    signed.sort();
    signed.dedup();
    let signed_refs: Vec<&str> = signed.iter().map(String::as_str).collect();
    let canonical = canonical_request(method, uri, headers, &signed_refs, body);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let sig = hex::encode(hmac(&signing_key(secret, date, region, service), &to_sign));
    Some(format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={sig}",
        signed.join(";")
    ))
}

/// `YYYYMMDDTHHMMSSZ` of `ms` since the epoch.
pub fn amz_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days (inverse of the computation in parse_amz_date).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn creds() -> SigV4Credentials {
        let mut c = SigV4Credentials::new();
        c.insert("AKIDEXAMPLE", SECRET);
        c
    }

    /// The `get-vanilla-query-order-key-case` case of AWS's SigV4 test suite.
    #[test]
    fn aws_test_suite_vector_verifies() {
        let uri: Uri = "/?Param2=value2&Param1=value1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let good = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
        let now = parse_amz_date("20150830T123600Z").unwrap();
        h.insert("authorization", HeaderValue::from_static(good));
        creds().verify("GET", &uri, &h, b"", now).unwrap();
        // Our own signer produces the same header.
        let mut unsigned = h.clone();
        unsigned.remove("authorization");
        assert_eq!(
            sign(
                "AKIDEXAMPLE",
                SECRET,
                "us-east-1",
                "service",
                "GET",
                &uri,
                &unsigned,
                b""
            )
            .unwrap(),
            good
        );
        // A changed byte, a wrong secret, an unknown key, an old date: all refused.
        let bad = good.replace("b97d918c", "b97d918d");
        h.insert("authorization", HeaderValue::from_str(&bad).unwrap());
        assert_eq!(
            creds().verify("GET", &uri, &h, b"", now),
            Err(SqsError::SignatureDoesNotMatch)
        );
        h.insert("authorization", HeaderValue::from_static(good));
        let mut wrong = SigV4Credentials::new();
        wrong.insert("AKIDEXAMPLE", "other");
        assert_eq!(
            wrong.verify("GET", &uri, &h, b"", now),
            Err(SqsError::SignatureDoesNotMatch)
        );
        let mut other = SigV4Credentials::new();
        other.insert("AKIDOTHER", SECRET);
        assert_eq!(
            other.verify("GET", &uri, &h, b"", now),
            Err(SqsError::InvalidClientTokenId)
        );
        assert_eq!(
            creds().verify("GET", &uri, &h, b"", now + MAX_SKEW_MS + 1000),
            Err(SqsError::SignatureDoesNotMatch)
        );
        h.remove("authorization");
        assert!(matches!(
            creds().verify("GET", &uri, &h, b"", now),
            Err(SqsError::MissingAuthenticationToken(_))
        ));
    }

    #[test]
    fn percent_decoding_never_panics() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%aé%"), "%aé%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn dates_round_trip() {
        let ms = parse_amz_date("20260101T000000Z").unwrap();
        assert_eq!(ms, 1_767_225_600_000);
        assert_eq!(amz_date(ms + 3_723_000), "20260101T010203Z");
        assert_eq!(
            amz_date(parse_amz_date("20240229T235959Z").unwrap()),
            "20240229T235959Z"
        );
    }

    #[test]
    fn credentials_file() {
        let c = SigV4Credentials::parse("# keys\nAKID1:s1\nAKID2 = s2\n").unwrap();
        assert_eq!(c.secrets["AKID1"], "s1");
        assert_eq!(c.secrets["AKID2"], "s2");
        assert!(SigV4Credentials::parse("nonsense").is_err());
        assert!(!format!("{c:?}").contains("s1"));
    }
}
