//! Links of a block and a depth-first DAG walker over any [`Blockstore`].
//!
//! Supported codecs: dag-pb (its links, in order) and raw (no links). A block of any other
//! codec cannot be walked and yields [`WalkError::UnsupportedCodec`], so that GC and pinning
//! never silently treat an unknown node as a leaf.

use std::collections::HashSet;

use bytes::Bytes;
use cid::Cid;

use crate::blockstore::{Blockstore, StoreError};
use crate::hash::{DAG_CBOR, DAG_PB, RAW};
use crate::pb::{PbError, PbNode};

const IDENTITY: u64 = 0x00;

/// Why a DAG could not be walked (or one block of it).
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The block is not in the store.
    #[error("block {cid} is missing")]
    Missing {
        /// The block.
        cid: Cid,
    },
    /// The stored bytes do not match the CID.
    #[error("block {cid} is corrupt: its content does not match its CID")]
    Corrupt {
        /// The block.
        cid: Cid,
    },
    /// The block claims dag-pb but does not decode.
    #[error("block {cid} is not valid dag-pb")]
    Undecodable {
        /// The block.
        cid: Cid,
        /// The decoder's complaint.
        source: PbError,
    },
    /// The block claims dag-cbor but is not a map cairn can read the links of.
    #[error("block {cid} is not a dag-cbor map cairn can read: {why}")]
    BadCbor {
        /// The block.
        cid: Cid,
        /// What was wrong.
        why: &'static str,
    },
    /// cairn cannot find the links of blocks of this codec.
    #[error("block {cid} has codec 0x{codec:x}, which cairn cannot walk (only dag-pb and raw)")]
    UnsupportedCodec {
        /// The block.
        cid: Cid,
        /// Its multicodec.
        codec: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WalkError {
    /// The block this error is about, if it is about one.
    pub fn cid(&self) -> Option<&Cid> {
        match self {
            WalkError::Missing { cid }
            | WalkError::Corrupt { cid }
            | WalkError::Undecodable { cid, .. }
            | WalkError::BadCbor { cid, .. }
            | WalkError::UnsupportedCodec { cid, .. } => Some(cid),
            WalkError::Store(StoreError::Corrupt { cid }) => Some(cid),
            WalkError::Store(_) => None,
        }
    }
}

/// Whether blocks of `codec` can have links that cairn follows.
pub fn codec_has_links(codec: u64) -> bool {
    codec != RAW
}

/// The links of a block, in order: dag-pb → its links, raw → none, other codecs → error.
pub fn links(cid: &Cid, data: &Bytes) -> Result<Vec<Cid>, WalkError> {
    match cid.codec() {
        RAW => Ok(Vec::new()),
        DAG_PB => PbNode::decode(data)
            .map(|n| n.links.into_iter().map(|l| l.cid).collect())
            .map_err(|source| WalkError::Undecodable { cid: *cid, source }),
        DAG_CBOR => {
            let mut out = Vec::new();
            cbor_links(data, 0, &mut out).map_err(|why| WalkError::BadCbor { cid: *cid, why })?;
            Ok(out)
        }
        codec => Err(WalkError::UnsupportedCodec { cid: *cid, codec }),
    }
}

/// The links of a dag-cbor map whose values are links, other values, or maps of the same kind
/// (what cairn writes: id blocks), in key order.
fn cbor_links(data: &[u8], depth: usize, out: &mut Vec<Cid>) -> Result<(), &'static str> {
    use crate::ipns::cbor::{decode_map, CborValue};
    if depth > 4 {
        return Err("maps nested too deep");
    }
    let map = decode_map(data).map_err(|_| "not a map of links and values")?;
    for (_, v) in map {
        match v {
            CborValue::Link(c) => out.push(c),
            // A nested map (a directory's {dir, id}); arrays and tags other than links could
            // hold links cairn would miss (and GC would then drop what they link), so they
            // are refused; simple values and floats hold none.
            CborValue::Other(raw) => match raw.first().map(|b| b >> 5) {
                Some(5) => cbor_links(&raw, depth + 1, out)?,
                Some(7) => {}
                _ => return Err("arrays and tags other than links are not read"),
            },
            _ => {}
        }
    }
    Ok(())
}

/// How much a [`DagWalk`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkMode {
    /// Read every block and check it against its CID (pin add, pin verify, CAR export).
    Verify,
    /// Read every block, unchecked.
    Read,
    /// Read (and check) only blocks that can have links; raw leaves are reported with
    /// `data: None` without touching the store (GC marking: leaves are neither read nor looked up).
    Structure,
    /// Like `Structure`, but check that every leaf is present (pinning what an import just wrote).
    Present,
}

/// One block reached by a walk.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The CID as the parent linked it (or the root as given).
    pub cid: Cid,
    /// Its bytes, `None` for leaves skipped in [`WalkMode::Structure`].
    pub data: Option<Bytes>,
}

