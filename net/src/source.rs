//! [`NetSource`]: "local store first, then peers", and [`fetch_dag`], which fetches a whole DAG.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_store::{BlockSource, Cid, GetError, PbError, PbNode, DAG_PB};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::error::NetError;
use crate::node::Node;
use crate::readahead::{Range, Readahead};

/// Reads blocks from the node's local store, fetching missing ones from the network (and
/// caching them in the store). Every block returned has been verified against its CID.
///
/// A reader that asks for one block at a time in depth-first order (a file read start to end)
/// gets the next blocks fetched ahead of it, `Limits::readahead_blocks` at most; see
/// `readahead.rs`. Clones share that state.
#[derive(Clone)]
pub struct NetSource {
    node: Node,
    timeout: Duration,
    window: usize,
    range: Range,
    ahead: Option<Arc<Readahead>>,
}

impl std::fmt::Debug for NetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSource")
            .field("node", &self.node)
            .field("timeout", &self.timeout)
            .field("readahead", &self.window)
            .finish()
    }
}

impl NetSource {
    /// A source over `node` with the node's configured fetch deadline and readahead.
    pub fn new(node: Node) -> Self {
        let timeout = node.fetch_timeout();
        let window = node.readahead_blocks();
        NetSource::build(node, timeout, window, Range::default())
    }

    fn build(node: Node, timeout: Duration, window: usize, range: Range) -> Self {
        let ahead = (window > 0).then(|| Readahead::new(node.clone(), timeout, window, range));
        NetSource {
            node,
            timeout,
            window,
            range,
            ahead,
        }
    }

    /// The same source with another per-block deadline.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        NetSource::build(self.node, timeout, self.window, self.range)
    }

    /// The same source fetching at most `window` blocks ahead of a sequential reader
    /// (0: no readahead).
    pub fn with_readahead(self, window: usize) -> Self {
        NetSource::build(self.node, self.timeout, window, self.range)
    }

    /// The same source for a reader of bytes `offset..offset + len` of a file (`len` `None`:
    /// to its end), such as `cat --offset --length`: the readahead fetches only the blocks of
    /// files that overlap that range, so a bounded read moves the blocks that cover it and no
    /// others.
    pub fn with_file_range(self, offset: u64, len: Option<u64>) -> Self {
        let range = Range {
            start: offset,
            end: len.map(|l| offset.saturating_add(l)),
        };
        NetSource::build(self.node, self.timeout, self.window, range)
    }

    /// The node behind this source.
    pub fn node(&self) -> &Node {
        &self.node
    }
}

fn to_get_error(cid: Cid, e: NetError) -> GetError {
    match e {
        NetError::FetchTimeout { cid, secs } => GetError::Timeout { cid, secs },
        NetError::NoProviders { cid, peers_queried } => {
            GetError::NoProviders { cid, peers_queried }
        }
        other => GetError::Network {
            cid,
            reason: other.to_string(),
        },
    }
}

/// The local store first (a corrupt local copy is refetched), then the network. Big local
/// blocks are read and hashed on a blocking thread (`cairn_store::read_verified`).
pub(crate) async fn local_then_network(
    node: &Node,
    cid: Cid,
    timeout: Duration,
) -> Result<Bytes, GetError> {
    match cairn_store::read_verified(node.store(), &cid).await {
        Ok(Some(b)) => return Ok(b),
        Ok(None) => {}
        // A corrupt local copy is replaced by a verified one from the network.
        Err(GetError::Corrupt(_)) => {
            tracing::warn!(%cid, "local copy corrupt, fetching it again");
            // Drop the bad copy so that the verified one from the network is stored in its place.
            let store = node.store().clone();
            tokio::task::spawn_blocking(move || store.delete(&cid))
                .await
                .map_err(|_| GetError::Cancelled(cid))?
                .map_err(GetError::Store)?;
        }
        Err(e) => return Err(e),
    }
    node.fetch_with_timeout(cid, timeout)
        .await
        .map_err(|e| to_get_error(cid, e))
}

/// Ends a read for the readahead even when the reading future is dropped half-way.
struct Reading<'a> {
    ahead: &'a Arc<Readahead>,
    cid: Cid,
    data: Option<Bytes>,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.ahead.end(self.cid, self.data.as_ref());
    }
}

impl BlockSource for NetSource {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send {
        let cid = *cid;
        async move {
            let Some(ahead) = &self.ahead else {
                return local_then_network(&self.node, cid, self.timeout).await;
            };
            let ready = ahead.begin(&cid);
            let mut reading = Reading {
                ahead,
                cid,
                data: None,
            };
            let got = match ready {
                Some(b) => Ok(b),
                None => local_then_network(&self.node, cid, self.timeout).await,
            };
            if let Ok(b) = &got {
                reading.data = Some(b.clone());
            }
            drop(reading);
            got
        }
    }

    fn has_local(&self, cid: &Cid) -> bool {
        self.node.store().has(cid).unwrap_or(false)
    }

