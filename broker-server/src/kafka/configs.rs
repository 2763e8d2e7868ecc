//! Topic and broker settings as Kafka names them: DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs.
//!
//! Settings the stores act on (retention, compaction, sizes, segments, durability) live in
//! [`TopicConfig`]'s fields; every other Kafka topic setting is checked against its type and
//! kept verbatim in the topic's attributes under `kafka.`. Unknown names are INVALID_CONFIG,
//! as in Kafka.

use broker_api::{Durability, TopicConfig, TopicInfo};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as LegacyResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;

use super::errors::code_for;
use super::KafkaServer;

/// Prefix of Kafka topic settings kept verbatim in the topic's attributes.
const ATTR_PREFIX: &str = "kafka.";
/// Config resource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_GROUP: i8 = 32;
/// Config sources.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const SOURCE_GROUP: i8 = 8;
/// Config types (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// What values a Kafka topic setting takes.
#[derive(Clone, Copy)]
enum Kind {
    Long,
    Int,
    Double,
    Bool,
    OneOf(&'static [&'static str]),
    ListOf(&'static [&'static str]),
    Text,
}

impl Kind {
    fn config_type(self) -> i8 {
        match self {
            Kind::Long => TYPE_LONG,
            Kind::Int => TYPE_INT,
            Kind::Double => TYPE_DOUBLE,
            Kind::Bool => TYPE_BOOLEAN,
            Kind::OneOf(_) | Kind::Text => TYPE_STRING,
            Kind::ListOf(_) => TYPE_LIST,
        }
    }
}

const MAX_LONG: &str = "9223372036854775807";

/// Kafka's topic settings (name, kind, default as Kafka reports it). Settings the store acts
/// on have their defaults computed from [`TopicConfig`] instead.
const TOPIC_SETTINGS: &[(&str, Kind, &str)] = &[
    (
        "cleanup.policy",
        Kind::ListOf(&["delete", "compact"]),
        "delete",
    ),
    (
        "compression.type",
        Kind::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "producer",
    ),
    ("compression.gzip.level", Kind::Int, "-1"),
    ("compression.lz4.level", Kind::Int, "9"),
    ("compression.zstd.level", Kind::Int, "3"),
    ("delete.retention.ms", Kind::Long, "86400000"),
    ("file.delete.delay.ms", Kind::Long, "60000"),
    ("flush.messages", Kind::Long, MAX_LONG),
    ("flush.ms", Kind::Long, MAX_LONG),
    ("follower.replication.throttled.replicas", Kind::Text, ""),
    ("index.interval.bytes", Kind::Int, "4096"),
    ("leader.replication.throttled.replicas", Kind::Text, ""),
    ("local.retention.bytes", Kind::Long, "-2"),
    ("local.retention.ms", Kind::Long, "-2"),
    ("max.compaction.lag.ms", Kind::Long, MAX_LONG),
    ("max.message.bytes", Kind::Int, ""),
    ("message.downconversion.enable", Kind::Bool, "true"),
    ("message.format.version", Kind::Text, "3.0-IV1"),
    ("message.timestamp.after.max.ms", Kind::Long, MAX_LONG),
    ("message.timestamp.before.max.ms", Kind::Long, MAX_LONG),
    ("message.timestamp.difference.max.ms", Kind::Long, MAX_LONG),
    (
        "message.timestamp.type",
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
        "CreateTime",
    ),
    ("min.cleanable.dirty.ratio", Kind::Double, "0.5"),
    ("min.compaction.lag.ms", Kind::Long, "0"),
    ("min.insync.replicas", Kind::Int, "1"),
    ("preallocate", Kind::Bool, "false"),
    ("remote.log.copy.disable", Kind::Bool, "false"),
    ("remote.log.delete.on.disable", Kind::Bool, "false"),
    ("remote.storage.enable", Kind::Bool, "false"),
    ("retention.bytes", Kind::Long, ""),
    ("retention.ms", Kind::Long, ""),
    ("segment.bytes", Kind::Int, ""),
    ("segment.index.bytes", Kind::Int, "10485760"),
    ("segment.jitter.ms", Kind::Long, "0"),
    ("segment.ms", Kind::Long, ""),
    ("unclean.leader.election.enable", Kind::Bool, "false"),
    // This broker's own: the store's fsync policy for the topic.
    ("broker.durability", Kind::Text, ""),
];

