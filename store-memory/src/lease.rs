//! Lease state of one (topic, group, partition): a done floor (every offset below it is acked
//! or dead-lettered) plus a map of the records above it that have state (leased, released,
//! done). Records above the floor without an entry have never been leased.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use broker_api::{
    Lease, LeaseCounts, LeaseGroupConfig, LeaseToken, Record, StoreError, StoreResult, StoredRecord,
};
use bytes::Bytes;

use super::log::Log;

/// Where a record with state stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Leased until `expires_at_ms` (in flight while now < expiry) under `nonce`.
    Leased { nonce: u64, expires_at_ms: i64 },
    /// Released; leasable again from `available_at_ms`.
    Released { available_at_ms: i64 },
    /// Acked or dead-lettered.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct RecordState {
    deliveries: u32,
    first_leased_at_ms: i64,
    phase: Phase,
}

/// Lease state of one partition for one group.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionLeases {
    floor: i64,
    states: BTreeMap<i64, RecordState>,
    dead_lettered: BTreeSet<i64>,
}

/// Lease state of one group on one topic.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaseGroup {
    pub config: LeaseGroupConfig,
    pub partitions: BTreeMap<i32, PartitionLeases>,
}

/// What one lease call produced.
pub(crate) struct LeaseOutcome {
    pub leases: Vec<Lease>,
    /// Records to append to partition 0 of the dead-letter topic, in order.
    pub dead_letters: Vec<Record>,
}

/// How a record without a done mark looks at `now`.
enum Visible {
    InFlight,
    Delayed,
    Available,
}

fn visibility(state: Option<&RecordState>, record: &StoredRecord, now: i64) -> Option<Visible> {
    let not_before_passed = record.not_before_ms.is_none_or(|nb| nb <= now);
    match state.map(|s| s.phase) {
        Some(Phase::Done) => None,
        Some(Phase::Leased { expires_at_ms, .. }) if expires_at_ms > now => Some(Visible::InFlight),
        Some(Phase::Released { available_at_ms }) if available_at_ms > now => {
            Some(Visible::Delayed)
        }
        _ if !not_before_passed => Some(Visible::Delayed),
        _ => Some(Visible::Available),
    }
}

impl PartitionLeases {
    /// Forgets state below the log start and moves the floor over done records.
    fn normalize(&mut self, log_start: i64) {
        if self.floor < log_start {
            self.floor = log_start;
            self.states = self.states.split_off(&log_start);
        }
        if self.dead_lettered.first().is_some_and(|&o| o < log_start) {
            self.dead_lettered = self.dead_lettered.split_off(&log_start);
        }
        while let Some(s) = self.states.get(&self.floor) {
            if s.phase != Phase::Done {
                break;
            }
            self.states.remove(&self.floor);
            self.floor += 1;
        }
    }

    fn is_done(&self, offset: i64) -> bool {
        offset < self.floor
            || self
                .states
                .get(&offset)
                .is_some_and(|s| s.phase == Phase::Done)
    }

