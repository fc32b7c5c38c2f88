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

    fn shard(&mut self, links: Vec<PbLink>) -> Cid {
        let mut fs = UnixFsData::new(DataType::HamtShard);
        fs.hash_type = Some(0x22);
        fs.fanout = Some(16);
        fs.data = Some(Bytes::from_static(&[0xff, 0xff]));
        self.pb(fs, links)
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

#[test]
fn hamt_shards_list_in_stored_order() {
    let mut b = Builder::default();
    let f = b.raw(b"x");
    let inner = b.shard(vec![link(f, "3Ac"), link(f, "Fb")]);
    let root = b.shard(vec![link(f, "0zz"), link(inner, "4"), link(f, "Ad")]);
    let hostile = b.shard(vec![link(f, "0.."), link(f, "1ok")]);
    let r = b.reader();
    block_on(async {
        let names: Vec<_> = r
            .read_dir(&root)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["zz", "Ac", "b", "d"]);
        // This shard is not laid out by hash, so only absence is meaningful here; hashed
        // lookups are checked against imported shards below.
        assert_eq!(r.lookup(&root, "no such name").await.unwrap(), None);
        let s = r.stat(&root).await.unwrap();
        assert!(s.is_sharded && s.kind == EntryKind::Directory);
        assert!(matches!(
            r.read_dir(&hostile).await,
            Err(ReadError::UnsafeName { .. })
        ));
    });
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
