//! One check per rule of the [`broker_api::Store`] contract, named after the rule.
//!
//! Every check opens its own slot with [`Subject::fresh`], drives time with a manual clock and
//! asserts exact values; it returns `Err` with what was expected and what came back.

pub mod append;
pub mod batches;
pub mod cluster;
pub mod compaction;
pub mod fetch;
pub mod group_configs;
pub mod leases;
pub mod lifecycle;
pub mod offsets;
pub mod producer;
pub mod retention;
pub mod security;
pub mod topics;
pub mod transactions;

pub(crate) mod util;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::harness::Backend;

/// The outcome of one check: `Err` says what was expected and what the store did.
pub type CheckResult = Result<(), String>;

/// A check's entry point.
pub type CheckFn = fn(Arc<dyn Backend>) -> BoxFuture<'static, CheckResult>;

/// One named check of the suite.
#[derive(Clone, Copy)]
pub struct Check {
    /// The rule's name, as written in bold in the contract.
    pub name: &'static str,
    /// Runs the check on a backend.
    pub run: CheckFn,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

macro_rules! checks {
    ($(#[$doc:meta])* $list:ident: $($module:ident :: $name:ident),* $(,)?) => {
        $(#[$doc])*
        pub const $list: &[Check] = &[
            $(Check {
                name: stringify!($name),
                run: |backend| Box::pin($module::$name(backend)),
            }),*
        ];
    };
}

checks! {
    /// Every check of the suite, in the order of the contract.
    CHECKS:
    topics::topic_names_are_validated,
    topics::create_topic_requires_partitions,
    topics::duplicate_topic_is_rejected,
    topics::topics_are_listed_and_described,
    topics::unknown_topic_is_reported,
    topics::delete_topic_removes_everything,
    topics::partitions_can_grow,
    append::offsets_are_dense_from_zero,
    append::empty_batch_is_rejected,
    append::record_too_large_fails_the_batch,
    append::timestamps_default_to_append_time,
    append::records_round_trip,
    append::concurrent_appends_are_gapless,
    append::offsets_are_never_reused,
    batches::batch_append_assigns_offsets,
    batches::invalid_batch_is_rejected,
    batches::batches_come_back_as_stored,
    batches::batch_fetch_respects_limits,
    batches::records_and_batches_agree,
    batches::log_append_time_is_stamped,
    batches::idempotent_batches_are_checked,
    producer::producer_ids_are_unique,
    producer::idempotent_retry_is_not_duplicated,
    producer::sequence_gap_is_rejected,
    producer::fenced_epoch_is_rejected,
    fetch::fetch_returns_records_in_order,
    fetch::fetch_at_high_watermark_is_empty,
    fetch::fetch_out_of_range_is_rejected,
    fetch::wait_returns_when_data_arrives,
    fetch::list_offsets_by_timestamp,
    fetch::max_timestamp_offset_is_found,
    offsets::committed_offsets_round_trip,
    offsets::committed_leader_epoch_round_trips,
    offsets::commit_metadata_is_kept_verbatim,
    offsets::committed_offsets_can_be_deleted,
    leases::lease_returns_oldest_available,
    leases::leases_are_exclusive,
    leases::expired_lease_is_redelivered,
    leases::lapsed_lease_can_be_acked,
    leases::ack_is_final,
    leases::release_with_delay,
    leases::extend_moves_expiry,
    leases::groups_are_independent,
    leases::max_deliveries_dead_letters,
    leases::ordered_by_key_blocks_later_records,
    leases::not_before_delays_leasing,
    leases::lease_counts_add_up,
    leases::lease_floor_is_first_unfinished,
    leases::lease_state_survives_reopen,
    leases::max_deliveries_without_dead_letter_topic_archives,
    leases::lease_start_can_be_reset,
    leases::lease_groups_can_be_deleted,
    group_configs::group_configs_round_trip,
    group_configs::group_snapshots_round_trip,
    transactions::transactional_batches_open_transactions,
    transactions::last_stable_offset_is_first_open,
    transactions::markers_end_transactions,
    transactions::read_committed_fetch_stops_at_last_stable,
    transactions::control_records_are_not_records,
    transactions::leases_read_committed,
    transactions::transaction_state_survives_reopen,
    transactions::producer_states_are_described,
    group_configs::group_snapshots_are_listed,
    retention::delete_records_moves_log_start,
    retention::retention_by_time,
    retention::retention_by_size,
    retention::retention_keeps_newest_batch,
    retention::retention_needs_delete_policy,
    compaction::compaction_keeps_newest_per_key,
    compaction::compaction_keeps_offsets,
    compaction::tombstones_expire_after_delete_retention,
    compaction::compaction_removes_aborted_records,
    compaction::compaction_needs_the_policy,
    compaction::compacted_topics_need_keys,
    compaction::compaction_survives_reopen,
    security::credentials_round_trip,
    security::credentials_are_listed_and_deleted,
    security::acls_round_trip,
    security::acls_are_deleted_exactly,
    lifecycle::data_survives_reopen,
    lifecycle::calls_after_close_fail,
}

checks! {
    /// The checks of the [`broker_api::Cluster`] rules, for stores that can be shared
    /// ([`broker_api::Store::cluster`] is `Some`); run by [`assert_cluster`].
    CLUSTER_CHECKS:
    cluster::given_node_id_is_exclusive,
    cluster::node_ids_are_allocated,
    cluster::incarnations_are_unique,
    cluster::live_brokers_are_listed,
    cluster::heartbeat_keeps_a_broker_live,
    cluster::lapsed_broker_is_fenced,
    cluster::deregistered_broker_leaves_at_once,
    cluster::coordinator_claim_is_exclusive,
    cluster::coordinator_moves_when_holder_lapses,
    cluster::coordinator_of_names_the_live_holder,
    cluster::stale_coordinator_is_fenced,
    cluster::fenced_commits_are_commits,
    cluster::group_state_follows_the_coordinator,
    cluster::resigned_group_is_free,
}

/// How long one check may run before it counts as hung.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome of a whole suite run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Names of the checks that passed.
    pub passed: Vec<&'static str>,
    /// Names of the checks that failed, with what went wrong.
    pub failed: Vec<(&'static str, String)>,
}

impl Report {
    /// True when no check failed.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }

    /// The names of the failed checks, in suite order.
    pub fn failed_names(&self) -> Vec<&'static str> {
        self.failed.iter().map(|(n, _)| *n).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} of {} checks passed, {} failed",
            self.passed.len(),
            self.passed.len() + self.failed.len(),
            self.failed.len()
        )?;
        for (name, why) in &self.failed {
            writeln!(f, "FAILED {name}: {why}")?;
        }
        Ok(())
    }
}

