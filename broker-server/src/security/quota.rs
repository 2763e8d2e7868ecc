//! Produce and fetch byte-rate quotas, as Kafka's client quotas (KIP-13, KIP-219): each
//! client entity's bytes are counted over a sliding window of [`SAMPLES`] one-second
//! samples; a response that takes the entity over its quota carries the throttle time that
//! brings the rate back to it (`throttle_time_ms`), and the broker then reads nothing more
//! from that connection for that long (the channel is muted, as Kafka does since 2.0).
//!
//! The entity is the authenticated principal (`User:NAME`); clients that did not
//! authenticate (`User:ANONYMOUS`) are counted per client id (`client-id:ID`), so plaintext
//! clients do not share one quota.

use std::collections::HashMap;

use parking_lot::Mutex;

/// Samples of the sliding window (Kafka's `quota.window.num` default, 11).
pub const SAMPLES: usize = 11;
/// Length of one sample (Kafka's `quota.window.size.seconds` default, 1 s).
const SAMPLE_MS: i64 = 1000;
/// Most entities counted at once; idle ones are dropped first.
const MAX_ENTITIES: usize = 100_000;

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Produce request bytes (Kafka's `producer_byte_rate`).
    Produce,
    /// Fetch response bytes (Kafka's `consumer_byte_rate`).
    Fetch,
}

impl QuotaKind {
    /// The quota key as Kafka's configs and `--client-quota` name it.
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => "producer_byte_rate",
            QuotaKind::Fetch => "consumer_byte_rate",
        }
    }
}

/// The configured rates, bytes per second; 0 is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Every entity's produce rate unless overridden (`--producer-byte-rate`).
    pub producer_default: u64,
    /// Every entity's fetch rate unless overridden (`--consumer-byte-rate`).
    pub consumer_default: u64,
    /// Rates of named entities (`--client-quota ENTITY=KEY=RATE`).
    pub overrides: HashMap<(String, QuotaKind), u64>,
}

impl QuotaSettings {
    /// True when no quota is set at all.
    pub fn is_off(&self) -> bool {
        self.producer_default == 0
            && self.consumer_default == 0
            && self.overrides.values().all(|r| *r == 0)
    }

    /// The rate of `entity` for `kind` (0: unlimited).
    pub fn rate(&self, entity: &str, kind: QuotaKind) -> u64 {
        if let Some(r) = self.overrides.get(&(entity.to_string(), kind)) {
            return *r;
        }
        match kind {
            QuotaKind::Produce => self.producer_default,
            QuotaKind::Fetch => self.consumer_default,
        }
    }

    /// Parses one `--client-quota` value, `ENTITY=KEY=RATE` with ENTITY `User:NAME` or
    /// `client-id:ID` and KEY `producer_byte_rate` or `consumer_byte_rate`.
    pub fn add_override(&mut self, value: &str) -> Result<(), String> {
        let bad = |why: &str| {
            format!(
                "--client-quota {value:?}: {why} (write User:NAME=producer_byte_rate=BYTES, \
                 or client-id:ID=consumer_byte_rate=BYTES)"
            )
        };
        let mut parts = value.rsplitn(3, '=');
        let (Some(rate), Some(key), Some(entity)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected ENTITY=KEY=RATE"));
        };
        let entity = entity.trim();
        let valid_entity = entity
            .strip_prefix("User:")
            .or_else(|| entity.strip_prefix("client-id:"))
            .is_some_and(|name| !name.is_empty());
        if !valid_entity {
            return Err(bad(&format!(
                "{entity:?} is not a User: or client-id: entity"
            )));
        }
        let kind = match key.trim() {
            "producer_byte_rate" => QuotaKind::Produce,
            "consumer_byte_rate" => QuotaKind::Fetch,
            other => return Err(bad(&format!("unknown quota {other:?}"))),
        };
        let rate: u64 = rate
            .trim()
            .parse()
            .map_err(|_| bad(&format!("{rate:?} is not a number of bytes per second")))?;
        self.overrides.insert((entity.to_string(), kind), rate);
        Ok(())
    }
}

/// Milliseconds on a monotonic clock (since the first call), for the quota windows.
pub fn now_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

/// The quota entity of a request: the principal, or the client id for anonymous clients.
pub fn entity(principal: &str, client_id: Option<&str>) -> String {
    if principal == crate::kafka::conn::ANONYMOUS {
        format!("client-id:{}", client_id.unwrap_or(""))
    } else {
        principal.to_string()
    }
}

/// One entity's samples: (start of the second, bytes) per slot.
#[derive(Debug, Default, Clone)]
struct Window {
    samples: [(i64, u64); SAMPLES],
    last_ms: i64,
}

impl Window {
    /// Adds `bytes` at `now_ms`; returns the bytes of the window and its length in ms.
    fn record(&mut self, now_ms: i64, bytes: u64) -> (u64, i64) {
        let second = now_ms.div_euclid(SAMPLE_MS);
        let slot = second.rem_euclid(SAMPLES as i64) as usize;
        if self.samples[slot].0 != second {
            self.samples[slot] = (second, 0);
        }
        self.samples[slot].1 = self.samples[slot].1.saturating_add(bytes);
        self.last_ms = now_ms;
        let oldest = second - SAMPLES as i64 + 1;
        let mut total = 0u64;
        let mut first = second;
        for &(s, b) in &self.samples {
            if s >= oldest && b > 0 {
                total = total.saturating_add(b);
                first = first.min(s);
            }
        }
        // Kafka measures over at least the window less one sample, so that a first burst
        // is not judged over a few milliseconds.
        let elapsed = now_ms - first * SAMPLE_MS;
        let len = elapsed.max((SAMPLES as i64 - 1) * SAMPLE_MS);
        (total, len)
    }
}

