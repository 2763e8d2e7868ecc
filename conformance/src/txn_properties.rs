//! Model-based property test of interleaved transactional and plain producers on one
//! partition (the "Transactions" rules): random sequences of plain appends, transactional
//! batches of two producers, commit and abort markers and reopens, checked after every step
//! against a model of what Kafka consumers see.
//!
//! Checks: the high watermark and last stable offset; a read-uncommitted batch fetch holds
//! every data record in offset order; a read-committed batch fetch stops at the last stable
//! offset and, filtered the way a Kafka client filters with the aborted-transactions list,
//! holds exactly the plain and committed records below it.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use broker_api::{
    AppendBatch, BatchLimits, ProducerBatch, Record, Store, TimestampType, TopicConfig, TxnMarker,
};
use bytes::Bytes;
use kafka_batch::BatchHeader;
use proptest::prelude::*;

use crate::harness::{Backend, Subject};

const SLOT: &str = "txn_properties";
const PRODUCERS: usize = 2;

/// One generated operation.
#[derive(Debug, Clone)]
pub enum TxnOp {
    /// A plain (non-transactional) append of this many records.
    Plain(u8),
    /// A transactional batch of this many records by a producer (opens its transaction).
    Send { producer: usize, records: u8 },
    /// A marker ending the producer's open transaction (skipped when none is open).
    End { producer: usize, commit: bool },
    /// Close and open the store again.
    Reopen,
}

fn op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        3 => (1u8..4).prop_map(TxnOp::Plain),
        4 => (0..PRODUCERS, 1u8..4).prop_map(|(producer, records)| TxnOp::Send { producer, records }),
        3 => (0..PRODUCERS, any::<bool>()).prop_map(|(producer, commit)| TxnOp::End { producer, commit }),
        1 => Just(TxnOp::Reopen),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Plain,
    Open(usize),
    Committed,
    Aborted,
}

/// What the partition holds: data records by offset with their state, and markers.
struct Model {
    next: i64,
    /// (offset, value, state) of every data record.
    records: Vec<(i64, String, State)>,
    /// First offset of each producer's open transaction.
    open: [Option<i64>; PRODUCERS],
    /// Next sequence number of each producer.
    sequence: [i32; PRODUCERS],
}

impl Model {
    fn last_stable(&self) -> i64 {
        self.open
            .iter()
            .flatten()
            .copied()
            .min()
            .unwrap_or(self.next)
    }
}

struct Driver {
    subject: Subject,
    model: Model,
    producer_ids: [i64; PRODUCERS],
    counter: u64,
}

fn txn_batch(producer_id: i64, first_sequence: i32, values: &[String]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record::from_value(v.clone()))
        .collect();
    let producer = ProducerBatch {
        producer_id,
        epoch: 0,
        first_sequence,
    };
    crate::checks::util::transactional_batch(producer, &records)
}

impl Driver {
    fn store(&self) -> &Arc<dyn Store> {
        &self.subject.store
    }

    fn values(&mut self, n: u8) -> Vec<String> {
        (0..n)
            .map(|_| {
                self.counter += 1;
                format!("r{}", self.counter)
            })
            .collect()
    }

    async fn step(&mut self, op: &TxnOp) -> Result<(), String> {
        match *op {
            TxnOp::Plain(n) => {
                let values = self.values(n);
                let records = values
                    .iter()
                    .map(|v| Record::from_value(v.clone()))
                    .collect();
                let res = self
                    .store()
                    .append("t", 0, AppendBatch::new(records))
                    .await
                    .map_err(|e| format!("plain append: {e}"))?;
                self.expect_base(res.base_offset)?;
                for v in values {
                    self.push(v, State::Plain);
                }
            }
            TxnOp::Send { producer, records } => {
                let values = self.values(records);
                let seq = self.model.sequence[producer];
                let batch = txn_batch(self.producer_ids[producer], seq, &values);
                let res = self
                    .store()
                    .append_batch("t", 0, batch, TimestampType::CreateTime)
                    .await
                    .map_err(|e| format!("transactional batch of producer {producer}: {e}"))?;
                self.expect_base(res.base_offset)?;
                self.model.sequence[producer] = seq + records as i32;
                self.model.open[producer].get_or_insert(res.base_offset);
                for v in values {
                    self.push(v, State::Open(producer));
                }
            }
            TxnOp::End { producer, commit } => {
                if self.model.open[producer].is_none() {
                    return Ok(());
                }
                let marker = TxnMarker {
                    producer_id: self.producer_ids[producer],
                    producer_epoch: 0,
                    commit,
                    coordinator_epoch: 0,
                };
                let at = self
                    .store()
                    .write_txn_marker("t", 0, marker)
                    .await
                    .map_err(|e| format!("marker of producer {producer}: {e}"))?;
                self.expect_base(at)?;
                self.model.next += 1;
                self.model.open[producer] = None;
                let end = if commit {
                    State::Committed
                } else {
                    State::Aborted
                };
                for r in &mut self.model.records {
                    if r.2 == State::Open(producer) {
                        r.2 = end;
                    }
                }
            }
            TxnOp::Reopen => self
                .subject
                .reopen()
                .await
                .map_err(|e| format!("reopen: {e}"))?,
        }
        self.check().await
    }

    fn expect_base(&self, got: i64) -> Result<(), String> {
        if got != self.model.next {
            return Err(format!(
                "appended at {got}, model expects {}",
                self.model.next
            ));
        }
        Ok(())
    }

    fn push(&mut self, value: String, state: State) {
        self.model.records.push((self.model.next, value, state));
        self.model.next += 1;
    }

