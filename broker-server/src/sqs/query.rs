//! The older query protocol: form-encoded parameters in, XML out.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::SqsError;

const XMLNS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";
/// Most parameters a query request may carry.
const MAX_PARAMS: usize = 2000;

/// The action and the input (in the JSON shape) of a query request: parameters from the URL
/// query and the form body; a queue URL path stands for `QueueUrl`.
pub fn parse(path: &str, query: Option<&str>, body: &[u8]) -> Result<(String, Value), SqsError> {
    let bad = |e: serde_urlencoded::de::Error| {
        SqsError::Serialization(format!(
            "The request parameters are not valid form data: {e}"
        ))
    };
    let mut params: Vec<(String, String)> = match query {
        Some(q) => serde_urlencoded::from_str(q).map_err(bad)?,
        None => Vec::new(),
    };
    if !body.is_empty() {
        params.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).map_err(bad)?);
    }
    if params.len() > MAX_PARAMS {
        return Err(SqsError::Serialization(format!(
            "More than {MAX_PARAMS} parameters."
        )));
    }
    let action = params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| SqsError::MissingParameter("Action".into()))?;
    let rest: Vec<(Vec<&str>, &str)> = params
        .iter()
        .filter(|(k, _)| k != "Action" && k != "Version")
        .map(|(k, v)| (k.split('.').collect(), v.as_str()))
        .collect();
    let mut input = build(&rest);
    if !input.contains_key("QueueUrl") && path.trim_matches('/').contains('/') {
        input.insert("QueueUrl".into(), Value::String(path.to_string()));
    }
    Ok((action, Value::Object(input)))
}

/// Groups `(path, value)` pairs by their numbered index (`Name.N.rest`), in index order.
fn by_index<'a>(pairs: &[(&[&'a str], &'a str)]) -> BTreeMap<u32, Vec<(Vec<&'a str>, &'a str)>> {
    let mut out: BTreeMap<u32, Vec<(Vec<&str>, &str)>> = BTreeMap::new();
    for (path, v) in pairs {
        if let Some(n) = path.get(1).and_then(|n| n.parse::<u32>().ok()) {
            out.entry(n).or_default().push((path[2..].to_vec(), v));
        }
    }
    out
}

fn field<'a>(items: &[(Vec<&str>, &'a str)], name: &str) -> Option<&'a str> {
    items
        .iter()
        .find(|(p, _)| p.len() == 1 && p[0] == name)
        .map(|(_, v)| *v)
}

fn build(pairs: &[(Vec<&str>, &str)]) -> Map<String, Value> {
    let mut groups: BTreeMap<&str, Vec<(&[&str], &str)>> = BTreeMap::new();
    for (path, v) in pairs {
        if let Some(first) = path.first() {
            groups.entry(first).or_default().push((path.as_slice(), v));
        }
    }
    let mut out = Map::new();
    for (first, items) in groups {
        if items.iter().all(|(p, _)| p.len() == 1) {
            if let Some((_, v)) = items.last() {
                out.insert(first.to_string(), Value::String(v.to_string()));
            }
            continue;
        }
        let indexed = by_index(&items);
        match first {
            "AttributeName"
            | "MessageAttributeName"
            | "MessageSystemAttributeName"
            | "TagKey"
            | "AWSAccountId"
            | "ActionName" => {
                let list = indexed
                    .values()
                    .filter_map(|rest| rest.iter().find(|(p, _)| p.is_empty()).map(|(_, v)| *v))
                    .map(|v| Value::String(v.to_string()))
                    .collect();
                let name = match first {
                    "ActionName" => "Actions".to_string(),
                    other => format!("{other}s"),
                };
                out.insert(name, Value::Array(list));
            }
            "Attribute" | "Tag" => {
                let key = if first == "Tag" { "Key" } else { "Name" };
                let mut map = Map::new();
                for rest in indexed.values() {
                    if let (Some(k), Some(v)) = (field(rest, key), field(rest, "Value")) {
                        map.insert(k.to_string(), Value::String(v.to_string()));
                    }
                }
                // CreateQueue names them `tags`, TagQueue `Tags`; each action reads its own.
                if first == "Tag" {
                    out.insert("Tags".into(), Value::Object(map.clone()));
                }
                let name = if first == "Tag" { "tags" } else { "Attributes" };
                out.insert(name.into(), Value::Object(map));
            }
            "MessageAttribute" | "MessageSystemAttribute" => {
                let mut map = Map::new();
                for rest in indexed.values() {
                    let Some(name) = field(rest, "Name") else {
                        continue;
                    };
                    let mut value = Map::new();
                    for (p, v) in rest {
                        if p.len() == 2 && p[0] == "Value" {
                            value.insert(p[1].to_string(), Value::String(v.to_string()));
                        }
                    }
                    map.insert(name.to_string(), Value::Object(value));
                }
                out.insert(format!("{first}s"), Value::Object(map));
            }
            entry if entry.ends_with("RequestEntry") => {
                let list = indexed
                    .values()
                    .map(|rest| Value::Object(build(rest)))
                    .collect();
                out.insert("Entries".into(), Value::Array(list));
            }
            _ => {}
        }
    }
    out
}

