//! Store I/O off the loop: store reads that answer peers' wants (serve jobs queued per
//! incoming wantlist, run by at most `max_serve_tasks` blocking tasks) and writes of received
//! blocks (batched, by at most `MAX_STORE_TASKS` blocking tasks), each reaped in the loop's
//! `select!`; readers are answered once their block is stored.

use bytes::Bytes;
use cairn_store::{Block, Blockstore, Cid};
use libp2p::PeerId;

use super::{Answer, EventLoop};
use crate::bitswap::protocol::{WantEntry, WantType, MAX_BLOCK_BYTES};
use crate::command::Fetched;

/// Serve jobs (one per incoming wantlist) waiting for a store-reading task.
const MAX_SERVE_QUEUE: usize = 1024;
/// Store writes of received blocks running at once; blocks arriving meanwhile wait and are
/// written together by the next one.
const MAX_STORE_TASKS: usize = 2;
/// Blocks (and bytes) written by one store task at most.
const STORE_BATCH_BLOCKS: usize = 256;
/// Most bytes of received blocks written to the store in one batch.
pub const STORE_BATCH_BYTES: usize = 32 << 20;

impl EventLoop {
    /// Queues a peer's wants for a serve task; when the queue is full they are dropped from its
    /// ledger instead.
    pub(super) fn queue_serve(&mut self, peer: PeerId, job: Vec<WantEntry>) {
        if self.serve_queue.len() < MAX_SERVE_QUEUE {
            self.serve_queue.push_back((peer, job));
        } else if let Some(i) = self.engine.peers.get_mut(&peer) {
            tracing::debug!(%peer, "serve queue full, ignoring wants");
            for e in job {
                i.ledger.remove(&e.cid);
            }
        }
    }

    pub(super) fn pump_serve(&mut self) {
        let max = self.engine.cfg.limits.max_serve_tasks.max(1);
        while self.serve_tasks.len() < max {
            let Some((peer, job)) = self.serve_queue.pop_front() else {
                break;
            };
            let store = self.store.clone();
            self.serve_tasks
                .spawn_blocking(move || (peer, answer(&*store, job)));
        }
    }

    /// Writes received blocks to the store, batching those that arrived while earlier writes ran.
    pub(super) fn pump_store(&mut self) {
        while self.store_tasks.len() < MAX_STORE_TASKS && !self.to_store.is_empty() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while batch.len() < STORE_BATCH_BLOCKS && bytes < STORE_BATCH_BYTES {
                let Some(b) = self.to_store.pop_front() else {
                    break;
                };
                bytes += b.1.len();
                batch.push(b);
            }
            let store = self.store.clone();
            self.store_tasks.spawn_blocking(move || {
                let blocks: Vec<Block> = batch
                    .iter()
                    .map(|(c, d)| Block::trusted(*c, d.clone()))
                    .collect();
                if let Err(e) = store.put_many(&blocks) {
                    tracing::warn!(error = %e, "cannot cache received blocks");
                }
                batch
            });
        }
    }

    pub(super) fn on_stored(&mut self, blocks: Vec<(Cid, Bytes)>) {
        for (cid, data) in blocks {
            if let Some(ws) = self.engine.storing.remove(&cid) {
                for w in ws {
                    let _ = w.reply.send(Ok(Fetched::Block(data.clone())));
                }
            }
        }
    }
}

/// Looks up a peer's wants in the store (runs on a blocking thread).
fn answer(store: &dyn Blockstore, job: Vec<WantEntry>) -> Vec<(WantEntry, Answer)> {
    job.into_iter()
        .map(|e| {
            let sdh = e.send_dont_have;
            let a = match e.want_type {
                WantType::Block => match store.get_verified(&e.cid) {
                    Ok(Some(b)) if b.len() <= MAX_BLOCK_BYTES => Answer::Block(b),
                    Ok(_) if sdh => Answer::DontHave,
                    Ok(_) => Answer::Nothing,
                    Err(err) => {
                        tracing::warn!(cid = %e.cid, error = %err, "cannot serve block");
                        if sdh {
                            Answer::DontHave
                        } else {
                            Answer::Nothing
                        }
                    }
                },
                WantType::Have => match store.has(&e.cid) {
                    Ok(true) => Answer::Have,
                    _ if sdh => Answer::DontHave,
                    _ => Answer::Nothing,
                },
            };
            (e, a)
        })
        .collect()
}