fn setting(name: &str) -> Option<(Kind, &'static str)> {
    TOPIC_SETTINGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, k, d)| (*k, *d))
}

/// Checks `value` against the kind of setting `name`; the error is Kafka's wording.
fn check_value(name: &str, kind: Kind, value: &str) -> Result<(), String> {
    let bad = |why: &str| format!("Invalid value {value} for configuration {name}: {why}");
    let v = value.trim();
    match kind {
        Kind::Long => v
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| bad("Not a number of type LONG")),
        Kind::Int => v
            .parse::<i32>()
            .map(|_| ())
            .map_err(|_| bad("Not a number of type INT")),
        Kind::Double => v
            .parse::<f64>()
            .map(|_| ())
            .map_err(|_| bad("Not a number of type DOUBLE")),
        Kind::Bool => match v.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => Err(bad("Expected value to be either true or false")),
        },
        Kind::OneOf(allowed) => {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(bad(&format!(
                    "String must be one of: {}",
                    allowed.join(", ")
                )))
            }
        }
        Kind::ListOf(allowed) => {
            for item in v.split(',').map(str::trim) {
                if !allowed.contains(&item) {
                    return Err(bad(&format!(
                        "List items must be among: {}",
                        allowed.join(", ")
                    )));
                }
            }
            Ok(())
        }
        Kind::Text => Ok(()),
    }
}

/// Applies one Kafka topic setting to `config`; `None` resets it to its default
/// (`durability` is the broker's default fsync policy). An error names the bad setting in
/// Kafka's words and leaves `config` as it was.
pub fn apply_topic_setting(
    config: &mut TopicConfig,
    name: &str,
    value: Option<&str>,
    durability: Durability,
) -> Result<(), String> {
    let Some((kind, _)) = setting(name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    let Some(value) = value else {
        reset_setting(config, name, durability);
        return Ok(());
    };
    check_value(name, kind, value)?;
    let num = || value.trim().parse::<i64>().unwrap_or_default();
    let at_least_zero = |v: i64| {
        if v >= 0 {
            Ok(v)
        } else {
            Err(format!(
                "Invalid value {value} for configuration {name}: Value must be at least 0"
            ))
        }
    };
    let positive = |v: i64| {
        if v > 0 {
            Ok(v)
        } else {
            Err(format!(
                "Invalid value {value} for configuration {name}: Value must be at least 1"
            ))
        }
    };
    match name {
        "retention.ms" => config.retention_ms = (num() >= 0).then(num),
        "retention.bytes" => config.retention_bytes = (num() >= 0).then(|| num() as u64),
        "max.message.bytes" => config.max_record_bytes = positive(num())? as usize,
        "segment.bytes" => config.segment_bytes = Some(positive(num())? as u64),
        "segment.ms" => config.segment_ms = Some(positive(num())?),
        "broker.durability" => {
            config.durability = value
                .parse()
                .map_err(|e| format!("Invalid value {value} for configuration {name}: {e}"))?
        }
        "cleanup.policy" => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            config.cleanup.compact = items.contains(&"compact");
            // An empty list means neither: Kafka keeps such a topic forever.
            config.cleanup.delete = items.contains(&"delete");
        }
        "min.compaction.lag.ms" => config.cleanup.min_compaction_lag_ms = at_least_zero(num())?,
        "delete.retention.ms" => config.cleanup.delete_retention_ms = at_least_zero(num())?,
        "min.cleanable.dirty.ratio" => {
            let r = value.trim().parse::<f64>().unwrap_or(-1.0);
            if !(0.0..=1.0).contains(&r) {
                return Err(format!(
                    "Invalid value {value} for configuration {name}: Value must be between 0 \
                     and 1"
                ));
            }
            config.cleanup.min_cleanable_dirty_ratio = r;
        }
        other => {
            config
                .attributes
                .insert(format!("{ATTR_PREFIX}{other}"), value.trim().to_string());
        }
    }
    Ok(())
}

