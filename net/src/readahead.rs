//! Readahead for sequential readers of a DAG (a `cat` of a whole file, an `ls` of a directory).
//!
//! Such a reader asks for one block at a time, in depth-first order, so each block would cost a
//! full round trip. A [`Readahead`] follows the reader: the links of every dag-pb block it has
//! seen form a *plan* in depth-first order, and the head of the plan is fetched in the
//! background (local store first, then peers, like any read: big local blocks are read and
//! hashed on a blocking thread, not on a runtime worker). The reader then finds them in a small
//! cache of verified blocks, or joins the network want already under way.
//!
//! **Only for sequential readers.** The links of one node form a *group*, and a group is
//! fetched ahead only once the reader has shown that it walks it: it has read two of the
//! group's blocks in link order. A path lookup reads one entry per directory (one shard per
//! level of a HAMT), a `stat` reads a file's root and nothing below it, a small read of a file
//! reads the few blocks that cover it: none of them fetches a block it does not read itself.
//! A whole-file read opens the groups it walks after its second leaf, and a group of a file
//! node met inside an open file group starts open (the next subtree of the same file). A
//! directory's group holds only its dag-pb links (entries to stat, HAMT shards): a listing
//! never reads the raw leaves of the files it lists. Opening a file group opens the groups of
//! the file nodes above it too; a directory group never opens anything above it.
//!
//! Bounds: at most `window` blocks are fetched or cached at once (a block leaves the cache when
//! the reader takes it or moves past it), the plan holds at most [`MAX_PLAN`] CIDs, a pump looks
//! at most [`MAX_SCAN`] of them, and the background tasks are aborted when the last handle to
//! the source is dropped. A caller that keeps several reads in flight itself (e.g.
//! [`crate::fetch_dag`]) already has its own window: from the first overlapping read on,
//! readahead switches itself off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use cairn_store::{Cid, DataType, PbNode, UnixFsData, DAG_PB};
use tokio::task::AbortHandle;

use crate::node::Node;

/// CIDs the plan remembers ahead of the reader.
const MAX_PLAN: usize = 16_384;
/// Plan entries one pump looks at, at most (gated groups are skipped over).
const MAX_SCAN: usize = 4096;

/// Shared by every clone of one `NetSource`.
pub(crate) struct Readahead {
    node: Node,
    timeout: Duration,
    window: usize,
    /// Only file blocks overlapping this are planned.
    range: Range,
    state: Mutex<State>,
}

/// One CID of the plan: the `index`-th link of its group.
#[derive(Debug, Clone, Copy)]
struct Planned {
    cid: Cid,
    group: u32,
    index: u32,
    /// In a file group: the file offset of the block's first byte.
    start: u64,
}

/// The part of a file a reader wants: `start..end` (`end` `None`: to the end of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Range {
    pub(crate) start: u64,
    pub(crate) end: Option<u64>,
}

impl Range {
    fn overlaps(&self, start: u64, len: u64) -> bool {
        start.saturating_add(len) > self.start && self.end.is_none_or(|end| start < end)
    }
}

/// The links of one node.
#[derive(Debug)]
struct Group {
    /// The group the node itself is in (`None`: the node the plan started from).
    parent: Option<u32>,
    /// The node is a UnixFS file (its links are the file's pieces).
    file: bool,
    /// The reader walks this group: fetch it ahead.
    open: bool,
    /// The highest index the reader has read in this group.
    last: Option<u32>,
}

#[derive(Default)]
struct State {
    /// Blocks the reader will probably ask for, in the order it will.
    plan: VecDeque<Planned>,
    groups: HashMap<u32, Group>,
    next_group: u32,
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

impl State {
    fn reset(&mut self) {
        self.plan.clear();
        self.groups.clear();
        self.expanded.clear();
        self.ready.clear();
    }

    fn is_open(&self, group: u32) -> bool {
        self.groups.get(&group).is_some_and(|g| g.open)
    }

    /// Opens `group`, and the file groups above it while it is a file group.
    fn open(&mut self, mut group: u32) {
        loop {
            let Some(g) = self.groups.get_mut(&group) else {
                return;
            };
            g.open = true;
            let (file, parent) = (g.file, g.parent);
            match parent {
                Some(p) if file && self.groups.get(&p).is_some_and(|pg| pg.file) => group = p,
                _ => return,
            }
        }
    }

