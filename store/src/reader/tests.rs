use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use proptest::prelude::*;

use super::*;
use crate::hash::{cid_for, HashAlg};

/// An in-memory block source.
#[derive(Debug, Clone, Default)]
struct Mem(Arc<HashMap<Cid, Bytes>>);

impl BlockSource for Mem {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send {
        std::future::ready(
            self.0
                .get(cid)
                .cloned()
                .ok_or(GetError::NotFoundLocally(*cid)),
        )
    }
    fn has_local(&self, cid: &Cid) -> bool {
        self.0.contains_key(cid)
    }
}

#[derive(Default)]
struct Builder(HashMap<Cid, Bytes>);

impl Builder {
    fn put(&mut self, codec: u64, bytes: Vec<u8>) -> Cid {
        let version = if codec == RAW { 1 } else { 0 };
        let cid = cid_for(version, codec, HashAlg::Sha2_256, &bytes);
        self.0.insert(cid, Bytes::from(bytes));
        cid
    }

    fn raw(&mut self, data: &[u8]) -> Cid {
        self.put(RAW, data.to_vec())
    }

    fn pb(&mut self, fs: UnixFsData, links: Vec<PbLink>) -> Cid {
        let node = PbNode {
            links,
            data: Some(Bytes::from(fs.encode())),
        };
        self.put(DAG_PB, node.encode())
    }

    /// A file node with its own `data` and `children` of the given sizes.
    fn file(&mut self, data: &[u8], children: &[(Cid, u64)]) -> Cid {
        let mut fs = UnixFsData::new(DataType::File);
        fs.data = (!data.is_empty()).then(|| Bytes::copy_from_slice(data));
        fs.blocksizes = children.iter().map(|c| c.1).collect();
        fs.filesize = Some(data.len() as u64 + fs.blocksizes.iter().sum::<u64>());
        let links = children.iter().map(|c| link(c.0, "")).collect();
        self.pb(fs, links)
    }

    /// A balanced tree over `data` (the shape Kubo builds).
    fn balanced(&mut self, data: &[u8], chunk: usize, fanout: usize, raw_leaves: bool) -> Cid {
        let mut level: Vec<(Cid, u64)> = if data.is_empty() {
            vec![(self.file(&[], &[]), 0)]
        } else {
            data.chunks(chunk)
                .map(|c| {
                    let cid = if raw_leaves {
                        self.raw(c)
                    } else {
                        self.file(c, &[])
                    };
                    (cid, c.len() as u64)
                })
                .collect()
        };
        while level.len() > 1 {
            level = level
                .chunks(fanout)
                .map(|group| (self.file(&[], group), group.iter().map(|g| g.1).sum()))
                .collect();
        }
        level[0].0
    }

    fn dir(&mut self, entries: &[(&str, Cid)]) -> Cid {
        let links = entries.iter().map(|(n, c)| link(*c, n)).collect();
        self.pb(UnixFsData::new(DataType::Directory), links)
    }

    fn reader(self) -> DagReader<Mem> {
        DagReader::with_node_cache(Mem(Arc::new(self.0)), 64)
    }
}