    /// Small local blocks only: never the network.
    fn get_now(&self, cid: &Cid) -> Option<Bytes> {
        cairn_store::read_small_now(&**self.node.store(), cid)
    }

    /// Local blocks only: never the network.
    fn get_local_blocking(&self, cid: &Cid) -> Option<Bytes> {
        self.node.store().get_verified(cid).ok().flatten()
    }
}

/// Progress of [`fetch_dag`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DagProgress {
    /// Blocks done (local or fetched).
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks discovered but not done yet.
    pub pending: u64,
}

/// Why [`fetch_dag`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum DagError {
    /// A block could not be had.
    #[error(transparent)]
    Get(#[from] GetError),
    /// A dag-pb block did not decode, so its children are unknown.
    #[error("block {cid} is not valid dag-pb")]
    BadNode {
        /// The block.
        cid: Cid,
        /// The decoder's reason.
        source: PbError,
    },
}

/// Fetches every block reachable from `root` through dag-pb links (raw blocks are leaves),
/// keeping up to `window` blocks in flight, and calls `progress` after each block.
/// Blocks already local are read, not fetched. Used by `pin add` and `get`.
///
/// Each block is fetched once however many links reach it (blocks are told apart by codec and
/// multihash), so a peer's DAG of N blocks costs N fetches even if it has 2^N paths.
pub async fn fetch_dag<S: BlockSource>(
    source: &S,
    root: Cid,
    window: usize,
    mut progress: impl FnMut(&DagProgress),
) -> Result<DagProgress, DagError> {
    let window = window.max(1);
    let identity = |c: &Cid| (c.codec(), c.hash().to_bytes());
    let mut queue = VecDeque::from([root]);
    let mut seen = HashSet::from([identity(&root)]);
    let mut inflight = FuturesUnordered::new();
    let mut p = DagProgress::default();
    loop {
        while inflight.len() < window {
            let Some(cid) = queue.pop_front() else { break };
            inflight.push(async move { (cid, source.get(&cid).await) });
        }
        let Some((cid, got)) = inflight.next().await else {
            break;
        };
        let data = got?;
        if cid.codec() == DAG_PB {
            let node = PbNode::decode(&data).map_err(|source| DagError::BadNode { cid, source })?;
            for l in node.links {
                if seen.insert(identity(&l.cid)) {
                    queue.push_back(l.cid);
                }
            }
        }
        p.blocks += 1;
        p.bytes += data.len() as u64;
        p.pending = (queue.len() + inflight.len()) as u64;
        progress(&p);
    }
    Ok(p)
}

/// Gets many blocks with up to `window` in flight, yielding each result as it completes
/// (a "session" without DAG walking: every want goes out at once, bounded by the window).
pub fn fetch_many<S: BlockSource>(
    source: &S,
    cids: Vec<Cid>,
    window: usize,
) -> impl futures::Stream<Item = (Cid, Result<Bytes, GetError>)> + '_ {
    futures::stream::iter(cids)
        .map(move |cid| async move { (cid, source.get(&cid).await) })
        .buffer_unordered(window.max(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cairn_store::{Block, HashAlg, PbLink, RAW};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Blocks in memory; counts every get.
    struct Counting {
        blocks: HashMap<Cid, Bytes>,
        gets: AtomicUsize,
    }

    impl BlockSource for Counting {
        fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send {
            self.gets.fetch_add(1, Ordering::Relaxed);
            let got = self
                .blocks
                .get(cid)
                .cloned()
                .ok_or(GetError::NotFoundLocally(*cid));
            std::future::ready(got)
        }
        fn has_local(&self, cid: &Cid) -> bool {
            self.blocks.contains_key(cid)
        }
    }

    #[tokio::test]
    async fn a_diamond_is_fetched_once_per_block() {
        // Depth 40, two links to the same child at every level (also once as CIDv0, once as
        // CIDv1): 2^40 paths, 41 blocks.
        let leaf = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from_static(b"leaf"));
        let mut blocks = HashMap::from([(*leaf.cid(), leaf.data().clone())]);
        let mut cur = *leaf.cid();
        for level in 0..40 {
            let twin = if level > 0 {
                Cid::new_v1(cur.codec(), *cur.hash())
            } else {
                cur
            };
            let link = |cid| PbLink {
                cid,
                name: Some(String::new()),
                tsize: Some(1),
            };
            let node = PbNode {
                links: vec![link(cur), link(twin)],
                data: Some(Bytes::from_static(&[8, 2])),
            };
            let b = Block::encode(0, DAG_PB, HashAlg::Sha2_256, Bytes::from(node.encode()));
            blocks.insert(*b.cid(), b.data().clone());
            blocks.insert(Cid::new_v1(DAG_PB, *b.cid().hash()), b.data().clone());
            cur = *b.cid();
        }
        let source = Counting {
            blocks,
            gets: AtomicUsize::new(0),
        };
        let done = fetch_dag(&source, cur, 8, |_| {}).await.unwrap();
        assert_eq!(done.blocks, 41);
        assert_eq!(source.gets.load(Ordering::Relaxed), 41);
    }
}
