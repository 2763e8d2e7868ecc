//! Shared store calls: SQS requests for the same queue that arrive while a store call for it
//! is running wait and then go together into the next call (sends into one append, receives
//! into one lease), as a group commit does. Deletes are not shared here: the PostgreSQL
//! store's group commit already merges concurrent acks, and one ack call in flight per queue
//! takes away the overlap of acks with leases (broker-bench gave no gain from it on either
//! store; docs/benchmarks.md). A request that finds the
//! queue idle is not delayed. The calls run in a task of their own, so a client that goes away
//! cannot leave the others waiting.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::error::{SqsError, SqsResult};

/// One shared call: the requests in arrival order in, one response per request out.
pub(crate) type Run<Req, Resp> =
    Arc<dyn Fn(Vec<Req>) -> Pin<Box<dyn Future<Output = Vec<Resp>> + Send>> + Send + Sync>;

struct Queued<Req, Resp> {
    req: Req,
    weight: usize,
    reply: oneshot::Sender<Resp>,
}

/// The requests of one key waiting for the next call; `running` while a task serves the key.
struct Slot<Req, Resp> {
    running: bool,
    queued: Vec<Queued<Req, Resp>>,
}

type Slots<K, Req, Resp> = Arc<Mutex<HashMap<K, Slot<Req, Resp>>>>;

/// Combines concurrent requests per key into shared calls of at most `max_weight` (a call
/// always takes at least one request).
pub(crate) struct Combiner<K, Req, Resp> {
    slots: Slots<K, Req, Resp>,
    max_weight: usize,
}

impl<K, Req, Resp> Combiner<K, Req, Resp>
where
    K: Hash + Eq + Clone + Send + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    pub(crate) fn new(max_weight: usize) -> Self {
        Combiner {
            slots: Arc::new(Mutex::new(HashMap::new())),
            max_weight,
        }
    }

    /// Runs `req` (of `weight`) through a call of `run`, shared with the requests for `key`
    /// queued while an earlier call ran. `run` must answer every request, in order; the
    /// function of the request that found the key idle serves the requests queued meanwhile.
    pub(crate) async fn call(
        &self,
        key: K,
        req: Req,
        weight: usize,
        run: Run<Req, Resp>,
    ) -> SqsResult<Resp> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut slots = self.slots.lock();
            let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
                running: false,
                queued: Vec::new(),
            });
            slot.queued.push(Queued {
                req,
                weight,
                reply: tx,
            });
            !std::mem::replace(&mut slot.running, true)
        };
        if start {
            let serve = Serve {
                slots: self.slots.clone(),
                key,
                max_weight: self.max_weight,
                done: false,
            };
            tokio::spawn(serve.drain(run));
        }
        rx.await
            .map_err(|_| SqsError::Internal("a shared store call ended without an answer".into()))
    }
}

/// The task serving one key until no request for it waits.
struct Serve<K: Hash + Eq, Req, Resp> {
    slots: Slots<K, Req, Resp>,
    key: K,
    max_weight: usize,
    /// Set when the key was freed because no request waited.
    done: bool,
}

impl<K: Hash + Eq, Req, Resp> Serve<K, Req, Resp> {
    /// The next call's requests (at most `max_weight`, at least one), or None when none wait.
    fn take(&mut self) -> Option<Vec<Queued<Req, Resp>>> {
        let mut slots = self.slots.lock();
        let slot = slots.get_mut(&self.key)?;
        if slot.queued.is_empty() {
            slots.remove(&self.key);
            self.done = true;
            return None;
        }
        let mut weight = 0;
        let mut n = 0;
        for q in &slot.queued {
            if n > 0 && weight + q.weight > self.max_weight {
                break;
            }
            weight += q.weight;
            n += 1;
        }
        Some(slot.queued.drain(..n).collect())
    }

    async fn drain(mut self, run: Run<Req, Resp>) {
        while let Some(batch) = self.take() {
            let (reqs, replies): (Vec<Req>, Vec<oneshot::Sender<Resp>>) =
                batch.into_iter().map(|q| (q.req, q.reply)).unzip();
            let resps = run(reqs).await;
            debug_assert_eq!(resps.len(), replies.len(), "one response per request");
            for (reply, resp) in replies.into_iter().zip(resps) {
                let _ = reply.send(resp);
            }
        }
    }
}

impl<K: Hash + Eq, Req, Resp> Drop for Serve<K, Req, Resp> {
    /// When `run` panicked: the key is free again and its waiters are answered (with an
    /// error: their reply channels are dropped).
    fn drop(&mut self) {
        if !self.done {
            self.slots.lock().remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn summing(calls: Arc<AtomicUsize>) -> Run<u32, (u32, usize)> {
        Arc::new(move |reqs: Vec<u32>| {
            let calls = calls.clone();
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let n = reqs.len();
                reqs.into_iter().map(|r| (r, n)).collect()
            })
        })
    }

    #[tokio::test]
    async fn requests_during_a_call_share_the_next_one() {
        let c = Arc::new(Combiner::<&str, u32, (u32, usize)>::new(100));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..10u32 {
            let (c, run) = (c.clone(), summing(calls.clone()));
            tasks.push(tokio::spawn(async move { c.call("q", i, 1, run).await }));
            if i == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap().unwrap());
        }
        // Each request got its own answer; the first ran alone, the other 9 together.
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(got[0].1, 1);
        assert!(got[1..].iter().all(|g| g.1 == 9), "{got:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(c.slots.lock().is_empty(), "the key is freed when idle");
    }

    #[tokio::test]
    async fn a_call_takes_at_most_max_weight() {
        let c = Arc::new(Combiner::<&str, u32, (u32, usize)>::new(4));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..9u32 {
            let (c, run) = (c.clone(), summing(calls.clone()));
            // Weight 3 each after the first: at most one per call (a call takes at least one).
            let w = if i == 0 { 1 } else { 3 };
            tasks.push(tokio::spawn(async move { c.call("q", i, w, run).await }));
            if i == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().1, 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 9);
    }

    #[tokio::test]
    async fn a_panicking_call_answers_with_an_error_and_frees_the_key() {
        let c = Combiner::<&str, u32, u32>::new(10);
        let boom: Run<u32, u32> = Arc::new(|_| Box::pin(async { panic!("store call panicked") }));
        let err = c.call("q", 1, 1, boom).await.unwrap_err();
        assert!(matches!(err, SqsError::Internal(_)), "{err:?}");
        let ok: Run<u32, u32> = Arc::new(|r| Box::pin(async move { r }));
        assert_eq!(c.call("q", 7, 1, ok).await.unwrap(), 7);
    }
}
