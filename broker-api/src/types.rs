//! The values that cross the storage contract.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Default `max_record_bytes`: Kafka's `message.max.bytes` (1 MiB plus batch overhead).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_048_588;
/// Default fsync interval of [`Durability::Interval`].
pub const DEFAULT_FSYNC_INTERVAL_MS: u64 = 100;

/// When an append's bytes reach stable storage, for stores that have a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "policy")]
pub enum Durability {
    /// An append (and an ack) returns only after its bytes are fsynced; appenders that arrive
    /// together share one fsync (group commit). Readers (fetch, `wait_for`, leases, offsets)
    /// see a record only once it is fsynced, so nothing a reader saw is lost by a power cut.
    Always,
    /// Bytes are fsynced at least every `ms` milliseconds; a crash may lose that much.
    Interval { ms: u64 },
    /// The store never fsyncs on its own; the OS decides.
    Never,
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Interval {
            ms: DEFAULT_FSYNC_INTERVAL_MS,
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Durability::Always => write!(f, "always"),
            Durability::Interval { ms } => write!(f, "interval:{ms}"),
            Durability::Never => write!(f, "never"),
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = String;
    /// Parses `always`, `never`, `interval` (default interval) or `interval:MS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Durability::Always),
            "never" => Ok(Durability::Never),
            "interval" => Ok(Durability::default()),
            other => match other.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(Durability::Interval { ms }),
                _ => Err(format!(
                    "unknown durability {other:?}: use always, interval, interval:MS or never"
                )),
            },
        }
    }
}

/// Per-topic settings. Stores keep all of them and return them unchanged from `describe_topic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Number of partitions, at least 1.
    pub partitions: u32,
    /// Largest record accepted, as measured by [`Record::size`].
    pub max_record_bytes: usize,
    /// Records older than this (by timestamp) may be removed by retention. `None`: kept forever.
    pub retention_ms: Option<i64>,
    /// The partition is trimmed, oldest first, towards this many bytes. `None`: no limit.
    pub retention_bytes: Option<u64>,
    /// Fsync policy, for stores that have one.
    pub durability: Durability,
    /// Roll to a new segment past this size, for stores with segments. `None`: store default.
    pub segment_bytes: Option<u64>,
    /// Roll to a new segment past this age, for stores with segments. `None`: store default.
    pub segment_ms: Option<i64>,
    /// How old records go: retention (delete) and/or compaction (Kafka's `cleanup.policy`).
    #[serde(default)]
    pub cleanup: CleanupPolicy,
    /// Free-form settings kept for the layers above (queue attributes and the like).
    pub attributes: BTreeMap<String, String>,
}

/// Default `delete_retention_ms`: Kafka's `delete.retention.ms` (one day).
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 86_400_000;

/// Kafka's `cleanup.policy` and the compaction settings that go with it (rules under
/// "Compaction" of [`crate::Store`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CleanupPolicy {
    /// Retention (`retention_ms`, `retention_bytes`) removes old records.
    pub delete: bool,
    /// Compaction keeps only the newest record of each key.
    pub compact: bool,
    /// A record is not compacted until it is at least this old (by its timestamp).
    pub min_compaction_lag_ms: i64,
    /// A tombstone (a record with a key and no value) stays this long after compaction first
    /// kept it as the newest of its key; then compaction removes it.
    pub delete_retention_ms: i64,
    /// Share of a partition's bytes written since its last compaction below which a
    /// background cleaner may skip it (Kafka's `min.cleanable.dirty.ratio`); `compact`
    /// called directly ignores it.
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy {
            delete: true,
            compact: false,
            min_compaction_lag_ms: 0,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

impl CleanupPolicy {
    /// Kafka's spelling: `delete`, `compact` or `compact,delete`.
    pub fn kafka_name(&self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// What one [`crate::Store::compact`] did to a partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Every record below this offset was considered (the cleanable end); records at or
    /// after it were not touched.
    pub cleaned_to: i64,
    /// Records removed (superseded, expired tombstones, aborted transactional data).
    pub records_removed: u64,
    /// Bytes of stored batches read.
    pub bytes_read: u64,
    /// Bytes of stored batches written back.
    pub bytes_written: u64,
}

impl TopicConfig {
    /// A config with `partitions` partitions and every other setting at its default.
    pub fn with_partitions(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            ..TopicConfig::default()
        }
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            retention_ms: None,
            retention_bytes: None,
            durability: Durability::default(),
            segment_bytes: None,
            segment_ms: None,
            cleanup: CleanupPolicy::default(),
            attributes: BTreeMap::new(),
        }
    }
}

/// A topic as the store describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub config: TopicConfig,
}