/// `s` with the XML special characters (and carriage returns) escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

fn element(out: &mut String, name: &str, inner: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(inner);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn render_fields(out: &mut String, action: &str, m: &Map<String, Value>) {
    for (k, v) in m {
        match (k.as_str(), v) {
            ("Attributes", Value::Object(attrs)) => {
                for (name, value) in attrs {
                    let mut inner = String::new();
                    element(&mut inner, "Name", &escape(name));
                    element(&mut inner, "Value", &scalar(value));
                    element(out, "Attribute", &inner);
                }
            }
            ("Tags", Value::Object(tags)) => {
                for (key, value) in tags {
                    let mut inner = String::new();
                    element(&mut inner, "Key", &escape(key));
                    element(&mut inner, "Value", &scalar(value));
                    element(out, "Tag", &inner);
                }
            }
            ("MessageAttributes", Value::Object(attrs)) => {
                for (name, value) in attrs {
                    let mut inner = String::new();
                    element(&mut inner, "Name", &escape(name));
                    let mut val = String::new();
                    if let Value::Object(fields) = value {
                        for (f, fv) in fields {
                            element(&mut val, f, &scalar(fv));
                        }
                    }
                    element(&mut inner, "Value", &val);
                    element(out, "MessageAttribute", &inner);
                }
            }
            (list, Value::Array(items)) => {
                let item_name = match list {
                    "Messages" => "Message".to_string(),
                    "QueueUrls" | "queueUrls" => "QueueUrl".to_string(),
                    "Successful" => format!("{action}ResultEntry"),
                    "Failed" => "BatchResultErrorEntry".to_string(),
                    other => other.trim_end_matches('s').to_string(),
                };
                for item in items {
                    match item {
                        Value::Object(fields) => {
                            let mut inner = String::new();
                            render_fields(&mut inner, action, fields);
                            element(out, &item_name, &inner);
                        }
                        other => element(out, &item_name, &scalar(other)),
                    }
                }
            }
            (name, Value::Object(fields)) => {
                let mut inner = String::new();
                render_fields(&mut inner, action, fields);
                element(out, name, &inner);
            }
            (name, other) => element(out, name, &scalar(other)),
        }
    }
}

/// The XML reply of a successful `action` whose JSON reply is `v`.
pub fn render_result(action: &str, v: &Value, request_id: &str) -> String {
    let mut result = String::new();
    if let Value::Object(m) = v {
        render_fields(&mut result, action, m);
    }
    let mut out = String::from("<?xml version=\"1.0\"?>");
    out.push_str(&format!("<{action}Response xmlns=\"{XMLNS}\">"));
    element(&mut out, &format!("{action}Result"), &result);
    out.push_str("<ResponseMetadata>");
    element(&mut out, "RequestId", &escape(request_id));
    out.push_str("</ResponseMetadata>");
    out.push_str(&format!("</{action}Response>"));
    out
}

/// The XML error reply.
pub fn render_error(e: &SqsError, request_id: &str) -> String {
    let mut inner = String::new();
    element(&mut inner, "Type", e.fault());
    element(&mut inner, "Code", &escape(e.query_code()));
    element(&mut inner, "Message", &escape(&e.to_string()));
    inner.push_str("<Detail/>");
    let mut out = format!("<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{XMLNS}\">");
    element(&mut out, "Error", &inner);
    element(&mut out, "RequestId", &escape(request_id));
    out.push_str("</ErrorResponse>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_parameters_become_json() {
        let body = b"Action=SendMessageBatch&QueueUrl=http%3A%2F%2Fh%2F0%2Fq\
&SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=two\
&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=one\
&SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k\
&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String\
&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=v";
        let (action, input) = parse("/", None, body).unwrap();
        assert_eq!(action, "SendMessageBatch");
        assert_eq!(
            input,
            json!({
                "QueueUrl": "http://h/0/q",
                "Entries": [
                    {"Id": "a", "MessageBody": "one",
                     "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
                    {"Id": "b", "MessageBody": "two"},
                ]
            })
        );
        let (_, input) = parse(
            "/000000000000/q",
            Some("Action=ReceiveMessage&AttributeName.1=All&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=5"),
            b"",
        )
        .unwrap();
        assert_eq!(input["QueueUrl"], "/000000000000/q");
        assert_eq!(input["AttributeNames"], json!(["All"]));
        assert_eq!(input["Attributes"], json!({"VisibilityTimeout": "5"}));
        assert!(parse("/", None, b"QueueName=x").is_err());
    }

    #[test]
    fn replies_render_as_xml() {
        let v = json!({"Messages": [{"Body": "a<b", "Attributes": {"SentTimestamp": "1"}}]});
        let xml = render_result("ReceiveMessage", &v, "r");
        assert!(xml.contains("<ReceiveMessageResult><Message><Attribute><Name>SentTimestamp</Name><Value>1</Value></Attribute><Body>a&lt;b</Body></Message></ReceiveMessageResult>"), "{xml}");
        let xml = render_error(&SqsError::QueueDoesNotExist, "r");
        assert!(xml.contains("<Code>AWS.SimpleQueueService.NonExistentQueue</Code>"));
    }
}