fn reset_setting(config: &mut TopicConfig, name: &str, durability: Durability) {
    let d = TopicConfig::default();
    match name {
        "retention.ms" => config.retention_ms = d.retention_ms,
        "retention.bytes" => config.retention_bytes = d.retention_bytes,
        "max.message.bytes" => config.max_record_bytes = d.max_record_bytes,
        "segment.bytes" => config.segment_bytes = d.segment_bytes,
        "segment.ms" => config.segment_ms = d.segment_ms,
        "broker.durability" => config.durability = durability,
        "cleanup.policy" => {
            config.cleanup.delete = d.cleanup.delete;
            config.cleanup.compact = d.cleanup.compact;
        }
        "min.compaction.lag.ms" => {
            config.cleanup.min_compaction_lag_ms = d.cleanup.min_compaction_lag_ms
        }
        "delete.retention.ms" => config.cleanup.delete_retention_ms = d.cleanup.delete_retention_ms,
        "min.cleanable.dirty.ratio" => {
            config.cleanup.min_cleanable_dirty_ratio = d.cleanup.min_cleanable_dirty_ratio
        }
        other => {
            config.attributes.remove(&format!("{ATTR_PREFIX}{other}"));
        }
    }
}

/// Every Kafka setting of a topic: (name, value, set for this topic, config type).
pub fn topic_settings(config: &TopicConfig) -> Vec<(String, String, bool, i8)> {
    let d = TopicConfig::default();
    TOPIC_SETTINGS
        .iter()
        .map(|(name, kind, default)| {
            let (value, explicit) = match *name {
                "retention.ms" => (
                    config.retention_ms.unwrap_or(-1).to_string(),
                    config.retention_ms.is_some(),
                ),
                "retention.bytes" => (
                    config.retention_bytes.map_or(-1, |v| v as i64).to_string(),
                    config.retention_bytes.is_some(),
                ),
                "max.message.bytes" => (
                    config.max_record_bytes.to_string(),
                    config.max_record_bytes != d.max_record_bytes,
                ),
                "segment.bytes" => (
                    config.segment_bytes.unwrap_or(1 << 30).to_string(),
                    config.segment_bytes.is_some(),
                ),
                "segment.ms" => (
                    config.segment_ms.unwrap_or(604_800_000).to_string(),
                    config.segment_ms.is_some(),
                ),
                "broker.durability" => (config.durability.to_string(), false),
                "cleanup.policy" => (
                    match (config.cleanup.compact, config.cleanup.delete) {
                        (false, false) => String::new(),
                        _ => config.cleanup.kafka_name().to_string(),
                    },
                    (config.cleanup.compact, config.cleanup.delete)
                        != (d.cleanup.compact, d.cleanup.delete),
                ),
                "min.compaction.lag.ms" => (
                    config.cleanup.min_compaction_lag_ms.to_string(),
                    config.cleanup.min_compaction_lag_ms != d.cleanup.min_compaction_lag_ms,
                ),
                "delete.retention.ms" => (
                    config.cleanup.delete_retention_ms.to_string(),
                    config.cleanup.delete_retention_ms != d.cleanup.delete_retention_ms,
                ),
                "min.cleanable.dirty.ratio" => (
                    config.cleanup.min_cleanable_dirty_ratio.to_string(),
                    config.cleanup.min_cleanable_dirty_ratio != d.cleanup.min_cleanable_dirty_ratio,
                ),
                other => match config.attributes.get(&format!("{ATTR_PREFIX}{other}")) {
                    Some(v) => (v.clone(), true),
                    None => (default.to_string(), false),
                },
            };
            (name.to_string(), value, explicit, kind.config_type())
        })
        .collect()
}

