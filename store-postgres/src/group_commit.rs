//! Group commit: appends (without producer id), acks and offset commits that arrive while
//! others are being committed share one transaction, so one WAL flush covers them all (as
//! the log store's group commit shares one fsync). Every call still returns only after the
//! transaction holding its change committed synchronously: the same promise as a transaction
//! of its own.
//!
//! A caller queues its job and then either waits for its answer or, when fewer than
//! [`GROUPS_IN_FLIGHT`] groups are running, becomes the leader of the next group: it takes
//! every queued job (its own included) and runs them in one transaction on one connection,
//! with every statement pipelined (`BEGIN`, one statement for all the appends, the acks, the
//! commits, `COMMIT`: one round trip). The group runs in a task of its own, so a caller that
//! goes away cannot cut a group short. Appends to the same partition in one group get
//! consecutive offsets in queue order.
//!
//! The statements never fail for a bad request (an unknown partition or an oversized record
//! is reported per job); when a group fails anyway for a reason other than the database being
//! unavailable, every job of it is told to run alone, on its own transaction as before, so one
//! job can never fail another.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use broker_api::{AppendResult, StoreError, StoreResult};
use deadpool_postgres::{Object, Pool};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::append::BatchRow;
use crate::error::db_err;
use crate::notify::Waiters;

/// Groups that may run at the same time (each on its own connection). Small calls wait for
/// the running group and go together into the next one (a second group would mostly wait for
/// the first's partition locks and make both smaller: 16 single-record appenders to one
/// partition committed 6.4k/s with two groups in flight, 10k/s with one); a second group
/// starts only when at least [`SECOND_GROUP_BYTES`] of batch data wait, so large appends
/// overlap their transfer with the running group's commit.
pub(crate) const GROUPS_IN_FLIGHT: usize = 2;
/// Queued batch data from which a second group may start.
const SECOND_GROUP_BYTES: usize = 1 << 20;
/// Bytes of batch data one group takes at most (a job larger than this runs in a group alone).
const MAX_GROUP_BYTES: usize = 16 << 20;
/// Jobs one group takes at most.
const MAX_GROUP_JOBS: usize = 1024;

/// All the appends of a group: the batch rows placed one after another per partition (a
/// window over the queue order), the watermarks moved once per partition, one NOTIFY per
/// partition. Locks the partitions in (topic id, partition) order. One row per job: its
/// index, the partition's topic id (NULL: unknown partition), the topic's record size limit,
/// the assigned base offset (NULL: refused), the log start, the number of NOTIFYs, and
/// whether the topic is compacted while the batch has a record without a key (refused).
const GROUP_APPEND: &str = r#"WITH req AS (
        SELECT * FROM unnest($1::int[], $2::text[], $3::int[], $4::bigint[], $5::bigint[],
                             $6::bigint[], $7::bytea[], $8::bigint[], $13::boolean[])
            AS r(i, topic, part, cnt, max_ts, largest, data, now, keyed)),
    locked AS (
        SELECT t.id AS topic_id, t.name, t.max_record_bytes, p.partition, p.next_offset,
               p.max_ts AS pmax, p.log_start,
               coalesce((t.config->'cleanup'->>'compact')::boolean, false) AS compact
        FROM topics t JOIN partitions p ON p.topic_id = t.id
        WHERE (t.name, p.partition) IN (SELECT topic, part FROM req)
        ORDER BY t.id, p.partition
        FOR UPDATE OF p),
    ok AS (
        SELECT r.*, l.topic_id, l.next_offset, l.pmax
        FROM req r JOIN locked l ON l.name = r.topic AND l.partition = r.part
        WHERE r.largest <= l.max_record_bytes AND (r.keyed OR NOT l.compact)),
    placed AS (
        SELECT ok.*,
            ok.next_offset + (sum(ok.cnt) OVER w)::bigint - ok.cnt AS base,
            greatest(coalesce(ok.pmax, ok.max_ts), max(ok.max_ts) OVER w) AS ts_high
        FROM ok WINDOW w AS (PARTITION BY ok.topic_id, ok.part ORDER BY ok.i)),
    ins AS (
        INSERT INTO batches (topic_id, partition, base_offset, last_offset, max_ts, ts_high,
            bytes, append_time_ms, data)
        SELECT topic_id, part, base, base + cnt - 1, max_ts, ts_high, octet_length(data), now,
            overlay(data placing int8send(base) from 1 for 8)
        FROM placed),
    per AS (
        SELECT topic_id, part, max(base + cnt) AS hw,
            sum(octet_length(data))::bigint AS bytes, max(ts_high) AS ts_high
        FROM placed GROUP BY topic_id, part),
    upd AS (
        UPDATE partitions p SET next_offset = per.hw, bytes = p.bytes + per.bytes,
            max_ts = per.ts_high
        FROM per WHERE p.topic_id = per.topic_id AND p.partition = per.part),
    dl AS (
        INSERT INTO delays (topic_id, partition, "offset", not_before_ms)
        SELECT pl.topic_id, pl.part, pl.base + d.delta, d.nb
        FROM unnest($10::int[], $11::bigint[], $12::bigint[]) AS d(i, delta, nb)
        JOIN placed pl ON pl.i = d.i),
    n AS (
        SELECT pg_notify($9, per.topic_id || ':' || per.part || ':' || per.hw) FROM per)
    SELECT r.i, l.topic_id, l.max_record_bytes, pl.base, l.log_start,
        (SELECT count(*) FROM n) AS notified, coalesce(l.compact AND NOT r.keyed, false)
    FROM req r
    LEFT JOIN locked l ON l.name = r.topic AND l.partition = r.part
    LEFT JOIN placed pl ON pl.i = r.i"#;

