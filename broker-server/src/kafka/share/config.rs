//! The settings of a share group (Kafka's GROUP config resource), kept through the store's
//! group configs so every broker and every restart sees them.

use std::collections::BTreeMap;
use std::time::Duration;

use broker_api::LeaseGroupConfig;

/// `share.auto.offset.reset`: where a share group starts on a topic it has not read yet.
pub const AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
/// `share.record.lock.duration.ms`: how long acquired records stay locked to a consumer.
pub const LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
/// `share.delivery.count.limit`: deliveries before a record is archived (or dead-lettered).
pub const DELIVERY_COUNT_LIMIT: &str = "share.delivery.count.limit";
/// `share.session.timeout.ms`: a member that does not heartbeat this long leaves the group.
pub const SESSION_TIMEOUT_MS: &str = "share.session.timeout.ms";
/// `share.heartbeat.interval.ms`: how often members heartbeat.
pub const HEARTBEAT_INTERVAL_MS: &str = "share.heartbeat.interval.ms";
/// `share.isolation.level`: read_uncommitted (Kafka's default) acquires records of open and
/// aborted transactions too; read_committed stops at the last stable offset and skips
/// aborted ones.
pub const ISOLATION_LEVEL: &str = "share.isolation.level";
/// `errors.deadletterqueue.topic.name` (KIP-1191's name): records past the delivery limit
/// are appended to this topic instead of being archived.
pub const DEAD_LETTER_TOPIC: &str = "errors.deadletterqueue.topic.name";

/// Kafka's defaults (group.share.* broker settings).
const DEFAULTS: &[(&str, &str)] = &[
    (AUTO_OFFSET_RESET, "latest"),
    (LOCK_DURATION_MS, "30000"),
    (DELIVERY_COUNT_LIMIT, "5"),
    (SESSION_TIMEOUT_MS, "45000"),
    (HEARTBEAT_INTERVAL_MS, "5000"),
    (ISOLATION_LEVEL, "read_uncommitted"),
    (DEAD_LETTER_TOPIC, ""),
];

/// Config types of DescribeConfigs (STRING 2, INT 3).
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;

/// Bounds of the integer settings (Kafka's group.share.min/max.* defaults).
fn int_bounds(name: &str) -> Option<(i64, i64)> {
    match name {
        LOCK_DURATION_MS => Some((1_000, 3_600_000)),
        DELIVERY_COUNT_LIMIT => Some((2, 10)),
        SESSION_TIMEOUT_MS => Some((1_000, 3_600_000)),
        HEARTBEAT_INTERVAL_MS => Some((100, 3_600_000)),
        _ => None,
    }
}

/// Whether `value` is a valid value of the setting `name`; the error names both.
pub fn check(name: &str, value: &str) -> Result<(), String> {
    if !DEFAULTS.iter().any(|(n, _)| *n == name) {
        return Err(format!("Unknown group config name: {name}"));
    }
    if let Some((lo, hi)) = int_bounds(name) {
        let n: i64 = value.trim().parse().map_err(|_| {
            format!("Invalid value {value} for configuration {name}: Not a number of type INT")
        })?;
        if n < lo || n > hi {
            return Err(format!(
                "Invalid value {value} for configuration {name}: Value must be between {lo} and {hi}"
            ));
        }
        return Ok(());
    }
    match name {
        AUTO_OFFSET_RESET => {
            let v = value.trim();
            if v == "earliest" || v == "latest" || v.starts_with("by_duration:") {
                Ok(())
            } else {
                Err(format!(
                    "Invalid value {value} for configuration {name}: String must be one of: \
                     latest, earliest, by_duration:<ISO8601 duration>"
                ))
            }
        }
        ISOLATION_LEVEL if value == "read_uncommitted" || value == "read_committed" => Ok(()),
        ISOLATION_LEVEL => Err(format!(
            "Invalid value {value} for configuration {name}: String must be one of: \
             read_committed, read_uncommitted"
        )),
        _ => Ok(()),
    }
}

/// Every setting with its value, whether it was set explicitly, and its config type.
pub fn described(set: &BTreeMap<String, String>) -> Vec<(String, String, bool, i8)> {
    DEFAULTS
        .iter()
        .map(|(name, default)| {
            let explicit = set.get(*name);
            let ty = if int_bounds(name).is_some() {
                TYPE_INT
            } else {
                TYPE_STRING
            };
            (
                name.to_string(),
                explicit.cloned().unwrap_or_else(|| default.to_string()),
                explicit.is_some(),
                ty,
            )
        })
        .collect()
}

