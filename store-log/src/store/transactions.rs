//! The transaction calls of the log store (rules **markers_end_transactions** and
//! **producer_states_are_described**): markers go through a partition's write path like any
//! batch, so the topic's durability applies to them.

use broker_api::{ProducerInfo, TxnMarker};

use super::*;

impl Inner {
    /// [`Store::write_txn_marker`] on the log store: returns the marker's offset once the
    /// topic's durability policy is met (synced under `always`).
    pub(super) async fn write_txn_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: TxnMarker,
    ) -> StoreResult<i64> {
        let t = self.topic(topic)?;
        let p = t.partition(topic, partition)?.clone();
        let (durability, lay) = {
            let cfg = t.config.read();
            (cfg.durability, layout(&self.opts, &cfg))
        };
        let now = self.clock.now_ms();
        // Under `always`, readers see the marker only once it is synced.
        let offset = p.write_marker(&marker, now, lay, durability != Durability::Always)?;
        if durability == Durability::Always {
            p.sync_to(offset + 1).await?;
        }
        Ok(offset)
    }

    /// [`Store::producer_states`] on the log store.
    pub(super) fn producer_states(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Vec<ProducerInfo>> {
        let t = self.topic(topic)?;
        Ok(t.partition(topic, partition)?.producer_states())
    }
}