/// What a job hears back: its result, or that it must run alone (with what it handed in).
pub(crate) enum Outcome<T, J = ()> {
    Done(StoreResult<T>),
    Alone(J),
}

/// An append of a batch row without producer id.
pub(crate) struct AppendJob {
    pub topic: String,
    pub partition: i32,
    pub row: BatchRow,
    pub largest: i64,
    pub now: i64,
}

/// One statement with its parameters, run in the group's transaction.
pub(crate) struct StatementJob {
    pub sql: &'static str,
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

/// Where an append's answer goes.
type AppendReply = oneshot::Sender<Outcome<AppendResult, AppendJob>>;
/// Where the rows of a job's statements go (one list per statement).
type QueryReply = oneshot::Sender<Outcome<Vec<Vec<Row>>>>;

enum Job {
    Append(AppendJob, AppendReply),
    /// Statements whose rows go back to the caller.
    Query(Vec<StatementJob>, QueryReply),
}

impl Job {
    fn bytes(&self) -> usize {
        match self {
            Job::Append(a, _) => a.row.data.len(),
            Job::Query(..) => 256,
        }
    }
}

/// What a group needs, shared with the task that runs it.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub pool: Pool,
    pub channel: String,
    pub waiters: Arc<Waiters>,
}

/// The queue of jobs and the groups running.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Job>>,
    /// Batch data in the queue.
    queued_bytes: AtomicUsize,
    running: AtomicUsize,
    done: Notify,
    /// Groups run and jobs in them, for `/metrics`.
    pub(crate) groups: std::sync::atomic::AtomicU64,
    pub(crate) jobs: std::sync::atomic::AtomicU64,
}

impl GroupCommit {
    /// Appends `job` in a group; see the module doc.
    pub(crate) async fn append(
        &self,
        ctx: &Ctx,
        job: AppendJob,
    ) -> Outcome<AppendResult, AppendJob> {
        let (tx, rx) = oneshot::channel();
        self.submit(ctx, Job::Append(job, tx), rx).await
    }

    /// Runs `statements` in a group; the rows of each come back in order.
    pub(crate) async fn query(
        &self,
        ctx: &Ctx,
        statements: Vec<StatementJob>,
    ) -> Outcome<Vec<Vec<Row>>> {
        let (tx, rx) = oneshot::channel();
        self.submit(ctx, Job::Query(statements, tx), rx).await
    }

