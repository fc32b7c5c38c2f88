//! Streamed directory listings ([`DirCursor`]) and the checks that keep a HAMT from being
//! expanded beyond its blocks.
//!
//! A plain directory is one block whose links are its entries. A HAMT directory is listed
//! depth-first in link order, keeping only the shards on the path from the root to the current
//! one. Each shard is checked when it is entered, before any of its entries is yielded:
//!
//! - it is a `HAMTShard` node with murmur3 hashing and the root's fanout;
//! - every link name starts with a slot label below the fanout, no slot has two links, and the
//!   bitfield marks exactly the occupied slots;
//! - it is not deeper than the hash of a name can address (`hamt::max_shard_depth`);
//! - it has not been entered before during this listing (a valid HAMT is a tree: a shard
//!   reached twice would list the same entries again, which is how a 5-block DAG claims 256⁴
//!   entries).
//!
//! And every entry must sit in the slots its name hashes to at each depth. So a listing reads
//! each block of the HAMT once and yields at most one entry per link of a distinct block: its
//! cost is bounded by the directory's real size, whatever it claims. [`MAX_DIR_ENTRIES`]
//! bounds the rest.

use std::collections::HashSet;
use std::sync::Arc;

use cid::Cid;

use super::{
    entry, hamt_pad, malformed, DagReader, DirEntry, Node, PbDecoded, ReadError, MAX_DEPTH,
    MAX_DIR_ENTRIES,
};
use crate::hamt;
use crate::source::BlockSource;
use crate::unixfs::DataType;

/// A listing of one directory, one entry at a time (see [`DagReader::dir_cursor`]).
///
/// After an error the cursor is finished: [`DirCursor::next_entry`] returns `Ok(None)`.
#[derive(Debug)]
pub struct DirCursor<S> {
    reader: DagReader<S>,
    dir: Cid,
    state: State,
    yielded: u64,
}

#[derive(Debug)]
enum State {
    Start,
    Plain { node: Arc<PbDecoded>, next: usize },
    Hamt(Box<Hamt>),
    Done,
}

#[derive(Debug)]
struct Hamt {
    fanout: u64,
    bits: u32,
    /// The deepest shard depth allowed (the root is depth 0).
    max_depth: usize,
    /// The shards from the root down to the one being listed.
    stack: Vec<Frame>,
    /// `path[d]`: the slot at depth `d` of the shard at depth `d + 1`.
    path: Vec<usize>,
    /// Every shard entered so far, by multihash.
    seen: HashSet<Vec<u8>>,
}

#[derive(Debug)]
struct Frame {
    cid: Cid,
    node: Arc<PbDecoded>,
    next: usize,
}

impl<S: BlockSource + Clone> DirCursor<S> {
    pub(super) fn new(reader: DagReader<S>, dir: Cid) -> Self {
        DirCursor {
            reader,
            dir,
            state: State::Start,
            yielded: 0,
        }
    }

    /// The directory being listed.
    pub fn dir(&self) -> &Cid {
        &self.dir
    }

    /// How many entries have been yielded so far.
    pub fn yielded(&self) -> u64 {
        self.yielded
    }

    /// The next entry, or `None` at the end of the listing.
    pub async fn next_entry(&mut self) -> Result<Option<DirEntry>, ReadError> {
        let next = self.advance().await;
        match next {
            Ok(Some(e)) => {
                self.yielded += 1;
                if self.yielded > MAX_DIR_ENTRIES {
                    self.state = State::Done;
                    return Err(ReadError::TooManyEntries {
                        dir: self.dir,
                        max: MAX_DIR_ENTRIES,
                    });
                }
                Ok(Some(e))
            }
            Ok(None) => {
                self.state = State::Done;
                Ok(None)
            }
            Err(e) => {
                self.state = State::Done;
                Err(e)
            }
        }
    }

