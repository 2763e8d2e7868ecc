//! Kafka transactions (KIP-98): the transaction coordinator.
//!
//! A transactional id's state ([`TxnMeta`]) lives in the store's group-state slot named
//! [`slot`], written before each answer that depends on it (fenced in a cluster, as group
//! state is), so a restarted broker or the next coordinator finishes what was decided.
//! EndTxn first saves the decision (PrepareCommit / PrepareAbort), then writes a marker to
//! every partition of the transaction and moves the offsets committed in it, then saves the
//! completion: a crash in between is finished on start (or by the next coordinator).
//! Offsets sent with TxnOffsetCommit wait in a slot of their own ([`offsets_slot`]) until the
//! transaction ends.

mod api;
mod expiry;
mod verify;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Group-state slots of transactional ids start with this.
pub(super) const SLOT_PREFIX: &str = "__transaction_state/";
/// Largest `transaction.timeout.ms` accepted (Kafka's `transaction.max.timeout.ms`).
pub(super) const MAX_TIMEOUT_MS: i32 = 900_000;
/// Longest transactional id (the slot name must fit 255 bytes).
const MAX_ID_BYTES: usize = 255 - SLOT_PREFIX.len();

/// The slot of a transactional id's state.
pub(super) fn slot(id: &str) -> String {
    format!("{SLOT_PREFIX}{id}")
}

/// The prefix of the slots of offsets transactions committed for `group`.
fn offsets_prefix(group: &str) -> String {
    format!("__transaction_offsets/{}/{group}/", group.len())
}

/// The slot of the offsets a transaction committed for `group` (lengths keep it unique).
fn offsets_slot(id: &str, group: &str) -> String {
    format!("{}{id}", offsets_prefix(group))
}

/// Whether `id` can be a transactional id here: 1-235 bytes without control characters.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
}

/// Kafka's transaction states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Status {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl Status {
    /// The name Kafka's DescribeTransactions and ListTransactions use.
    pub(super) fn name(self) -> &'static str {
        match self {
            Status::Empty => "Empty",
            Status::Ongoing => "Ongoing",
            Status::PrepareCommit => "PrepareCommit",
            Status::PrepareAbort => "PrepareAbort",
            Status::CompleteCommit => "CompleteCommit",
            Status::CompleteAbort => "CompleteAbort",
        }
    }

    fn preparing(self) -> bool {
        matches!(self, Status::PrepareCommit | Status::PrepareAbort)
    }
}

/// What the coordinator keeps of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    /// The epoch before the last bump (a producer retrying with it is recognised).
    pub last_epoch: i16,
    pub timeout_ms: i32,
    pub status: Status,
    pub partitions: BTreeSet<(String, i32)>,
    pub groups: BTreeSet<String>,
    /// When the current (or last) transaction started.
    pub started_ms: i64,
    pub updated_ms: i64,
}

const META_TAG: &[u8] = b"txn1";

impl TxnMeta {
    pub(super) fn encode(&self) -> Bytes {
        let mut v = META_TAG.to_vec();
        v.extend_from_slice(&serde_json::to_vec(self).expect("plain data encodes"));
        Bytes::from(v)
    }

    pub(super) fn decode(b: &[u8]) -> Option<TxnMeta> {
        serde_json::from_slice(b.strip_prefix(META_TAG)?).ok()
    }
}

/// One offset a transaction committed: (offset, leader epoch, metadata).
type PendingOffset = (i64, Option<i32>, String);

/// Offsets a transaction committed for one group, waiting for its end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PendingOffsets {
    producer_id: i64,
    epoch: i16,
    offsets: Vec<((String, i32), PendingOffset)>,
}

/// One transactional id as this broker holds it: `None` until loaded or created.
pub(super) type Entry = Arc<tokio::sync::Mutex<Option<TxnMeta>>>;

/// The transactional ids this broker coordinates.
#[derive(Default)]
pub(crate) struct Transactions {
    entries: parking_lot::Mutex<HashMap<String, Entry>>,
    /// Saved state handed over when this broker took an id over, taken under its lock.
    adopted: parking_lot::Mutex<HashMap<String, Option<TxnMeta>>>,
}

impl Transactions {
    /// The entry of `id` (created empty).
    fn entry(&self, id: &str) -> Entry {
        self.entries
            .lock()
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// The entry of `id` if this broker holds it.
    fn existing(&self, id: &str) -> Option<Entry> {
        self.entries.lock().get(id).cloned()
    }

    /// Every entry this broker holds.
    fn all(&self) -> Vec<(String, Entry)> {
        self.entries
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Takes over the saved state of `id` (from a claim or the single broker's first read).
    pub(super) fn adopt(&self, id: &str, state: Option<Bytes>) {
        let meta = state.as_deref().and_then(TxnMeta::decode);
        if state.is_some() && meta.is_none() {
            tracing::warn!(
                transactional_id = id,
                "cannot read the transaction's saved state"
            );
        }
        self.adopted.lock().insert(id.to_string(), meta);
    }

    /// Applies a pending adoption to the locked entry.
    fn settle(&self, id: &str, held: &mut Option<TxnMeta>) {
        if let Some(meta) = self.adopted.lock().remove(id) {
            *held = meta;
        }
    }

    /// Forgets `id` (another broker coordinates it now).
    pub(super) fn evict(&self, id: &str) {
        self.entries.lock().remove(id);
        self.adopted.lock().remove(id);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