fn link(cid: Cid, name: &str) -> PbLink {
    PbLink {
        cid,
        name: Some(name.to_string()),
        tsize: Some(1),
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

async fn cat(r: &DagReader<Mem>, cid: &Cid, offset: u64) -> Vec<u8> {
    let mut c = r.cursor(cid, offset);
    let mut out = Vec::new();
    while let Some(chunk) = c.next_chunk().await.unwrap() {
        assert!(!chunk.is_empty());
        out.extend_from_slice(&chunk);
    }
    out
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ranged_reads_equal_the_slice(
        len in 0usize..20_000,
        chunk in 1usize..3000,
        fanout in 2usize..8,
        raw_leaves in any::<bool>(),
        reads in proptest::collection::vec((0u64..22_000, 0usize..9000), 1..8),
    ) {
        let data = pattern(len);
        let mut b = Builder::default();
        let root = b.balanced(&data, chunk, fanout, raw_leaves);
        let r = b.reader();
        block_on(async {
            prop_assert_eq!(r.stat(&root).await.unwrap().size, len as u64);
            for (off, n) in reads {
                let got = r.read(&root, off, n).await.unwrap();
                let from = (off as usize).min(len);
                let to = (off as usize).saturating_add(n).min(len);
                prop_assert_eq!(&got[..], &data[from..to]);

                let leaves = r.leaves(&root, off, n as u64).await.unwrap();
                let mut covered = from as u64;
                for (_, start, l) in &leaves {
                    prop_assert!(*start <= covered && *l > 0);
                    covered = covered.max(start + l);
                }
                prop_assert!(covered >= to as u64);
                prop_assert_eq!(leaves.is_empty(), from == to);

                prop_assert_eq!(cat(&r, &root, off).await, data[from..].to_vec());
            }
            Ok(())
        })?;
    }

    #[test]
    fn lying_blocksizes_never_panic(sizes in proptest::collection::vec(any::<u64>(), 0..4), off in any::<u64>(), n in 0usize..100) {
        let mut b = Builder::default();
        let leaf = b.raw(b"0123456789");
        let mut fs = UnixFsData::new(DataType::File);
        fs.blocksizes = sizes.clone();
        let links = sizes.iter().map(|_| link(leaf, "")).collect();
        let root = b.pb(fs, links);
        let r = b.reader();
        block_on(async {
            let _ = r.stat(&root).await;
            let _ = r.read(&root, off, n).await;
            let _ = r.leaves(&root, off, n as u64).await;
            let mut c = r.cursor(&root, off);
            while let Ok(Some(_)) = c.next_chunk().await {}
        });
    }
}

#[test]
fn node_with_data_and_children_reads_in_order() {
    let mut b = Builder::default();
    let a = b.raw(b"CCCC");
    let leaf = b.file(b"DD", &[]);
    let mid = b.file(b"BBB", &[(a, 4), (leaf, 2)]);
    let root = b.file(b"AA", &[(mid, 9), (a, 4)]);
    let r = b.reader();
    block_on(async {
        let all = b"AABBBCCCCDDCCCC";
        assert_eq!(r.stat(&root).await.unwrap().size, 15);
        for off in 0..17u64 {
            for n in 0..17usize {
                let got = r.read(&root, off, n).await.unwrap();
                let from = (off as usize).min(15);
                let to = (off as usize + n).min(15);
                assert_eq!(&got[..], &all[from..to], "read({off}, {n})");
            }
            assert_eq!(
                cat(&r, &root, off).await,
                all[(off as usize).min(15)..].to_vec()
            );
        }
        let leaves = r.leaves(&root, 3, 7).await.unwrap();
        assert_eq!(leaves, vec![(mid, 2, 3), (a, 5, 4), (leaf, 9, 2)]);
        assert_eq!(&r.node_data(&mid).await.unwrap()[..], b"BBB");
    });
}

#[test]
fn lying_blocksizes_are_malformed() {
    let mut b = Builder::default();
    let leaf = b.raw(b"12345678");
    let liar = b.file(&[], &[(leaf, 10)]);
    let mut fs = UnixFsData::new(DataType::File);
    fs.blocksizes = vec![8, 8];
    let miscounted = b.pb(fs, vec![link(leaf, "")]);
    let mut fs = UnixFsData::new(DataType::File);
    fs.blocksizes = vec![u64::MAX, 8];
    let overflowing = b.pb(fs, vec![link(leaf, ""), link(leaf, "")]);
    let r = b.reader();
    block_on(async {
        let e = r.read(&liar, 0, 100).await.unwrap_err();
        assert!(
            matches!(e, ReadError::Malformed { cid, .. } if cid == leaf),
            "{e}"
        );
        let mut c = r.cursor(&liar, 0);
        assert!(matches!(
            c.next_chunk().await,
            Err(ReadError::Malformed { .. })
        ));
        for bad in [miscounted, overflowing] {
            let e = r.stat(&bad).await.unwrap_err();
            assert!(
                matches!(e, ReadError::Malformed { cid, .. } if cid == bad),
                "{e}"
            );
            assert!(e.to_string().contains(&bad.to_string()));
        }
    });
}

#[test]
fn eof_is_clamped() {
    let mut b = Builder::default();
    let root = b.balanced(&pattern(1000), 100, 3, true);
    let empty = b.balanced(&[], 100, 3, true);
    let r = b.reader();
    block_on(async {
        assert_eq!(r.read(&root, 990, 100).await.unwrap().len(), 10);
        assert!(r.read(&root, 1000, 100).await.unwrap().is_empty());
        assert!(r
            .read(&root, u64::MAX, usize::MAX)
            .await
            .unwrap()
            .is_empty());
        assert!(r.read(&empty, 0, 10).await.unwrap().is_empty());
        assert_eq!(r.stat(&empty).await.unwrap().size, 0);
        assert!(cat(&r, &empty, 0).await.is_empty());
    });
}

#[test]
fn directories_list_look_up_and_resolve() {
    let mut b = Builder::default();
    let f = b.raw(b"hi");
    let mut fs = UnixFsData::new(DataType::Symlink);
    fs.data = Some(Bytes::from_static(b"../target"));
    let sym = b.pb(fs, vec![]);
    let sub = b.dir(&[("f", f)]);
    let root = b.dir(&[("zeta", f), ("sub", sub), ("läuft ✓", sym)]);
    let r = b.reader();
    block_on(async {
        let names: Vec<_> = r
            .read_dir(&root)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["zeta", "sub", "läuft ✓"]);
        assert_eq!(r.lookup(&root, "sub").await.unwrap(), Some(sub));
        assert_eq!(r.lookup(&root, "nope").await.unwrap(), None);
        assert_eq!(r.resolve(&root, &["sub", "f"]).await.unwrap(), f);
        let e = r.resolve(&root, &["sub", "g"]).await.unwrap_err();
        assert!(matches!(e, ReadError::NotFound { dir, .. } if dir == sub));
        assert!(matches!(
            r.read_dir(&f).await,
            Err(ReadError::NotADirectory { .. })
        ));
        assert!(matches!(
            r.read(&root, 0, 1).await,
            Err(ReadError::NotAFile { .. })
        ));

        let s = r.stat(&sym).await.unwrap();
        assert_eq!(
            (s.kind, s.size, s.symlink_target.as_deref()),
            (EntryKind::Symlink, 9, Some("../target"))
        );
        let d = r.stat(&root).await.unwrap();
        assert_eq!((d.kind, d.is_sharded), (EntryKind::Directory, false));
        assert_eq!(r.stat(&f).await.unwrap().kind, EntryKind::File);
    });
}

#[test]
fn hostile_names_are_refused() {
    for bad in ["..", ".", "a/b", "", "nul\0"] {
        let mut b = Builder::default();
        let f = b.raw(b"x");
        let root = b.dir(&[("ok", f), (bad, f)]);
        let r = b.reader();
        block_on(async {
            let e = r.read_dir(&root).await.unwrap_err();
            assert!(
                matches!(&e, ReadError::UnsafeName { dir, name } if *dir == root && name == bad),
                "{e}"
            );
            assert_eq!(r.lookup(&root, bad).await.unwrap(), None);
            assert!(matches!(
                r.resolve(&root, &[bad]).await,
                Err(ReadError::UnsafeName { .. })
            ));
            assert_eq!(r.lookup(&root, "ok").await.unwrap(), Some(f));
        });
    }
}

/// A HAMT shard node with the given fanout, bitfield and links.
fn shard_node(b: &mut Builder, fanout: u64, bitfield: &[u8], links: Vec<PbLink>) -> Cid {
    let mut fs = UnixFsData::new(DataType::HamtShard);
    fs.hash_type = Some(0x22);
    fs.fanout = Some(fanout);
    fs.data = (!bitfield.is_empty()).then(|| Bytes::copy_from_slice(bitfield));
    b.pb(fs, links)
}

/// A full 256-slot bitfield.
const ALL_SLOTS: [u8; 32] = [0xff; 32];

/// Builds a valid HAMT with `crate::hamt` and returns its blocks and root.
fn built_hamt(names: &[String], fanout: u64) -> (Builder, Cid) {
    let mut b = Builder::default();
    let f = b.raw(b"x");
    let entries = names
        .iter()
        .map(|n| crate::hamt::ShardEntry {
            name: n.clone(),
            cid: f,
            tsize: 1,
        })
        .collect();
    let params = crate::hamt::ShardParams {
        cid_version: 1,
        hash: HashAlg::Sha2_256,
        fanout,
        mode: None,
        mtime: None,
    };
    let (root, _) = crate::hamt::build_shard::<()>(entries, &params, &mut |blk| {
        let (cid, data) = blk.into_parts();
        b.0.insert(cid, data);
        Ok(())
    })
    .unwrap();
    (b, root)
}

#[test]
fn hamt_shards_list_in_stored_order() {
    // Stored order is depth-first slot order, which is the order of the names' hash streams.
    let names: Vec<String> = (0..300).map(|i| format!("n{i}")).collect();
    let (b, root) = built_hamt(&names, 16);
    let r = b.reader();
    let mut want = names.clone();
    want.sort_by_key(|n| crate::hamt::hamt_hash(n.as_bytes()));
    block_on(async {
        let listed: Vec<_> = r
            .read_dir(&root)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(listed, want);
        for n in names.iter().step_by(17) {
            assert!(r.lookup(&root, n).await.unwrap().is_some(), "{n}");
        }
        assert_eq!(r.lookup(&root, "no such name").await.unwrap(), None);
        let s = r.stat(&root).await.unwrap();
        assert!(s.is_sharded && s.kind == EntryKind::Directory && s.links > 0);
    });
}

#[test]
fn hamt_with_unsafe_or_huge_names_is_refused() {
    let mut b = Builder::default();
    let f = b.raw(b"x");
    // Slot 0x0 at fanout 16 for both names is not what they hash to, but the name checks come
    // first and are what this test is about.
    let hostile = shard_node(&mut b, 16, &[0x03], vec![link(f, "0.."), link(f, "1ok")]);
    let long = "y".repeat(MAX_NAME_LEN + 1);
    let huge = b.dir(&[("ok", f), (long.as_str(), f)]);
    let r = b.reader();
    block_on(async {
        assert!(matches!(
            r.read_dir(&hostile).await,
            Err(ReadError::UnsafeName { .. })
        ));
        let e = r.read_dir(&huge).await.unwrap_err();
        assert!(
            matches!(e, ReadError::NameTooLong { dir, len, .. } if dir == huge && len == long.len()),
            "{e}"
        );
        assert_eq!(r.lookup(&huge, &long).await.unwrap(), None);
        // A streamed listing yields what comes before the bad entry, then the error.
        let mut c = r.dir_cursor(&huge);
        assert_eq!(c.next_entry().await.unwrap().unwrap().name, "ok");
        assert!(c.next_entry().await.is_err());
        assert!(c.next_entry().await.unwrap().is_none());
    });
}

/// The DAG: 256 links at each level all to the same child shard, 256 entries at the
/// bottom: 5 blocks claiming 256^4 entries.
fn repeated_shards(b: &mut Builder, levels: usize) -> Cid {
    let f = b.raw(b"x");
    let bottom: Vec<PbLink> = (0..256)
        .map(|i| link(f, &format!("{i:02X}file-{i}")))
        .collect();
    let mut cur = shard_node(b, 256, &ALL_SLOTS, bottom);
    for _ in 0..levels {
        let links = (0..256).map(|i| link(cur, &format!("{i:02X}"))).collect();
        cur = shard_node(b, 256, &ALL_SLOTS, links);
    }
    cur
}

#[test]
fn hamt_that_repeats_a_shard_is_refused_at_once() {
    let mut b = Builder::default();
    let root = repeated_shards(&mut b, 3);
    assert_eq!(b.0.len(), 5);
    let r = b.reader();
    block_on(async {
        let mut c = r.dir_cursor(&root);
        let mut n = 0u64;
        let err = loop {
            match c.next_entry().await {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("listed {n} entries of a hostile HAMT"),
                Err(e) => break e,
            }
        };
        // The bottom shard's entries are not where their names hash to, so at most its first
        // entries come out before the structure check or the repeat check stops the listing.
        assert!(n <= 256, "{n} entries before the error");
        assert!(
            matches!(
                err,
                ReadError::RepeatedShard { .. } | ReadError::Malformed { .. }
            ),
            "{err}"
        );
        let named = err.cid().unwrap();
        assert!(
            r.source().has_local(named),
            "{err} names one of the 5 blocks"
        );
        assert!(err.to_string().contains(&named.to_string()));
    });
}

#[test]
fn repeated_shard_is_named() {
    // Entries hashed correctly at the bottom, and the same sub-shard twice above them: the
    // second visit is refused as a repeat.
    let names: Vec<String> = (0..600).map(|i| format!("r{i}")).collect();
    let (mut b, inner_root) = built_hamt(&names, 256);
    let root = shard_node(
        &mut b,
        256,
        &[0x03],
        vec![link(inner_root, "00"), link(inner_root, "01")],
    );
    let r = b.reader();
    block_on(async {
        let e = r.read_dir(&root).await.unwrap_err();
        // The sub-shard's entries do not hash to slot 00 at depth 0 either; whichever check
        // trips first, nothing is listed twice.
        assert!(
            matches!(
                e,
                ReadError::RepeatedShard { .. } | ReadError::Malformed { .. }
            ),
            "{e}"
        );
    });
    // Without hashing in the way: an empty sub-shard linked from every slot.
    let mut b = Builder::default();
    let empty = shard_node(&mut b, 256, &[], vec![]);
    let links = (0..256).map(|i| link(empty, &format!("{i:02X}"))).collect();
    let root = shard_node(&mut b, 256, &ALL_SLOTS, links);
    let r = b.reader();
    block_on(async {
        let e = r.read_dir(&root).await.unwrap_err();
        assert!(
            matches!(&e, ReadError::RepeatedShard { dir, shard } if *dir == root && **shard == empty),
            "{e}"
        );
        assert!(e.to_string().contains(&empty.to_string()), "{e}");
    });
}

#[test]
fn hamt_structure_violations_are_malformed() {
    let names: Vec<String> = (0..2).map(|i| format!("v{i}")).collect();
    let slot = |n: &str| crate::hamt::bucket_index(n.as_bytes(), 0, 8);
    let mut b = Builder::default();
    let f = b.raw(b"x");
    let label = |n: &str| format!("{:02X}{n}", slot(n));
    let good_bits = {
        let mut bits = [0u8; 32];
        for n in &names {
            let s = slot(n);
            bits[31 - s / 8] |= 1 << (s % 8);
        }
        bits
    };
    let good_links = || names.iter().map(|n| link(f, &label(n))).collect::<Vec<_>>();
    assert_ne!(
        slot(&names[0]),
        slot(&names[1]),
        "fixture needs distinct slots"
    );
    let ok = shard_node(&mut b, 256, &good_bits, good_links());
    let no_bits = shard_node(&mut b, 256, &[], good_links());
    let wrong_fanout_child = shard_node(&mut b, 16, &[0x01], vec![link(f, "0a")]);
    let with_bad_child = shard_node(&mut b, 256, &[0x01], vec![link(wrong_fanout_child, "00")]);
    let misplaced = {
        let wrong = (slot(&names[0]) + 1) % 256;
        let mut bits = [0u8; 32];
        bits[31 - wrong / 8] |= 1 << (wrong % 8);
        shard_node(
            &mut b,
            256,
            &bits,
            vec![link(f, &format!("{wrong:02X}{}", names[0]))],
        )
    };
    let two_in_one = shard_node(&mut b, 256, &[0x01], vec![link(f, "00a"), link(f, "00b")]);
    let bad_label = shard_node(&mut b, 256, &[0x01], vec![link(f, "zz")]);
    let beyond = shard_node(&mut b, 32, &[0x01], vec![link(f, "3Fa")]);
    let mut deep = shard_node(&mut b, 256, &[], vec![]);
    for _ in 0..40 {
        deep = shard_node(&mut b, 256, &[0x01], vec![link(deep, "00")]);
    }
    let r = b.reader();
    block_on(async {
        assert_eq!(r.read_dir(&ok).await.unwrap().len(), 2);
        for (cid, what) in [
            (no_bits, "bitfield"),
            (with_bad_child, "fanout"),
            (misplaced, "hash"),
            (two_in_one, "two links"),
            (bad_label, "slot label"),
            (beyond, "beyond"),
            (deep, "deeper"),
        ] {
            let e = r.read_dir(&cid).await.unwrap_err();
            assert!(
                matches!(e, ReadError::Malformed { .. }) && e.to_string().contains(what),
                "{what}: {e}"
            );
            assert!(e.cid().is_some());
        }
    });
}

#[test]
fn million_entry_hamt_streams() {
    let names: Vec<String> = (0..1_000_000).map(|i| format!("f{i}")).collect();
    let (b, root) = built_hamt(&names, 256);
    let r = b.reader();
    block_on(async {
        let mut c = r.dir_cursor(&root);
        let mut n = 0usize;
        while let Some(e) = c.next_entry().await.unwrap() {
            assert!(e.name.starts_with('f'));
            n += 1;
        }
        assert_eq!(n, names.len());
        for name in names.iter().step_by(99_991) {
            let e = r.lookup_entry(&root, name).await.unwrap().unwrap();
            assert_eq!(&e.name, name);
            assert_eq!(e.tsize, Some(1));
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Rewiring links of a valid HAMT (a link to another shard, a duplicated link) never makes
    /// a listing yield more entries than the distinct blocks hold, and never panics.
    #[test]
    fn rewired_hamts_stay_bounded(
        edits in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<bool>()), 1..6),
    ) {
        let names: Vec<String> = (0..800).map(|i| format!("p{i}")).collect();
        let (mut b, root) = built_hamt(&names, 16);
        let shards: Vec<Cid> = b.0.keys().filter(|c| c.codec() == DAG_PB).copied().collect();
        let mut root = root;
        for (from, to, dup) in edits {
            let victim = if from % 3 == 0 { root } else { shards[from as usize % shards.len()] };
            let pb = PbNode::decode(&b.0[&victim]).unwrap();
            let mut links = pb.links.clone();
            if links.is_empty() {
                continue;
            }
            let at = to as usize % links.len();
            if dup {
                let copy = links[at].clone();
                links.insert(at, copy);
            } else {
                links[at].cid = shards[to as usize % shards.len()];
            }
            let node = PbNode { links, data: pb.data.clone() };
            let new = b.put(DAG_PB, node.encode());
            if victim == root {
                root = new;
            }
        }
        let distinct_links: usize = b
            .0
            .iter()
            .filter(|(c, _)| c.codec() == DAG_PB)
            .map(|(_, d)| PbNode::decode(d).unwrap().links.len())
            .sum();
        let r = b.reader();
        let n = block_on(async {
            let mut c = r.dir_cursor(&root);
            let mut n = 0usize;
            while let Ok(Some(_)) = c.next_entry().await {
                n += 1;
            }
            n
        });
        prop_assert!(n <= distinct_links, "{} entries from {} links", n, distinct_links);
    }
}

#[test]
fn deep_dags_are_refused() {
    let mut b = Builder::default();
    let mut cur = b.raw(b"x");
    for _ in 0..(MAX_DEPTH + 5) {
        cur = b.file(&[], &[(cur, 1)]);
    }
    let r = b.reader();
    block_on(async {
        assert!(matches!(
            r.read(&cur, 0, 1).await,
            Err(ReadError::TooDeep { .. })
        ));
        let mut c = r.cursor(&cur, 0);
        assert!(matches!(
            c.next_chunk().await,
            Err(ReadError::TooDeep { .. })
        ));
    });
}

#[test]
fn missing_blocks_pass_through() {
    let mut b = Builder::default();
    let gone = cid_for(1, RAW, HashAlg::Sha2_256, b"gone");
    let root = b.file(&[], &[(gone, 4)]);
    let r = b.reader();
    block_on(async {
        let e = r.read(&root, 0, 4).await.unwrap_err();
        assert!(matches!(e, ReadError::Get(GetError::NotFoundLocally(c)) if c == gone));
        assert_eq!(e.cid(), Some(&gone));
        // leaves() does not fetch raw leaves.
        assert_eq!(r.leaves(&root, 0, 4).await.unwrap(), vec![(gone, 0, 4)]);
    });
}

/// Collects imported blocks.
#[derive(Default)]
struct Collect(std::sync::Mutex<HashMap<Cid, Bytes>>);

impl crate::sink::BlockSink for Collect {
    fn put_blocks(
        &self,
        blocks: Vec<crate::block::Block>,
    ) -> Result<(), crate::blockstore::StoreError> {
        let mut map = self.0.lock().unwrap();
        for b in blocks {
            let (cid, data) = b.into_parts();
            map.insert(cid, data);
        }
        Ok(())
    }
}

impl Collect {
    fn reader(self) -> DagReader<Mem> {
        DagReader::new(Mem(Arc::new(self.0.into_inner().unwrap())))
    }
}

fn import_bytes(data: &[u8], opts: &crate::importer::ImportOptions) -> (Cid, DagReader<Mem>) {
    let sink = Collect::default();
    let root = crate::importer::import_reader(data, opts, &sink, &mut |_| {}).unwrap();
    (root.cid, sink.reader())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn imported_files_read_back(
        len in 0usize..300_000,
        chunk in 1000usize..40_000,
        max_links in 2usize..10,
        v0 in any::<bool>(),
        reads in proptest::collection::vec((0u64..310_000, 0usize..100_000), 1..6),
    ) {
        let data = pattern(len);
        let mut opts = crate::importer::ImportOptions::with_cid_version(u8::from(!v0));
        opts.chunker = crate::chunker::ChunkerSpec::Fixed(chunk);
        opts.max_links = max_links;
        let (root, r) = import_bytes(&data, &opts);
        block_on(async {
            prop_assert_eq!(r.stat(&root).await.unwrap().size, len as u64);
            prop_assert_eq!(cat(&r, &root, 0).await, data.clone());
            for (off, n) in reads {
                let from = (off as usize).min(len);
                let to = (off as usize).saturating_add(n).min(len);
                prop_assert_eq!(&r.read(&root, off, n).await.unwrap()[..], &data[from..to]);
            }
            Ok(())
        })?;
    }
}

#[test]
fn imported_sharded_directory_lists_and_looks_up() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..3000)
        .map(|i| format!("entry-{i:05}-{}", "x".repeat(i % 7)))
        .collect();
    for n in &names {
        std::fs::write(dir.path().join(n), n.as_bytes()).unwrap();
    }
    let sink = Collect::default();
    let opts = crate::importer::ImportOptions {
        hamt_shard_threshold: 1000,
        ..Default::default()
    };
    let root = crate::importer::import_path(dir.path(), &opts, &sink, &mut |_| {})
        .unwrap()
        .cid;
    let r = sink.reader();
    block_on(async {
        assert!(r.stat(&root).await.unwrap().is_sharded);
        let mut listed: Vec<_> = r
            .read_dir(&root)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        listed.sort();
        assert_eq!(listed, names);
        for n in names.iter().step_by(97) {
            let cid = r.lookup(&root, n).await.unwrap().unwrap();
            assert_eq!(&r.read(&cid, 0, 100).await.unwrap()[..], n.as_bytes());
            assert_eq!(r.resolve(&root, &[n.as_str()]).await.unwrap(), cid);
        }
        assert_eq!(r.lookup(&root, "entry-99999").await.unwrap(), None);
    });
}

