//! Transactions that outlive their timeout are aborted (their producer fenced), and decided
//! transactions a crashed coordinator left unfinished are finished.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{now_ms, Status, TxnMeta, SLOT_PREFIX};
use crate::kafka::KafkaServer;

/// How often held transactions are checked against their timeout.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often the store's list of transactions is read for ones no live broker finishes.
const SCAN_EVERY: Duration = Duration::from_secs(5);

impl KafkaServer {
    /// Runs until the server stops: aborts timed-out transactions and finishes decided ones.
    pub(crate) async fn expire_transactions(self: Arc<Self>) {
        let mut since_scan = SCAN_EVERY;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = self.stopping() => return,
            }
            since_scan += CHECK_EVERY;
            if since_scan >= SCAN_EVERY {
                since_scan = Duration::ZERO;
                self.adopt_unfinished().await;
            }
            for (id, entry) in self.txns.all() {
                let due = {
                    let mut held = entry.lock().await;
                    // State adopted from the store (after a restart or takeover) counts too.
                    self.txns.settle(&id, &mut held);
                    held.as_ref().is_some_and(needs_work)
                };
                if due {
                    self.work_on(&id).await;
                }
            }
        }
    }

    /// Takes over transactions in the store that need work and that no live broker holds
    /// (all of them on a single broker: after a restart, its own).
    async fn adopt_unfinished(&self) {
        let listed = match self.store.list_group_snapshots(SLOT_PREFIX).await {
            Ok(l) => l,
            Err(e) => {
                warn!("cannot list transactions: {e}");
                return;
            }
        };
        for (key, bytes) in listed {
            let Some(id) = key.strip_prefix(SLOT_PREFIX) else {
                continue;
            };
            if self.txns.existing(id).is_some() {
                continue;
            }
            let Some(meta) = TxnMeta::decode(&bytes) else {
                continue;
            };
            if !matches!(
                meta.status,
                Status::Ongoing | Status::PrepareCommit | Status::PrepareAbort
            ) {
                continue;
            }
            if let Some(cluster) = self.store.cluster() {
                if matches!(cluster.coordinator_of(&key).await, Ok(Some(_))) {
                    continue;
                }
            }
            // Loads (claims, in a cluster) the id; the next check works on it.
            let _ = self.txn_entry(id).await;
        }
    }

    /// Aborts the id's transaction if it timed out; finishes it if it was decided.
    async fn work_on(&self, id: &str) {
        let Ok((entry, fence)) = self.txn_entry(id).await else {
            return;
        };
        let mut held = entry.lock().await;
        self.txns.settle(id, &mut held);
        let Some(mut meta) = held.clone() else {
            return;
        };
        if !needs_work(&meta) {
            return;
        }
        let r = match meta.status {
            Status::Ongoing => {
                info!(
                    transactional_id = id,
                    producer_id = meta.producer_id,
                    timeout_ms = meta.timeout_ms,
                    "aborting a transaction that passed its timeout"
                );
                self.fence_and_abort(id, &mut meta, fence.as_ref()).await
            }
            _ => self.finish_txn(id, &mut meta, fence.as_ref()).await,
        };
        if r.is_err() {
            warn!(
                transactional_id = id,
                "cannot end the transaction yet; trying again"
            );
        }
        *held = Some(meta);
    }
}

/// A transaction past its timeout, or decided and not finished.
fn needs_work(m: &TxnMeta) -> bool {
    match m.status {
        Status::Ongoing => now_ms().saturating_sub(m.started_ms) > m.timeout_ms as i64,
        Status::PrepareCommit | Status::PrepareAbort => true,
        _ => false,
    }
}