    async fn check(&self) -> Result<(), String> {
        let st = self.store();
        let o = st
            .partition_offsets("t", 0)
            .await
            .map_err(|e| format!("partition_offsets: {e}"))?;
        let want = (self.model.next, self.model.last_stable());
        if (o.high_watermark, o.last_stable_offset) != want {
            return Err(format!(
                "(high watermark, last stable offset) = ({}, {}), model expects {want:?}",
                o.high_watermark, o.last_stable_offset
            ));
        }
        let all: Vec<(i64, String)> = self
            .model
            .records
            .iter()
            .map(|(o, v, _)| (*o, v.clone()))
            .collect();
        let got = self.read(false).await?;
        if got != all {
            return Err(format!(
                "read_uncommitted saw {got:?}, model expects {all:?}"
            ));
        }
        let lso = self.model.last_stable();
        let committed: Vec<(i64, String)> = self
            .model
            .records
            .iter()
            .filter(|(o, _, s)| *o < lso && matches!(s, State::Plain | State::Committed))
            .map(|(o, v, _)| (*o, v.clone()))
            .collect();
        let got = self.read(true).await?;
        if got != committed {
            return Err(format!(
                "read_committed saw {got:?}, model expects {committed:?}"
            ));
        }
        Ok(())
    }

    /// Every data record a Kafka consumer of this isolation level sees, fetching batches
    /// from offset 0 as often as needed.
    async fn read(&self, read_committed: bool) -> Result<Vec<(i64, String)>, String> {
        let st = self.store();
        let mut out = Vec::new();
        let mut next = 0i64;
        // Producers whose aborted transaction started at or before the current batch.
        let mut aborting: BTreeSet<i64> = BTreeSet::new();
        let mut pending: VecDeque<(i64, i64)> = VecDeque::new();
        let mut seen_aborted = BTreeSet::new();
        loop {
            let limits = BatchLimits {
                max_bytes: 4096,
                min_one: true,
                read_committed,
            };
            let f = st
                .fetch_batches("t", 0, next, limits)
                .await
                .map_err(|e| format!("fetch_batches at {next}: {e}"))?;
            let end = if read_committed {
                f.last_stable_offset
            } else {
                f.high_watermark
            };
            for a in &f.aborted {
                if seen_aborted.insert((a.first_offset, a.producer_id)) {
                    pending.push_back((a.first_offset, a.producer_id));
                }
            }
            let mut sorted: Vec<_> = pending.drain(..).collect();
            sorted.sort();
            pending.extend(sorted);
            let bytes = f.concat();
            if bytes.is_empty() {
                if next < end {
                    return Err(format!(
                        "fetch_batches at {next} below {end} returned nothing"
                    ));
                }
                return Ok(out);
            }
            let batches = kafka_batch::split_batches(&bytes)
                .map_err(|e| format!("fetched batches do not split: {e}"))?;
            for b in batches {
                let h = BatchHeader::read(&b).ok_or("a fetched batch without a header")?;
                if h.base_offset >= end {
                    return Err(format!(
                        "a batch at {} at or past {end} (read_committed {read_committed})",
                        h.base_offset
                    ));
                }
                while pending
                    .front()
                    .is_some_and(|(first, _)| *first <= h.base_offset)
                {
                    let (_, pid) = pending.pop_front().expect("front checked");
                    aborting.insert(pid);
                }
                next = h.last_offset() + 1;
                if h.is_control() {
                    if kafka_batch::marker_commits(&b) == Some(false) {
                        aborting.remove(&h.producer_id);
                    }
                    continue;
                }
                if read_committed && h.is_transactional() && aborting.contains(&h.producer_id) {
                    continue;
                }
                kafka_batch::decode_records(&b, 0, |r| {
                    let v = r
                        .value
                        .as_ref()
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    out.push((r.offset, v));
                    true
                })
                .map_err(|e| format!("a fetched batch does not decode: {e}"))?;
            }
        }
    }
}

async fn run_case(backend: Arc<dyn Backend>, ops: &[TxnOp]) -> Result<(), String> {
    let subject = Subject::fresh(backend, SLOT)
        .await
        .map_err(|e| format!("opening a fresh store: {e}"))?;
    subject
        .store
        .create_topic("t", TopicConfig::default())
        .await
        .map_err(|e| format!("create_topic: {e}"))?;
    let mut producer_ids = [0i64; PRODUCERS];
    for id in &mut producer_ids {
        *id = subject
            .store
            .init_producer_id()
            .await
            .map_err(|e| format!("init_producer_id: {e}"))?
            .producer_id;
    }
    let mut d = Driver {
        subject,
        model: Model {
            next: 0,
            records: Vec::new(),
            open: [None; PRODUCERS],
            sequence: [0; PRODUCERS],
        },
        producer_ids,
        counter: 0,
    };
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = d.step(op).await {
            let _ = d.subject.store.close().await;
            return Err(format!("op #{i} {op:?}: {e}"));
        }
    }
    d.subject
        .finish()
        .await
        .map_err(|e| format!("close: {e:?}"))
}

/// Runs `cases` random sequences of interleaved transactional and plain appends, markers
/// and reopens against stores of `backend`; panics with the shortest failing sequence
/// found. Call it from a plain `#[test]` (it builds its own tokio runtime).
pub fn check_txn_properties(backend: Arc<dyn Backend>, cases: u32) {
    check_txn_properties_seeded(backend, cases, None)
}

/// [`check_txn_properties`] with the sequences drawn from `seed` when given.
pub fn check_txn_properties_seeded(backend: Arc<dyn Backend>, cases: u32, seed: Option<[u8; 32]>) {
    let strategy = proptest::collection::vec(op(), 1..30);
    crate::properties::run_seeded(
        "transaction property test",
        strategy,
        cases,
        seed,
        60_000,
        |ops| {
            let backend = backend.clone();
            async move { run_case(backend, &ops).await }
        },
    );
}
