//! The storage contract: the trait every store implements.
//!
//! Each rule below is written as "must" and is named in bold; the check in the `conformance`
//! crate that enforces it has the same name.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::security::{AclBinding, ScramCredential, ScramMechanism};
use crate::types::*;
use crate::StoreResult;

/// A message store: topics of partitions of append-only records, consumer-group offsets, and
/// leases (queue semantics) per lease group. Used as `Arc<dyn Store>`.
///
/// # Topics
/// - **topic_names_are_validated**: a name must be 1-249 characters of `[A-Za-z0-9._-]`, not `.`
///   or `..` ([`crate::validate_topic_name`]); anything else is `InvalidArgument`.
/// - **create_topic_requires_partitions**: zero partitions is `InvalidArgument`.
/// - **duplicate_topic_is_rejected**: creating an existing name is `TopicExists`.
/// - **topics_are_listed_and_described**: `list_topics` returns every topic (sorted by name) and
///   `describe_topic` returns the config exactly as created or last updated.
/// - **unknown_topic_is_reported**: every call naming a missing topic, or a partition outside
///   `0..partitions`, is `UnknownTopic`.
/// - **delete_topic_removes_everything**: after delete, the topic's records, committed offsets
///   and lease state are gone; a new topic of the same name starts empty at offset 0.
/// - **partitions_can_grow**: `update_topic_config` with a larger `partitions` must add new,
///   empty partitions (offsets from 0; append, fetch, lease and commit work on them; they
///   survive reopen) and leave the existing partitions untouched; a smaller count must be
///   `InvalidArgument` naming both counts, and change nothing.
///
/// # Append
/// - **offsets_are_dense_from_zero**: a partition's offsets start at 0 and grow by exactly 1 per
///   record; a batch of n records gets `base..base+n`.
/// - **empty_batch_is_rejected**: an empty batch is `InvalidArgument`.
/// - **record_too_large_fails_the_batch**: a record whose [`Record::size`] exceeds the topic's
///   `max_record_bytes` fails the whole batch with `RecordTooLarge`; nothing is appended.
/// - **timestamps_default_to_append_time**: a record without a timestamp is stored with the
///   batch's append time; a given timestamp is stored unchanged.
/// - **records_round_trip**: key, value (each possibly absent), headers (in order), timestamp and
///   not-before come back from fetch exactly as appended.
/// - **concurrent_appends_are_gapless**: concurrent appenders to one partition get disjoint,
///   gapless ranges, and batches are never interleaved.
/// - **offsets_are_never_reused**: offsets keep growing after delete-records and retention.
///
/// # Batches (Kafka record batches, format v2)
/// Stores keep Kafka v2 record batches as the unit of storage: [`Store::append_batch`] takes
/// one as a producer sent it, [`Store::fetch_batches`] returns whole stored batches, and the
/// record-level calls (`append`, `fetch`, leases) read and write the same batches
/// (`kafka_batch` holds the codec every store shares).
/// - **batch_append_assigns_offsets**: a valid batch of n records must get `base..base+n`,
///   dense with record appends before and after it; the stored batch must be the given bytes
///   with only the base offset (the assigned `base`) and the partition leader epoch (0)
///   changed, which the CRC does not cover, so the producer's CRC stays valid.
/// - **invalid_batch_is_rejected**: bytes that are not exactly one intact v2 batch must be
///   refused and nothing appended: a CRC-32C mismatch, truncated or trailing bytes,
///   malformed records, or a compressed section that does not decompress is
///   `CorruptBatch`; another magic, a record count that is 0 or disagrees with the last
///   offset delta, an offset delta out of sequence, a transactional or control batch, or
///   attribute bits a producer may not set is `InvalidBatch`; a record (key + value + header
///   keys and values) over `max_record_bytes` is `RecordTooLarge`.
/// - **batches_come_back_as_stored**: `fetch_batches` must return each stored batch
///   byte for byte (compressed batches stay compressed; a consumer's CRC check passes).
/// - **batch_fetch_respects_limits**: `fetch_batches(offset)` must return whole batches
///   only, starting with the batch that holds `offset` (it may hold earlier records), in
///   offset order, no batch at or past the high watermark, at most `max_bytes` in all except
///   that the first batch comes alone when it is larger and `min_one` is set (and nothing
///   when it is not); at the high watermark it is empty; below the log start or above the
///   high watermark it is `OffsetOutOfRange`.
/// - **records_and_batches_agree**: records appended with `append` must come back from
///   `fetch_batches` as valid v2 batches (CRC-32C, dense offsets) that decode to the same
///   records (key, value, headers, timestamp); records of batches appended with
///   `append_batch` must come back from `fetch` and `lease` like appended records
///   (compressed batches decompressed), and count for `offset_for_timestamp`,
///   `max_timestamp_offset`, retention and delete-records like them.
/// - **log_append_time_is_stamped**: `append_batch` with [`TimestampType::LogAppendTime`]
///   must store the batch with timestamp type LogAppendTime and max timestamp = the append
///   time (returned as `append_time_ms`; the CRC recomputed), and every record of it has
///   that timestamp on the record path; with `CreateTime` the stored max timestamp is the
///   largest record timestamp (a producer's wrong one is corrected).
/// - **idempotent_batches_are_checked**: a batch with a producer id (>= 0) must follow the
///   idempotent-producer rules below with its producer id, epoch, base sequence and record
///   count, exactly as an `append` with [`ProducerBatch`] does (the two paths share the
///   producer state).
///
/// # Idempotent producers
/// - **producer_ids_are_unique**: `init_producer_id` must never return the same id twice,
///   also across reopen.
/// - **idempotent_retry_is_not_duplicated**: a batch whose (producer, epoch, first sequence,
///   length) equals one of the producer's last 5 batches on the partition returns that batch's
///   original offsets with `duplicate = true` and appends nothing.
/// - **sequence_gap_is_rejected**: a producer's first batch (or first batch in a newer epoch)
///   on a partition must start at sequence 0; after that each batch must start at the previous
///   batch's last sequence + 1 (wrapping after `i32::MAX` to 0); else `OutOfOrderSequence`.
/// - **fenced_epoch_is_rejected**: an epoch older than the producer's newest on the partition is
///   `ProducerFenced`.
///
/// # Fetch
/// - **fetch_returns_records_in_order**: records come in offset order starting exactly at the
///   requested offset (also in the middle of a batch), at most `max_records`, and no more than
///   `max_bytes` except that the first record is always returned if one exists.
/// - **fetch_at_high_watermark_is_empty**: fetching at the high watermark returns no records.
/// - **fetch_out_of_range_is_rejected**: below the log start or above the high watermark is
///   `OffsetOutOfRange`.
/// - **wait_returns_when_data_arrives**: `wait_for` returns `true` as soon as a record at or
///   after the offset exists, without waiting for the timeout, and `false` after the timeout
///   when none arrived.
/// - **list_offsets_by_timestamp**: `offset_for_timestamp(t)` is the first offset at or after
///   the log start whose record timestamp is `>= t` (equivalently, the first whose
///   max-timestamp-so-far is `>= t`), with that record's timestamp; `None` when there is none.
/// - **max_timestamp_offset_is_found**: `max_timestamp_offset` must return, among the records
///   in `[log_start, high_watermark)`, the one with the largest timestamp (the smallest offset
///   among equal timestamps), with that timestamp; `None` when that range is empty. Records
///   below the log start do not count.
///
/// # Consumer-group offsets
/// - **committed_offsets_round_trip**: the last commit for (group, topic, partition) wins and
///   is returned with its metadata and leader epoch; they survive reopen and vanish with the
///   topic.
/// - **committed_leader_epoch_round_trips**: the `leader_epoch` of a commit (`None` or any
///   `i32`) must come back exactly from `committed_offset` and `list_committed`, also after
///   reopen; a later commit without an epoch must replace an epoch with `None`.
/// - **commit_metadata_is_kept_verbatim**: every Rust `String` must round-trip as commit
///   metadata: NUL bytes (U+0000), any non-ASCII text, and at least 4 KiB; also after reopen.
/// - **committed_offsets_can_be_deleted**: `delete_committed(group, Some(partitions))` must
///   remove the group's commits of exactly those partitions, and `delete_committed(group,
///   None)` every commit of the group; it returns how many commits existed and were removed
///   (partitions without a commit, or of missing topics, count 0 and are no error). Afterwards
///   `committed_offset` is `None` for them, `list_committed` omits them, and a group with no
///   commit left is not in `list_consumer_groups`; the deletion survives reopen.
///
/// # Leases
/// - **lease_returns_oldest_available**: `lease` returns up to `max` of the oldest records of the
///   partition that the group has not finished, that are not leased now, and whose not-before and
///   release delay have passed, in offset order, each with a fresh token and delivery count (1 on
///   the first lease, +1 on each later one).
/// - **leases_are_exclusive**: a record is leased to at most one holder per group at a time,
///   also under concurrency.
/// - **expired_lease_is_redelivered**: once `expires_at_ms` has passed the record is leasable
///   again; once it has been leased again, its old token is `LeaseExpired` for ack, release
///   and extend.
/// - **lapsed_lease_can_be_acked**: after a lease's `expires_at_ms` has passed, while its record
///   was not leased again (nor acked or dead-lettered), `ack` with that token must succeed and
///   be final (the SQS DeleteMessage of a receipt handle from the most recent receive), while
///   `release` and `extend` with it must be `LeaseLapsed` and change nothing (the record stays
///   leasable).
/// - **ack_is_final**: an acked record is never leased again by that group; acking with a
///   superseded token is `LeaseExpired` and changes nothing.
/// - **release_with_delay**: a released record becomes leasable after the given delay.
/// - **extend_moves_expiry**: extend sets the expiry to now + visibility.
/// - **groups_are_independent**: every group sees every record; one group's acks do not affect
///   another's.
/// - **max_deliveries_dead_letters**: with `max_deliveries = n`, a record that would be leased an
///   (n+1)-th time is instead appended to the dead-letter topic (key, value, timestamp and headers
///   kept, plus the [`dead_letter_headers`]) and counted as done and dead-lettered; this happens
///   atomically with the lease call that found it.
/// - **ordered_by_key_blocks_later_records**: with `ordered_by_key`, a record is not leased while
///   an earlier record with the same key is not done, unless the same lease call leases that
///   earlier record too: one call may lease several records of one key, in offset order (SQS
///   FIFO receives). No record of a key is leased while any record of that key is in flight
///   (leased and not expired), earlier or later. Keyless records are not ordered.
/// - **not_before_delays_leasing**: a record whose `not_before_ms` is in the future is not
///   leased (and is counted as delayed) until that time.
/// - **lease_counts_add_up**: `lease_counts` reports available, leased, delayed, done and
///   dead-lettered, and the first four sum to `high_watermark - log_start`.
/// - **lease_floor_is_first_unfinished**: `lease_floor` is at least the log start and at most
///   the high watermark; every record below it is done for the group, and a record at it
///   (below the high watermark) is not, except for stores that keep the default (log start).
/// - **lease_state_survives_reopen**: acks, delivery counts, releases and lease group configs
///   survive close and reopen (in-flight leases may come back available).
/// - **max_deliveries_without_dead_letter_topic_archives**: with `max_deliveries = n` and no
///   `dead_letter_topic`, a record that would be leased an (n+1)-th time is instead counted as
///   done and dead-lettered (Kafka share groups call it archived) and copied nowhere.
/// - **lease_start_can_be_reset**: `reset_lease_start(topic, partition, group, start)` clamps
///   `start` into `[log_start, high_watermark]` and returns it; afterwards every record of that
///   partition below it is done for the group, every record at or after it is leasable as if
///   never leased (delivery count 1 on its next lease, not dead-lettered), and every earlier
///   token of the partition is `LeaseExpired`. Other partitions and other groups are untouched.
///   The group then appears in `lease_groups` (with its config, or the default one). The reset
///   survives close and reopen. An unknown topic is `UnknownTopic`, a partition outside the
///   topic `InvalidArgument`.
/// - **lease_groups_can_be_deleted**: `delete_lease_group(topic, group)` removes the group's
///   config and its lease state on every partition of the topic and returns whether there was
///   any; afterwards the group is not in `lease_groups`, leases from the log start like a new
///   group, and its earlier tokens are `LeaseExpired`. Other groups are untouched; it survives
///   reopen. An unknown topic is `UnknownTopic`.
/// - **group_configs_round_trip**: `set_group_config(group, configs)` replaces the whole map of
///   string settings kept for a group name (an empty map removes it); `group_config` returns the
///   last map set (empty for a group never set), also after close and reopen; `list_group_configs`
///   returns every group with a non-empty map, sorted by name. Keys and values are kept verbatim.
/// - **group_snapshots_round_trip**: `save_group_snapshot(group, state)` replaces the opaque
///   bytes kept for a group name (a coordinator's state of its group: generation, members,
///   assignments); empty bytes remove them. `group_snapshot` returns the last bytes saved,
///   verbatim (`None` for a group never saved or removed), also after close and reopen; groups
///   are independent. This is the single-broker slot; brokers sharing a store through
///   [`crate::Cluster`] save with a fence instead (`save_group_state`), and on such a store
///   both name the same slot, so `group_snapshot` also returns what a fenced save wrote.
///
/// # Transactions (Kafka's KIP-98 data plane)
/// A transaction coordinator (in the broker) decides; the store keeps, per partition, what
/// consumers need: which producers have a transaction open, where the last stable offset is,
/// and which transactions were aborted.
/// - **transactional_batches_open_transactions**: `append_batch` must accept a batch with the
///   transactional bit and a producer id (>= 0) under the idempotent-producer rules; the
///   producer's first transactional batch on a partition since its last marker there (or
///   ever) opens a transaction on that partition at the batch's base offset. A transactional
///   batch without a producer id, and any control batch, is `InvalidBatch`.
/// - **last_stable_offset_is_first_open**: the last stable offset (`partition_offsets` and
///   every `fetch_batches`) must be the smallest first offset of the partition's open
///   transactions, or the high watermark when none is open; never below the log start.
/// - **markers_end_transactions**: `write_txn_marker` must append one control batch at the high
///   watermark (one record in Kafka's layout: key = version 0 and type 0 for abort or 1 for
///   commit, value = version 0 and the coordinator epoch; transactional and control bits set,
///   the marker's producer id and epoch, base sequence -1), return its offset, and close the
///   producer's open transaction on the partition. An abort adds (producer id, first offset of
///   the transaction) to the partition's aborted transactions, ending at the marker. A marker
///   for a producer with no open transaction there is still written and aborts nothing. An
///   epoch older than the producer's newest on the partition is `ProducerFenced` and writes
///   nothing; a newer epoch becomes the producer's (its next batch starts at sequence 0, and
///   batches of older epochs are fenced).
/// - **read_committed_fetch_stops_at_last_stable**: with `read_committed`, `fetch_batches` must
///   return no batch at or past the last stable offset (an offset in `[last stable, high
///   watermark]` gives no batch, not an error), and list in `aborted` every aborted
///   transaction of the partition whose range meets the returned batches (first offset <= the
///   last returned offset, marker offset >= the fetch offset), sorted by first offset. Without
///   it, batches go up to the high watermark and `aborted` is empty.
/// - **control_records_are_not_records**: control batches come back from `fetch_batches` as
///   stored, but `fetch`, `lease`, `offset_for_timestamp` and `max_timestamp_offset` must skip
///   their offsets (a fetch from a marker's offset starts at the next data record); for every
///   lease group they count as done.
/// - **leases_read_committed**: `lease` must not hand out a record at or past the last stable
///   offset (`lease_counts` counts those as delayed), nor a record of an aborted transaction
///   (counted as done, never delivered). A group whose config sets `read_uncommitted` is
///   the exception: it leases every data record below the high watermark, of open and
///   aborted transactions too (control records stay done); the setting survives reopen.
/// - **transaction_state_survives_reopen**: open transactions, the last stable offset, aborted
///   transactions and the producer epochs markers set must survive close and reopen (and an
///   unclean stop, for stores that recover from one).
/// - **producer_states_are_described**: `producer_states(topic, partition)` must list, sorted by
///   producer id, every producer with a batch or marker on the partition (at least those
///   whose newest batch is at or after the log start), with its newest epoch, last sequence
///   (-1 after a marker that bumped the epoch), the append time of its newest batch and the
///   first offset of its open transaction, if any.
/// - **group_snapshots_are_listed**: `list_group_snapshots(prefix)` must return every saved
///   snapshot (by either save) whose group name starts with `prefix`, sorted by name, with its
///   bytes; removed ones are not listed (the broker keeps transaction coordinators' state in
///   such slots and lists them at start).
///
/// # Retention
/// - **delete_records_moves_log_start**: `delete_records(before)` sets the log start to exactly
///   `before` (no-op if already past it); `before` above the high watermark is `OffsetOutOfRange`.
/// - **retention_by_time**: `enforce_retention` removes whole batches (or larger units made of
///   whole batches, like segments) whose newest timestamp is older than `retention_ms`, oldest
///   first, and stops at the first unit it must keep.
/// - **retention_by_size**: with `retention_bytes`, the oldest units are removed while the
///   partition is over the limit.
/// - **retention_keeps_newest_batch**: retention never removes the newest batch of a partition,
///   nor anything at or past the high watermark.
/// - **retention_needs_delete_policy**: on a topic whose [`CleanupPolicy`] has `delete` off
///   (Kafka's `cleanup.policy=compact`), `enforce_retention` must remove nothing.
///
/// # Compaction (Kafka's `cleanup.policy=compact`)
/// `compact(topic, partition, ..)` cleans one partition of a topic whose [`CleanupPolicy`]
/// has `compact` on. It chooses a cleanable end `E` (returned as `cleaned_to`): at most the
/// last stable offset, at most the first offset of a record younger than
/// `min_compaction_lag_ms` (by its timestamp and the store's clock), and, for stores with
/// segments, at most the base offset of the active segment. With `segment_bytes = Some(1)`
/// (every batch closes its segment) and no lag, `E` must reach at least the base offset of
/// the partition's newest batch.
/// - **compaction_keeps_newest_per_key**: below `E`, a record must be removed when a newer
///   record of the same key exists below `E`, and kept otherwise (unless a rule below removes
///   it). A store whose memory for keys is full may clean a prefix only (`cleaned_to` says
///   how far); calling again continues.
/// - **compaction_keeps_offsets**: surviving records keep their offsets and contents; the log
///   start and high watermark do not move; `fetch` from a removed offset returns the next
///   surviving record; `fetch_batches` returns valid batches (CRC-32C intact, base offset
///   and last offset delta of the original batch) holding exactly the survivors; leases never
///   deliver a removed record; `offset_for_timestamp` and `max_timestamp_offset` see the
///   survivors only.
/// - **tombstones_expire_after_delete_retention**: a tombstone (a key and no value) that is
///   the newest record of its key below `E` must survive the compaction that first keeps
///   it (at time `t`) and every compaction before `t + delete_retention_ms`, and must be
///   removed by the first compaction at or after that time.
/// - **compaction_removes_aborted_records**: below `E`, records of aborted transactions must
///   be removed; committed transactional records are compacted like any other; transaction
///   markers stay (they are not records).
/// - **compaction_needs_the_policy**: on a topic without `compact`, `compact` must change
///   nothing and report no removed record.
/// - **compacted_topics_need_keys**: on a topic with `compact`, `append` and `append_batch`
///   of a batch with a record without a key must be `InvalidBatch` naming the topic and
///   partition, and append nothing (Kafka: "Compacted topic cannot accept message without
///   key").
/// - **compaction_survives_reopen**: after close and reopen (and after an unclean stop
///   during compaction, for stores that recover from one) every record is either as before
///   compaction or removed by it, never duplicated, and no removed record comes back.
///
/// # Credentials and ACLs
/// - **credentials_round_trip**: `put_credential` must store the credential under (user,
///   mechanism), replacing an earlier one of the same pair, and `get_credential` must return
///   it exactly (`None` when there is none); a user name outside 1-1024 bytes, or with a
///   NUL, is `InvalidArgument`. Credentials survive reopen.
/// - **credentials_are_listed_and_deleted**: `list_credentials` must return every credential
///   sorted by (user, mechanism); `delete_credential` must remove exactly the (user,
///   mechanism) pair, returning whether it existed (the user's other mechanism stays); the
///   deletion survives reopen.
/// - **acls_round_trip**: `create_acls` must store each binding once (one equal to a stored
///   binding is not stored again) and `list_acls` must return every stored binding sorted
///   (field order of [`AclBinding`]), exactly as given; they survive reopen.
/// - **acls_are_deleted_exactly**: `delete_acls` must remove exactly the bindings equal to
///   the given ones (absent ones are no error) and return how many it removed; the deletion
///   survives reopen.
///
/// # Time and lifecycle
/// - Stores take a [`crate::Clock`]; every "now" above is that clock's.
/// - **data_survives_reopen**: after `close` and opening the same data again, topics, records,
///   offsets and producer ids are all there.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name of the implementation (`memory`, `log`, `postgres`).
    fn kind(&self) -> &'static str;

    // ---- topics ----

    /// Creates a topic; see the Topics rules.
    async fn create_topic(&self, name: &str, config: TopicConfig) -> StoreResult<TopicInfo>;
    /// Deletes a topic and everything stored for it.
    async fn delete_topic(&self, name: &str) -> StoreResult<()>;
    /// Every topic, sorted by name.
    async fn list_topics(&self) -> StoreResult<Vec<TopicInfo>>;
    /// One topic.
    async fn describe_topic(&self, name: &str) -> StoreResult<TopicInfo>;
    /// Replaces a topic's settings. A larger `partitions` adds empty partitions numbered from
    /// the old count on (rule **partitions_can_grow**); a smaller one is `InvalidArgument`.
    async fn update_topic_config(&self, name: &str, config: TopicConfig) -> StoreResult<TopicInfo>;

    // ---- append ----

    /// Appends a batch atomically to one partition; see the Append rules.
    async fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: AppendBatch,
    ) -> StoreResult<AppendResult>;
    /// Appends one Kafka v2 record batch (a producer's bytes) atomically to one partition;
    /// see the Batches rules. `timestamps` is the topic's timestamp type.
    async fn append_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        timestamps: TimestampType,
    ) -> StoreResult<AppendResult>;
    /// A fresh producer id with epoch 0.
    async fn init_producer_id(&self) -> StoreResult<ProducerIdentity>;

    // ---- fetch ----

    /// Reads records from `offset`; never waits. See the Fetch rules.
    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: FetchLimits,
    ) -> StoreResult<FetchResult>;
    /// Reads whole stored batches from the one holding `offset`; never waits. See the
    /// Batches rules (rule **batch_fetch_respects_limits**).
    async fn fetch_batches(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: BatchLimits,
    ) -> StoreResult<FetchedBatches>;
    /// Waits until a record at or after `offset` exists (`true`) or `timeout` passes (`false`).
    /// Must return as soon as such a record is appended; no polling loop.
    async fn wait_for(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> StoreResult<bool>;
    /// Log start offset, high watermark and last stable offset.
    async fn partition_offsets(&self, topic: &str, partition: i32)
        -> StoreResult<PartitionOffsets>;
    /// The first offset whose timestamp is at or after `timestamp_ms`.
    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> StoreResult<Option<OffsetAndTimestamp>>;
    /// The record with the largest timestamp in `[log_start, high_watermark)`, the earliest
    /// among ties, with its timestamp; `None` when the partition holds no record (Kafka's
    /// ListOffsets timestamp -3, KIP-734). Rule **max_timestamp_offset_is_found**.
    async fn max_timestamp_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Option<OffsetAndTimestamp>>;

    // ---- consumer-group offsets ----

    /// Stores committed offsets for a group; all topics must exist.
    async fn commit_offsets(&self, group: &str, commits: &[OffsetCommit]) -> StoreResult<()>;
    /// The group's last commit for one partition.
    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Option<CommittedOffset>>;
    /// Every commit of a group, sorted by topic and partition.
    async fn list_committed(&self, group: &str) -> StoreResult<Vec<OffsetCommit>>;
    /// Every group that has at least one committed offset, sorted.
    async fn list_consumer_groups(&self) -> StoreResult<Vec<String>>;
    /// Deletes the group's commits of the named (topic, partition)s, or every commit of the
    /// group when `partitions` is `None` (Kafka's OffsetDelete and DeleteGroups). Returns how
    /// many commits were removed; names without a commit (missing topics included) are skipped,
    /// not errors. Rule **committed_offsets_can_be_deleted**.
    async fn delete_committed(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> StoreResult<u64>;

    // ---- leases ----

    /// Creates or replaces a lease group's config. The dead-letter topic must exist.
    async fn set_lease_group(
        &self,
        topic: &str,
        group: &str,
        config: LeaseGroupConfig,
    ) -> StoreResult<()>;
    /// Every lease group of a topic with its config (groups used without a config appear with
    /// the default config once they hold state).
    async fn lease_groups(&self, topic: &str) -> StoreResult<BTreeMap<String, LeaseGroupConfig>>;
    /// Leases up to `max` records for `visibility`; see the Leases rules.
    async fn lease(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Lease>>;
    /// Acks each token; one result per token, in order.
    async fn ack(
        &self,
        topic: &str,
        group: &str,
        tokens: &[LeaseToken],
    ) -> StoreResult<Vec<StoreResult<()>>>;
    /// Ends a lease early; the record is leasable again after `delay`.
    async fn release(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        delay: Duration,
    ) -> StoreResult<()>;
    /// Sets a lease's expiry to now + `visibility`; returns the new expiry.
    async fn extend(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        visibility: Duration,
    ) -> StoreResult<i64>;
    /// The group's counts for one partition.
    async fn lease_counts(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
    ) -> StoreResult<LeaseCounts>;
    /// Moves (forward or back) where a group's lease state of one partition starts; returns the
    /// clamped start. See **lease_start_can_be_reset**.
    async fn reset_lease_start(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        start: i64,
    ) -> StoreResult<i64>;
    /// Forgets a lease group on a topic (config and state); see **lease_groups_can_be_deleted**.
    async fn delete_lease_group(&self, topic: &str, group: &str) -> StoreResult<bool>;

    // ---- group configs ----

    /// Replaces the settings kept for a group (Kafka's GROUP config resource); empty removes.
    async fn set_group_config(
        &self,
        group: &str,
        configs: BTreeMap<String, String>,
    ) -> StoreResult<()>;
    /// The settings kept for a group (empty when none).
    async fn group_config(&self, group: &str) -> StoreResult<BTreeMap<String, String>>;
    /// Every group with settings, sorted by group name.
    async fn list_group_configs(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>>;
    /// Replaces a group's saved coordinator state (empty removes it); see
    /// **group_snapshots_round_trip**. Returns once it is durable.
    async fn save_group_snapshot(&self, group: &str, state: Bytes) -> StoreResult<()>;
    /// A group's saved coordinator state, if any.
    async fn group_snapshot(&self, group: &str) -> StoreResult<Option<Bytes>>;
    /// Every saved snapshot whose name starts with `prefix`, sorted by name; see
    /// **group_snapshots_are_listed**.
    async fn list_group_snapshots(&self, prefix: &str) -> StoreResult<Vec<(String, Bytes)>>;

    // ---- transactions ----

    /// Appends a transaction marker (a control batch) for one producer; returns its offset.
    /// See **markers_end_transactions**.
    async fn write_txn_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: TxnMarker,
    ) -> StoreResult<i64>;
    /// The producers of one partition (Kafka's DescribeProducers); see
    /// **producer_states_are_described**.
    async fn producer_states(&self, topic: &str, partition: i32) -> StoreResult<Vec<ProducerInfo>>;

    // ---- retention ----

    /// Moves the log start to `before`; returns the new log start.
    async fn delete_records(&self, topic: &str, partition: i32, before: i64) -> StoreResult<i64>;
    /// Applies the topic's time and size retention to every partition; returns how many
    /// records were removed.
    async fn enforce_retention(&self, topic: &str) -> StoreResult<u64>;
    /// Compacts one partition (rules under "Compaction"). With `min_dirty_ratio`, a store
    /// may return early, having cleaned nothing, while the bytes written since its last
    /// compaction are below that share of the partition's bytes.
    async fn compact(
        &self,
        topic: &str,
        partition: i32,
        min_dirty_ratio: Option<f64>,
    ) -> StoreResult<CompactionStats>;

    // ---- credentials and ACLs ----

    /// Stores a SCRAM credential, replacing the one of the same (user, mechanism). Rule
    /// **credentials_round_trip**.
    async fn put_credential(&self, credential: ScramCredential) -> StoreResult<()>;
    /// The credential of (user, mechanism), if any.
    async fn get_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> StoreResult<Option<ScramCredential>>;
    /// Every credential, sorted by (user, mechanism). Rule
    /// **credentials_are_listed_and_deleted**.
    async fn list_credentials(&self) -> StoreResult<Vec<ScramCredential>>;
    /// Removes the credential of (user, mechanism); returns whether there was one.
    async fn delete_credential(&self, user: &str, mechanism: ScramMechanism) -> StoreResult<bool>;
    /// Stores ACL bindings (each once). Rule **acls_round_trip**.
    async fn create_acls(&self, acls: &[AclBinding]) -> StoreResult<()>;
    /// Every stored ACL binding, sorted.
    async fn list_acls(&self) -> StoreResult<Vec<AclBinding>>;
    /// Removes the bindings equal to the given ones; returns how many were removed. Rule
    /// **acls_are_deleted_exactly**.
    async fn delete_acls(&self, acls: &[AclBinding]) -> StoreResult<u64>;

    // ---- lifecycle ----

    /// Ok when the store can serve calls (for health checks).
    async fn health(&self) -> StoreResult<()>;
    /// Damaged stored batches found since the store was opened (0 for stores that cannot tell).
    fn corrupt_batches(&self) -> u64 {
        0
    }
    /// Bytes on disk of each partition, `(topic, partition, bytes)`, for stores that keep
    /// partitions in local files (the log store); empty for the others (the default). Called
    /// on every metrics scrape, so it must be cheap (no reads of data, a few `stat`s per
    /// partition at most) and never fail: a partition that cannot be measured is left out.
    fn partition_disk_bytes(&self) -> Vec<(String, i32, u64)> {
        Vec::new()
    }
    /// Store-specific metrics for `/metrics`, such as fsync latency (log store) or connection
    /// pool waits and query latency (postgres store); empty by default. Called on every
    /// scrape: it must be cheap, never block on I/O and never fail. Label sets must be
    /// bounded (no per-topic or per-partition labels).
    fn store_metrics(&self) -> Vec<crate::StoreMetric> {
        Vec::new()
    }
    /// The first offset of the partition the lease group has not finished (acked or
    /// dead-lettered): every record below it is done, and the record at it (if below the high
    /// watermark) is not. Used to tell the age of a queue's oldest message. Stores that do
    /// not track it return the log start (the default), which can only make that age look
    /// older. Rule **lease_floor_is_first_unfinished**.
    async fn lease_floor(&self, topic: &str, partition: i32, group: &str) -> StoreResult<i64> {
        crate::validate_group_name(group)?;
        Ok(self
            .partition_offsets(topic, partition)
            .await?
            .log_start_offset)
    }
    /// Where the data lives, for operators (the console's store page): bytes per partition
    /// and store-specific tables. Unlike [`Store::store_metrics`] it may read files or query
    /// the database, so it is called only on request; `topic` limits per-partition figures to
    /// one topic. The default reports nothing.
    async fn report(&self, topic: Option<&str>) -> StoreResult<crate::StoreReport> {
        let _ = topic;
        Ok(crate::StoreReport::default())
    }
    /// Membership and group coordination for several brokers over this store's data, when
    /// the store can be shared (the postgres store); `None` (the default) means one broker
    /// owns the data and is the whole cluster.
    fn cluster(&self) -> Option<&dyn crate::Cluster> {
        None
    }
    /// Flushes everything and marks a clean shutdown; later calls fail with `Closed`.
    async fn close(&self) -> StoreResult<()>;
}
