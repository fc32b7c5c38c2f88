//! HAMT-sharded UnixFS directories (Kubo / JS `ipfs-unixfs-importer` compatible).
//!
//! A large directory is stored as a hash array mapped trie of dag-pb nodes of UnixFS type
//! `HAMTShard`, each with `fanout` slots (256 by default, so 8 bits of hash per level) and
//! `hashType` 0x22 (murmur3-x64-64, see [`hamt_hash`]).
//!
//! # Format of one shard node
//! - `Data`: UnixFS `{ Type: HAMTShard, Data: bitfield, hashType: 0x22, fanout: 256 }` (+ mode/mtime on
//!   the root shard only). The bitfield marks the occupied slots: slot `i` is bit `i % 8` of byte
//!   `len - 1 - i / 8` (a big-endian integer with leading zero bytes stripped; see [`bitfield_has`]).
//! - Links, in slot order: an entry in slot `i` is named `label(i) + entry name`; a sub-shard in slot
//!   `i` is named just `label(i)`. `label(i)` is `i` in upper-case hex, zero-padded to the width of
//!   `fanout - 1` (2 digits for 256), see [`slot_label`] and [`split_link_name`].
//! - A slot holds an entry if exactly one name of the directory falls in it at this depth, and a
//!   sub-shard if two or more do.
//!
//! # Looking a name up
//! ```text
//! depth = 0; node = root
//! loop:
//!   slot = bucket_index(name, depth, fanout_bits(node.fanout))
//!   if !bitfield_has(node.bitfield, slot): not found
//!   find the link whose name starts with slot_label(slot, fanout)
//!   match split_link_name(link.name, fanout):
//!     (slot, "")   => node = load(link.cid); depth += 1      // sub-shard
//!     (slot, rest) => found if rest == name, else not found
//! ```

use cid::Cid;

use crate::block::Block;
use crate::hash::{HashAlg, DAG_PB};
use crate::murmur3::murmur3_x64_64;
use crate::pb::{PbLink, PbNode};
use crate::unixfs::{DataType, UnixFsData, UnixTime};

/// Multihash code of murmur3-x64-64, the `hashType` of UnixFS shards.
pub(crate) const HAMT_HASH_TYPE: u64 = 0x22;
/// The fanout Kubo and the JS importer use.
pub(crate) const DEFAULT_FANOUT: u64 = 256;

/// The 8-byte murmur3-x64-64 hash of an entry name, in the order its bits are consumed
/// (most significant bit of byte 0 first). With fanout 256, byte `d` is the slot at depth `d`.
pub(crate) fn hamt_hash(name: &[u8]) -> [u8; 8] {
    murmur3_x64_64(name)
}

/// The `word`-th 8-byte hash of the infinite hash stream of `name`: word 0 is `hamt_hash(name)`,
/// word `k > 0` is `hamt_hash(name ++ [k])` (how the JS importer extends the hash past 64 bits).
fn hash_word(name: &[u8], word: usize) -> [u8; 8] {
    if word == 0 {
        hamt_hash(name)
    } else {
        let mut v = Vec::with_capacity(name.len() + 1);
        v.extend_from_slice(name);
        // The JS importer appends the depth as one byte.
        v.push((word & 0xff) as u8);
        hamt_hash(&v)
    }
}

/// The hash stream of one name, read `bits` at a time; each 64-bit word is hashed once.
pub(crate) struct HashStream<'a> {
    name: &'a [u8],
    cached: Option<(usize, [u8; 8])>,
}

impl<'a> HashStream<'a> {
    pub(crate) fn new(name: &'a [u8]) -> Self {
        HashStream { name, cached: None }
    }

    /// The slot at `depth` in shards of `2^bits` slots.
    pub(crate) fn slot(&mut self, depth: usize, bits: u32) -> usize {
        let start = depth * bits as usize;
        let mut index = 0usize;
        for pos in start..start + bits as usize {
            let word = pos / 64;
            let bytes = match self.cached {
                Some((w, b)) if w == word => b,
                _ => {
                    let b = hash_word(self.name, word);
                    self.cached = Some((word, b));
                    b
                }
            };
            let within = pos % 64;
            let bit = (bytes[within / 8] >> (7 - within % 8)) & 1;
            index = (index << 1) | usize::from(bit);
        }
        index
    }
}

/// The slot of `name` at `depth` in shards of `2^bits` slots: `bits` bits of the hash stream
/// starting at bit `depth * bits`, most significant first. `bits` must be 1..=16.
pub(crate) fn bucket_index(name: &[u8], depth: usize, bits: u32) -> usize {
    HashStream::new(name).slot(depth, bits)
}

