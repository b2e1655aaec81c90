//! One agent's batches committed in the agent's queue order.
//!
//! An agent with several batches in flight sends each on its own connection, so the requests
//! arrive in any order; the fleet's sequence rules ("failed logins, *then* lateral
//! connections") follow the order in which records are committed. Each batch names the queue
//! sequence number of its last record and that of the batch sent before it
//! ([`rampart_ship::protocol::BATCH_AFTER_HEADER`]); [`Sequencer::wait_turn`] holds a batch
//! until the batch before it is committed.
//!
//! The wait is bounded: a batch whose predecessor does not come (the agent failed to send it
//! and retries later, or it went to another server) is committed after
//! [`Sequencer::new`]'s `max_wait` and counted as out of order. A server that has not committed
//! anything of an agent yet (it just started) waits a shorter `first_wait`, since the batch
//! before may have been committed by the previous server process, then starts the order at the
//! lowest batch waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// Where a batch sits in its agent's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlace {
    /// Queue sequence number of the batch's last record.
    pub last: u64,
    /// `last` of the batch the agent sent before this one; `None` for its first batch.
    pub after: Option<u64>,
}

/// How a batch got its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Its predecessor was committed (or it has none).
    InOrder,
    /// Its predecessor did not come within the bounded wait.
    OutOfOrder,
}

/// One agent's commits.
#[derive(Debug, Default)]
struct AgentState {
    /// The highest `last` committed; `None`: nothing seen since the server started.
    committed: Option<u64>,
    /// While `committed` is `None`: the lowest `after` of the batches waiting.
    lowest_waiting: Option<u64>,
}

/// Orders each agent's batches (see the module documentation).
#[derive(Debug)]
pub struct Sequencer {
    agents: Mutex<HashMap<String, Arc<watch::Sender<AgentState>>>>,
    max_wait: Duration,
    first_wait: Duration,
    out_of_order: AtomicU64,
}

impl Sequencer {
    /// A sequencer that holds a batch at most `max_wait` for its predecessor, and at most
    /// `first_wait` when it knows nothing of the agent yet (see [`Sequencer::wait_turn`]).
    pub fn new(max_wait: Duration, first_wait: Duration) -> Sequencer {
        Sequencer {
            agents: Mutex::new(HashMap::new()),
            max_wait,
            first_wait,
            out_of_order: AtomicU64::new(0),
        }
    }

    fn agent(&self, agent_id: &str) -> Arc<watch::Sender<AgentState>> {
        let mut m = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(agent_id.to_string())
            .or_insert_with(|| Arc::new(watch::Sender::new(AgentState::default())))
            .clone()
    }

    /// Waits until the batch before `place` of `agent_id` is committed (at most `max_wait`).
    /// The caller commits the batch, then calls [`Sequencer::committed`].
    ///
    /// An agent this server has not committed anything of (the server just started) has
    /// its predecessor waited for `first_wait` only: it may have been committed by the
    /// previous server process. The order then starts at the lowest batch waiting.
    pub async fn wait_turn(&self, agent_id: &str, place: BatchPlace) -> Turn {
        let Some(after) = place.after else {
            return Turn::InOrder;
        };
        let tx = self.agent(agent_id);
        let mut rx = tx.subscribe();
        let done = |s: &AgentState| s.committed.is_some_and(|c| c >= after);
        let known = tx.borrow().committed.is_some();
        if !known {
            tx.send_modify(|s| {
                s.lowest_waiting = Some(s.lowest_waiting.map_or(after, |m| m.min(after)));
            });
            if tokio::time::timeout(self.first_wait, rx.wait_for(done))
                .await
                .is_ok()
            {
                return Turn::InOrder;
            }
            tx.send_if_modified(|s| {
                let start = s.committed.is_none();
                if start {
                    s.committed = s.lowest_waiting.take();
                }
                start
            });
        }
        if tokio::time::timeout(self.max_wait, rx.wait_for(done))
            .await
            .is_ok()
        {
            Turn::InOrder
        } else {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
            Turn::OutOfOrder
        }
    }

