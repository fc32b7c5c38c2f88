//! The blockstore contract suite (run against `SledStore` and an in-memory store), plus
//! fault injection, pins, GC racing imports, the repo lock, corruption detection and CAR.
//!
//! `cargo test --release -p cairn-tests --test store_contract -- --ignored --nocapture` also
//! prints the store's throughput and disk overhead beside plain files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use cairn_tests::pseudo_random;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cairn_store::{
    cid_for, import_reader, Block, BlockSink, Blockstore, Bytes, CarError, Cid, DagWalk, HashAlg,
    ImportOptions, PinError, PinKind, Repo, RepoError, SledStore, StoreError, StoreOptions,
    StoreSink, StoreStats, WalkError, WalkMode, DAG_PB, DEFAULT_CHUNK_SIZE, RAW,
};

// ---------------------------------------------------------------------------------------------
// Helpers

fn raw(data: Vec<u8>) -> Block {
    Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from(data))
}

fn opts(chunk: usize) -> ImportOptions {
    ImportOptions {
        chunker: format!("size-{chunk}").parse().unwrap(),
        ..ImportOptions::default()
    }
}

fn import(
    data: &[u8],
    sink: &dyn BlockSink,
    chunk: usize,
) -> Result<Cid, cairn_store::ImportError> {
    import_reader(data, &opts(chunk), sink, &mut |_| {}).map(|i| i.cid)
}

/// Every CID of a DAG, read and verified.
fn dag_cids(store: &SledStore, root: Cid) -> Result<Vec<Cid>, WalkError> {
    DagWalk::new(store, root, WalkMode::Verify)
        .map(|v| v.map(|v| v.cid))
        .collect()
}

fn new_repo() -> (tempfile::TempDir, Repo) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(&dir.path().join("repo")).unwrap();
    (dir, repo)
}

// ---------------------------------------------------------------------------------------------
// A simple in-memory store: the reference the contract is checked against.

#[derive(Default)]
struct MemStore {
    blocks: Mutex<HashMap<Vec<u8>, (Cid, Bytes)>>,
}

impl Blockstore for MemStore {
    fn put(&self, block: &Block) -> Result<bool, StoreError> {
        let mut m = self.blocks.lock().unwrap();
        let key = block.cid().hash().to_bytes();
        if m.contains_key(&key) {
            return Ok(false);
        }
        m.insert(key, (*block.cid(), block.data().clone()));
        Ok(true)
    }
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .blocks
            .lock()
            .unwrap()
            .get(&cid.hash().to_bytes())
            .map(|(_, b)| b.clone()))
    }
    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self
            .blocks
            .lock()
            .unwrap()
            .contains_key(&cid.hash().to_bytes()))
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        Ok(self.get(cid)?.map(|b| b.len() as u64))
    }
    fn delete(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self
            .blocks
            .lock()
            .unwrap()
            .remove(&cid.hash().to_bytes())
            .is_some())
    }
    fn cids(&self) -> Box<dyn Iterator<Item = Result<Cid, StoreError>> + Send + '_> {
        let v: Vec<_> = self
            .blocks
            .lock()
            .unwrap()
            .iter()
            .map(|(_, (c, _))| Ok(Cid::new_v1(c.codec(), *c.hash())))
            .collect();
        Box::new(v.into_iter())
    }
    fn stats(&self) -> Result<StoreStats, StoreError> {
        let m = self.blocks.lock().unwrap();
        let bytes = m.values().map(|(_, b)| b.len() as u64).sum();
        Ok(StoreStats {
            blocks: m.len() as u64,
            bytes,
            disk_bytes: 0,
        })
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Fails every write after the first `budget` successful ones (fault injection).
struct FailAfter<B> {
    inner: B,
    budget: AtomicUsize,
}

impl<B: Blockstore> FailAfter<B> {
    fn new(inner: B, budget: usize) -> Self {
        FailAfter {
            inner,
            budget: AtomicUsize::new(budget),
        }
    }
    fn spend(&self) -> Result<(), StoreError> {
        self.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .map(|_| ())
            .map_err(|_| StoreError::Internal("injected write failure"))
    }
}

impl<B: Blockstore> Blockstore for FailAfter<B> {
    fn put(&self, block: &Block) -> Result<bool, StoreError> {
        self.spend()?;
        self.inner.put(block)
    }
    fn put_many(&self, blocks: &[Block]) -> Result<(), StoreError> {
        self.spend()?;
        self.inner.put_many(blocks)
    }
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.inner.has(cid)
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        self.inner.size(cid)
    }
    fn delete(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.inner.delete(cid)
    }
    fn cids(&self) -> Box<dyn Iterator<Item = Result<Cid, StoreError>> + Send + '_> {
        self.inner.cids()
    }
    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats()
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

