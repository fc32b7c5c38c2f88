//! Trees that a caller assembles itself instead of walking them from disk (a writable mount's
//! commit): files from a reader with their metadata, directories from their entries, symlinks —
//! the very nodes [`import_path`](super::import_path) makes for the same tree — and the update
//! of a HAMT-sharded directory that rebuilds only the shards on the paths of changed names.
//!
//! # Updating a HAMT
//! A HAMT's layout depends only on its set of entries: a slot holds an entry when exactly one
//! name falls in it, and a sub-shard (built the same way one level down) when two or more do.
//! So a sub-shard that no changed name falls in is the same after the change and is kept by its
//! CID; only the shards on the hash paths of the changed names are encoded again, a slot that
//! gains a second entry becomes a small new sub-shard, and a sub-shard left with one entry
//! collapses into its parent's slot. The result is the HAMT [`build_directory`] makes for the
//! new set of entries (given a canonical old HAMT, as cairn, Kubo and the JS importer write
//! them), for a few new blocks per changed name instead of one block per shard.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use cid::Cid;

use super::file::{self, FileMeta};
use super::{Batcher, ImportError, ImportOptions, Imported};
use crate::block::Block;
use crate::blockstore::StoreError;
use crate::hamt::{self, ShardEntry, ShardLink, ShardParams};
use crate::hash::DAG_PB;
use crate::pb::{PbLink, PbNode};
use crate::reader::{DagReader, ReadError};
use crate::sink::BlockSink;
use crate::source::BlockSource;
use crate::unixfs::{DataType, UnixFsData, UnixTime};

/// Permission bits a directory node leaves out (the UnixFS default).
pub(crate) const DEFAULT_DIR_MODE: u32 = 0o755;
/// Files up to this size are imported on the calling thread (threads cost more than they save).
pub(crate) const SERIAL_FILE_MAX: u64 = 1 << 20;

/// One entry of a directory being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirChild {
    /// The entry name.
    pub name: String,
    /// The entry's root.
    pub cid: Cid,
    /// The cumulative DAG size of the entry (its link's Tsize).
    pub tsize: u64,
    /// A directory that has entries of its own. The sharding estimate counts such a directory
    /// only transiently (see [`needs_sharding`]).
    pub nonempty_dir: bool,
}

/// A directory node that was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirNode {
    /// The directory's root block (a plain directory node or the root shard).
    pub cid: Cid,
    /// Its cumulative DAG size.
    pub tsize: u64,
    /// Whether it is HAMT-sharded.
    pub sharded: bool,
}

/// Why a sharded directory could not be updated in place.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// A shard could not be read.
    #[error(transparent)]
    Read(Box<ReadError>),
    /// The sink failed.
    #[error("storing blocks failed")]
    Store(#[from] StoreError),
    /// The directory is not a HAMT this update can keep (another fanout or hash, or a layout
    /// that is not canonical); build it again from its full listing instead.
    #[error("directory {cid} cannot be updated in place: {reason}")]
    NotCanonical {
        /// The shard in question.
        cid: Cid,
        /// What is unusual about it.
        reason: &'static str,
    },
}

impl From<ReadError> for UpdateError {
    fn from(e: ReadError) -> Self {
        UpdateError::Read(Box::new(e))
    }
}

/// The JS importer's `links-bytes` rule (what `cairn add` applies): shard when the running
/// estimate (name bytes + CID bytes per entry, entries in name order) ever exceeds `threshold`.
/// A non-empty subdirectory counts only at the moment it is added, before its own entries
/// replace it. `children` must be in name-byte order.
pub fn needs_sharding(children: &[DirChild], threshold: usize) -> bool {
    let mut running = 0usize;
    for c in children {
        let est = c.name.len() + c.cid.encoded_len();
        if c.nonempty_dir {
            if running + est > threshold {
                return true;
            }
        } else {
            running += est;
            if running > threshold {
                return true;
            }
        }
    }
    false
}

fn shard_params(opts: &ImportOptions, mode: Option<u32>, mtime: Option<UnixTime>) -> ShardParams {
    ShardParams {
        cid_version: opts.cid_version,
        hash: opts.hash,
        fanout: hamt::DEFAULT_FANOUT,
        mode: mode.filter(|&m| m != DEFAULT_DIR_MODE),
        mtime,
    }
}