/// A record header: a string key and optional bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A record as an appender hands it to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Producer timestamp in ms since the epoch; `None` means the append time.
    pub timestamp_ms: Option<i64>,
    /// The record must not be leased before this time (delayed delivery). Fetch ignores it.
    pub not_before_ms: Option<i64>,
}

impl Record {
    /// A record with only a value.
    pub fn from_value(value: impl Into<Bytes>) -> Self {
        Record {
            value: Some(value.into()),
            ..Record::default()
        }
    }

    /// A record with a key and a value.
    pub fn keyed(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Record {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Record::default()
        }
    }

    /// The size checked against `max_record_bytes`: key + value + every header key and value.
    pub fn size(&self) -> usize {
        record_size(&self.key, &self.value, &self.headers)
    }
}

fn record_size(key: &Option<Bytes>, value: &Option<Bytes>, headers: &[Header]) -> usize {
    key.as_ref().map_or(0, Bytes::len)
        + value.as_ref().map_or(0, Bytes::len)
        + headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
}

/// A record as the store returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub offset: i64,
    /// The producer timestamp, or the append time when the producer gave none.
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub not_before_ms: Option<i64>,
}

impl StoredRecord {
    /// The same measure as [`Record::size`]; fetch byte limits count this.
    pub fn size(&self) -> usize {
        record_size(&self.key, &self.value, &self.headers)
    }

    /// The record this one becomes in a dead-letter topic (rule **max_deliveries_dead_letters**):
    /// key, value, timestamp and headers kept, then the [`dead_letter_headers`] naming its
    /// origin and how often it was delivered; no not-before.
    pub fn to_dead_letter(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        deliveries: u32,
    ) -> Record {
        use dead_letter_headers as dlh;
        let mut headers = self.headers.clone();
        for (key, value) in [
            (dlh::SOURCE_TOPIC, topic.to_string()),
            (dlh::SOURCE_PARTITION, partition.to_string()),
            (dlh::SOURCE_OFFSET, self.offset.to_string()),
            (dlh::GROUP, group.to_string()),
            (dlh::DELIVERY_COUNT, deliveries.to_string()),
        ] {
            headers.push(Header {
                key: key.to_string(),
                value: Some(Bytes::from(value)),
            });
        }
        Record {
            key: self.key.clone(),
            value: self.value.clone(),
            headers,
            timestamp_ms: Some(self.timestamp_ms),
            not_before_ms: None,
        }
    }
}

/// Identity of an idempotent producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    /// Sequence number of the batch's first record; the batch covers
    /// `first_sequence .. first_sequence + records.len()`.
    pub first_sequence: i32,
}

/// A producer id handed out by [`crate::Store::init_producer_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub epoch: i16,
}

/// One atomic append to one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendBatch {
    pub records: Vec<Record>,
    pub producer: Option<ProducerBatch>,
}

impl AppendBatch {
    /// A batch of plain records without producer identity.
    pub fn new(records: Vec<Record>) -> Self {
        AppendBatch {
            records,
            producer: None,
        }
    }
}

/// What an append reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of the batch's last record.
    pub last_offset: i64,
    /// The time the store appended the batch (ms since epoch).
    pub append_time_ms: i64,
    /// The partition's log start offset after the append.
    pub log_start_offset: i64,
    /// True when this was a retry of an already appended idempotent batch.
    pub duplicate: bool,
}

/// Limits of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// At most this many records.
    pub max_records: usize,
    /// At most this many bytes (by [`StoredRecord::size`]), except that the first record is
    /// always returned.
    pub max_bytes: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_records: 10_000,
            max_bytes: 1 << 20,
        }
    }
}

/// What a fetch returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    pub records: Vec<StoredRecord>,
    /// The offset the next appended record will get.
    pub high_watermark: i64,
    /// The first offset still stored.
    pub log_start_offset: i64,
}

/// Which timestamps a batch appended with [`crate::Store::append_batch`] keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampType {
    /// The producer's record timestamps (Kafka's CreateTime).
    #[default]
    CreateTime,
    /// The store's append time for every record (Kafka's LogAppendTime).
    LogAppendTime,
}

/// Limits of one [`crate::Store::fetch_batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many bytes of batches (whole batches only).
    pub max_bytes: usize,
    /// Return the first batch even when it alone is larger than `max_bytes` (Kafka's rule
    /// for the first non-empty partition of a fetch, KIP-74).
    pub min_one: bool,
    /// Kafka's `isolation.level=read_committed`: stop at the last stable offset and list the
    /// aborted transactions (rule **read_committed_fetch_stops_at_last_stable**).
    pub read_committed: bool,
}