    /// Leases up to `max` records; see the Leases rules of the contract.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lease(
        &mut self,
        log: &Log,
        config: &LeaseGroupConfig,
        source: (&str, i32, &str),
        max: usize,
        visibility_ms: i64,
        now: i64,
        next_nonce: &mut u64,
    ) -> LeaseOutcome {
        self.normalize(log.log_start());
        let mut out = LeaseOutcome {
            leases: Vec::new(),
            dead_letters: Vec::new(),
        };
        if max == 0 {
            return out;
        }
        // A key with a record in flight is locked: none of its records is leased.
        let mut blocked_keys: HashSet<Bytes> = HashSet::new();
        if config.ordered_by_key {
            for (&offset, s) in &self.states {
                if !matches!(s.phase, Phase::Leased { expires_at_ms, .. } if expires_at_ms > now) {
                    continue;
                }
                let key = log
                    .iter_from(offset)
                    .next()
                    .filter(|r| r.offset == offset)
                    .and_then(|r| r.key.clone());
                if let Some(k) = key {
                    blocked_keys.insert(k);
                }
            }
        }
        let records: Box<dyn Iterator<Item = &StoredRecord>> = if config.read_uncommitted {
            Box::new(log.iter_from(self.floor))
        } else {
            Box::new(log.committed_from(self.floor))
        };
        for record in records {
            if out.leases.len() >= max {
                break;
            }
            let offset = record.offset;
            if self.is_done(offset) {
                continue;
            }
            let ordered_key = if config.ordered_by_key {
                record.key.clone()
            } else {
                None
            };
            if let Some(k) = &ordered_key {
                if blocked_keys.contains(k) {
                    continue;
                }
            }
            let state = self.states.get(&offset).copied();
            let leasable = matches!(
                visibility(state.as_ref(), record, now),
                Some(Visible::Available)
            );
            if leasable {
                let deliveries = state.map_or(0, |s| s.deliveries);
                let first_leased_at_ms = state.map_or(now, |s| s.first_leased_at_ms);
                if config.max_deliveries.is_some_and(|n| deliveries >= n) {
                    out.dead_letters
                        .push(record.to_dead_letter(source.0, source.1, source.2, deliveries));
                    self.states.insert(
                        offset,
                        RecordState {
                            deliveries,
                            first_leased_at_ms,
                            phase: Phase::Done,
                        },
                    );
                    self.dead_lettered.insert(offset);
                    continue;
                }
                let nonce = *next_nonce;
                *next_nonce += 1;
                let expires_at_ms = now.saturating_add(visibility_ms);
                self.states.insert(
                    offset,
                    RecordState {
                        deliveries: deliveries + 1,
                        first_leased_at_ms,
                        phase: Phase::Leased {
                            nonce,
                            expires_at_ms,
                        },
                    },
                );
                out.leases.push(Lease {
                    record: record.clone(),
                    token: LeaseToken {
                        partition: source.1,
                        offset,
                        nonce,
                    },
                    delivery_count: deliveries + 1,
                    expires_at_ms,
                    first_leased_at_ms,
                });
            } else if let Some(k) = ordered_key {
                // Not leasable now: later records of its key wait for it. (Records leased
                // by this call do not block: one call leases a key's records in order.)
                blocked_keys.insert(k);
            }
        }
        self.normalize(log.log_start());
        out
    }

    /// The state of the lease named by `token` if it is its record's most recent one:
    /// `LeaseLapsed` when its expiry has passed unless `lapsed_ok`, `LeaseExpired` when the
    /// record was leased again, acked or dead-lettered since.
    fn live(
        &mut self,
        log: &Log,
        token: &LeaseToken,
        now: i64,
        lapsed_ok: bool,
    ) -> StoreResult<&mut RecordState> {
        self.normalize(log.log_start());
        match self.states.get_mut(&token.offset) {
            Some(s) => match s.phase {
                Phase::Leased {
                    nonce,
                    expires_at_ms,
                } if nonce == token.nonce => {
                    if expires_at_ms > now || lapsed_ok {
                        Ok(s)
                    } else {
                        Err(StoreError::LeaseLapsed)
                    }
                }
                _ => Err(StoreError::LeaseExpired),
            },
            None => Err(StoreError::LeaseExpired),
        }
    }

    /// Marks the leased record done (also after its lease lapsed, while not leased again).
    pub(crate) fn ack(&mut self, log: &Log, token: &LeaseToken, now: i64) -> StoreResult<()> {
        self.live(log, token, now, true)?.phase = Phase::Done;
        self.normalize(log.log_start());
        Ok(())
    }

    /// Ends the lease; the record is leasable again from `now + delay_ms`.
    pub(crate) fn release(
        &mut self,
        log: &Log,
        token: &LeaseToken,
        now: i64,
        delay_ms: i64,
    ) -> StoreResult<()> {
        self.live(log, token, now, false)?.phase = Phase::Released {
            available_at_ms: now.saturating_add(delay_ms),
        };
        Ok(())
    }

    /// Moves the lease's expiry to `now + visibility_ms`; returns it.
    pub(crate) fn extend(
        &mut self,
        log: &Log,
        token: &LeaseToken,
        now: i64,
        visibility_ms: i64,
    ) -> StoreResult<i64> {
        let state = self.live(log, token, now, false)?;
        let expires = now.saturating_add(visibility_ms);
        if let Phase::Leased { nonce, .. } = state.phase {
            state.phase = Phase::Leased {
                nonce,
                expires_at_ms: expires,
            };
        }
        Ok(expires)
    }

    /// Starts the group's state of the partition over at `start` (the caller clamps it into
    /// `[log_start, high_watermark]`): every record below it is done, every record from it on
    /// is as if never leased, and no earlier token names a lease any more. Dead-letter marks
    /// below `start` stay (those records stay done); rule **lease_start_can_be_reset**.
    pub(crate) fn reset(&mut self, start: i64) {
        self.floor = start;
        self.states.clear();
        self.dead_lettered.retain(|&o| o < start);
    }

    /// The first offset not done, within `[log_start, high_watermark]`.
    pub(crate) fn floor(&mut self, log: &Log) -> i64 {
        self.normalize(log.log_start());
        self.floor.min(log.high_watermark())
    }

    /// Counts of the records in `[log_start, high_watermark)`.
    pub(crate) fn counts(&mut self, log: &Log, now: i64, read_uncommitted: bool) -> LeaseCounts {
        self.normalize(log.log_start());
        let mut c = LeaseCounts {
            done: (self.floor - log.log_start()) as u64,
            dead_lettered: self.dead_lettered.len() as u64,
            ..LeaseCounts::default()
        };
        let stable = if read_uncommitted {
            log.high_watermark()
        } else {
            log.last_stable()
        };
        let mut seen = 0u64;
        for record in log.iter_from(self.floor) {
            seen += 1;
            if record.offset >= stable {
                c.delayed += 1;
                continue;
            }
            if !read_uncommitted && log.is_aborted(record.offset) {
                c.done += 1;
                continue;
            }
            match visibility(self.states.get(&record.offset), record, now) {
                None => c.done += 1,
                Some(Visible::InFlight) => c.leased += 1,
                Some(Visible::Delayed) => c.delayed += 1,
                Some(Visible::Available) => c.available += 1,
            }
        }
        // Control records (transaction markers) are done for every group.
        let floor = self.floor.clamp(log.log_start(), log.high_watermark());
        c.done += (log.high_watermark() - floor) as u64 - seen;
        c
    }
}