type Hook<'s> = Box<dyn FnMut(&Cid) + Send + 's>;

/// A depth-first, pre-order walk of a DAG that visits each block once (blocks are identified by
/// codec and multihash, so a CIDv0 and CIDv1 of one node count once).
///
/// Memory and time are bounded by the number of distinct blocks, however often the DAG links
/// them: a subtree shared by many parents (a diamond of depth 40 has 2^40 paths but 41 blocks)
/// is walked once, and links to blocks already visited are not even queued.
///
/// A block that fails (missing, corrupt, unsupported) is yielded as an error and its subtree is
/// skipped; the walk carries on with the rest, so a caller can collect every problem or stop at
/// the first.
pub struct DagWalk<'s, B: ?Sized> {
    store: &'s B,
    mode: WalkMode,
    stack: Vec<Cid>,
    seen: HashSet<Vec<u8>>,
    before_read: Option<Hook<'s>>,
}

impl<'s, B: Blockstore + ?Sized> DagWalk<'s, B> {
    /// A walk from `root`.
    pub fn new(store: &'s B, root: Cid, mode: WalkMode) -> Self {
        DagWalk {
            store,
            mode,
            stack: vec![root],
            seen: HashSet::new(),
            before_read: None,
        }
    }

    /// Calls `hook` with every CID just before its block is read (or skipped as a leaf).
    /// Pinning uses it to protect a block from GC before checking that it is present.
    pub fn before_read(mut self, hook: impl FnMut(&Cid) + Send + 's) -> Self {
        self.before_read = Some(Box::new(hook));
        self
    }

    /// Adds another root to walk after the current ones.
    pub fn push_root(&mut self, root: Cid) {
        self.stack.insert(0, root);
    }

    /// Number of distinct blocks visited so far.
    pub fn visited(&self) -> usize {
        self.seen.len()
    }

    /// Treats the blocks of an earlier walk (see [`DagWalk::into_visited`]) as visited, so that
    /// walking several roots that share subtrees reads each shared block once.
    pub fn with_visited(mut self, visited: HashSet<Vec<u8>>) -> Self {
        self.seen = visited;
        self
    }

    /// The identities of the blocks visited (codec and multihash, CIDv1 bytes), to carry into
    /// a walk from another root with [`DagWalk::with_visited`].
    pub fn into_visited(self) -> HashSet<Vec<u8>> {
        self.seen
    }

    fn step(&mut self, cid: Cid) -> Result<Visit, WalkError> {
        if let Some(h) = self.before_read.as_mut() {
            h(&cid);
        }
        if cid.hash().code() == IDENTITY {
            let data = Bytes::copy_from_slice(cid.hash().digest());
            self.push_links(&cid, &data)?;
            return Ok(Visit {
                cid,
                data: Some(data),
            });
        }
        let leaf = !codec_has_links(cid.codec());
        match self.mode {
            WalkMode::Structure if leaf => return Ok(Visit { cid, data: None }),
            WalkMode::Present if leaf => {
                return if self.store.has(&cid)? {
                    Ok(Visit { cid, data: None })
                } else {
                    Err(WalkError::Missing { cid })
                };
            }
            _ => {}
        }
        let data = match self.mode {
            WalkMode::Read => self.store.get(&cid)?,
            WalkMode::Verify | WalkMode::Structure | WalkMode::Present => {
                self.store.get_verified(&cid).map_err(|e| match e {
                    StoreError::Corrupt { cid } => WalkError::Corrupt { cid },
                    e => WalkError::Store(e),
                })?
            }
        }
        .ok_or(WalkError::Missing { cid })?;
        self.push_links(&cid, &data)?;
        Ok(Visit {
            cid,
            data: Some(data),
        })
    }

    fn push_links(&mut self, cid: &Cid, data: &Bytes) -> Result<(), WalkError> {
        let links = links(cid, data)?;
        let seen = &self.seen;
        // A link to a block visited already would be skipped when popped; not queueing it keeps
        // the stack at the distinct blocks still to visit.
        self.stack.extend(
            links
                .into_iter()
                .rev()
                .filter(|c| !seen.contains(&identity(c))),
        );
        Ok(())
    }
}

/// How a walk identifies a block: codec and multihash (as CIDv1 bytes).
fn identity(cid: &Cid) -> Vec<u8> {
    Cid::new_v1(cid.codec(), *cid.hash()).to_bytes()
}

