//! Messages as records: attribute headers, checksums, message ids and sequence numbers.

use std::collections::BTreeMap;

use base64::Engine;
use broker_api::{Header, StoredRecord};
use bytes::Bytes;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use super::error::{SqsError, SqsResult};

/// Header carrying a message attribute's value: `sqs.attr.<Name>`.
pub const ATTR_HEADER: &str = "sqs.attr.";
/// Header carrying a message attribute's data type: `sqs.type.<Name>`.
pub const TYPE_HEADER: &str = "sqs.type.";
/// Header carrying a FIFO message's MessageGroupId.
pub const GROUP_HEADER: &str = "sqs.group-id";
/// Header carrying a FIFO message's MessageDeduplicationId.
pub const DEDUP_HEADER: &str = "sqs.dedup-id";
/// Header carrying the AWSTraceHeader system attribute.
pub const TRACE_HEADER: &str = "sqs.trace";
/// Header carrying the MessageId given to the message when it was sent (a random UUID).
pub const MESSAGE_ID_HEADER: &str = "sqs.message-id";

/// One message attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrValue {
    pub data_type: String,
    pub value: Bytes,
}

impl AttrValue {
    fn is_binary(&self) -> bool {
        self.data_type.starts_with("Binary")
    }

    /// The attribute in the JSON shape of the API.
    pub fn to_json(&self) -> Value {
        if self.is_binary() {
            json!({
                "DataType": self.data_type,
                "BinaryValue": base64::engine::general_purpose::STANDARD.encode(&self.value),
            })
        } else {
            json!({
                "DataType": self.data_type,
                "StringValue": String::from_utf8_lossy(&self.value),
            })
        }
    }

    /// The bytes SQS counts towards the message size.
    pub fn size(&self, name: &str) -> usize {
        name.len() + self.data_type.len() + self.value.len()
    }
}

/// Longest message attribute name and data type.
const MAX_ATTR_NAME_LEN: usize = 256;

/// Ok when `name` is a message attribute name SQS accepts: 1-256 characters of
/// `[A-Za-z0-9_.-]`, not starting with `AWS.` or `Amazon.` (any case), not starting or ending
/// with a period, no two periods in a row. Else `InvalidParameterValue` naming the name and
/// the rule it breaks.
fn check_attr_name(name: &str) -> SqsResult<()> {
    if name.is_empty() {
        return Err(SqsError::InvalidParameterValue(
            "The request must contain non-empty message attribute name.".into(),
        ));
    }
    let bad = |why: &str| SqsError::invalid_value("MessageAttribute.Name", name, why);
    if name.len() > MAX_ATTR_NAME_LEN {
        return Err(bad(
            "Message (user) attribute names can be at most 256 characters long.",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(bad("Message (user) attribute names can only include alphanumeric characters, hyphens, underscores and periods."));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        return Err(bad("Message (user) attribute names must not start with the reserved prefixes AWS. or Amazon. (in any case)."));
    }
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(bad("Message (user) attribute names must not start or end with a period, nor have periods in a sequence."));
    }
    Ok(())
}

/// The characters SQS accepts in bodies and text attribute values, as AWS lists them.
pub const ALLOWED_CHARACTERS: &str =
    "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF";

/// The first character of `text` that SQS refuses (see [`ALLOWED_CHARACTERS`]), if any.
pub fn invalid_char(text: &str) -> Option<char> {
    text.chars().find(|c| {
        !matches!(c, '\u{9}' | '\u{a}' | '\u{d}' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
    })
}

/// Parses the `MessageAttributes` map of a send request.
pub fn parse_attributes(v: Option<&Value>) -> SqsResult<BTreeMap<String, AttrValue>> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return Ok(out) };
    let map = v.as_object().ok_or_else(|| {
        SqsError::invalid_value("MessageAttributes", &v.to_string(), "Must be a map.")
    })?;
    if map.len() > 10 {
        return Err(SqsError::InvalidParameterValue(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [10].",
            map.len()
        )));
    }
    for (name, attr) in map {
        check_attr_name(name)?;
        let data_type = attr
            .get("DataType")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if data_type.is_empty() {
            return Err(SqsError::InvalidParameterValue(format!(
                "Message (user) attribute '{name}' must contain a non-empty message attribute type."
            )));
        }
        let base = data_type.split('.').next().unwrap_or("");
        if !matches!(base, "String" | "Number" | "Binary") {
            return Err(SqsError::InvalidParameterValue(format!(
                "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
            )));
        }
        if data_type.len() > MAX_ATTR_NAME_LEN {
            return Err(SqsError::invalid_value(
                &format!("MessageAttribute.{name}.DataType"),
                &data_type,
                "Message (user) attribute types can be at most 256 characters long.",
            ));
        }
        let empty = || {
            SqsError::InvalidParameterValue(format!(
                "Message (user) attribute '{name}' must contain a non-empty value of type '{base}'."
            ))
        };
        let value = if base == "Binary" {
            let b64 = attr
                .get("BinaryValue")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(empty)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| {
                    SqsError::invalid_value(
                        &format!("MessageAttribute.{name}.BinaryValue"),
                        b64,
                        "The value is not valid base64.",
                    )
                })?;
            if bytes.is_empty() {
                return Err(empty());
            }
            Bytes::from(bytes)
        } else {
            let s = attr
                .get("StringValue")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(empty)?;
            if let Some(c) = invalid_char(s) {
                return Err(SqsError::InvalidParameterValue(format!(
                    "Invalid binary character '#x{:X}' was found in the value of message (user) attribute '{name}', the set of allowed characters is {ALLOWED_CHARACTERS}",
                    c as u32
                )));
            }
            if base == "Number" && s.trim().parse::<f64>().map_or(true, |n| !n.is_finite()) {
                return Err(SqsError::invalid_value(
                    &format!("MessageAttribute.{name}.StringValue"),
                    s,
                    format!(
                        "Can't cast the value of message (user) attribute '{name}' to a number."
                    ),
                ));
            }
            Bytes::copy_from_slice(s.as_bytes())
        };
        out.insert(name.clone(), AttrValue { data_type, value });
    }
    Ok(out)
}