    /// Adds a group for the links of `cid` (in the group `parent`, if any; `start` is its file
    /// offset when it is a piece of a file) and returns its entries: for a file node, the pieces
    /// overlapping `range`. Nothing if `cid` was expanded already or has no links to follow.
    fn expand(
        &mut self,
        cid: Cid,
        data: &Bytes,
        parent: Option<u32>,
        start: u64,
        range: Range,
    ) -> Vec<Planned> {
        if self.groups.len() >= MAX_PLAN || !self.expanded.insert(cid) {
            return Vec::new();
        }
        let Some(links) = links(&cid, data) else {
            return Vec::new();
        };
        let file = links.file;
        let room = MAX_PLAN.saturating_sub(self.plan.len());
        let entries: Vec<(usize, Cid, u64)> = links
            .pieces
            .into_iter()
            .enumerate()
            .filter_map(|(i, (cid, rel, len))| {
                let at = start.saturating_add(rel);
                (!file || range.overlaps(at, len)).then_some((i, cid, at))
            })
            .take(room)
            .collect();
        if entries.is_empty() {
            return Vec::new();
        }
        // A file node met inside an open file group: the reader is walking that file.
        let open =
            file && parent.is_some_and(|p| self.groups.get(&p).is_some_and(|g| g.file && g.open));
        let group = self.next_group;
        self.next_group = self.next_group.wrapping_add(1);
        self.groups.insert(
            group,
            Group {
                parent,
                file,
                open,
                last: None,
            },
        );
        entries
            .into_iter()
            .map(|(i, cid, start)| Planned {
                cid,
                group,
                index: u32::try_from(i).unwrap_or(u32::MAX),
                start,
            })
            .collect()
    }
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

/// The links of a node worth following.
#[derive(Debug, PartialEq, Eq)]
struct Links {
    /// The node is a UnixFS file: its links are the file's pieces.
    file: bool,
    /// (child, offset of its bytes from the node's first byte, their length); offsets and
    /// lengths only mean something for a file.
    pieces: Vec<(Cid, u64, u64)>,
}

/// The links of a dag-pb block worth following: all links of a file node, with their byte
/// ranges; the dag-pb links of a directory or HAMT shard (entries a listing stats, shards it
/// enters; raw entries are files a listing does not read). `None` for anything else (raw
/// blocks, symlinks, blocks that do not decode or whose sizes disagree: the reader reports
/// those).
fn links(cid: &Cid, data: &Bytes) -> Option<Links> {
    if cid.codec() != DAG_PB {
        return None;
    }
    let node = PbNode::decode(data).ok()?;
    let fs = UnixFsData::decode(&node.data.clone().unwrap_or_default()).ok()?;
    match fs.kind {
        DataType::File | DataType::Raw => {
            if fs.blocksizes.len() != node.links.len() {
                return None;
            }
            let mut at = fs.data.as_ref().map_or(0, |d| d.len() as u64);
            let mut pieces = Vec::with_capacity(node.links.len());
            for (l, &size) in node.links.iter().zip(&fs.blocksizes) {
                pieces.push((l.cid, at, size));
                at = at.checked_add(size)?;
            }
            Some(Links { file: true, pieces })
        }
        DataType::Directory | DataType::HamtShard => Some(Links {
            file: false,
            pieces: node
                .links
                .iter()
                .filter(|l| l.cid.codec() == DAG_PB)
                .map(|l| (l.cid, 0, 0))
                .collect(),
        }),
        DataType::Symlink | DataType::Metadata => None,
    }
}

impl Readahead {
    pub(crate) fn new(node: Node, timeout: Duration, window: usize, range: Range) -> Arc<Self> {
        Arc::new(Readahead {
            node,
            timeout,
            window,
            range,
            state: Mutex::new(State::default()),
        })
    }