/// Encodes a node (links already in order), queues its block, returns its CID and cumulative size.
pub(crate) fn store_node(
    node: &PbNode,
    opts: &ImportOptions,
    out: &mut Batcher,
) -> Result<(Cid, u64), StoreError> {
    let bytes = node.encode();
    let tsize = bytes.len() as u64 + node.links.iter().filter_map(|l| l.tsize).sum::<u64>();
    let block = Block::encode(opts.cid_version, DAG_PB, opts.hash, bytes.into());
    let cid = *block.cid();
    out.push(block)?;
    Ok((cid, tsize))
}

/// A directory over `children` (in name-byte order): a plain node, or a HAMT when
/// [`needs_sharding`] says so. `mode` is left out when it is the default 0755.
pub(crate) fn directory_into(
    children: Vec<DirChild>,
    mode: Option<u32>,
    mtime: Option<UnixTime>,
    opts: &ImportOptions,
    out: &mut Batcher,
) -> Result<DirNode, StoreError> {
    if needs_sharding(&children, opts.hamt_shard_threshold) {
        let params = shard_params(opts, mode, mtime);
        let entries = children
            .into_iter()
            .map(|c| ShardEntry {
                name: c.name,
                cid: c.cid,
                tsize: c.tsize,
            })
            .collect();
        let (cid, tsize) = hamt::build_shard(entries, &params, &mut |b| out.push(b))?;
        return Ok(DirNode {
            cid,
            tsize,
            sharded: true,
        });
    }
    let mut d = UnixFsData::new(DataType::Directory);
    d.mode = mode.filter(|&m| m != DEFAULT_DIR_MODE);
    d.mtime = mtime;
    let node = PbNode {
        links: children
            .into_iter()
            .map(|c| PbLink {
                cid: c.cid,
                name: Some(c.name),
                tsize: Some(c.tsize),
            })
            .collect(),
        data: Some(d.encode().into()),
    };
    let (cid, tsize) = store_node(&node, opts, out)?;
    Ok(DirNode {
        cid,
        tsize,
        sharded: false,
    })
}

/// The UnixFS node of a symlink to `target` (symlinks carry no mode or mtime).
pub(crate) fn symlink_node(target: &str) -> PbNode {
    let mut d = UnixFsData::new(DataType::Symlink);
    d.data = (!target.is_empty()).then(|| target.as_bytes().to_vec().into());
    PbNode {
        links: Vec::new(),
        data: Some(d.encode().into()),
    }
}