    async fn submit<T, J>(
        &self,
        ctx: &Ctx,
        job: Job,
        mut rx: oneshot::Receiver<Outcome<T, J>>,
    ) -> Outcome<T, J> {
        self.queued_bytes.fetch_add(job.bytes(), Ordering::AcqRel);
        self.queue.lock().push(job);
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            match rx.try_recv() {
                Ok(out) => return out,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Outcome::Done(Err(StoreError::Internal(
                        "a commit group ended without an answer".into(),
                    )))
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if let Some(lead) = self.try_lead() {
                let jobs = self.take();
                if jobs.is_empty() {
                    // Our job is in a group that is running: wait for its answer. Wake the
                    // others only if a job came in meanwhile (its caller may have found every
                    // slot taken, this one included); waking them for nothing would have them
                    // wake each other in turn until the group ends.
                    lead.release(!self.queue.lock().is_empty());
                } else {
                    self.groups.fetch_add(1, Ordering::Relaxed);
                    self.jobs.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                    // A task of its own: the group finishes (and answers every job) even if
                    // this caller goes away; the slot is given back when the group ends or
                    // when this caller goes away, whichever comes first (`Lead`'s drop).
                    let task = tokio::spawn(run(ctx.clone(), jobs));
                    let _ = task.await;
                    lead.release(true);
                    continue;
                }
            }
            tokio::select! {
                out = &mut rx => {
                    return out.unwrap_or_else(|_| Outcome::Done(Err(StoreError::Internal(
                        "a commit group ended without an answer".into(),
                    ))));
                }
                _ = done => {}
            }
        }
    }

    /// One of the [`GROUPS_IN_FLIGHT`] slots, if one is free.
    fn try_lead(&self) -> Option<Lead<'_>> {
        let limit = if self.queued_bytes.load(Ordering::Acquire) >= SECOND_GROUP_BYTES {
            GROUPS_IN_FLIGHT
        } else {
            1
        };
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Lead {
                owner: self,
                wake: true,
            })
    }

    /// The queued jobs a group takes, oldest first, within the group limits.
    fn take(&self) -> Vec<Job> {
        let mut q = self.queue.lock();
        let mut bytes = 0usize;
        let mut n = 0usize;
        for j in q.iter() {
            if n > 0 && (n >= MAX_GROUP_JOBS || bytes + j.bytes() > MAX_GROUP_BYTES) {
                break;
            }
            bytes += j.bytes();
            n += 1;
        }
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        q.drain(..n).collect()
    }
}

/// A group slot; given back when dropped (also when the leading caller goes away while its
/// group runs, so a slot is never lost), waking the waiting callers unless told otherwise.
struct Lead<'a> {
    owner: &'a GroupCommit,
    wake: bool,
}

impl Lead<'_> {
    /// Gives the slot back now; `wake`: wake the callers waiting for one.
    fn release(mut self, wake: bool) {
        self.wake = wake;
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.owner.running.fetch_sub(1, Ordering::AcqRel);
        if self.wake {
            self.owner.done.notify_waiters();
        }
    }
}

/// Runs one group and answers each of its jobs.
async fn run(ctx: Ctx, jobs: Vec<Job>) {
    let mut appends = Vec::new();
    let mut queries = Vec::new();
    for j in jobs {
        match j {
            Job::Append(a, tx) => appends.push((a, tx)),
            Job::Query(s, tx) => queries.push((s, tx)),
        }
    }
    let obj = match ctx.pool.get().await {
        Ok(o) => o,
        Err(e) => {
            let err = StoreError::Unavailable(format!("no database connection: {e}"));
            for (_, tx) in appends {
                let _ = tx.send(Outcome::Done(Err(err.clone())));
            }
            for (_, tx) in queries {
                let _ = tx.send(Outcome::Done(Err(err.clone())));
            }
            return;
        }
    };
    match execute(&obj, &ctx, &appends, &queries).await {
        Ok((rows, results)) => {
            answer_appends(&ctx, appends, rows);
            for ((_, tx), r) in queries.into_iter().zip(results) {
                let _ = tx.send(Outcome::Done(Ok(r)));
            }
        }
        Err(e) => {
            // Not back to the pool: the transaction's state is unknown.
            drop(Object::take(obj));
            let err = db_err(e);
            let unavailable = err.is_retriable();
            for (job, tx) in appends {
                let _ = tx.send(if unavailable {
                    Outcome::Done(Err(err.clone()))
                } else {
                    Outcome::Alone(job)
                });
            }
            for (_, tx) in queries {
                let _ = tx.send(if unavailable {
                    Outcome::Done(Err(err.clone()))
                } else {
                    Outcome::Alone(())
                });
            }
        }
    }
}

type Executed = (Vec<Row>, Vec<Vec<Vec<Row>>>);