/// The broker's settings as Kafka names them (read-only here).
fn broker_settings(server: &KafkaServer) -> Vec<(String, String, bool, i8)> {
    let c = &server.config;
    vec![
        (
            "broker.id".into(),
            server.node.node_id().to_string(),
            false,
            TYPE_INT,
        ),
        (
            "num.partitions".into(),
            c.default_partitions.to_string(),
            false,
            TYPE_INT,
        ),
        (
            "auto.create.topics.enable".into(),
            c.auto_create_topics.to_string(),
            false,
            TYPE_BOOLEAN,
        ),
        (
            "default.replication.factor".into(),
            "1".into(),
            false,
            TYPE_INT,
        ),
        (
            "message.max.bytes".into(),
            TopicConfig::default().max_record_bytes.to_string(),
            false,
            TYPE_INT,
        ),
        (
            "socket.request.max.bytes".into(),
            c.max_frame_bytes.to_string(),
            false,
            TYPE_INT,
        ),
        ("log.retention.ms".into(), "-1".into(), false, TYPE_LONG),
        (
            "connections.max.reauth.ms".into(),
            c.reauth_ms.to_string(),
            false,
            TYPE_LONG,
        ),
        (
            "sasl.enabled.mechanisms".into(),
            c.sasl_mechanisms.join(","),
            false,
            TYPE_STRING,
        ),
        (
            "broker.durability".into(),
            c.default_durability.to_string(),
            false,
            TYPE_STRING,
        ),
    ]
}

/// What a config change does to one setting.
enum Change {
    Set(String),
    Reset,
}