/// Whether `name` belongs where it was found: at every depth `d`, its slot is `path[d]`.
/// A HAMT whose entries fail this was not built by hashing their names (or was rearranged).
pub(crate) fn slot_path_matches(name: &[u8], path: &[usize], bits: u32) -> bool {
    let mut stream = HashStream::new(name);
    path.iter()
        .enumerate()
        .all(|(depth, &slot)| stream.slot(depth, bits) == slot)
}

/// Bits of the hash stream a HAMT may consume before it is "deeper than its hash allows".
/// Go implementations stop at the 64 bits of murmur3-x64-64; the JS importer (and cairn's)
/// extend the stream for names that collide on those, which takes a deliberate collision to
/// need. 256 bits leave room for that and still bound the depth (32 levels at fanout 256).
pub(crate) const MAX_HASH_BITS: usize = 256;

/// The deepest shard depth (the root shard is depth 0) a HAMT of `2^bits` slots may have.
pub(crate) fn max_shard_depth(bits: u32) -> usize {
    (MAX_HASH_BITS / bits.max(1) as usize).saturating_sub(1)
}

/// `log2(fanout)` if `fanout` is a power of two between 2 and 65536.
pub(crate) fn fanout_bits(fanout: u64) -> Option<u32> {
    (fanout.is_power_of_two() && (2..=65536).contains(&fanout)).then(|| fanout.trailing_zeros())
}

/// Width in hex digits of slot labels for `fanout` (2 for 256).
pub(crate) fn label_width(fanout: u64) -> usize {
    let mut n = fanout.saturating_sub(1);
    let mut w = 1;
    while n >= 16 {
        n >>= 4;
        w += 1;
    }
    w
}

/// The link-name prefix of `slot`: upper-case hex, zero-padded to [`label_width`].
pub(crate) fn slot_label(slot: usize, fanout: u64) -> String {
    format!("{:0width$X}", slot, width = label_width(fanout))
}

/// Splits a shard link name into its slot and the entry name (empty for a sub-shard).
/// `None` if the label is not valid hex of the right width.
pub(crate) fn split_link_name(name: &str, fanout: u64) -> Option<(usize, &str)> {
    let w = label_width(fanout);
    let label = name.get(..w)?;
    if !label
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return None;
    }
    let slot = usize::from_str_radix(label, 16).ok()?;
    Some((slot, &name[w..]))
}

/// Whether `slot` is marked occupied in a shard's bitfield (big-endian, leading zeros stripped).
pub(crate) fn bitfield_has(bitfield: &[u8], slot: usize) -> bool {
    let byte = slot / 8;
    if byte >= bitfield.len() {
        return false;
    }
    bitfield[bitfield.len() - 1 - byte] & (1 << (slot % 8)) != 0
}

/// How many occupied slots come before `slot` in a bitfield: the index of `slot`'s link in a
/// shard whose links are in slot order (as every implementation writes them).
pub(crate) fn ones_before(bitfield: &[u8], slot: usize) -> usize {
    let len = bitfield.len();
    let whole = (slot / 8).min(len);
    let mut n: usize = bitfield[len - whole..]
        .iter()
        .map(|b| b.count_ones() as usize)
        .sum();
    if slot / 8 < len {
        let partial = bitfield[len - 1 - slot / 8] & ((1u8 << (slot % 8)) - 1);
        n += partial.count_ones() as usize;
    }
    n
}

/// Encodes occupied slots as a bitfield: big-endian, leading zero bytes stripped (as the JS
/// importer writes it).
fn bitfield_bytes(slots: &[usize]) -> Vec<u8> {
    let Some(&max) = slots.iter().max() else {
        return Vec::new();
    };
    let len = max / 8 + 1;
    let mut out = vec![0u8; len];
    for &s in slots {
        out[len - 1 - s / 8] |= 1 << (s % 8);
    }
    out
}

/// One entry of a directory to shard.
#[derive(Debug, Clone)]
pub(crate) struct ShardEntry {
    /// Entry name (UTF-8, no `/`).
    pub name: String,
    /// The entry's root.
    pub cid: Cid,
    /// Cumulative DAG size of the entry.
    pub tsize: u64,
}

/// How to encode shard nodes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShardParams {
    /// CID version of the shard nodes.
    pub cid_version: u8,
    /// Hash function of the shard nodes.
    pub hash: HashAlg,
    /// Slots per node (a power of two).
    pub fanout: u64,
    /// Mode of the directory (root shard only).
    pub mode: Option<u32>,
    /// Mtime of the directory (root shard only).
    pub mtime: Option<UnixTime>,
}