/// Builds a directory over `children` (in name-byte order) as `import_path` would: plain, or
/// HAMT-sharded past `opts.hamt_shard_threshold`. With `mode` (left out when 0755) and `mtime`,
/// the node records them (UnixFS 1.5).
pub fn build_directory(
    children: Vec<DirChild>,
    mode: Option<u32>,
    mtime: Option<UnixTime>,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<DirNode, ImportError> {
    opts.validate()?;
    let mut out = Batcher::new(sink);
    let node = directory_into(children, mode, mtime, opts, &mut out)?;
    out.flush()?;
    Ok(node)
}

/// Builds a symlink node to `target`; returns its CID and size as a file-less [`Imported`].
pub fn build_symlink(
    target: &str,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<Imported, ImportError> {
    opts.validate()?;
    let mut out = Batcher::new(sink);
    let (cid, tsize) = store_node(&symlink_node(target), opts, &mut out)?;
    out.flush()?;
    Ok(Imported {
        cid,
        size: 0,
        tsize,
    })
}

/// Imports a file of about `len` bytes from `r`, with metadata as `import_path` records it
/// under `preserve_mode`/`preserve_mtime`: `Some` means "record it" (a mode of 0644 is left out
/// of the node but still makes a one-chunk file a dag-pb node, as in the JS importer).
pub fn import_file<R: Read + Send>(
    r: R,
    len: u64,
    mode: Option<u32>,
    mtime: Option<UnixTime>,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<Imported, ImportError> {
    opts.validate()?;
    let mut out = Batcher::new(sink);
    let meta = FileMeta { mode, mtime };
    let imported = if len <= SERIAL_FILE_MAX {
        file::import_serial(r, opts, &meta, &mut out, &mut |_| {}, &ImportError::Input)?
    } else {
        file::import_parallel(r, opts, &meta, &mut out, &mut |_| {}, &ImportError::Input)?
    };
    out.flush()?;
    Ok(imported)
}

/// The occupied slots of one decoded shard, in slot order.
type Slots = Vec<(usize, ShardLink)>;
/// A changed name and its new entry (`None`: removed).
type Change<'a> = (&'a str, Option<(Cid, u64)>);

/// Reads and checks one shard: a `HAMTShard` of fanout 256 hashed with murmur3, whose links are
/// labelled with increasing slots.
async fn load_shard<S: BlockSource>(
    reader: &DagReader<S>,
    cid: &Cid,
) -> Result<(Slots, UnixFsData), UpdateError> {
    let not = |reason| UpdateError::NotCanonical { cid: *cid, reason };
    if cid.codec() != DAG_PB {
        return Err(not("not a dag-pb node"));
    }
    let bytes = reader.source().get(cid).await.map_err(ReadError::from)?;
    let node = PbNode::decode(&bytes).map_err(|source| ReadError::Pb { cid: *cid, source })?;
    let data = node.data.clone().unwrap_or_default();
    let fs = UnixFsData::decode(&data).map_err(|source| ReadError::UnixFs { cid: *cid, source })?;
    if fs.kind != DataType::HamtShard {
        return Err(not("not a HAMT shard"));
    }
    if fs.fanout != Some(hamt::DEFAULT_FANOUT) || fs.hash_type != Some(hamt::HAMT_HASH_TYPE) {
        return Err(not(
            "fanout or hash function differs from cairn's (256, murmur3)",
        ));
    }
    let mut slots: Slots = Vec::with_capacity(node.links.len());
    for link in node.links {
        let name = link.name.unwrap_or_default();
        let Some((slot, rest)) = hamt::split_link_name(&name, hamt::DEFAULT_FANOUT) else {
            return Err(not("a link name does not start with a slot label"));
        };
        if slot >= hamt::DEFAULT_FANOUT as usize || slots.last().is_some_and(|(s, _)| *s >= slot) {
            return Err(not("link slots are not in increasing order"));
        }
        let tsize = link.tsize.unwrap_or(0);
        let entry = if rest.is_empty() {
            ShardLink::Shard {
                cid: link.cid,
                tsize,
            }
        } else {
            ShardLink::Entry(ShardEntry {
                name: rest.to_string(),
                cid: link.cid,
                tsize,
            })
        };
        slots.push((slot, entry));
    }
    Ok((slots, fs))
}

/// Rebuilds the HAMT-sharded directory `base` with `changes` applied (name to its new entry,
/// `(root CID, cumulative size)`, or `None` to remove it), reading and encoding again only the
/// shards on the hash paths of the changed names (see the module doc). The caller has decided
/// that the new directory is sharded (with [`needs_sharding`] over the full new listing, or
/// because no name was added or removed and no entry changed its estimate). `mode` (left out
/// when 0755) and `mtime` go on the root shard.
pub async fn update_sharded_directory<S: BlockSource>(
    reader: &DagReader<S>,
    base: &Cid,
    changes: &BTreeMap<String, Option<(Cid, u64)>>,
    mode: Option<u32>,
    mtime: Option<UnixTime>,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<DirNode, UpdateError> {
    opts.validate().map_err(|_| UpdateError::NotCanonical {
        cid: *base,
        reason: "invalid import options",
    })?;
    let bits = hamt::fanout_bits(hamt::DEFAULT_FANOUT).unwrap_or(8);
    let max_depth = hamt::max_shard_depth(bits);
    // Every shard on the path of a changed name, read first (the reads are the async part).
    let mut shards: HashMap<Cid, Slots> = HashMap::new();
    let (root_slots, _) = load_shard(reader, base).await?;
    shards.insert(*base, root_slots);
    for name in changes.keys() {
        let mut at = *base;
        let mut depth = 0;
        loop {
            let slot = hamt::bucket_index(name.as_bytes(), depth, bits);
            let next = shards.get(&at).and_then(|slots| {
                slots.iter().find_map(|(s, l)| match l {
                    ShardLink::Shard { cid, .. } if *s == slot => Some(*cid),
                    _ => None,
                })
            });
            let Some(child) = next else { break };
            depth += 1;
            if depth > max_depth {
                return Err(UpdateError::NotCanonical {
                    cid: child,
                    reason: "shards nest deeper than a name's hash can address",
                });
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = shards.entry(child) {
                slot.insert(load_shard(reader, &child).await?.0);
            }
            at = child;
        }
    }
    let params = shard_params(opts, mode, mtime);
    let changes: Vec<Change> = changes.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    let mut out = Batcher::new(sink);
    let outcome = update_level(base, 0, changes, &shards, bits, &params, true, &mut out)?;
    out.flush()?;
    match outcome {
        Outcome::Shard { cid, tsize } => Ok(DirNode {
            cid,
            tsize,
            sharded: true,
        }),
        // The root shard is always encoded.
        Outcome::Empty | Outcome::Single(_) => Err(UpdateError::NotCanonical {
            cid: *base,
            reason: "the root shard vanished",
        }),
    }
}

/// What a shard became after an update.
enum Outcome {
    /// No entry is left in it.
    Empty,
    /// One entry is left: it moves up into the parent's slot.
    Single(ShardEntry),
    /// It is still a shard.
    Shard { cid: Cid, tsize: u64 },
}

#[allow(clippy::too_many_arguments)]
fn update_level(
    cid: &Cid,
    depth: usize,
    changes: Vec<Change>,
    shards: &HashMap<Cid, Slots>,
    bits: u32,
    params: &ShardParams,
    root: bool,
    out: &mut Batcher,
) -> Result<Outcome, UpdateError> {
    let Some(current) = shards.get(cid) else {
        return Err(UpdateError::NotCanonical {
            cid: *cid,
            reason: "a shard on a changed path was not read",
        });
    };
    let mut slots: BTreeMap<usize, ShardLink> = current.iter().cloned().collect();
    let mut groups: BTreeMap<usize, Vec<Change>> = BTreeMap::new();
    for (name, change) in changes {
        let slot = hamt::bucket_index(name.as_bytes(), depth, bits);
        groups.entry(slot).or_default().push((name, change));
    }
    for (slot, group) in groups {
        let replaced = match slots.remove(&slot) {
            Some(ShardLink::Shard { cid: sub, .. }) => {
                match update_level(&sub, depth + 1, group, shards, bits, params, false, out)? {
                    Outcome::Empty => None,
                    Outcome::Single(e) => Some(ShardLink::Entry(e)),
                    Outcome::Shard { cid, tsize } => Some(ShardLink::Shard { cid, tsize }),
                }
            }
            Some(ShardLink::Entry(e)) => rebuild_slot(vec![e], group, depth, bits, params, out)?,
            None => rebuild_slot(Vec::new(), group, depth, bits, params, out)?,
        };
        if let Some(link) = replaced {
            slots.insert(slot, link);
        }
    }
    if !root {
        if slots.is_empty() {
            return Ok(Outcome::Empty);
        }
        if slots.len() == 1 {
            if let Some((_, ShardLink::Entry(e))) = slots.first_key_value() {
                return Ok(Outcome::Single(e.clone()));
            }
        }
    }
    let (block, tsize) = hamt::shard_block(slots.into_iter().collect(), params, root);
    let cid = *block.cid();
    out.push(block)?;
    Ok(Outcome::Shard { cid, tsize })
}

/// The new content of a slot that held `existing` entries (none or one) after `changes`.
fn rebuild_slot(
    existing: Vec<ShardEntry>,
    changes: Vec<Change>,
    depth: usize,
    bits: u32,
    params: &ShardParams,
    out: &mut Batcher,
) -> Result<Option<ShardLink>, StoreError> {
    let mut set: BTreeMap<String, ShardEntry> =
        existing.into_iter().map(|e| (e.name.clone(), e)).collect();
    for (name, change) in changes {
        match change {
            Some((cid, tsize)) => {
                set.insert(
                    name.to_string(),
                    ShardEntry {
                        name: name.to_string(),
                        cid,
                        tsize,
                    },
                );
            }
            None => {
                set.remove(name);
            }
        }
    }
    let mut entries: Vec<ShardEntry> = set.into_values().collect();
    Ok(match entries.len() {
        0 => None,
        1 => entries.pop().map(ShardLink::Entry),
        _ => {
            let (cid, tsize) =
                hamt::build_level(entries, depth + 1, bits, params, false, &mut |b| {
                    out.push(b)
                })?;
            Some(ShardLink::Shard { cid, tsize })
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hash::{cid_for, HashAlg, RAW};

    use crate::test_blocks::MemBlocks as Mem;

    fn child(name: &str, n: u64) -> DirChild {
        let cid = cid_for(1, RAW, HashAlg::Sha2_256, &n.to_le_bytes());
        DirChild {
            name: name.to_string(),
            cid,
            tsize: 8,
            nonempty_dir: false,
        }
    }

    fn listing(n: u64, skip: &[u64]) -> Vec<DirChild> {
        let mut v: Vec<DirChild> = (0..n)
            .filter(|i| !skip.contains(i))
            .map(|i| child(&format!("entry-{i:06}"), i))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// An update of a big HAMT gives the HAMT a fresh build gives, adding, replacing and
    /// removing names (down to sub-shards that collapse), with few new blocks.
    #[test]
    fn updates_match_fresh_builds() {
        let opts = ImportOptions {
            hamt_shard_threshold: 1000,
            ..ImportOptions::default()
        };
        let mem = Mem::default();
        let base = build_directory(listing(3000, &[]), None, None, &opts, &mem).unwrap();
        assert!(base.sharded);
        let reader = DagReader::new(mem.clone());
        let cases: Vec<(Vec<u64>, Vec<u64>, Vec<u64>)> = vec![
            (vec![], vec![7], vec![]),                // one entry changes its CID
            (vec![3000, 3001, 3002], vec![], vec![]), // names added
            (vec![], vec![], (0..2900).collect()),    // most removed: shards collapse
            (vec![5000], vec![1, 2], vec![10, 11, 12, 13]),
        ];
        for (add, modify, remove) in cases {
            let mut changes = BTreeMap::new();
            let mut expected: BTreeMap<String, DirChild> = listing(3000, &[])
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect();
            for i in &add {
                let c = child(&format!("entry-{i:06}"), *i);
                changes.insert(c.name.clone(), Some((c.cid, c.tsize)));
                expected.insert(c.name.clone(), c);
            }
            for i in &modify {
                let mut c = child(&format!("entry-{i:06}"), i + 1_000_000);
                c.tsize = 9;
                changes.insert(c.name.clone(), Some((c.cid, c.tsize)));
                expected.insert(c.name.clone(), c);
            }
            for i in &remove {
                let name = format!("entry-{i:06}");
                changes.insert(name.clone(), None);
                expected.remove(&name);
            }
            let fresh = build_directory(
                expected.into_values().collect(),
                None,
                None,
                &opts,
                &Mem::default(),
            )
            .unwrap();
            let before = *mem.puts.lock().unwrap();
            let updated = block_on(update_sharded_directory(
                &reader, &base.cid, &changes, None, None, &opts, &mem,
            ))
            .unwrap();
            let new_blocks = *mem.puts.lock().unwrap() - before;
            assert_eq!(
                updated,
                fresh,
                "add {add:?} modify {modify:?} remove {} names",
                remove.len()
            );
            if changes.len() <= 3 {
                assert!(
                    new_blocks <= 3 * changes.len() + 1,
                    "{new_blocks} blocks for {} changes",
                    changes.len()
                );
            }
        }
    }

    #[test]
    fn foreign_layouts_are_refused_not_misread() {
        let mem = Mem::default();
        let plain =
            build_directory(listing(3, &[]), None, None, &ImportOptions::default(), &mem).unwrap();
        assert!(!plain.sharded);
        let err = block_on(update_sharded_directory(
            &DagReader::new(mem.clone()),
            &plain.cid,
            &BTreeMap::new(),
            None,
            None,
            &ImportOptions::default(),
            &mem,
        ))
        .unwrap_err();
        assert!(matches!(err, UpdateError::NotCanonical { .. }), "{err}");
    }
}