/// Sends the whole group in one round trip: BEGIN, the appends, every statement, COMMIT.
async fn execute(
    obj: &Object,
    ctx: &Ctx,
    appends: &[(AppendJob, AppendReply)],
    queries: &[(Vec<StatementJob>, QueryReply)],
) -> Result<Executed, tokio_postgres::Error> {
    let append_stmt = if appends.is_empty() {
        None
    } else {
        Some(obj.prepare_cached(GROUP_APPEND).await?)
    };
    let mut prepared = Vec::new();
    for (stmts, _) in queries {
        for s in stmts {
            prepared.push(obj.prepare_cached(s.sql).await?);
        }
    }
    let idx: Vec<i32> = (0..appends.len() as i32).collect();
    let topics: Vec<&str> = appends.iter().map(|(a, _)| a.topic.as_str()).collect();
    let parts: Vec<i32> = appends.iter().map(|(a, _)| a.partition).collect();
    let counts: Vec<i64> = appends.iter().map(|(a, _)| a.row.count).collect();
    let max_ts: Vec<i64> = appends.iter().map(|(a, _)| a.row.max_ts).collect();
    let largest: Vec<i64> = appends.iter().map(|(a, _)| a.largest).collect();
    let data: Vec<&[u8]> = appends.iter().map(|(a, _)| a.row.data.as_slice()).collect();
    let nows: Vec<i64> = appends.iter().map(|(a, _)| a.now).collect();
    let mut d_idx = Vec::new();
    let mut d_delta = Vec::new();
    let mut d_nb = Vec::new();
    for (i, (a, _)) in appends.iter().enumerate() {
        for &(delta, nb) in &a.row.delays {
            d_idx.push(i as i32);
            d_delta.push(delta);
            d_nb.push(nb);
        }
    }
    let keyed: Vec<bool> = appends.iter().map(|(a, _)| a.row.all_keyed).collect();
    let append_params: [&(dyn ToSql + Sync); 13] = [
        &idx,
        &topics,
        &parts,
        &counts,
        &max_ts,
        &largest,
        &data,
        &nows,
        &ctx.channel,
        &d_idx,
        &d_delta,
        &d_nb,
        &keyed,
    ];
    let appended = async {
        match &append_stmt {
            Some(s) => obj.query(s, &append_params).await,
            None => Ok(Vec::new()),
        }
    };
    let mut calls = Vec::new();
    let mut at = 0;
    for (stmts, _) in queries {
        for s in stmts {
            let params: Vec<&(dyn ToSql + Sync)> = s
                .params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            calls.push((at, params));
            at += 1;
        }
    }
    let statements = futures::future::try_join_all(
        calls
            .iter()
            .map(|(i, params)| obj.query(&prepared[*i], params.as_slice())),
    );
    let (_, rows, results, _) = tokio::try_join!(
        obj.batch_execute("BEGIN"),
        appended,
        statements,
        obj.batch_execute("COMMIT"),
    )?;
    // Back to one list per job.
    let mut results = results.into_iter();
    let per_job = queries
        .iter()
        .map(|(stmts, _)| results.by_ref().take(stmts.len()).collect())
        .collect();
    Ok((rows, per_job))
}

/// Answers each append from its row of [`GROUP_APPEND`] and wakes the partitions' waiters.
fn answer_appends(ctx: &Ctx, appends: Vec<(AppendJob, AppendReply)>, rows: Vec<Row>) {
    let mut by_index: Vec<Option<Row>> = (0..appends.len()).map(|_| None).collect();
    for r in rows {
        let i: i32 = r.get(0);
        if let Some(slot) = by_index.get_mut(i as usize) {
            *slot = Some(r);
        }
    }
    for ((job, tx), row) in appends.into_iter().zip(by_index) {
        let out = match row {
            None => Err(StoreError::Internal(
                "a group append came back without its row".into(),
            )),
            Some(r) => match (r.get::<_, Option<i64>>(1), r.get::<_, Option<i64>>(3)) {
                (None, _) => Err(crate::unknown_partition(&job.topic, job.partition)),
                (Some(_), None) if r.get::<_, bool>(6) => {
                    Err(kafka_batch::missing_key(&job.topic, job.partition).into())
                }
                (Some(_), None) => Err(StoreError::RecordTooLarge {
                    size: job.largest as usize,
                    limit: r.get::<_, Option<i64>>(2).unwrap_or(0).max(0) as usize,
                }),
                (Some(topic_id), Some(base)) => {
                    let hw = base + job.row.count;
                    ctx.waiters.bump(topic_id, job.partition, hw);
                    Ok(AppendResult {
                        base_offset: base,
                        last_offset: hw - 1,
                        append_time_ms: job.now,
                        log_start_offset: r.get(4),
                        duplicate: false,
                    })
                }
            },
        };
        let _ = tx.send(Outcome::Done(out));
    }
}