/// Runs one check in its own task with [`CHECK_TIMEOUT`]; a panic or a hang is a failure.
pub async fn run_check(check: &Check, backend: Arc<dyn Backend>) -> CheckResult {
    let mut task = tokio::spawn((check.run)(backend));
    match tokio::time::timeout(CHECK_TIMEOUT, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) if join.is_panic() => Err(format!("panicked: {}", panic_text(join))),
        Ok(Err(join)) => Err(format!("task failed: {join}")),
        Err(_) => {
            task.abort();
            Err(format!("did not finish within {CHECK_TIMEOUT:?}"))
        }
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    let payload = join.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-text panic".into())
}

/// Runs every check of [`CHECKS`] one after another and reports each outcome.
pub async fn run_all(backend: Arc<dyn Backend>) -> Report {
    run_list(CHECKS, backend).await
}

/// Runs the checks of `list` one after another and reports each outcome.
pub async fn run_list(list: &[Check], backend: Arc<dyn Backend>) -> Report {
    let mut report = Report::default();
    for check in list {
        match run_check(check, backend.clone()).await {
            Ok(()) => report.passed.push(check.name),
            Err(why) => report.failed.push((check.name, why)),
        }
    }
    report
}

/// Runs every check; panics listing every failed rule with its message.
pub async fn assert_all(backend: Arc<dyn Backend>) {
    let report = run_all(backend).await;
    assert!(report.is_success(), "conformance suite failed:\n{report}");
}

/// Runs every check of [`CLUSTER_CHECKS`]; panics listing every failed rule. A store without
/// a cluster fails every check.
pub async fn assert_cluster(backend: Arc<dyn Backend>) {
    let report = run_list(CLUSTER_CHECKS, backend).await;
    assert!(report.is_success(), "cluster conformance failed:\n{report}");
}