    /// A read of `cid` starts: returns the block if it was fetched ahead.
    pub(crate) fn begin(&self, cid: &Cid) -> Option<Bytes> {
        let mut s = lock(&self.state);
        s.reading += 1;
        if s.reading > 1 && !s.off {
            s.off = true;
            s.reset();
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
        let taken = match s.plan.iter().position(|p| p.cid == cid) {
            Some(i) => {
                // The reader skipped what came before (an offset read): forget those.
                let mut taken = None;
                for p in s.plan.drain(..=i).collect::<Vec<_>>() {
                    s.ready.remove(&p.cid);
                    taken = Some(p);
                }
                taken
            }
            None => {
                // A jump elsewhere: start a new plan from here.
                s.reset();
                None
            }
        };
        if let Some(t) = taken {
            if let Some(g) = s.groups.get_mut(&t.group) {
                let in_order = g.last.is_some_and(|last| t.index > last);
                g.last = Some(g.last.map_or(t.index, |last| last.max(t.index)));
                if in_order {
                    s.open(t.group);
                }
            }
        }
        if let Some(data) = data {
            let (group, start) = taken.map_or((None, 0), |t| (Some(t.group), t.start));
            let planned = s.expand(cid, data, group, start, self.range);
            for p in planned.into_iter().rev() {
                s.plan.push_front(p);
            }
        }
        self.pump(&mut s);
    }

    /// Starts background fetches for the head of the open part of the plan.
    fn pump(self: &Arc<Self>, s: &mut State) {
        let mut want = Vec::new();
        let mut ahead = 0;
        for p in s.plan.iter().take(MAX_SCAN) {
            if !s.is_open(p.group) {
                continue;
            }
            ahead += 1;
            if ahead > self.window {
                break;
            }
            if !s.inflight.contains_key(&p.cid) && !s.ready.contains_key(&p.cid) {
                want.push(p.cid);
            }
        }
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
        let Some(i) = s.plan.iter().position(|p| p.cid == cid) else {
            return;
        };
        let Some(data) = data else {
            // Leave it to the reader, which will report the error.
            return;
        };
        let (group, start) = (s.plan[i].group, s.plan[i].start);
        let planned = s.expand(cid, &data, Some(group), start, self.range);
        for (k, p) in planned.into_iter().enumerate() {
            s.plan.insert(i + 1 + k, p);
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

    fn link(cid: Cid) -> PbLink {
        PbLink {
            cid,
            name: Some(String::new()),
            tsize: Some(1),
        }
    }

    fn pb(kind: DataType, links: Vec<PbLink>) -> Block {
        let mut fs = UnixFsData::new(kind);
        if kind == DataType::File {
            fs.blocksizes = vec![1; links.len()];
        }
        let node = PbNode {
            links,
            data: Some(Bytes::from(fs.encode())),
        };
        Block::encode(1, DAG_PB, HashAlg::Sha2_256, Bytes::from(node.encode()))
    }

    #[test]
    fn links_of_files_all_of_directories_only_dag_pb() {
        let leaf = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from_static(b"x"));
        let other = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from_static(b"y"));
        assert!(links(leaf.cid(), leaf.data()).is_none());
        let file = pb(DataType::File, vec![link(*leaf.cid()), link(*other.cid())]);
        assert_eq!(
            links(file.cid(), file.data()),
            Some(Links {
                file: true,
                pieces: vec![(*leaf.cid(), 0, 1), (*other.cid(), 1, 1)]
            })
        );
        let dir = pb(
            DataType::Directory,
            vec![link(*leaf.cid()), link(*file.cid())],
        );
        assert_eq!(
            links(dir.cid(), dir.data()),
            Some(Links {
                file: false,
                pieces: vec![(*file.cid(), 0, 0)]
            })
        );
    }

    fn leaves(n: u8) -> Vec<Block> {
        (0..n)
            .map(|n| Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from(vec![n])))
            .collect()
    }

    #[test]
    fn groups_open_after_two_reads_in_order_and_file_groups_open_upwards() {
        let all = Range::default();
        let mut s = State::default();
        let mid = pb(
            DataType::File,
            leaves(4).iter().map(|b| link(*b.cid())).collect(),
        );
        let root = pb(DataType::File, vec![link(*mid.cid()), link(*mid.cid())]);
        let top = s.expand(*root.cid(), root.data(), None, 0, all);
        assert_eq!(top.len(), 2);
        let g_root = top[0].group;
        assert!(!s.is_open(g_root));
        let below = s.expand(*mid.cid(), mid.data(), Some(g_root), 0, all);
        let g_mid = below[0].group;
        assert!(!s.is_open(g_mid), "a stat or small read opens nothing");
        s.open(g_mid);
        assert!(
            s.is_open(g_mid) && s.is_open(g_root),
            "a file walk opens upwards"
        );

        let mut d = State::default();
        let dir = pb(DataType::Directory, vec![link(*root.cid())]);
        let entries = d.expand(*dir.cid(), dir.data(), None, 0, all);
        let g_dir = entries[0].group;
        let inner = d.expand(*root.cid(), root.data(), Some(g_dir), 0, all);
        d.open(g_dir);
        assert!(d.is_open(g_dir));
        assert!(
            !d.is_open(inner[0].group),
            "a listing does not read the files it lists"
        );
        d.open(inner[0].group);
        assert!(d.is_open(inner[0].group));
        assert!(
            d.is_open(g_dir),
            "a file group never opens a directory group"
        );
    }

    #[test]
    fn a_range_plans_only_the_pieces_that_cover_it() {
        // Two middle nodes of 4 one-byte leaves each: bytes 0..4 and 4..8.
        let ls = leaves(8);
        let m1 = pb(
            DataType::File,
            ls[..4].iter().map(|b| link(*b.cid())).collect(),
        );
        let m2 = pb(
            DataType::File,
            ls[4..].iter().map(|b| link(*b.cid())).collect(),
        );
        let mut fs = UnixFsData::new(DataType::File);
        fs.blocksizes = vec![4, 4];
        let node = PbNode {
            links: vec![link(*m1.cid()), link(*m2.cid())],
            data: Some(Bytes::from(fs.encode())),
        };
        let root = Block::encode(1, DAG_PB, HashAlg::Sha2_256, Bytes::from(node.encode()));
        let range = Range {
            start: 5,
            end: Some(7),
        };
        let mut s = State::default();
        let top = s.expand(*root.cid(), root.data(), None, 0, range);
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].cid, top[0].start), (*m2.cid(), 4));
        let below = s.expand(*m2.cid(), m2.data(), Some(top[0].group), 4, range);
        let got: Vec<(Cid, u64)> = below.iter().map(|p| (p.cid, p.start)).collect();
        assert_eq!(got, vec![(*ls[5].cid(), 5), (*ls[6].cid(), 6)]);
    }
}