    /// Records that the batch at `place` of `agent_id` is committed.
    pub fn committed(&self, agent_id: &str, place: BatchPlace) {
        self.agent(agent_id).send_modify(|s| {
            s.committed = Some(s.committed.map_or(place.last, |c| c.max(place.last)));
            s.lowest_waiting = None;
        });
    }

    /// Batches committed without their predecessor since the server started.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(after: Option<u64>, last: u64) -> BatchPlace {
        BatchPlace { last, after }
    }

    /// Batches of agent `a` arriving 20 ms apart in the order given, each committed (its `last`
    /// recorded) when its turn comes; every one must get its turn in order. The commit order.
    async fn commit_as_they_arrive(seq: &Arc<Sequencer>, arrivals: &[BatchPlace]) -> Vec<u64> {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for p in arrivals {
            let (seq, order, p) = (seq.clone(), order.clone(), *p);
            tasks.push(tokio::spawn(async move {
                let turn = seq.wait_turn("a", p).await;
                order.lock().expect("lock").push(p.last);
                seq.committed("a", p);
                turn
            }));
            // Let this batch start waiting before the next one arrives.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in tasks {
            assert_eq!(t.await.expect("task"), Turn::InOrder);
        }
        let order = order.lock().expect("lock").clone();
        order
    }

    /// Four batches of one agent arrive in reverse order; each commits only after the one
    /// before it, so the commit order is the queue order.
    #[tokio::test]
    async fn batches_arriving_in_any_order_commit_in_queue_order() {
        let seq = Arc::new(Sequencer::new(
            Duration::from_secs(30),
            Duration::from_secs(30),
        ));
        // The agent's first batch (10..=19) was committed before.
        seq.committed("a", place(None, 19));
        let order = commit_as_they_arrive(
            &seq,
            &[
                place(Some(49), 59),
                place(Some(39), 49),
                place(Some(29), 39),
                place(Some(19), 29),
            ],
        )
        .await;
        assert_eq!(order, vec![29, 39, 49, 59]);
        assert_eq!(seq.out_of_order(), 0);
    }

    /// A predecessor that never comes holds its successor only for the bounded wait, and is
    /// counted; another agent's batches are not held at all.
    #[tokio::test]
    async fn a_missing_predecessor_delays_only_its_agent_and_is_counted() {
        let seq = Sequencer::new(Duration::from_millis(200), Duration::from_millis(200));
        seq.committed("a", place(None, 9));
        seq.committed("b", place(None, 9));
        let started = std::time::Instant::now();
        // Batch 20..=29 of agent a, whose predecessor 10..=19 is lost.
        assert_eq!(
            seq.wait_turn("a", place(Some(19), 29)).await,
            Turn::OutOfOrder
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        seq.committed("a", place(Some(19), 29));
        // Agent b's next batch goes at once.
        assert_eq!(seq.wait_turn("b", place(Some(9), 19)).await, Turn::InOrder);
        // The lost batch, resent later, is not held either (its successor is done).
        assert_eq!(seq.wait_turn("a", place(Some(9), 19)).await, Turn::InOrder);
        assert_eq!(seq.out_of_order(), 1);
    }

    /// After a restart the server has seen nothing of the agent: a batch waits only the short
    /// first wait for a predecessor (committed by the previous process, or coming), and when
    /// two batches wait, the order starts at the lower one.
    #[tokio::test]
    async fn a_fresh_server_starts_the_order_at_the_lowest_batch_waiting() {
        let seq = Arc::new(Sequencer::new(
            Duration::from_secs(30),
            Duration::from_millis(300),
        ));
        // Batches 150..=199 and 100..=149 arrive (in that order); 50..=99 was committed by
        // the previous server process.
        let order =
            commit_as_they_arrive(&seq, &[place(Some(149), 199), place(Some(99), 149)]).await;
        assert_eq!(order, vec![149, 199]);
        assert_eq!(
            seq.wait_turn("a", place(Some(199), 249)).await,
            Turn::InOrder
        );
        assert_eq!(seq.out_of_order(), 0);
    }
}
