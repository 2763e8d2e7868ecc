//! Per (topic, lease group, partition) lease state: a done-floor plus the records above it
//! whose state is not "never leased".

use std::collections::{BTreeMap, BTreeSet};

use broker_api::{LeaseToken, StoreError, StoreResult};
use serde::{Deserialize, Serialize};

/// Where a record stands in a lease group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Leased under `nonce` until `expires` (leasable again from then on).
    Leased { nonce: u64, expires: i64 },
    /// Released; leasable again from `at`.
    Released { at: i64 },
    /// Acked, or dead-lettered when `dead`.
    Done { dead: bool },
}

/// One record's state in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecState {
    pub deliveries: u32,
    pub first_leased_at: i64,
    pub phase: Phase,
}

impl RecState {
    /// True when the record is finished for the group.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done { .. })
    }

    /// True when the record is in flight or waiting out a release delay at `now`.
    pub fn is_busy(&self, now: i64) -> bool {
        match self.phase {
            Phase::Leased { expires, .. } => expires > now,
            Phase::Released { at } => at > now,
            Phase::Done { .. } => true,
        }
    }
}

/// Lease state of one partition for one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartLeases {
    /// Every offset below it is done (or below the log start).
    pub floor: i64,
    /// Records at or above `floor` that were ever leased.
    pub recs: BTreeMap<i64, RecState>,
    /// Dead-lettered offsets still at or above the log start.
    pub dead: BTreeSet<i64>,
}

impl PartLeases {
    /// Drops state below the log start.
    pub fn normalize(&mut self, log_start: i64) {
        if self.floor < log_start {
            self.floor = log_start;
            self.recs = self.recs.split_off(&log_start);
        }
        if self.dead.first().is_some_and(|&d| d < log_start) {
            self.dead = self.dead.split_off(&log_start);
        }
    }

    /// Forgets state at and after `end` (the partition's high watermark); true when there
    /// was some.
    pub fn truncate(&mut self, end: i64) -> bool {
        let had = self.floor > end
            || self.recs.range(end..).next().is_some()
            || self.dead.range(end..).next().is_some();
        if had {
            self.floor = self.floor.min(end);
            self.recs.retain(|&o, _| o < end);
            self.dead.retain(|&o| o < end);
        }
        had
    }

    /// Moves the floor over done records.
    pub fn advance_floor(&mut self) {
        while let Some(r) = self.recs.get(&self.floor) {
            if !r.is_done() {
                break;
            }
            self.recs.remove(&self.floor);
            self.floor += 1;
        }
    }

    /// A copy of the record a token names, if the token is its record's most recent lease
    /// and that lease is live at `now` (or lapsed, when `lapsed_ok`): `LeaseLapsed` for a
    /// lapsed one otherwise, `LeaseExpired` when the record was leased again or finished.
    pub fn live_copy(
        &self,
        token: &LeaseToken,
        now: i64,
        lapsed_ok: bool,
    ) -> StoreResult<RecState> {
        match self.recs.get(&token.offset) {
            Some(r) => match r.phase {
                Phase::Leased { nonce, expires } if nonce == token.nonce => {
                    if expires > now || lapsed_ok {
                        Ok(*r)
                    } else {
                        Err(StoreError::LeaseLapsed)
                    }
                }
                _ => Err(StoreError::LeaseExpired),
            },
            None => Err(StoreError::LeaseExpired),
        }
    }

    /// Starts the state over at `start` (clamped by the caller into `[log_start, high
    /// watermark]`), forward or back: every record below it is done, every record from it on
    /// is as if never leased (no delivery count, no lease whose token could still match), and
    /// dead-letter marks from it on are dropped (those below stay, their records stay done).
    /// Idempotent.
    pub fn reset(&mut self, start: i64) {
        self.floor = start;
        self.recs.clear();
        self.dead.retain(|&o| o < start);
    }

    /// Applies a journaled change (idempotent).
    pub fn apply(&mut self, floor: i64, set: &[(i64, RecState)], dead: &[i64]) {
        for (o, r) in set {
            if *o >= self.floor {
                self.recs.insert(*o, *r);
            }
        }
        self.dead.extend(dead.iter().copied());
        if floor > self.floor {
            self.floor = floor;
            self.recs = self.recs.split_off(&floor);
        }
        self.advance_floor();
    }
}
