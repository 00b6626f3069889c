//! Natural batching of concurrent store calls, as in group commit.
//!
//! Requests with the same key queue while one batch of that key is with the
//! store; when it returns, everything queued becomes the next batch. There is
//! no timer: a quiet key sends each request alone at once (after letting tasks
//! already runnable join it, see `Drain::gather`), and a busy one sends larger
//! batches exactly when the store is the bottleneck. The hold combiner
//! (one queue per event) and the checkout steps that follow a hold (opening the
//! booking, settling a paid one) run on this.
//!
//! Batches run on a spawned task, so a caller that gives up (drops its future)
//! never strands the others: while queued it leaves the queue before the next
//! batch forms; while its batch is with the store, the operation's
//! [`BatchOp::abandoned`] hook gets its result (the hold combiner gives the
//! units back there).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::{Error, Result};

/// A store operation that can run for many requests in one call.
#[async_trait]
pub(crate) trait BatchOp: Send + Sync + 'static {
    /// Requests of one key form batches together.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;
    /// One caller's request.
    type Request: Send + Sync + 'static;
    /// One caller's answer.
    type Item: Send + 'static;

    /// The queue `request` joins.
    fn key(&self, request: &Self::Request) -> Self::Key;
    /// Runs one request alone (used when no runtime is there to batch on).
    async fn one(&self, request: &Self::Request) -> Result<Self::Item>;
    /// Runs a batch: one answer per request, in order.
    async fn batch(&self, requests: &[Self::Request]) -> Vec<Result<Self::Item>>;
    /// Told the answer of a caller that left while its batch ran.
    async fn abandoned(&self, _request: &Self::Request, _answer: Self::Item) {}
}

struct Waiter<O: BatchOp> {
    request: O::Request,
    reply: oneshot::Sender<Result<O::Item>>,
}

struct Queue<O: BatchOp> {
    waiting: VecDeque<Waiter<O>>,
    /// A batch of this key is with the store (a drain task runs).
    running: bool,
}

impl<O: BatchOp> Default for Queue<O> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            running: false,
        }
    }
}

type Queues<O> = Arc<Mutex<HashMap<<O as BatchOp>::Key, Queue<O>>>>;

/// Per-key queues in front of one [`BatchOp`].
pub(crate) struct Combiner<O: BatchOp> {
    op: Arc<O>,
    queues: Queues<O>,
    max_batch: usize,
}

impl<O: BatchOp> std::fmt::Debug for Combiner<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl<O: BatchOp> Combiner<O> {
    /// A combiner sending at most `max_batch` requests per call.
    pub(crate) fn new(op: O, max_batch: usize) -> Self {
        Self {
            op: Arc::new(op),
            queues: Arc::new(Mutex::new(HashMap::new())),
            max_batch: max_batch.max(1),
        }
    }

    /// Whether no key has a queue (every batch answered, nobody waiting).
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.queues.lock().is_empty()
    }

    /// Runs `request` as part of its key's next batch.
    pub(crate) async fn run(&self, request: O::Request) -> Result<O::Item> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.op.one(&request).await;
        };
        let (reply, answer) = oneshot::channel();
        let key = self.op.key(&request);
        let start = {
            let mut queues = self.queues.lock();
            let queue = queues.entry(key.clone()).or_default();
            queue.waiting.push_back(Waiter { request, reply });
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            let drain = Drain {
                op: Arc::clone(&self.op),
                queues: Arc::clone(&self.queues),
                key,
                max_batch: self.max_batch,
            };
            runtime.spawn(drain.run());
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::Unavailable {
                retry_after: None,
                source: "the batch failed before answering".into(),
            })
        })
    }
}

/// At most this many yields before a drain's first batch (see `Drain::gather`).
const GATHER_YIELDS: usize = 8;

/// The task that sends a key's batches while requests keep coming.
struct Drain<O: BatchOp> {
    op: Arc<O>,
    queues: Queues<O>,
    key: O::Key,
    max_batch: usize,
}

impl<O: BatchOp> Drain<O> {
    /// How many requests wait in this key's queue.
    fn waiting(&self) -> usize {
        self.queues
            .lock()
            .get(&self.key)
            .map_or(0, |q| q.waiting.len())
    }