/// The throttle time in ms that brings `bytes` over `window_ms` down to `rate` bytes/s,
/// at most the whole window.
pub fn throttle_ms(bytes: u64, window_ms: i64, rate: u64) -> u32 {
    if rate == 0 {
        return 0;
    }
    // Time the bytes should have taken at the quota, less the time they did take.
    let due = (bytes as u128 * 1000 / rate as u128).min(i64::MAX as u128) as i64;
    let wait = (due - window_ms).clamp(0, SAMPLES as i64 * SAMPLE_MS);
    wait as u32
}

/// The quota accounting of one broker.
#[derive(Debug, Default)]
pub struct Quotas {
    settings: QuotaSettings,
    windows: Mutex<HashMap<(String, QuotaKind), Window>>,
}

impl Quotas {
    pub fn new(settings: QuotaSettings) -> Quotas {
        Quotas {
            settings,
            ..Default::default()
        }
    }

    /// Whether any quota is set (nothing is counted otherwise).
    pub fn enabled(&self) -> bool {
        !self.settings.is_off()
    }

    /// Counts `bytes` of `kind` for `entity` at `now_ms`; the throttle time the response
    /// must carry (0 when the entity is within its quota or has none).
    pub fn record(&self, entity: &str, kind: QuotaKind, bytes: u64, now_ms: i64) -> u32 {
        let rate = self.settings.rate(entity, kind);
        if rate == 0 {
            return 0;
        }
        let (total, len) = {
            let mut windows = self.windows.lock();
            if windows.len() >= MAX_ENTITIES {
                let horizon = now_ms - SAMPLES as i64 * SAMPLE_MS;
                windows.retain(|_, w| w.last_ms >= horizon);
            }
            if windows.len() >= MAX_ENTITIES {
                // Every entity is active: count this one as if it were new.
                Window::default().record(now_ms, bytes)
            } else {
                windows
                    .entry((entity.to_string(), kind))
                    .or_default()
                    .record(now_ms, bytes)
            }
        };
        throttle_ms(total, len, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_the_quota_nothing_is_throttled() {
        let q = Quotas::new(QuotaSettings {
            producer_default: 1000,
            ..Default::default()
        });
        // 900 bytes a second for 20 s.
        for s in 0..20 {
            assert_eq!(q.record("User:a", QuotaKind::Produce, 900, s * 1000), 0);
        }
    }

    #[test]
    fn a_burst_is_throttled_until_the_rate_is_back_at_the_quota() {
        let q = Quotas::new(QuotaSettings {
            producer_default: 1000,
            ..Default::default()
        });
        // 20 000 bytes at once: they are due over 20 s; the window counts as 10 s.
        assert_eq!(q.record("User:a", QuotaKind::Produce, 20_000, 0), 10_000);
        // Another entity and the other kind are not affected.
        assert_eq!(q.record("User:b", QuotaKind::Produce, 100, 0), 0);
        assert_eq!(q.record("User:a", QuotaKind::Fetch, 1_000_000, 0), 0);
    }

    #[test]
    fn throttle_time_is_capped_at_the_window() {
        assert_eq!(throttle_ms(u64::MAX, 10_000, 1), 11_000);
        assert_eq!(throttle_ms(5000, 10_000, 1000), 0);
        assert_eq!(throttle_ms(15_000, 10_000, 1000), 5000);
        assert_eq!(throttle_ms(15_000, 10_000, 0), 0);
    }

    #[test]
    fn old_samples_leave_the_window() {
        let q = Quotas::new(QuotaSettings {
            consumer_default: 1000,
            ..Default::default()
        });
        assert!(q.record("client-id:x", QuotaKind::Fetch, 30_000, 0) > 0);
        // 12 s later the burst is out of the window.
        assert_eq!(q.record("client-id:x", QuotaKind::Fetch, 100, 12_000), 0);
    }

    #[test]
    fn overrides_name_users_and_client_ids() {
        let mut s = QuotaSettings {
            producer_default: 1000,
            ..Default::default()
        };
        s.add_override("User:big=producer_byte_rate=1000000")
            .unwrap();
        s.add_override("client-id:etl=consumer_byte_rate=5")
            .unwrap();
        assert_eq!(s.rate("User:big", QuotaKind::Produce), 1_000_000);
        assert_eq!(s.rate("User:other", QuotaKind::Produce), 1000);
        assert_eq!(s.rate("client-id:etl", QuotaKind::Fetch), 5);
        for bad in [
            "big=producer_byte_rate=1",
            "User:=producer_byte_rate=1",
            "User:a=request_percentage=1",
            "User:a=producer_byte_rate=lots",
            "User:a",
        ] {
            let e = s.add_override(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn anonymous_clients_are_counted_per_client_id() {
        assert_eq!(entity("User:ANONYMOUS", Some("app")), "client-id:app");
        assert_eq!(entity("User:alice", Some("app")), "User:alice");
    }
}