/// Builds the shard nodes of a directory and hands each block to `emit` (children first).
/// Returns the root shard's CID and the cumulative size of the directory's DAG.
pub(crate) fn build_shard<E>(
    entries: Vec<ShardEntry>,
    params: &ShardParams,
    emit: &mut dyn FnMut(Block) -> Result<(), E>,
) -> Result<(Cid, u64), E> {
    let bits = fanout_bits(params.fanout).unwrap_or(8);
    build_level(entries, 0, bits, params, true, emit)
}

/// Builds a HAMT-sharded UnixFS directory over `entries` (name, entry root, cumulative size) as
/// the importer does (fanout 256, CIDv1, sha2-256), handing every block to `emit`, children
/// first, and returns the root shard. For tools and tests that need a large directory without
/// files on disk; names are taken as given (the reader refuses unsafe ones).
pub fn build_sharded_directory(
    entries: Vec<(String, Cid, u64)>,
    emit: &mut dyn FnMut(Block),
) -> Cid {
    let entries = entries
        .into_iter()
        .map(|(name, cid, tsize)| ShardEntry { name, cid, tsize })
        .collect();
    let params = ShardParams {
        cid_version: 1,
        hash: HashAlg::Sha2_256,
        fanout: DEFAULT_FANOUT,
        mode: None,
        mtime: None,
    };
    let built = build_shard::<std::convert::Infallible>(entries, &params, &mut |b| {
        emit(b);
        Ok(())
    });
    match built {
        Ok((cid, _)) => cid,
        Err(never) => match never {},
    }
}

/// Builds the shard at `depth` over `entries` (all of which fall in this shard's slot path):
/// a slot that one entry falls in holds that entry, a slot that two or more fall in holds a
/// sub-shard built the same way one level down. Blocks go to `emit`, children first.
pub(crate) fn build_level<E>(
    entries: Vec<ShardEntry>,
    depth: usize,
    bits: u32,
    params: &ShardParams,
    root: bool,
    emit: &mut dyn FnMut(Block) -> Result<(), E>,
) -> Result<(Cid, u64), E> {
    let mut slots: std::collections::BTreeMap<usize, Vec<ShardEntry>> = Default::default();
    for e in entries {
        let slot = bucket_index(e.name.as_bytes(), depth, bits);
        slots.entry(slot).or_default().push(e);
    }
    let mut links = Vec::with_capacity(slots.len());
    for (slot, mut group) in slots {
        if group.len() == 1 {
            let e = group.remove(0);
            links.push((slot, ShardLink::Entry(e)));
        } else {
            let (cid, tsize) = build_level(group, depth + 1, bits, params, false, emit)?;
            links.push((slot, ShardLink::Shard { cid, tsize }));
        }
    }
    let (block, tsize) = shard_block(links, params, root);
    let cid = *block.cid();
    emit(block)?;
    Ok((cid, tsize))
}

/// What one occupied slot of a shard holds.
#[derive(Debug, Clone)]
pub(crate) enum ShardLink {
    /// The only entry whose name falls in this slot.
    Entry(ShardEntry),
    /// A sub-shard holding the two or more entries that fall in this slot.
    Shard {
        /// The sub-shard.
        cid: Cid,
        /// Its cumulative DAG size.
        tsize: u64,
    },
}

