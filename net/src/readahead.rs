//! Readahead for sequential readers of a DAG (a `cat`, a FUSE read of a whole file).
//!
//! Such a reader asks for one block at a time, in depth-first order, so each block would cost a
//! full round trip. A [`Readahead`] follows the reader: the links of every dag-pb block it has
//! seen form a *plan* in depth-first order, and the first `window` entries of the plan are
//! fetched in the background (local store first, then peers, like any read: big local blocks are
//! read and hashed on a blocking thread, not on a runtime worker). The reader then
//! finds them in a small cache of verified blocks, or joins the network want already under way.
//!
//! Bounds: at most `window` blocks are fetched or cached at once (a block leaves the cache when
//! the reader takes it or moves past it), the plan holds at most [`MAX_PLAN`] CIDs, and the
//! background tasks are aborted when the last handle to the source is dropped.
//! A caller that keeps several reads in flight itself (e.g. [`crate::fetch_dag`]) already
//! has its own window: from the first overlapping read on, readahead switches itself off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use cairn_store::{Cid, PbNode, DAG_PB};
use tokio::task::AbortHandle;

use crate::node::Node;

/// CIDs the plan remembers ahead of the reader.
const MAX_PLAN: usize = 16_384;

/// Shared by every clone of one `NetSource`.
pub(crate) struct Readahead {
    node: Node,
    timeout: Duration,
    window: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Blocks the reader will probably ask for, in the order it will.
    plan: VecDeque<Cid>,
    /// dag-pb blocks whose links are already in the plan.
    expanded: HashSet<Cid>,
    /// Background fetches under way.
    inflight: HashMap<Cid, AbortHandle>,
    /// Verified blocks fetched ahead, not taken yet.
    ready: HashMap<Cid, Bytes>,
    /// Reads in progress now; more than one means the caller runs its own window.
    reading: usize,
    /// Set for good once reads overlapped.
    off: bool,
}

impl Drop for Readahead {
    fn drop(&mut self) {
        for (_, h) in lock(&self.state).inflight.drain() {
            h.abort();
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update leaves the state consistent, so a panic elsewhere cannot corrupt it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The links of a dag-pb block, if it is one (a block that does not decode has none here; the
/// reader reports it).
fn links(cid: &Cid, data: &Bytes) -> Vec<Cid> {
    if cid.codec() != DAG_PB {
        return Vec::new();
    }
    PbNode::decode(data)
        .map(|n| n.links.into_iter().map(|l| l.cid).collect())
        .unwrap_or_default()
}

impl Readahead {
    pub(crate) fn new(node: Node, timeout: Duration, window: usize) -> Arc<Self> {
        Arc::new(Readahead {
            node,
            timeout,
            window,
            state: Mutex::new(State::default()),
        })
    }

    /// A read of `cid` starts: returns the block if it was fetched ahead.
    pub(crate) fn begin(&self, cid: &Cid) -> Option<Bytes> {
        let mut s = lock(&self.state);
        s.reading += 1;
        if s.reading > 1 && !s.off {
            s.off = true;
            s.plan.clear();
            s.expanded.clear();
            s.ready.clear();
        }
        s.ready.remove(cid)
    }

    /// A read ended (`data` when it succeeded): move the plan past it and fetch ahead.
    pub(crate) fn end(self: &Arc<Self>, cid: Cid, data: Option<&Bytes>) {
        let mut s = lock(&self.state);
        s.reading = s.reading.saturating_sub(1);
        if s.off {
            return;
        }
        match s.plan.iter().position(|c| *c == cid) {
            Some(i) => {
                // The reader skipped what came before (an offset read): forget those.
                for c in s.plan.drain(..=i).collect::<Vec<_>>() {
                    s.ready.remove(&c);
                }
            }
            None => {
                // A jump elsewhere: start a new plan from here.
                s.plan.clear();
                s.expanded.clear();
                s.ready.clear();
            }
        }
        if let Some(data) = data {
            if s.expanded.insert(cid) {
                let mut l = links(&cid, data);
                l.truncate(MAX_PLAN.saturating_sub(s.plan.len()));
                for c in l.into_iter().rev() {
                    s.plan.push_front(c);
                }
            }
        }
        self.pump(&mut s);
    }

    /// Starts background fetches for the head of the plan.
    fn pump(self: &Arc<Self>, s: &mut State) {
        let want: Vec<Cid> = s
            .plan
            .iter()
            .take(self.window)
            .filter(|c| !s.inflight.contains_key(c) && !s.ready.contains_key(c))
            .copied()
            .collect();
        for cid in want {
            if s.inflight.len() >= self.window {
                break;
            }
            let me = Arc::downgrade(self);
            let node = self.node.clone();
            let timeout = self.timeout;
            let task = tokio::spawn(async move {
                let got = crate::source::local_then_network(&node, cid, timeout).await;
                if let Some(me) = Weak::upgrade(&me) {
                    me.fetched(cid, got.ok());
                }
            });
            s.inflight.insert(cid, task.abort_handle());
        }
    }

    /// A background fetch finished.
    fn fetched(self: &Arc<Self>, cid: Cid, data: Option<Bytes>) {
        let mut s = lock(&self.state);
        if s.inflight.remove(&cid).is_none() || s.off {
            return;
        }
        let Some(i) = s.plan.iter().position(|c| *c == cid) else {
            return;
        };
        let Some(data) = data else {
            // Leave it to the reader, which will report the error.
            return;
        };
        if s.expanded.insert(cid) {
            let mut l = links(&cid, &data);
            l.truncate(MAX_PLAN.saturating_sub(s.plan.len()));
            for (k, c) in l.into_iter().enumerate() {
                s.plan.insert(i + 1 + k, c);
            }
        }
        s.ready.insert(cid, data);
        self.pump(&mut s);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use cairn_store::{Block, HashAlg, PbLink, RAW};

    #[test]
    fn links_of_raw_blocks_are_empty_and_of_dag_pb_in_order() {
        let leaf = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from_static(b"x"));
        let other = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from_static(b"y"));
        assert!(links(leaf.cid(), leaf.data()).is_empty());
        let node = PbNode {
            links: vec![
                PbLink {
                    cid: *leaf.cid(),
                    name: Some(String::new()),
                    tsize: Some(1),
                },
                PbLink {
                    cid: *other.cid(),
                    name: Some(String::new()),
                    tsize: Some(1),
                },
            ],
            data: None,
        };
        let b = Block::encode(1, DAG_PB, HashAlg::Sha2_256, Bytes::from(node.encode()));
        assert_eq!(links(b.cid(), b.data()), vec![*leaf.cid(), *other.cid()]);
    }
}