impl KafkaServer {
    pub(super) async fn describe_configs(
        &self,
        req: DescribeConfigsRequest,
    ) -> DescribeConfigsResponse {
        let mut results = Vec::with_capacity(req.resources.len());
        for r in req.resources {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let settings = match r.resource_type {
                RESOURCE_TOPIC => match self.store.describe_topic(r.resource_name.as_str()).await {
                    Ok(info) => Ok((topic_settings(&info.config), SOURCE_TOPIC)),
                    Err(e) => Err((code_for(&e), e.to_string())),
                },
                RESOURCE_BROKER if broker_named(r.resource_name.as_str(), self.node.node_id()) => {
                    Ok((broker_settings(self), SOURCE_STATIC_BROKER))
                }
                RESOURCE_BROKER => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Unexpected broker id {}", r.resource_name.as_str()),
                )),
                RESOURCE_GROUP => self
                    .group_settings(r.resource_name.as_str())
                    .await
                    .map(|settings| (settings, SOURCE_GROUP)),
                other => Err(unsupported_resource(other)),
            };
            match settings {
                Ok((settings, explicit_source)) => {
                    let wanted = r.configuration_keys.as_ref().filter(|k| !k.is_empty());
                    let configs = settings
                        .into_iter()
                        .filter(|(k, ..)| {
                            wanted.is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
                        })
                        .map(|(k, v, explicit, ty)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_string(k))
                                .with_value(Some(StrBytes::from_string(v)))
                                .with_config_type(ty)
                                .with_config_source(if explicit {
                                    explicit_source
                                } else {
                                    SOURCE_DEFAULT
                                })
                        })
                        .collect();
                    results.push(base.with_configs(configs));
                }
                Err((code, msg)) => results.push(
                    base.with_error_code(code)
                        .with_error_message(Some(StrBytes::from_string(msg))),
                ),
            }
        }
        DescribeConfigsResponse::default().with_results(results)
    }

    /// AlterConfigs: replaces every setting of each topic with the given ones (the rest go
    /// back to their defaults).
    pub(super) async fn alter_configs(&self, req: AlterConfigsRequest) -> AlterConfigsResponse {
        let mut out = Vec::with_capacity(req.resources.len());
        for r in req.resources {
            let changes: Vec<(String, Change)> = r
                .configs
                .iter()
                .map(|c| {
                    let change = match &c.value {
                        Some(v) => Change::Set(v.to_string()),
                        None => Change::Reset,
                    };
                    (c.name.to_string(), change)
                })
                .collect();
            let result = self
                .change_configs(
                    r.resource_type,
                    r.resource_name.as_str(),
                    changes,
                    true,
                    req.validate_only,
                )
                .await;
            let (code, msg) = result.err().unwrap_or((0, String::new()));
            out.push(
                LegacyResult::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name)
                    .with_error_code(code)
                    .with_error_message((code != 0).then(|| StrBytes::from_string(msg))),
            );
        }
        AlterConfigsResponse::default().with_responses(out)
    }

    /// IncrementalAlterConfigs: SET, DELETE (back to default), APPEND and SUBTRACT (list
    /// settings) per setting; other settings stay as they are.
    pub(super) async fn incremental_alter_configs(
        &self,
        req: IncrementalAlterConfigsRequest,
    ) -> IncrementalAlterConfigsResponse {
        let mut out = Vec::with_capacity(req.resources.len());
        for r in req.resources {
            let result = async {
                let current = if r.resource_type == RESOURCE_TOPIC {
                    self.store
                        .describe_topic(r.resource_name.as_str())
                        .await
                        .map(|i| topic_settings(&i.config))
                        .map_err(|e| (code_for(&e), e.to_string()))?
                } else {
                    Vec::new()
                };
                let mut changes = Vec::with_capacity(r.configs.len());
                for c in &r.configs {
                    let name = c.name.to_string();
                    let value = c.value.as_ref().map(|v| v.to_string());
                    let list = || -> Vec<String> {
                        current
                            .iter()
                            .find(|(n, ..)| *n == name)
                            .map(|(_, v, ..)| {
                                v.split(',')
                                    .map(|s| s.trim().to_string())
                                    .filter(|s| !s.is_empty())
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    let change = match (c.config_operation, value) {
                        (OP_SET, Some(v)) => Change::Set(v),
                        (OP_DELETE, _) => Change::Reset,
                        (OP_APPEND, Some(v)) => {
                            let mut items = list();
                            for item in v.split(',').map(str::trim) {
                                if !items.iter().any(|i| i == item) {
                                    items.push(item.to_string());
                                }
                            }
                            Change::Set(items.join(","))
                        }
                        (OP_SUBTRACT, Some(v)) => {
                            let drop: Vec<&str> = v.split(',').map(str::trim).collect();
                            let items: Vec<String> = list()
                                .into_iter()
                                .filter(|i| !drop.contains(&i.as_str()))
                                .collect();
                            if items.is_empty() {
                                Change::Reset
                            } else {
                                Change::Set(items.join(","))
                            }
                        }
                        (op, None) if op != OP_DELETE => {
                            return Err((
                                ResponseError::InvalidRequest.code(),
                                format!("Null value not supported for : {name}"),
                            ))
                        }
                        (op, _) => {
                            return Err((
                                ResponseError::InvalidRequest.code(),
                                format!("Unknown config operation {op} for {name}"),
                            ))
                        }
                    };
                    changes.push((name, change));
                }
                self.change_configs(
                    r.resource_type,
                    r.resource_name.as_str(),
                    changes,
                    false,
                    req.validate_only,
                )
                .await
            }
            .await;
            let (code, msg) = result.err().unwrap_or((0, String::new()));
            out.push(
                AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name)
                    .with_error_code(code)
                    .with_error_message((code != 0).then(|| StrBytes::from_string(msg))),
            );
        }
        IncrementalAlterConfigsResponse::default().with_responses(out)
    }

    /// Applies `changes` to a resource (all or nothing); `replace` first resets every
    /// setting (AlterConfigs). Only topics can be changed here.
    async fn change_configs(
        &self,
        resource_type: i8,
        name: &str,
        changes: Vec<(String, Change)>,
        replace: bool,
        validate_only: bool,
    ) -> Result<(), (i16, String)> {
        match resource_type {
            RESOURCE_TOPIC => {}
            RESOURCE_GROUP => {
                let changes = changes
                    .into_iter()
                    .map(|(name, change)| match change {
                        Change::Set(v) => (name, Some(v)),
                        Change::Reset => (name, None),
                    })
                    .collect();
                return self
                    .change_group_settings(name, changes, replace, validate_only)
                    .await;
            }
            RESOURCE_BROKER => {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    "broker settings are static here: set them on the command line or in the \
                     config file"
                        .into(),
                ))
            }
            other => return Err(unsupported_resource(other)),
        }
        let info = self
            .store
            .describe_topic(name)
            .await
            .map_err(|e| (code_for(&e), e.to_string()))?;
        let durability = self.config.default_durability;
        let mut config = info.config.clone();
        if replace {
            for (setting, ..) in TOPIC_SETTINGS {
                reset_setting(&mut config, setting, durability);
            }
        }
        for (setting, change) in &changes {
            let value = match change {
                Change::Set(v) => Some(v.as_str()),
                Change::Reset => None,
            };
            apply_topic_setting(&mut config, setting, value, durability)
                .map_err(|e| (ResponseError::InvalidConfig.code(), e))?;
        }
        if validate_only {
            return Ok(());
        }
        let updated: TopicInfo = self
            .store
            .update_topic_config(name, config)
            .await
            .map_err(|e| (code_for(&e), e.to_string()))?;
        info!(topic = name, "changed topic settings");
        self.remember_topic(updated);
        Ok(())
    }
}