/// Encodes one shard node from its occupied slots (in slot order); the root shard carries the
/// directory's mode and mtime. Returns the block and the shard's cumulative DAG size.
pub(crate) fn shard_block(
    slots: Vec<(usize, ShardLink)>,
    params: &ShardParams,
    root: bool,
) -> (Block, u64) {
    let occupied: Vec<usize> = slots.iter().map(|(s, _)| *s).collect();
    let mut children_size = 0u64;
    let links: Vec<PbLink> = slots
        .into_iter()
        .map(|(slot, link)| {
            let label = slot_label(slot, params.fanout);
            match link {
                ShardLink::Entry(e) => {
                    children_size += e.tsize;
                    PbLink {
                        cid: e.cid,
                        name: Some(label + &e.name),
                        tsize: Some(e.tsize),
                    }
                }
                ShardLink::Shard { cid, tsize } => {
                    children_size += tsize;
                    PbLink {
                        cid,
                        name: Some(label),
                        tsize: Some(tsize),
                    }
                }
            }
        })
        .collect();
    let mut data = UnixFsData::new(DataType::HamtShard);
    let bitfield = bitfield_bytes(&occupied);
    data.data = (!bitfield.is_empty()).then(|| bitfield.into());
    data.hash_type = Some(HAMT_HASH_TYPE);
    data.fanout = Some(params.fanout);
    if root {
        data.mode = params.mode;
        data.mtime = params.mtime;
    }
    let node = PbNode {
        links,
        data: Some(data.encode().into()),
    };
    let bytes = node.encode();
    let tsize = bytes.len() as u64 + children_size;
    let block = Block::encode(params.cid_version, DAG_PB, params.hash, bytes.into());
    (block, tsize)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hash::{cid_for, RAW};

    #[test]
    fn bucket_index_reads_hash_bytes_msb_first() {
        let h = hamt_hash(b"hello");
        assert_eq!(h, [0xcb, 0xd8, 0xa7, 0xb3, 0x41, 0xbd, 0x9b, 0x02]);
        for (d, byte) in h.iter().enumerate() {
            assert_eq!(bucket_index(b"hello", d, 8), usize::from(*byte));
        }
        assert_eq!(bucket_index(b"hello", 0, 4), 0xc);
        assert_eq!(bucket_index(b"hello", 1, 4), 0xb);
        // Past 64 bits the stream continues with hash(name ++ [1]).
        assert_eq!(
            bucket_index(b"hello", 8, 8),
            usize::from(hamt_hash(b"hello\x01")[0])
        );
    }

    #[test]
    fn labels_and_bitfields() {
        assert_eq!(label_width(256), 2);
        assert_eq!(label_width(16), 1);
        assert_eq!(label_width(4096), 3);
        assert_eq!(slot_label(10, 256), "0A");
        assert_eq!(split_link_name("0Afoo", 256), Some((10, "foo")));
        assert_eq!(split_link_name("FF", 256), Some((255, "")));
        assert_eq!(split_link_name("0afoo", 256), None);
        assert_eq!(split_link_name("Z", 256), None);
        // Vectors printed by the JS importer's `sparse-array` bitField, reversed.
        assert_eq!(bitfield_bytes(&[0]), vec![0x01]);
        assert_eq!(bitfield_bytes(&[7]), vec![0x80]);
        assert_eq!(bitfield_bytes(&[8]), vec![0x01, 0x00]);
        let mut b255 = vec![0u8; 32];
        b255[0] = 0x80;
        assert_eq!(bitfield_bytes(&[255]), b255);
        b255[31] = 0x01;
        assert_eq!(bitfield_bytes(&[0, 255]), b255);
        for s in [0, 255] {
            assert!(bitfield_has(&b255, s));
        }
        assert_eq!(ones_before(&b255, 0), 0);
        assert_eq!(ones_before(&b255, 255), 1);
        let some = bitfield_bytes(&[1, 3, 8, 9, 200]);
        for (slot, before) in [(0, 0), (1, 0), (3, 1), (8, 2), (9, 3), (200, 4), (255, 5)] {
            assert_eq!(ones_before(&some, slot), before, "slot {slot}");
        }
        assert!(!bitfield_has(&b255, 1));
        assert!(!bitfield_has(&[0x01], 300));
    }

    #[test]
    fn every_entry_is_reachable_by_lookup() {
        let entries: Vec<ShardEntry> = (0..2000)
            .map(|i| {
                let name = format!("entry-{i}");
                ShardEntry {
                    cid: cid_for(1, RAW, HashAlg::Sha2_256, name.as_bytes()),
                    name,
                    tsize: 1,
                }
            })
            .collect();
        let params = ShardParams {
            cid_version: 1,
            hash: HashAlg::Sha2_256,
            fanout: 256,
            mode: None,
            mtime: None,
        };
        let mut blocks = std::collections::HashMap::new();
        let (root, _) = build_shard::<()>(entries.clone(), &params, &mut |b| {
            blocks.insert(*b.cid(), b.data().clone());
            Ok(())
        })
        .unwrap();
        for e in &entries {
            let mut node_cid = root;
            let mut depth = 0;
            let found = loop {
                let node = PbNode::decode(&blocks[&node_cid]).unwrap();
                let data = UnixFsData::decode(node.data.as_ref().unwrap()).unwrap();
                let slot = bucket_index(e.name.as_bytes(), depth, 8);
                assert!(bitfield_has(data.data.as_deref().unwrap_or(&[]), slot));
                let label = slot_label(slot, 256);
                let link = node
                    .links
                    .iter()
                    .find(|l| l.name.as_deref().unwrap().starts_with(&label))
                    .unwrap();
                match split_link_name(link.name.as_deref().unwrap(), 256).unwrap() {
                    (_, "") => {
                        node_cid = link.cid;
                        depth += 1;
                    }
                    (_, rest) => break (rest == e.name).then_some(link.cid),
                }
            };
            assert_eq!(found, Some(e.cid));
        }
    }
}