/// A sink that fails after `budget` batches (an import dying half-way).
struct FailingSink<'a> {
    inner: &'a dyn BlockSink,
    budget: AtomicUsize,
}

impl BlockSink for FailingSink<'_> {
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        self.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .map_err(|_| StoreError::Internal("injected sink failure"))?;
        self.inner.put_blocks(blocks)
    }
}

// ---------------------------------------------------------------------------------------------
// The contract

fn contract<S: Blockstore>(s: &S) {
    let c = DEFAULT_CHUNK_SIZE;
    let sizes = [0, 1, c - 1, c, c + 1, 2 << 20];
    let blocks: Vec<Block> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| raw(pseudo_random(n, i as u64)))
        .collect();
    let node = Block::encode(
        0,
        DAG_PB,
        HashAlg::Sha2_256,
        Bytes::from_static(&[0x0a, 0x02, 0x08, 0x01]),
    );

    let before = s.stats().unwrap();
    assert_eq!((before.blocks, before.bytes), (0, 0));
    for b in &blocks {
        assert!(!s.has(b.cid()).unwrap());
        assert_eq!(s.get(b.cid()).unwrap(), None);
        assert_eq!(s.size(b.cid()).unwrap(), None);
        assert!(
            s.put(b).unwrap(),
            "first put of {} bytes is new",
            b.data().len()
        );
        assert!(
            !s.put(b).unwrap(),
            "second put of {} bytes is not",
            b.data().len()
        );
    }
    // A batch with duplicates inside and overlap with what is stored.
    s.put_many(&[node.clone(), node.clone(), blocks[2].clone()])
        .unwrap();
    s.flush().unwrap();

    for (b, &n) in blocks.iter().zip(&sizes) {
        assert!(s.has(b.cid()).unwrap());
        assert_eq!(s.size(b.cid()).unwrap(), Some(n as u64));
        assert_eq!(s.get(b.cid()).unwrap().as_ref(), Some(b.data()));
        assert_eq!(s.get_verified(b.cid()).unwrap().as_ref(), Some(b.data()));
    }
    // CIDv0 and CIDv1 of one dag-pb node are one block.
    let v1 = Cid::new_v1(DAG_PB, *node.cid().hash());
    assert!(s.has(&v1).unwrap());
    assert_eq!(s.get_verified(&v1).unwrap().as_ref(), Some(node.data()));

    let st = s.stats().unwrap();
    assert_eq!(st.blocks, sizes.len() as u64 + 1);
    assert_eq!(
        st.bytes,
        sizes.iter().sum::<usize>() as u64 + node.data().len() as u64
    );
    let mut listed: Vec<Vec<u8>> = s.cids().map(|c| c.unwrap().hash().to_bytes()).collect();
    listed.sort();
    let mut want: Vec<Vec<u8>> = blocks
        .iter()
        .chain([&node])
        .map(|b| b.cid().hash().to_bytes())
        .collect();
    want.sort();
    assert_eq!(listed, want);

    for b in &blocks[..3] {
        assert!(s.delete(b.cid()).unwrap());
        assert!(!s.delete(b.cid()).unwrap());
        assert!(!s.has(b.cid()).unwrap());
        assert_eq!(s.get(b.cid()).unwrap(), None);
    }
    let st = s.stats().unwrap();
    assert_eq!(st.blocks, sizes.len() as u64 - 2);
    assert_eq!(
        st.bytes,
        sizes[3..].iter().sum::<usize>() as u64 + node.data().len() as u64
    );
    // Re-adding a deleted block works.
    assert!(s.put(&blocks[1]).unwrap());

    // Wrong bytes under a CID are caught by get_verified, which names the CID.
    for n in [3, DEFAULT_CHUNK_SIZE + 1] {
        let good = raw(pseudo_random(n, 99 + n as u64));
        let bad = Block::trusted(*good.cid(), Bytes::from(pseudo_random(n, 7)));
        s.put(&bad).unwrap();
        match s.get_verified(good.cid()) {
            Err(StoreError::Corrupt { cid }) => assert_eq!(cid, *good.cid()),
            other => panic!("corruption not detected: {other:?}"),
        }
        assert!(s.delete(good.cid()).unwrap());
    }
}