/// Whether a BROKER resource name means this broker ("" is the cluster default).
fn broker_named(name: &str, node_id: i32) -> bool {
    name.is_empty() || name.parse::<i32>() == Ok(node_id)
}

fn unsupported_resource(resource_type: i8) -> (i16, String) {
    (
        ResponseError::InvalidRequest.code(),
        format!("unsupported config resource type {resource_type}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_mistyped_settings_are_refused() {
        let mut c = TopicConfig::default();
        let d = Durability::default();
        assert!(apply_topic_setting(&mut c, "no.such.setting", Some("1"), d)
            .unwrap_err()
            .contains("Unknown topic config name: no.such.setting"));
        let e = apply_topic_setting(&mut c, "retention.ms", Some("soon"), d).unwrap_err();
        assert_eq!(
            e,
            "Invalid value soon for configuration retention.ms: Not a number of type LONG"
        );
        assert!(apply_topic_setting(&mut c, "message.timestamp.type", Some("Now"), d).is_err());
        assert_eq!(c, TopicConfig::default());
    }

    #[test]
    fn settings_apply_and_reset() {
        let mut c = TopicConfig::default();
        let d = Durability::default();
        apply_topic_setting(&mut c, "retention.ms", Some("1000"), d).unwrap();
        apply_topic_setting(&mut c, "min.insync.replicas", Some("2"), d).unwrap();
        let s = topic_settings(&c);
        let get = |n: &str| s.iter().find(|x| x.0 == n).cloned().unwrap();
        assert_eq!(get("retention.ms").1, "1000");
        assert!(get("retention.ms").2);
        assert_eq!(get("min.insync.replicas").1, "2");
        assert!(!get("preallocate").2);
        apply_topic_setting(&mut c, "retention.ms", None, d).unwrap();
        apply_topic_setting(&mut c, "min.insync.replicas", None, d).unwrap();
        assert_eq!(c, TopicConfig::default());
    }
}
