//! Produce of transactional batches: accepted only for a partition the producer added to
//! its open transaction (KIP-890's server-side check), so a late or stray batch cannot
//! reopen a transaction that ended.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::{slot, Status, TxnMeta};
use crate::kafka::KafkaServer;

impl KafkaServer {
    /// The error code for transactional batches of `id` on (topic, partition), if refused.
    pub(crate) async fn verify_txn_produce(
        &self,
        id: &str,
        topic: &str,
        partition: i32,
        batches: &[Bytes],
    ) -> Option<i16> {
        let h = batches
            .iter()
            .find_map(|b| kafka_batch::BatchHeader::read(b).filter(|h| h.is_transactional()))?;
        let meta = match self.txns.existing(id) {
            Some(entry) => {
                let mut held = entry.lock().await;
                self.txns.settle(id, &mut held);
                held.clone()
            }
            None => match self.store.group_snapshot(&slot(id)).await {
                Ok(b) => b.as_deref().and_then(TxnMeta::decode),
                Err(_) => return Some(ResponseError::NotEnoughReplicas.code()),
            },
        };
        let Some(m) = meta else {
            return Some(ResponseError::InvalidProducerIdMapping.code());
        };
        if m.producer_id != h.producer_id {
            return Some(ResponseError::InvalidProducerIdMapping.code());
        }
        if h.producer_epoch < m.epoch {
            return Some(ResponseError::InvalidProducerEpoch.code());
        }
        let added = m.status == Status::Ongoing
            && m.partitions.contains(&(topic.to_string(), partition))
            && h.producer_epoch == m.epoch;
        (!added).then_some(ResponseError::InvalidTxnState.code())
    }
}