impl<B: Blockstore + ?Sized> Iterator for DagWalk<'_, B> {
    type Item = Result<Visit, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let cid = self.stack.pop()?;
            if self.seen.insert(identity(&cid)) {
                return Some(self.step(cid));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;
    use crate::hash::{cid_for, HashAlg};
    use crate::pb::PbLink;
    use crate::sled_store::{SledStore, StoreOptions};

    fn node(links: &[Cid]) -> Block {
        let n = PbNode {
            links: links
                .iter()
                .map(|c| PbLink {
                    cid: *c,
                    name: Some(String::new()),
                    tsize: Some(1),
                })
                .collect(),
            data: Some(Bytes::from_static(&[8, 2])),
        };
        Block::encode(1, DAG_PB, HashAlg::Sha2_256, Bytes::from(n.encode()))
    }

    #[test]
    fn walks_depth_first_once_each_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), StoreOptions::default()).unwrap();
        let a = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from_static(b"a"));
        let b = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from_static(b"b"));
        let gone = cid_for(1, RAW, HashAlg::Sha2_256, b"gone");
        let mid = node(&[*a.cid(), *b.cid()]);
        let root = node(&[*mid.cid(), *a.cid(), gone]);
        s.put_many(&[a.clone(), b.clone(), mid.clone(), root.clone()])
            .unwrap();

        let order: Vec<_> = DagWalk::new(&s, *root.cid(), WalkMode::Verify).collect();
        let ok: Vec<Cid> = order
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|v| v.cid))
            .collect();
        assert_eq!(ok, vec![*root.cid(), *mid.cid(), *a.cid(), *b.cid()]);
        let errs: Vec<_> = order.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].cid(), Some(&gone));

        // Structure mode never touches leaves, so the missing leaf goes unnoticed.
        let n = DagWalk::new(&s, *root.cid(), WalkMode::Structure)
            .filter(|r| r.is_err())
            .count();
        assert_eq!(n, 0);
    }

    #[test]
    fn shared_subtrees_are_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), StoreOptions::default()).unwrap();
        // A diamond of depth 40: every level links its child twice (2^40 paths, 41 blocks).
        let mut cur = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from_static(b"leaf"));
        let mut blocks = vec![cur.clone()];
        for _ in 0..40 {
            cur = node(&[*cur.cid(), *cur.cid()]);
            blocks.push(cur.clone());
        }
        s.put_many(&blocks).unwrap();
        let mut walk = DagWalk::new(&s, *cur.cid(), WalkMode::Verify);
        let visits: Vec<Visit> = walk.by_ref().map(|v| v.unwrap()).collect();
        assert_eq!(visits.len(), 41);
        assert!(walk.stack.is_empty());

        // A second root sharing the whole diamond visits only itself.
        let other = node(&[*cur.cid()]);
        s.put(&other).unwrap();
        let seen = walk.into_visited();
        let again: Vec<_> = DagWalk::new(&s, *other.cid(), WalkMode::Verify)
            .with_visited(seen)
            .map(|v| v.unwrap().cid)
            .collect();
        assert_eq!(again, vec![*other.cid()]);
    }

    #[test]
    fn deep_chains_walk_without_recursion() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), StoreOptions::default()).unwrap();
        let mut cur = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from_static(b"end"));
        let mut blocks = vec![cur.clone()];
        for _ in 0..100_000 {
            cur = node(&[*cur.cid()]);
            blocks.push(cur.clone());
        }
        for chunk in blocks.chunks(10_000) {
            s.put_many(chunk).unwrap();
        }
        let visits: Vec<Visit> = DagWalk::new(&s, *cur.cid(), WalkMode::Structure)
            .map(|v| v.unwrap())
            .collect();
        assert_eq!(visits.len(), 100_001);
    }

    #[test]
    fn unknown_codecs_are_errors() {
        let cid = cid_for(1, 0x0129, HashAlg::Sha2_256, b"{}");
        assert!(matches!(
            links(&cid, &Bytes::from_static(b"{}")),
            Err(WalkError::UnsupportedCodec { codec: 0x0129, .. })
        ));
    }

    #[test]
    fn dag_cbor_id_blocks_have_their_links_and_bad_ones_are_errors() {
        use crate::identity::{id_block, IdEntries};
        let sub = cid_for(1, DAG_CBOR, HashAlg::Sha2_256, b"\xa0");
        let mut e = IdEntries::new();
        e.insert("dir".into(), (7, Some(sub)));
        e.insert("file".into(), (8, None));
        let b = id_block(&e).unwrap();
        assert_eq!(b.cid().codec(), DAG_CBOR);
        assert_eq!(links(b.cid(), b.data()).unwrap(), vec![sub]);
        // {"a": []}: an array could hold links; refused rather than skipped.
        let array = Bytes::from_static(b"\xa1\x61a\x80");
        let cid = cid_for(1, DAG_CBOR, HashAlg::Sha2_256, &array);
        assert!(matches!(
            links(&cid, &array),
            Err(WalkError::BadCbor { .. })
        ));
        let cid = cid_for(1, DAG_CBOR, HashAlg::Sha2_256, b"\x01");
        assert!(matches!(
            links(&cid, &Bytes::from_static(b"\x01")),
            Err(WalkError::BadCbor { .. })
        ));
    }
}