/// What a batch fetch returns: whole stored Kafka record batches (format v2), back to back
/// in offset order, the first one holding the fetch offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedBatches {
    /// The batches, in one or more chunks of whole batches each (a store returns one chunk
    /// per contiguous range it holds, such as a segment file's); concatenated, they are the
    /// records section of a Kafka fetch response.
    pub chunks: Vec<Bytes>,
    /// The offset the next appended record will get.
    pub high_watermark: i64,
    /// The first offset still stored.
    pub log_start_offset: i64,
    /// The first offset of the oldest open transaction, or the high watermark.
    pub last_stable_offset: i64,
    /// With `read_committed`: the aborted transactions the returned batches meet.
    pub aborted: Vec<AbortedTxn>,
}

impl FetchedBatches {
    /// Bytes of all chunks together.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// True when no batch came back.
    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(Bytes::is_empty)
    }

    /// The chunks as one buffer (no copy when there is one chunk).
    pub fn concat(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut v = Vec::with_capacity(self.len());
                for c in many {
                    v.extend_from_slice(c);
                }
                Bytes::from(v)
            }
        }
    }
}

/// Log start and high watermark of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// The first offset of the oldest open transaction, or the high watermark.
    pub last_stable_offset: i64,
}

/// The end of a transaction on one partition, as its coordinator writes it
/// ([`crate::Store::write_txn_marker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Commit (`true`) or abort.
    pub commit: bool,
    /// The coordinator's epoch, kept in the marker's value.
    pub coordinator_epoch: i32,
}

/// An aborted transaction of a partition: its producer and first offset (Kafka's
/// AbortedTransaction of a fetch response); its records run up to its abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// A producer's state on one partition ([`crate::Store::producer_states`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    /// Append time of its newest batch (or marker).
    pub last_timestamp_ms: i64,
    /// First offset of its open transaction on the partition.
    pub txn_start_offset: Option<i64>,
}

/// The answer of a timestamp lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// A committed consumer-group offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    /// The committing client's leader epoch of the record at `offset` (KIP-320); `None` when
    /// unknown (Kafka's -1). Stored and returned exactly. Absent in data written before the
    /// field existed, which decodes as `None`.
    #[serde(default)]
    pub leader_epoch: Option<i32>,
    /// Any string, kept verbatim (NUL bytes and non-ASCII included).
    pub metadata: String,
}

/// One entry of a commit, or of a group's list of commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The committing client's leader epoch (KIP-320); `None` when unknown (Kafka's -1).
    #[serde(default)]
    pub leader_epoch: Option<i32>,
    /// Any string, kept verbatim (NUL bytes and non-ASCII included).
    pub metadata: String,
}

/// How a lease group treats its records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGroupConfig {
    /// A record is leased at most this many times; the next time it would be leased it is
    /// dead-lettered instead. `None`: no limit.
    pub max_deliveries: Option<u32>,
    /// Where dead-lettered records go (partition 0 of this topic). Without it, records past
    /// `max_deliveries` are archived: done, counted as dead-lettered, copied nowhere.
    pub dead_letter_topic: Option<String>,
    /// A record is never leased while an earlier record with the same key is not done (except
    /// one leased by the same call), nor while any record with its key is in flight.
    pub ordered_by_key: bool,
    /// Lease records of open and aborted transactions too, up to the high watermark (Kafka's
    /// `share.isolation.level=read_uncommitted`); by default leases read committed.
    #[serde(default)]
    pub read_uncommitted: bool,
}

/// Identifies one lease of one record; opaque to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken {
    pub partition: i32,
    pub offset: i64,
    /// Distinguishes this lease from every other lease of the same record.
    pub nonce: u64,
}

/// A leased record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub record: StoredRecord,
    pub token: LeaseToken,
    /// 1 on the first lease, +1 on every lease after.
    pub delivery_count: u32,
    /// When the lease lapses unless extended, acked or released (ms since epoch).
    pub expires_at_ms: i64,
    /// When this record was first leased by this group (ms since epoch).
    pub first_leased_at_ms: i64,
}

/// Per-group state of a partition's records in `[log_start, high_watermark)`.
/// `available + leased + delayed + done == high_watermark - log_start`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseCounts {
    /// Leasable now.
    pub available: u64,
    /// In flight: leased and not expired.
    pub leased: u64,
    /// Not leasable yet: not-before in the future, or released with a delay still running.
    pub delayed: u64,
    /// Acked or dead-lettered.
    pub done: u64,
    /// Dead-lettered (a subset of `done`).
    pub dead_lettered: u64,
}

/// Header names a dead-lettered record carries, naming where it came from.
pub mod dead_letter_headers {
    pub const SOURCE_TOPIC: &str = "x-dead-letter-source-topic";
    pub const SOURCE_PARTITION: &str = "x-dead-letter-source-partition";
    pub const SOURCE_OFFSET: &str = "x-dead-letter-source-offset";
    pub const GROUP: &str = "x-dead-letter-group";
    pub const DELIVERY_COUNT: &str = "x-dead-letter-delivery-count";
}
