//! [`LogLimiter`]: keeps a failure that repeats many times a second from flooding the log.
//! The first occurrence of each kind is logged; later ones within the window are counted, and
//! the next one after the window is logged with the count ("N more in the last 10 s").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rate limiting of repeated log lines, per key (for example a call site and an error kind).
#[derive(Debug)]
pub struct LogLimiter {
    window: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    since: Instant,
    suppressed: u64,
}

/// What to do with one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` more of its kind were dropped during `over` before it.
    Log { suppressed: u64, over: Duration },
    /// Drop it (counted for the next line of its kind).
    Suppress,
}

impl Verdict {
    /// The suffix to append to the logged line: empty, or " (N more in the last S s)".
    pub fn suffix(&self) -> String {
        match self {
            Verdict::Log { suppressed, over } if *suppressed > 0 => {
                format!(
                    " ({suppressed} more in the last {} s)",
                    over.as_secs().max(1)
                )
            }
            _ => String::new(),
        }
    }
}

impl LogLimiter {
    /// A limiter logging each key at most once per `window`.
    pub fn new(window: Duration) -> LogLimiter {
        LogLimiter {
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Decides about one occurrence of `key` now.
    pub fn check(&self, key: &str) -> Verdict {
        self.check_at(key, Instant::now())
    }

    /// [`LogLimiter::check`] at a given instant (for tests).
    pub fn check_at(&self, key: &str, now: Instant) -> Verdict {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 4096 {
            let window = self.window;
            entries.retain(|_, e| now.saturating_duration_since(e.since) < window);
        }
        match entries.get_mut(key) {
            Some(e) if now.saturating_duration_since(e.since) < self.window => {
                e.suppressed += 1;
                Verdict::Suppress
            }
            Some(e) => {
                let verdict = Verdict::Log {
                    suppressed: e.suppressed,
                    over: now.saturating_duration_since(e.since),
                };
                *e = Entry {
                    since: now,
                    suppressed: 0,
                };
                verdict
            }
            None => {
                entries.insert(
                    key.to_string(),
                    Entry {
                        since: now,
                        suppressed: 0,
                    },
                );
                Verdict::Log {
                    suppressed: 0,
                    over: Duration::ZERO,
                }
            }
        }
    }
}

impl Default for LogLimiter {
    /// One line per key per 10 s.
    fn default() -> Self {
        LogLimiter::new(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_a_summary_per_window() {
        let l = LogLimiter::default();
        let t0 = Instant::now();
        assert_eq!(l.check_at("a", t0).suffix(), "");
        for i in 1..100 {
            let at = t0 + Duration::from_millis(100 * i);
            assert_eq!(l.check_at("a", at), Verdict::Suppress);
        }
        // Another key is independent.
        assert!(matches!(
            l.check_at("b", t0),
            Verdict::Log { suppressed: 0, .. }
        ));
        let v = l.check_at("a", t0 + Duration::from_secs(10));
        assert_eq!(v.suffix(), " (99 more in the last 10 s)");
        assert_eq!(
            l.check_at("a", t0 + Duration::from_secs(11)),
            Verdict::Suppress
        );
    }
}
