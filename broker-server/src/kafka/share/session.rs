//! Share sessions (KIP-932): per (group, member) on the broker serving its fetches, the
//! partitions it fetches, the next session epoch, and the lease tokens of the records it
//! acquired and has not acknowledged yet.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use broker_api::{Lease, LeaseToken};
use kafka_protocol::ResponseError;

/// A topic partition of a session: (topic name, partition).
pub(super) type Tp = (String, i32);

/// One member's share session on this broker.
#[derive(Debug)]
pub(super) struct Session {
    /// The epoch the next request must carry.
    pub next_epoch: i32,
    /// The partitions fetched, in the order they were added.
    pub partitions: Vec<Tp>,
    /// Acquired records not acknowledged yet: partition -> offset -> (token, when its lock
    /// expires in ms since the epoch).
    pub acquired: BTreeMap<Tp, BTreeMap<i64, (LeaseToken, i64)>>,
    pub last_used: Instant,
    /// Where the next fetch starts among `partitions` (turns, for fairness).
    pub cursor: usize,
    /// Bytes per record seen on each partition (for fetch byte limits).
    pub record_sizes: HashMap<Tp, usize>,
    /// When the member left its group (the session then closes soon, closed or not).
    pub left_at: Option<Instant>,
    /// Records acquired for the member that did not fit a fetch's byte limit: handed out
    /// first by its next fetch of the partition (or left to lapse).
    pub held_back: HashMap<Tp, VecDeque<Lease>>,
}

impl Session {
    pub fn new() -> Session {
        Session {
            next_epoch: 1,
            partitions: Vec::new(),
            acquired: BTreeMap::new(),
            last_used: Instant::now(),
            cursor: 0,
            record_sizes: HashMap::new(),
            left_at: None,
            held_back: HashMap::new(),
        }
    }

    /// Adds partitions not in the session yet.
    pub fn add(&mut self, tps: impl IntoIterator<Item = Tp>) {
        let mut have: BTreeSet<Tp> = self.partitions.iter().cloned().collect();
        for tp in tps {
            if have.insert(tp.clone()) {
                self.partitions.push(tp);
            }
        }
    }

    /// Removes partitions from the session (their acquired records stay until acknowledged
    /// or released).
    pub fn forget(&mut self, tps: &[Tp]) {
        self.partitions.retain(|tp| !tps.contains(tp));
    }

    /// Every acquired token (handed out or held back), taken out of the session.
    pub fn take_all(&mut self) -> Vec<(Tp, Vec<LeaseToken>)> {
        let mut all: BTreeMap<Tp, Vec<LeaseToken>> = std::mem::take(&mut self.acquired)
            .into_iter()
            .map(|(tp, m)| (tp, m.into_values().map(|(t, _)| t).collect()))
            .collect();
        for (tp, held) in self.held_back.drain() {
            all.entry(tp)
                .or_default()
                .extend(held.into_iter().map(|l| l.token));
        }
        all.into_iter().collect()
    }
}

/// What a request's session epoch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Epoch {
    /// 0: open a new session (replacing any earlier one of the member).
    Open,
    /// -1: acknowledge, then close the session.
    Close,
    /// n > 0: continue the session.
    Next(i32),
}

impl Epoch {
    pub fn of(epoch: i32) -> Result<Epoch, ResponseError> {
        match epoch {
            0 => Ok(Epoch::Open),
            -1 => Ok(Epoch::Close),
            n if n > 0 => Ok(Epoch::Next(n)),
            _ => Err(ResponseError::InvalidShareSessionEpoch),
        }
    }
}

/// Acknowledge types of ShareFetch and ShareAcknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckType {
    /// 0: the offset is not a record (a gap); nothing to do beyond finishing its lock.
    Gap,
    /// 1: processed.
    Accept,
    /// 2: give it back for another delivery.
    Release,
    /// 3: unprocessable; archive it.
    Reject,
}

impl AckType {
    pub fn of(t: i8) -> Option<AckType> {
        Some(match t {
            0 => AckType::Gap,
            1 => AckType::Accept,
            2 => AckType::Release,
            3 => AckType::Reject,
            _ => return None,
        })
    }
}

/// Expands acknowledgement batches `(first, last, types)` into per-offset types; INVALID_REQUEST
/// for a batch whose range is empty or whose types are neither one for all nor one per offset.
pub(super) fn expand(
    batches: &[(i64, i64, Vec<i8>)],
) -> Result<Vec<(i64, AckType)>, (ResponseError, String)> {
    let bad = |m: String| (ResponseError::InvalidRequest, m);
    let mut out = Vec::new();
    for (first, last, types) in batches {
        if last < first || first < &0 {
            return Err(bad(format!(
                "acknowledgement batch {first}..{last} is not a range of offsets"
            )));
        }
        let n = (last - first + 1) as usize;
        if n > 1 << 20 {
            return Err(bad(format!(
                "acknowledgement batch {first}..{last} is too large"
            )));
        }
        if types.len() != 1 && types.len() != n {
            return Err(bad(format!(
                "acknowledgement batch {first}..{last} has {} types for {n} offsets",
                types.len()
            )));
        }
        for i in 0..n {
            let t = if types.len() == 1 { types[0] } else { types[i] };
            let t = AckType::of(t).ok_or_else(|| {
                bad(format!(
                    "unknown acknowledge type {t} at offset {}",
                    first + i as i64
                ))
            })?;
            out.push((first + i as i64, t));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_batches_expand_per_offset() {
        let got = expand(&[(5, 7, vec![1]), (9, 10, vec![2, 3])]).unwrap();
        assert_eq!(
            got,
            vec![
                (5, AckType::Accept),
                (6, AckType::Accept),
                (7, AckType::Accept),
                (9, AckType::Release),
                (10, AckType::Reject)
            ]
        );
        assert!(expand(&[(5, 7, vec![1, 1])]).is_err());
        assert!(expand(&[(7, 5, vec![1])]).is_err());
        assert!(expand(&[(5, 5, vec![9])])
            .unwrap_err()
            .1
            .contains("unknown acknowledge type 9"));
    }

    #[test]
    fn epochs_are_classified() {
        assert_eq!(Epoch::of(0).unwrap(), Epoch::Open);
        assert_eq!(Epoch::of(-1).unwrap(), Epoch::Close);
        assert_eq!(Epoch::of(3).unwrap(), Epoch::Next(3));
        assert!(Epoch::of(-2).is_err());
    }
}