/// The headers that carry `attrs`.
pub fn attribute_headers(attrs: &BTreeMap<String, AttrValue>) -> Vec<Header> {
    let mut out = Vec::with_capacity(attrs.len() * 2);
    for (name, a) in attrs {
        out.push(Header {
            key: format!("{TYPE_HEADER}{name}"),
            value: Some(Bytes::copy_from_slice(a.data_type.as_bytes())),
        });
        out.push(Header {
            key: format!("{ATTR_HEADER}{name}"),
            value: Some(a.value.clone()),
        });
    }
    out
}

/// The message attributes a stored record carries in its headers.
pub fn attributes_of(record: &StoredRecord) -> BTreeMap<String, AttrValue> {
    let mut types: BTreeMap<&str, String> = BTreeMap::new();
    for h in &record.headers {
        if let (Some(name), Some(v)) = (h.key.strip_prefix(TYPE_HEADER), &h.value) {
            types.insert(name, String::from_utf8_lossy(v).into_owned());
        }
    }
    let mut out = BTreeMap::new();
    for h in &record.headers {
        if let Some(name) = h.key.strip_prefix(ATTR_HEADER) {
            let data_type = types.get(name).cloned().unwrap_or_else(|| "String".into());
            out.insert(
                name.to_string(),
                AttrValue {
                    data_type,
                    value: h.value.clone().unwrap_or_default(),
                },
            );
        }
    }
    out
}

/// The value of the first header named `key`, as text.
pub fn header_str(record: &StoredRecord, key: &str) -> Option<String> {
    record
        .headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value.as_ref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Hex MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// MD5OfMessageAttributes as AWS computes it: over the attributes sorted by name, each as
/// length-prefixed name, length-prefixed type, a transport byte (1 text, 2 binary) and the
/// length-prefixed value. `None` when there are no attributes.
pub fn md5_of_attributes(attrs: &BTreeMap<String, AttrValue>) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    let mut h = Md5::new();
    for (name, a) in attrs {
        h.update((name.len() as u32).to_be_bytes());
        h.update(name.as_bytes());
        h.update((a.data_type.len() as u32).to_be_bytes());
        h.update(a.data_type.as_bytes());
        h.update([if a.is_binary() { 2u8 } else { 1u8 }]);
        h.update((a.value.len() as u32).to_be_bytes());
        h.update(&a.value);
    }
    Some(hex::encode(h.finalize()))
}

/// True when attribute `name` is selected by one of `names`: `All`, `.*`, the exact name, or
/// `Prefix.*` (every name starting with `Prefix`, so `Hel.*` selects `Hello` and `Help`).
pub fn name_selected(name: &str, names: &[String]) -> bool {
    names.iter().any(|n| {
        n == "All"
            || n == ".*"
            || n == name
            || n.strip_suffix(".*").is_some_and(|p| name.starts_with(p))
    })
}