    async fn advance(&mut self) -> Result<Option<DirEntry>, ReadError> {
        loop {
            match &mut self.state {
                State::Done => return Ok(None),
                State::Start => {
                    let Node::Pb(pb) = self.reader.fetch(&self.dir).await? else {
                        return Err(ReadError::NotADirectory { cid: self.dir });
                    };
                    self.state = match pb.fs.kind {
                        DataType::Directory => State::Plain { node: pb, next: 0 },
                        DataType::HamtShard => State::Hamt(Box::new(Hamt::start(self.dir, pb)?)),
                        _ => return Err(ReadError::NotADirectory { cid: self.dir }),
                    };
                }
                State::Plain { node, next } => {
                    let Some(link) = node.links.get(*next) else {
                        return Ok(None);
                    };
                    *next += 1;
                    return entry(&self.dir, link, link.name.as_deref()).map(Some);
                }
                State::Hamt(h) => {
                    let Some(top) = h.stack.last_mut() else {
                        return Ok(None);
                    };
                    let (shard, node, at) = (top.cid, top.node.clone(), top.next);
                    top.next += 1;
                    let Some(link) = node.links.get(at) else {
                        h.stack.pop();
                        h.path.pop();
                        continue;
                    };
                    let name = link.name.as_deref().unwrap_or_default();
                    // The shard was checked when entered: every link has a valid label.
                    let Some((slot, rest)) = hamt::split_link_name(name, h.fanout) else {
                        return Err(malformed(&shard, "HAMT link name has no slot label"));
                    };
                    if rest.is_empty() {
                        let child = link.cid;
                        let depth = h.stack.len();
                        if depth > h.max_depth {
                            return Err(malformed(
                                &child,
                                "HAMT shards nest deeper than the hash of a name allows",
                            ));
                        }
                        if !h.seen.insert(child.hash().to_bytes()) {
                            return Err(ReadError::RepeatedShard {
                                dir: self.dir,
                                shard: Box::new(child),
                            });
                        }
                        let sub = self.reader.shard(&child).await?;
                        check_shard(&child, &sub, h.fanout)?;
                        h.path.push(slot);
                        h.stack.push(Frame {
                            cid: child,
                            node: sub,
                            next: 0,
                        });
                        continue;
                    }
                    let e = entry(&shard, link, Some(rest))?;
                    h.path.push(slot);
                    let placed = hamt::slot_path_matches(rest.as_bytes(), &h.path, h.bits);
                    h.path.pop();
                    if !placed {
                        return Err(malformed(
                            &shard,
                            "HAMT entry sits in a slot its name does not hash to",
                        ));
                    }
                    return Ok(Some(e));
                }
            }
        }
    }
}

impl Hamt {
    fn start(root: Cid, node: Arc<PbDecoded>) -> Result<Self, ReadError> {
        hamt_pad(&root, &node.fs)?;
        let fanout = node.fs.fanout.unwrap_or_default();
        let bits = hamt::fanout_bits(fanout)
            .ok_or_else(|| malformed(&root, "HAMT fanout is not a power of two"))?;
        check_shard(&root, &node, fanout)?;
        Ok(Hamt {
            fanout,
            bits,
            max_depth: hamt::max_shard_depth(bits).min(MAX_DEPTH),
            stack: vec![Frame {
                cid: root,
                node,
                next: 0,
            }],
            path: Vec::new(),
            seen: HashSet::from([root.hash().to_bytes()]),
        })
    }
}

/// The per-shard structure checks (see the module doc).
fn check_shard(cid: &Cid, node: &PbDecoded, fanout: u64) -> Result<(), ReadError> {
    hamt_pad(cid, &node.fs)?;
    if node.fs.fanout != Some(fanout) {
        return Err(malformed(cid, "HAMT shard fanout differs from its root's"));
    }
    // fanout <= 65536 (checked by hamt_pad), so this is at most 8 KiB.
    let mut taken = vec![0u64; (fanout as usize).div_ceil(64)];
    for link in &node.links {
        let name = link.name.as_deref().unwrap_or_default();
        let Some((slot, _)) = hamt::split_link_name(name, fanout) else {
            return Err(malformed(
                cid,
                "HAMT link name does not start with a hex slot label",
            ));
        };
        if slot as u64 >= fanout {
            return Err(malformed(
                cid,
                "HAMT link slot is beyond the shard's fanout",
            ));
        }
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if taken[word] & bit != 0 {
            return Err(malformed(cid, "HAMT shard has two links in one slot"));
        }
        taken[word] |= bit;
    }
    let bitfield = node.fs.data.as_deref().unwrap_or_default();
    let ones: usize = bitfield.iter().map(|b| b.count_ones() as usize).sum();
    let marked = node.links.iter().all(|l| {
        let name = l.name.as_deref().unwrap_or_default();
        hamt::split_link_name(name, fanout).is_some_and(|(s, _)| hamt::bitfield_has(bitfield, s))
    });
    if ones != node.links.len() || !marked {
        return Err(malformed(
            cid,
            "HAMT bitfield disagrees with the shard's links",
        ));
    }
    Ok(())
}