#[test]
fn contract_memory_store() {
    contract(&MemStore::default());
}

#[test]
fn contract_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    contract(&SledStore::open(dir.path(), StoreOptions::default()).unwrap());
}

#[test]
fn contract_sled_store_everything_inline_and_everything_in_files() {
    for inline_max in [0, 4 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            inline_max,
            ..StoreOptions::default()
        };
        contract(&SledStore::open(dir.path(), opts).unwrap());
    }
}

#[test]
fn contract_through_fault_wrapper_with_room_to_spare() {
    contract(&FailAfter::new(MemStore::default(), 1000));
}

// ---------------------------------------------------------------------------------------------
// Fault injection: failed writes leave no pin behind.

#[test]
fn import_into_failing_store_fails_cleanly() {
    let store = Arc::new(FailAfter::new(MemStore::default(), 2));
    let data = pseudo_random(4 << 20, 1);
    let err = import(&data, &StoreSink(store.clone()), 1024).unwrap_err();
    let err = chain(&err);
    assert!(err.contains("injected write failure"), "{err}");
}

#[test]
fn failed_import_leaves_no_pin_and_gc_clears_its_blocks() {
    let (_d, repo) = new_repo();
    let data = pseudo_random(64 * 1024, 2);
    let full_root = import(&data, &cairn_store::NullSink, 1024).unwrap();

    let session = repo.session();
    let failing = FailingSink {
        inner: &session,
        budget: AtomicUsize::new(1),
    };
    assert!(import(&data, &failing, 1024).is_err());
    drop(session);
    assert!(
        repo.store().stats().unwrap().blocks > 0,
        "the first batch went in"
    );
    assert_eq!(repo.pins().count().unwrap(), 0);

    // Pinning the intended root fails and names a missing block; still no pin.
    match repo.pins().add(full_root, PinKind::Recursive, Some("x")) {
        Err(PinError::Incomplete { root, source }) => {
            let WalkError::Missing { cid } = *source else {
                panic!("not missing: {source}")
            };
            assert_eq!(root, full_root);
            assert_eq!(cid, full_root, "the root node is written last");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(repo.pins().count().unwrap(), 0);

    let report = repo.gc().unwrap();
    assert!(report.removed_blocks > 0);
    assert_eq!(repo.store().stats().unwrap().blocks, 0);
    assert!(repo.verify().unwrap().ok());
}

// ---------------------------------------------------------------------------------------------
// Pins

#[test]
fn pins_add_ls_rm_verify_and_gc_keeps_them() {
    let (_d, repo) = new_repo();
    let store = repo.store();
    let a = pseudo_random(50_000, 10);
    let b = pseudo_random(30_000, 11);
    let s = repo.session();
    let root_a = import(&a, &s, 4096).unwrap();
    s.pin(root_a, Some("a")).unwrap();
    let s = repo.session();
    let root_b = import(&b, &s, 4096).unwrap();
    s.commit().unwrap();
    let lone = raw(pseudo_random(100, 12));
    store.put(&lone).unwrap();
    repo.pins().add(*lone.cid(), PinKind::Direct, None).unwrap();

    let pins = repo.pins().list().unwrap();
    assert_eq!(pins.len(), 2);
    let pa = repo.pins().get(&root_a).unwrap().unwrap();
    assert_eq!(
        (pa.kind, pa.name.as_deref()),
        (PinKind::Recursive, Some("a"))
    );
    assert_eq!(
        repo.pins().list_kind(PinKind::Direct).unwrap()[0].cid,
        *lone.cid()
    );
    assert_eq!(
        repo.pins().indirect().unwrap().len(),
        dag_cids(&store, root_a).unwrap().len() - 1
    );
    assert!(matches!(
        repo.pins().add(root_a, PinKind::Direct, None),
        Err(PinError::AlreadyRecursive { .. })
    ));

    let b_blocks = dag_cids(&store, root_b).unwrap().len();
    let gc = repo.gc().unwrap();
    assert_eq!(gc.removed_blocks as usize, b_blocks);
    assert!(gc.removed.contains(&Cid::new_v1(DAG_PB, *root_b.hash())));
    assert!(!store.has(&root_b).unwrap());
    assert!(dag_cids(&store, root_a).is_ok());
    assert!(store.has(lone.cid()).unwrap());
    assert!(repo.pins().verify().unwrap().iter().all(|r| r.ok()));

    // Corrupt one leaf of a: pin verify reports it against the right pin and block.
    let leaf = dag_cids(&store, root_a).unwrap()[3];
    store
        .put_unchecked_for_tests(&leaf, b"not the leaf")
        .unwrap();
    let reports = repo.pins().verify().unwrap();
    let ra = reports.iter().find(|r| r.pin.cid == root_a).unwrap();
    assert!(!ra.ok());
    assert_eq!(ra.problems[0].cid(), Some(&leaf));
    assert!(ra.to_string().contains(&leaf.to_string()));
    // Pinning anything over the corrupt block fails, naming it.
    repo.pins().remove(&root_a).unwrap();
    let err = repo
        .pins()
        .add(root_a, PinKind::Recursive, None)
        .unwrap_err();
    let err = chain(&err);
    assert!(err.contains(&leaf.to_string()), "{err}");
    assert!(repo.pins().get(&root_a).unwrap().is_none());

    assert!(repo.pins().remove(lone.cid()).unwrap());
    assert!(!repo.pins().remove(lone.cid()).unwrap());
}

#[test]
fn pins_and_roots_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let (root, kept) = {
        let repo = Repo::init(&path).unwrap();
        let s = repo.session();
        let root = import(&pseudo_random(20_000, 20), &s, 1024).unwrap();
        s.pin(root, Some("n")).unwrap();
        let s = repo.session();
        let kept = import(&pseudo_random(5_000, 21), &s, 1024).unwrap();
        s.commit().unwrap();
        repo.roots().set("mfs", kept).unwrap();
        (root, kept)
    };
    let repo = Repo::open(&path).unwrap();
    assert_eq!(
        repo.pins().get(&root).unwrap().unwrap().name.as_deref(),
        Some("n")
    );
    assert_eq!(
        repo.roots().list().unwrap(),
        vec![("mfs".to_string(), kept)]
    );
    assert_eq!(repo.gc().unwrap().removed_blocks, 0);
    repo.roots().remove("mfs").unwrap();
    assert!(repo.gc().unwrap().removed_blocks > 0);
    assert!(dag_cids(&repo.store(), root).is_ok());
}

// ---------------------------------------------------------------------------------------------
// GC racing imports

#[test]
fn gc_in_a_loop_never_loses_blocks_of_running_imports() {
    let (_d, repo) = new_repo();
    let repo = Arc::new(repo);
    let done = Arc::new(AtomicBool::new(false));
    let gcs = {
        let (repo, done) = (repo.clone(), done.clone());
        std::thread::spawn(move || {
            let mut runs = 0u32;
            let mut removed = 0u64;
            while !done.load(Ordering::SeqCst) || runs < 3 {
                removed += repo.gc().unwrap().removed_blocks;
                runs += 1;
            }
            (runs, removed)
        })
    };
    let mut roots = Vec::new();
    for i in 0..30u64 {
        // Every third import repeats an earlier, unpinned one: its blocks already exist and
        // may be being swept while this session dedups against them.
        let seed = if i % 3 == 2 { i - 1 } else { i };
        let data = pseudo_random(30_000 + (seed as usize % 7) * 1000, seed);
        let s = repo.session();
        let root = import(&data, &s, 512).unwrap();
        if i % 3 == 1 {
            s.commit().unwrap(); // unpinned: fair game for GC
        } else {
            s.pin(root, None).unwrap();
            roots.push(root);
        }
    }
    done.store(true, Ordering::SeqCst);
    let (runs, removed) = gcs.join().unwrap();
    assert!(runs >= 3);
    eprintln!("{runs} GCs removed {removed} blocks");
    let store = repo.store();
    for root in &roots {
        dag_cids(&store, *root).unwrap_or_else(|e| panic!("pinned DAG {root} lost a block: {e}"));
    }
    assert!(repo.pins().verify().unwrap().iter().all(|r| r.ok()));
    assert_eq!(repo.protected_blocks(), 0);
}

#[test]
fn session_protects_blocks_until_dropped() {
    let (_d, repo) = new_repo();
    let s = repo.session();
    let root = import(&pseudo_random(10_000, 40), &s, 1024).unwrap();
    assert_eq!(repo.gc().unwrap().removed_blocks, 0);
    assert!(repo.store().has(&root).unwrap());
    drop(s);
    assert!(repo.gc().unwrap().removed_blocks > 0);
    assert!(!repo.store().has(&root).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Repo: lock, not-initialised, corruption

#[test]
fn second_open_is_refused_with_a_clear_message() {
    let (dir, repo) = new_repo();
    let path = dir.path().join("repo");
    let err = Repo::open(&path).unwrap_err();
    assert!(matches!(err, RepoError::InUse { pid: Some(p), .. } if p == std::process::id()));
    assert_eq!(
        err.to_string(),
        format!(
            "repo {} is in use by another cairn process (pid {})",
            path.canonicalize().unwrap().display(),
            std::process::id()
        )
    );
    drop(repo);
    Repo::open(&path).unwrap();
    let err = Repo::open(&dir.path().join("nothing-here")).unwrap_err();
    assert!(err.to_string().ends_with("; run `cairn init`"), "{err}");
}

fn block_file(repo_path: &Path, cid: &Cid) -> std::path::PathBuf {
    let key = cid.hash().to_bytes();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    repo_path
        .join("blocks/files")
        .join(hex(&key[key.len() - 1..]))
        .join(hex(&key))
}

#[test]
fn corruption_on_disk_is_named_by_verify() {
    let (_d, repo) = new_repo();
    let s = repo.session();
    let data = pseudo_random(3 * DEFAULT_CHUNK_SIZE, 50);
    let root = import(&data, &s, DEFAULT_CHUNK_SIZE).unwrap();
    s.pin(root, None).unwrap();
    let store = repo.store();
    let all = dag_cids(&store, root).unwrap();
    let (leaf, other) = (all[2], all[1]);
    assert!(repo.verify().unwrap().ok());

    // Flip one byte of the leaf's file behind the store's back.
    let file = block_file(repo.path(), &leaf);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&file, bytes).unwrap();

    let report = repo.verify().unwrap();
    assert_eq!(report.corrupt, vec![leaf]);
    match store.get_verified(&leaf) {
        Err(e @ StoreError::Corrupt { .. }) => assert!(e.to_string().contains(&leaf.to_string())),
        other => panic!("unexpected {other:?}"),
    }
    // A vanished file is reported too.
    std::fs::remove_file(block_file(repo.path(), &other)).unwrap();
    let mut corrupt = repo.verify().unwrap().corrupt;
    corrupt.sort();
    let mut want = vec![leaf, other];
    want.sort();
    assert_eq!(corrupt, want);
}

// ---------------------------------------------------------------------------------------------
// CAR

fn car_of(repo: &Repo, root: Cid) -> Vec<u8> {
    let mut out = Vec::new();
    repo.export_car(&root, &mut out).unwrap();
    out
}

#[test]
fn car_round_trip_between_repos() {
    let (_d1, a) = new_repo();
    let data = pseudo_random(200_000, 60);
    let s = a.session();
    let root = import(&data, &s, 8192).unwrap();
    s.pin(root, None).unwrap();
    let car = car_of(&a, root);
    let n = dag_cids(&a.store(), root).unwrap().len();

    let (_d2, b) = new_repo();
    assert_eq!(b.import_car(&car[..], true).unwrap(), vec![root]);
    assert!(b.pins().get(&root).unwrap().is_some());
    assert_eq!(b.store().stats().unwrap().blocks as usize, n);
    assert_eq!(car_of(&b, root), car, "export is deterministic");
    assert!(b.pins().verify().unwrap()[0].ok());

    // Without pinning: blocks stored, roots returned, nothing pinned.
    let (_d3, c) = new_repo();
    assert_eq!(c.import_car(&car[..], false).unwrap(), vec![root]);
    assert_eq!(c.pins().count().unwrap(), 0);

    // Export of an incomplete DAG fails naming the missing block.
    let leaf = dag_cids(&a.store(), root).unwrap()[5];
    a.store().delete(&leaf).unwrap();
    let err = chain(&a.export_car(&root, &mut Vec::new()).unwrap_err());
    assert!(err.contains(&leaf.to_string()), "{err}");
}

#[test]
fn corrupt_or_truncated_cars_are_rejected_without_pins() {
    let (_d1, a) = new_repo();
    let s = a.session();
    let root = import(&pseudo_random(20_000, 61), &s, 1024).unwrap();
    s.pin(root, None).unwrap();
    let car = car_of(&a, root);

    // A flipped byte in the last block's data.
    let mut bad = car.clone();
    let last = bad.len() - 10;
    bad[last] ^= 0x40;
    let (_d2, b) = new_repo();
    match b.import_car(&bad[..], true) {
        Err(CarError::Mismatch { cid, .. }) => {
            assert!(dag_cids(&a.store(), root).unwrap().contains(&cid));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(b.pins().count().unwrap(), 0);

    // Every truncation point fails cleanly (or, cut exactly between sections, leaves the
    // DAG incomplete so the pin fails), and never pins.
    for cut in (0..car.len()).step_by(97) {
        let (_d, r) = new_repo();
        match r.import_car(&car[..cut], true) {
            Err(CarError::Truncated { .. }) | Err(CarError::Pin(_)) => {}
            Err(CarError::BadHeader { .. }) if cut < 60 => {}
            other => panic!("cut at {cut}: unexpected {other:?}"),
        }
        assert_eq!(r.pins().count().unwrap(), 0);
    }

    // Size limits.
    let mut huge_header = Vec::new();
    cairn_tests_varint(&mut huge_header, (1 << 20) + 1);
    let (_d3, r) = new_repo();
    assert!(matches!(
        r.import_car(&huge_header[..], false),
        Err(CarError::HeaderTooLarge { .. })
    ));
    let mut huge_section = car[..car_header_len(&car)].to_vec();
    cairn_tests_varint(&mut huge_section, 3 << 20);
    assert!(matches!(
        r.import_car(&huge_section[..], false),
        Err(CarError::SectionTooLarge { .. })
    ));

    // A CID in the header that is not in the CAR cannot be pinned.
    let other = cid_for(1, RAW, HashAlg::Sha2_256, b"absent");
    let mut car2 = Vec::new();
    let h = cairn_store_header(&[other]);
    cairn_tests_varint(&mut car2, h.len() as u64);
    car2.extend_from_slice(&h);
    car2.extend_from_slice(&car[car_header_len(&car)..]);
    assert!(matches!(
        r.import_car(&car2[..], true),
        Err(CarError::Pin(_))
    ));
    assert_eq!(r.pins().count().unwrap(), 0);
}

fn cairn_tests_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn car_header_len(car: &[u8]) -> usize {
    // Headers here are < 128 bytes: one varint byte.
    1 + usize::from(car[0])
}

fn cairn_store_header(roots: &[Cid]) -> Vec<u8> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), StoreOptions::default()).unwrap();
    // The header of an export of the root (a raw block of b"absent", stored here for the
    // export, which checks the DAG before it writes); only the header is kept.
    for root in roots {
        store
            .put(&Block::encode(
                1,
                RAW,
                HashAlg::Sha2_256,
                Bytes::from_static(b"absent"),
            ))
            .unwrap();
        assert_eq!(*root, cid_for(1, RAW, HashAlg::Sha2_256, b"absent"));
    }
    cairn_store::export_car(&store, roots, &mut out).unwrap();
    out[1..car_header_len(&out)].to_vec()
}

// ---------------------------------------------------------------------------------------------
// Throughput and disk overhead (release mode, `--ignored`).

fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(path).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            du(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

#[test]
#[ignore]
fn bench_sled_store_put_many_256k() {
    let total: usize = std::env::var("CAIRN_BENCH_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 30);
    let bs = 256 * 1024;
    let per_batch = 64;
    let base = std::env::var("CAIRN_BENCH_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let dir = tempfile::tempdir_in(base).unwrap();
    let batches: Vec<Vec<Block>> = (0..total / bs / per_batch)
        .map(|b| {
            (0..per_batch)
                .map(|i| raw(pseudo_random(bs, (b * per_batch + i) as u64)))
                .collect()
        })
        .collect();
    let bytes = (batches.len() * per_batch * bs) as f64;

    // Reference: the same blocks as plain files, one write each, then one syncfs-equivalent.
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let t = std::time::Instant::now();
    for (i, b) in batches.iter().flatten().enumerate() {
        std::fs::write(plain.join(i.to_string()), b.data()).unwrap();
    }
    let plain_put = t.elapsed().as_secs_f64();
    std::process::Command::new("sync").status().unwrap();
    let plain_all = t.elapsed().as_secs_f64();
    let plain_du = du(&plain);
    std::fs::remove_dir_all(&plain).unwrap();

    let repo = Repo::init(&dir.path().join("repo")).unwrap();
    let store = repo.store();
    let t = std::time::Instant::now();
    for b in &batches {
        store.put_many(b).unwrap();
    }
    let put = t.elapsed().as_secs_f64();
    store.flush().unwrap();
    let all = t.elapsed().as_secs_f64();
    let repo_du = du(repo.path());
    let stats = store.stats().unwrap();
    let t = std::time::Instant::now();
    for b in batches.iter().flatten() {
        assert!(store.get(b.cid()).unwrap().is_some());
    }
    let get = t.elapsed().as_secs_f64();
    let mb = bytes / 1e6;
    eprintln!("{:.0} MiB of 256 KiB blocks", bytes / 1048576.0);
    eprintln!("                      put MB/s  put+flush MB/s  get MB/s  disk/bytes");
    eprintln!(
        "SledStore (cairn)     {:>8.0}  {:>14.0}  {:>8.0}  {:>10.4}",
        mb / put,
        mb / all,
        mb / get,
        repo_du as f64 / bytes
    );
    eprintln!(
        "plain files (ref)     {:>8.0}  {:>14.0}  {:>8}  {:>10.4}",
        mb / plain_put,
        mb / plain_all,
        "-",
        plain_du as f64 / bytes
    );
    eprintln!("stats: {stats:?}");
}

/// An error and its causes, as the CLI prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
