//! Waking waiting fetches: one LISTEN connection per store, local wake-ups after our own
//! appends, and a slow periodic re-check of watched partitions as a safety net.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, NoTls};

/// The newest known high watermark of every partition somebody waits on.
#[derive(Default)]
pub(crate) struct Waiters {
    map: Mutex<HashMap<(i64, i32), watch::Sender<i64>>>,
}

impl Waiters {
    /// A receiver that sees every rise of the partition's high watermark from now on.
    pub(crate) fn subscribe(&self, topic_id: i64, partition: i32) -> watch::Receiver<i64> {
        self.map
            .lock()
            .entry((topic_id, partition))
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    /// Records that the partition's high watermark is at least `hw`.
    pub(crate) fn bump(&self, topic_id: i64, partition: i32, hw: i64) {
        if let Some(tx) = self.map.lock().get(&(topic_id, partition)) {
            tx.send_if_modified(|v| {
                if hw > *v {
                    *v = hw;
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Partitions with live waiters (forgets the rest).
    fn watched(&self) -> Vec<(i64, i32)> {
        let mut map = self.map.lock();
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.keys().copied().collect()
    }
}

/// The NOTIFY payload of an append: `topic_id:partition:high_watermark`.
pub(crate) fn payload(topic_id: i64, partition: i32, hw: i64) -> String {
    format!("{topic_id}:{partition}:{hw}")
}

fn parse(payload: &str) -> Option<(i64, i32, i64)> {
    let mut it = payload.split(':');
    let t = it.next()?.parse().ok()?;
    let p = it.next()?.parse().ok()?;
    let hw = it.next()?.parse().ok()?;
    Some((t, p, hw))
}

/// Re-reads the high watermark of every watched partition.
async fn safety_check(pool: &Pool, waiters: &Waiters) {
    let keys = waiters.watched();
    if keys.is_empty() {
        return;
    }
    let (topics, parts): (Vec<i64>, Vec<i32>) = keys.into_iter().unzip();
    let Ok(client) = pool.get().await else {
        return;
    };
    let rows = client
        .query(
            "SELECT p.topic_id, p.partition, p.next_offset FROM partitions p
             JOIN unnest($1::bigint[], $2::int[]) AS w(t, n) ON p.topic_id = w.t AND p.partition = w.n",
            &[&topics, &parts],
        )
        .await;
    match rows {
        Ok(rows) => {
            for r in rows {
                waiters.bump(r.get(0), r.get(1), r.get(2));
            }
        }
        Err(e) => tracing::debug!(error = %e, "safety check failed"),
    }
}

/// Runs forever: keeps a LISTEN connection open (reconnecting with backoff) and wakes waiters
/// on notifications and every `interval`.
pub(crate) async fn listen(
    config: tokio_postgres::Config,
    channel: String,
    pool: Pool,
    waiters: Arc<Waiters>,
    interval: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(msg)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = msg {
                            if tx.send(n.payload().to_string()).is_err() {
                                break;
                            }
                        }
                    }
                });
                let listen_sql = format!("LISTEN \"{channel}\"");
                if let Err(e) = client.batch_execute(&listen_sql).await {
                    tracing::warn!(error = %e, "LISTEN failed");
                } else {
                    backoff = Duration::from_millis(100);
                    // Anything appended while we were not listening.
                    safety_check(&pool, &waiters).await;
                    let mut tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            msg = rx.recv() => match msg {
                                Some(p) => {
                                    if let Some((t, n, hw)) = parse(&p) {
                                        waiters.bump(t, n, hw);
                                    }
                                }
                                None => break,
                            },
                            _ = tick.tick() => safety_check(&pool, &waiters).await,
                        }
                    }
                    tracing::warn!("LISTEN connection lost; reconnecting");
                }
                driver.abort();
            }
            Err(e) => tracing::debug!(error = %e, "LISTEN connect failed"),
        }
        // While disconnected, keep the safety net running.
        safety_check(&pool, &waiters).await;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