/// Where a share group starts reading a partition it has no state for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    Earliest,
    Latest,
    /// The first record not older than this far back.
    ByDuration(Duration),
}

/// A share group's settings as the broker uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSettings {
    pub reset: Reset,
    pub lock: Duration,
    pub delivery_limit: u32,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub dead_letter_topic: Option<String>,
    /// `share.isolation.level=read_committed`.
    pub read_committed: bool,
}

impl ShareSettings {
    /// The settings of a group from its stored map (defaults for what is missing or bad).
    pub fn from_map(set: &BTreeMap<String, String>) -> ShareSettings {
        let get = |name: &str| -> String {
            set.get(name)
                .filter(|v| check(name, v).is_ok())
                .cloned()
                .unwrap_or_else(|| {
                    DEFAULTS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, d)| d.to_string())
                        .unwrap_or_default()
                })
        };
        let ms = |name: &str| Duration::from_millis(get(name).trim().parse().unwrap_or(0));
        let reset = match get(AUTO_OFFSET_RESET).trim() {
            "earliest" => Reset::Earliest,
            v => match v.strip_prefix("by_duration:").and_then(parse_iso_duration) {
                Some(d) => Reset::ByDuration(d),
                None => Reset::Latest,
            },
        };
        let dlq = get(DEAD_LETTER_TOPIC);
        ShareSettings {
            reset,
            lock: ms(LOCK_DURATION_MS),
            delivery_limit: get(DELIVERY_COUNT_LIMIT).trim().parse().unwrap_or(5),
            session_timeout: ms(SESSION_TIMEOUT_MS),
            heartbeat_interval: ms(HEARTBEAT_INTERVAL_MS),
            dead_letter_topic: (!dlq.is_empty()).then_some(dlq),
            read_committed: get(ISOLATION_LEVEL) == "read_committed",
        }
    }

    /// The lease group config these settings ask of the store.
    pub fn lease_config(&self) -> LeaseGroupConfig {
        LeaseGroupConfig {
            max_deliveries: Some(self.delivery_limit),
            dead_letter_topic: self.dead_letter_topic.clone(),
            ordered_by_key: false,
            read_uncommitted: !self.read_committed,
        }
    }
}

/// An ISO-8601 duration of days, hours, minutes and seconds (`P1DT2H`, `PT30M`, `PT0.5S`).
pub fn parse_iso_duration(s: &str) -> Option<Duration> {
    let rest = s.trim().strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut secs = 0f64;
    if !days.is_empty() {
        secs += days.strip_suffix('D')?.parse::<f64>().ok()? * 86_400.0;
    }
    let mut num = String::new();
    for c in time.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'H' | 'M' | 'S' => {
                let n: f64 = num.parse().ok()?;
                num.clear();
                secs += n * match c {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
            }
            _ => return None,
        }
    }
    if !num.is_empty() || !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_read() {
        assert!(check(AUTO_OFFSET_RESET, "earliest").is_ok());
        assert!(check(AUTO_OFFSET_RESET, "soonest")
            .unwrap_err()
            .contains("soonest"));
        assert!(check(LOCK_DURATION_MS, "10")
            .unwrap_err()
            .contains("between"));
        assert!(check("share.nope", "1").unwrap_err().contains("share.nope"));
        let mut m = BTreeMap::new();
        m.insert(AUTO_OFFSET_RESET.to_string(), "earliest".to_string());
        m.insert(DELIVERY_COUNT_LIMIT.to_string(), "3".to_string());
        let s = ShareSettings::from_map(&m);
        assert_eq!(s.reset, Reset::Earliest);
        assert_eq!(s.delivery_limit, 3);
        assert_eq!(s.lock, Duration::from_secs(30));
        assert_eq!(
            ShareSettings::from_map(&BTreeMap::new()).reset,
            Reset::Latest
        );
    }

    #[test]
    fn iso_durations_parse() {
        assert_eq!(parse_iso_duration("PT30M"), Some(Duration::from_secs(1800)));
        assert_eq!(
            parse_iso_duration("P1DT1H"),
            Some(Duration::from_secs(90_000))
        );
        assert_eq!(
            parse_iso_duration("PT0.5S"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_iso_duration("1H"), None);
        assert_eq!(parse_iso_duration("PT5X"), None);
    }
}