/// A memory source whose blocks are all "at hand".
#[derive(Debug, Clone)]
struct AtHand(Mem);

impl BlockSource for AtHand {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send {
        self.0.get(cid)
    }
    fn has_local(&self, cid: &Cid) -> bool {
        self.0.has_local(cid)
    }
    fn get_now(&self, cid: &Cid) -> Option<Bytes> {
        self.0 .0.get(cid).cloned()
    }
}

#[test]
fn lookups_without_waiting_agree_with_lookups() {
    let names: Vec<String> = (0..3000).map(|i| format!("w{i}")).collect();
    let (b, root) = built_hamt(&names, 256);
    let blocks = Arc::new(b.0);
    // Nothing at hand and nothing cached: it cannot answer.
    let cold = DagReader::with_node_cache(Mem(blocks.clone()), 1024);
    assert!(cold.lookup_entry_now(&root, &names[0]).is_none());
    block_on(async {
        // Once the listing has passed through the cache, it can.
        let listed = cold.read_dir(&root).await.unwrap();
        assert_eq!(listed.len(), names.len());
    });
    let hot = DagReader::with_node_cache(AtHand(Mem(blocks)), 1024);
    for r in [&cold as &dyn LookupNow, &hot] {
        for n in names.iter().step_by(37) {
            let now = r.now(&root, n).expect("answerable").unwrap().unwrap();
            assert_eq!(&now.name, n);
        }
        assert!(r
            .now(&root, "absent")
            .expect("answerable")
            .unwrap()
            .is_none());
    }
    block_on(async {
        for n in names.iter().step_by(101) {
            let waited = hot.lookup_entry(&root, n).await.unwrap();
            assert_eq!(hot.lookup_entry_now(&root, n).unwrap().unwrap(), waited);
            let child = waited.unwrap().cid;
            assert_eq!(
                hot.stat_now(&child).unwrap().unwrap(),
                hot.stat(&child).await.unwrap()
            );
        }
    });
}

/// `lookup_entry_now` over readers of different sources.
trait LookupNow {
    fn now(&self, dir: &Cid, name: &str) -> Option<Result<Option<DirEntry>, ReadError>>;
}

impl<S: BlockSource> LookupNow for DagReader<S> {
    fn now(&self, dir: &Cid, name: &str) -> Option<Result<Option<DirEntry>, ReadError>> {
        self.lookup_entry_now(dir, name)
    }
}