    /// Lets requests that are already on their way join the first batch.
    ///
    /// A drain starts when a request finds its key idle, and requests often
    /// come in a burst: the answers of one batch of the step before wake its
    /// callers together, and each comes here within microseconds. Spawned
    /// from the first of them, the drain would run before the others (tokio
    /// runs a task's spawn next on its worker) and send the first request
    /// alone, the rest after it: a batch more on the store's path, and the
    /// burst kept together step after step. So the drain first yields to
    /// the tasks already runnable, as long as each yield brings more
    /// requests (a few at most). No timer: when nothing else is runnable, a
    /// quiet key's request goes after one yield.
    async fn gather(&self) {
        let mut seen = self.waiting();
        for _ in 0..GATHER_YIELDS {
            tokio::task::yield_now().await;
            let now = self.waiting();
            if now == seen {
                return;
            }
            seen = now;
        }
    }

    /// The next batch, or `None` (and the queue gone) when nobody waits.
    fn next_batch(&self) -> Option<Vec<Waiter<O>>> {
        let mut queues = self.queues.lock();
        let queue = queues.get_mut(&self.key)?;
        // Callers that gave up while queued leave now.
        queue.waiting.retain(|w| !w.reply.is_closed());
        if queue.waiting.is_empty() {
            queues.remove(&self.key);
            return None;
        }
        let n = queue.waiting.len().min(self.max_batch);
        Some(queue.waiting.drain(..n).collect())
    }

    async fn run(self) {
        // If the operation panics, the guard ends the queue: its waiters are
        // told the batch failed, and the next request starts a fresh drain.
        let guard = QueueGuard::<O> {
            queues: Arc::clone(&self.queues),
            key: Some(self.key.clone()),
        };
        self.gather().await;
        while let Some(batch) = self.next_batch() {
            let (requests, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|w| (w.request, w.reply)).unzip();
            let mut results = self.op.batch(&requests).await.into_iter();
            for (request, reply) in requests.iter().zip(replies) {
                let result = results
                    .next()
                    .unwrap_or_else(|| Err(crate::missing_answer()));
                if let Err(Ok(item)) = reply.send(result) {
                    self.op.abandoned(request, item).await;
                }
            }
        }
        let mut guard = guard;
        guard.key = None;
    }
}

struct QueueGuard<O: BatchOp> {
    queues: Queues<O>,
    key: Option<O::Key>,
}

impl<O: BatchOp> Drop for QueueGuard<O> {
    fn drop(&mut self) {
        // Only set when the drain unwinds: drop the queue and its waiters.
        if let Some(key) = self.key.take() {
            self.queues.lock().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Answers each request with itself and notes each batch's size.
    #[derive(Default)]
    struct Sizes(Mutex<Vec<usize>>);

    #[async_trait]
    impl BatchOp for Sizes {
        type Key = u8;
        type Request = u32;
        type Item = u32;

        fn key(&self, _: &u32) -> u8 {
            0
        }
        async fn one(&self, request: &u32) -> Result<u32> {
            Ok(*request)
        }
        async fn batch(&self, requests: &[u32]) -> Vec<Result<u32>> {
            self.0.lock().push(requests.len());
            requests.iter().map(|r| Ok(*r)).collect()
        }
    }

    /// Callers woken at once (as a batch's answers wake the next step's
    /// callers) go in one batch, not the first alone and the rest after it.
    #[test]
    fn callers_woken_together_share_the_first_batch() {
        const CALLERS: u32 = 16;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("a runtime");
        let op = Sizes::default();
        let combiner = Arc::new(Combiner::new(op, 256));
        runtime.block_on(async {
            let (go, gate) = tokio::sync::watch::channel(false);
            let ready = Arc::new(AtomicUsize::new(0));
            let callers: Vec<_> = (0..CALLERS)
                .map(|i| {
                    let (combiner, ready, mut gate) =
                        (Arc::clone(&combiner), Arc::clone(&ready), gate.clone());
                    tokio::spawn(async move {
                        ready.fetch_add(1, Ordering::SeqCst);
                        gate.wait_for(|open| *open).await.expect("the gate opens");
                        combiner.run(i).await
                    })
                })
                .collect();
            while ready.load(Ordering::SeqCst) < CALLERS as usize {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            // Opened from the runtime's one worker, as a batch's answers
            // are sent: every caller is woken before any of them runs.
            tokio::spawn(async move { go.send(true).expect("callers wait") })
                .await
                .expect("no panic");
            for (i, caller) in callers.into_iter().enumerate() {
                assert_eq!(caller.await.expect("no panic").expect("answered"), i as u32);
            }
        });
        assert_eq!(*combiner.op.0.lock(), vec![CALLERS as usize]);
        assert!(combiner.is_idle());
    }
}