/// The attributes named by `names` (see [`name_selected`]).
pub fn select_attributes(
    attrs: &BTreeMap<String, AttrValue>,
    names: &[String],
) -> BTreeMap<String, AttrValue> {
    attrs
        .iter()
        .filter(|(name, _)| name_selected(name, names))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The attributes as the JSON map of the API.
pub fn attributes_json(attrs: &BTreeMap<String, AttrValue>) -> Value {
    let mut m = Map::new();
    for (k, v) in attrs {
        m.insert(k.clone(), v.to_json());
    }
    Value::Object(m)
}

/// A fresh MessageId: a random (version 4) UUID.
pub fn new_message_id() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

/// The header that stores `id` with the record.
pub fn message_id_header(id: uuid::Uuid) -> Header {
    Header {
        key: MESSAGE_ID_HEADER.into(),
        value: Some(Bytes::from(id.hyphenated().to_string())),
    }
}

/// The MessageId of a stored record: the one stored when it was sent, or, for a record that
/// was not sent through the API (produced with Kafka), one derived from its position.
pub fn message_id_of(topic: &str, partition: i32, record: &StoredRecord) -> uuid::Uuid {
    header_str(record, MESSAGE_ID_HEADER)
        .and_then(|v| uuid::Uuid::parse_str(&v).ok())
        .unwrap_or_else(|| derived_message_id(topic, partition, record.offset))
}

/// The MessageId of a record produced without one, from (`topic`, `partition`, `offset`).
pub fn derived_message_id(topic: &str, partition: i32, offset: i64) -> uuid::Uuid {
    use sha2::Sha256;
    let mut h = Sha256::new();
    h.update(topic.as_bytes());
    h.update([0]);
    h.update(partition.to_be_bytes());
    h.update(offset.to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b)
}

/// The SequenceNumber of a FIFO message: grows with the offset within a partition.
pub fn sequence_number(partition: i32, offset: i64) -> String {
    let n = (offset.max(0) as u128) * 65_536 + partition.max(0) as u128;
    format!("{n:020}")
}

/// The deduplication id content-based deduplication uses: hex SHA-256 of the body.
pub fn content_dedup_id(body: &[u8]) -> String {
    use sha2::Sha256;
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &'static [u8]) -> AttrValue {
        AttrValue {
            data_type: "String".into(),
            value: Bytes::from_static(v),
        }
    }

    #[test]
    fn md5_of_attributes_matches_aws() {
        // Checksums shown (abbreviated) in the AWS CLI's receive-message examples.
        let mut attrs = BTreeMap::new();
        attrs.insert("PostalCode".to_string(), text(b"ABC123"));
        let got = md5_of_attributes(&attrs).unwrap();
        assert!(
            got.starts_with("b8e89563") && got.ends_with("e088e74f"),
            "{got}"
        );
        attrs.insert("City".to_string(), text(b"Any City"));
        let got = md5_of_attributes(&attrs).unwrap();
        assert!(
            got.starts_with("9424c491") && got.ends_with("26bc3ae7"),
            "{got}"
        );
        assert!(md5_of_attributes(&BTreeMap::new()).is_none());
        let body = md5_hex(b"Information about the largest city in Any Region.");
        assert!(body.starts_with("51b0a325") && body.ends_with("39163aa0"));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(derived_message_id("q", 0, 1), derived_message_id("q", 0, 1));
        assert_ne!(derived_message_id("q", 0, 1), derived_message_id("q", 0, 2));
        assert_ne!(new_message_id(), new_message_id());
        assert_eq!(new_message_id().get_version_num(), 4);
        assert!(sequence_number(0, 2) > sequence_number(0, 1));
        assert_eq!(sequence_number(0, 1).len(), 20);
    }

    #[test]
    fn attribute_wildcards() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(name_selected("Hello", &names(&["Hel.*"])));
        assert!(name_selected("Help", &names(&["Hel.*"])));
        assert!(!name_selected("Hi", &names(&["Hel.*"])));
        assert!(name_selected("a.b", &names(&["a.*"])));
        assert!(name_selected("x", &names(&[".*"])));
        assert!(name_selected("x", &names(&["All"])));
        assert!(!name_selected("x", &names(&["y"])));
    }

    #[test]
    fn attribute_names_are_checked() {
        let v = json!({"a.b": {"DataType": "String", "StringValue": "x"}});
        assert!(parse_attributes(Some(&v)).is_ok());
        let v = json!({"AWS.x": {"DataType": "String", "StringValue": "x"}});
        assert!(parse_attributes(Some(&v)).is_err());
        let v = json!({"n": {"DataType": "Number", "StringValue": "abc"}});
        assert!(parse_attributes(Some(&v)).is_err());
        let v = json!({"b": {"DataType": "Binary", "BinaryValue": "AAE="}});
        assert_eq!(
            parse_attributes(Some(&v)).unwrap()["b"].value.as_ref(),
            &[0, 1]
        );
    }
}
