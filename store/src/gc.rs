//! Garbage collection: mark from pins, registered [`Roots`] and live sessions, sweep the rest.
//!
//! # Racing with writers
//!
//! GC runs while imports and pins carry on. Three rules make that safe:
//!
//! 1. Every writer that may later pin (an [`crate::ImportSession`], a pin being added) records
//!    the multihash of each block it writes, or would have written (dedup hits), in the
//!    [`Live`] set *before* the write or the presence check.
//! 2. The sweep deletes in small batches, each while holding the live-set lock, and re-checks
//!    every candidate against the live set under that lock. So a block is either recorded before
//!    the sweep looks (and kept), or deleted before it is recorded (and the writer then finds it
//!    absent and writes it again).
//! 3. While a GC runs, released session sets are not dropped but *held* until the GC ends,
//!    and roots registered meanwhile are marked before the next batch is swept: a pin or root
//!    created after the mark phase read the pins can never lose its blocks to that GC.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use cid::Cid;

use crate::blockstore::{Blockstore, IndexProblem, StoreError};
use crate::journal::{Change, Journal};
use crate::pins::{PinKind, Pins};
use crate::sled_store::{block_key, SledStore};
use crate::walk::{DagWalk, WalkError, WalkMode};

/// How many candidates are deleted per locked batch.
const SWEEP_BATCH: usize = 256;

/// Why a GC stopped. Nothing is deleted once marking fails.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// A rooted DAG could not be walked, so what it keeps alive is unknown.
    #[error("gc aborted: cannot walk the DAG under {root}")]
    Walk {
        /// The pin or root being walked.
        root: Cid,
        /// What went wrong, naming the block.
        source: Box<WalkError>,
    },
    /// The pins could not be read.
    #[error("gc aborted")]
    Pins(#[from] crate::pins::PinError),
    /// The index or the pin journal cannot be trusted: deleting by it could lose data.
    #[error("gc refused to run")]
    Untrusted(#[source] StoreError),
    /// The store failed.
    #[error("gc failed")]
    Store(#[from] StoreError),
}

/// How many blocks on disk may be missing from the index before GC refuses to run. A killed
/// write leaves at most one batch (256 blocks) unindexed; more means the index lost entries.
pub const GC_UNINDEXED_TOLERANCE: u64 = 1024;

/// What a GC did.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Blocks kept because something reaches them.
    pub marked: u64,
    /// Blocks removed.
    pub removed_blocks: u64,
    /// Bytes removed.
    pub removed_bytes: u64,
    /// The CIDs removed (CIDv1 under the codec they were stored with).
    pub removed: Vec<Cid>,
    /// Unindexed block files removed (left behind by a killed process).
    pub orphan_files: u64,
    /// Bytes of those files.
    pub orphan_bytes: u64,
    /// Pack records that no index entry points at (reclaimed when their pack is compacted).
    pub unindexed_records: u64,
    /// Pack files rewritten because most of their records were dead.
    pub packs_compacted: u64,
    /// Bytes those rewrites gave back.
    pub pack_bytes_reclaimed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct LiveState {
    next_id: u64,
    sessions: HashMap<u64, HashSet<Vec<u8>>>,
    gc_running: bool,
    held: HashSet<Vec<u8>>,
    new_roots: Vec<Cid>,
}

impl LiveState {
    fn protects(&self, key: &[u8]) -> bool {
        self.held.contains(key) || self.sessions.values().any(|s| s.contains(key))
    }
}

/// The blocks that in-flight writers (import sessions, pins being added) have touched.
/// GC treats them as roots until the writer finishes (and, if a GC is running then, until it ends).
#[derive(Debug, Default)]
pub(crate) struct Live {
    state: Mutex<LiveState>,
}

impl Live {
    pub(crate) fn lock(&self) -> MutexGuard<'_, LiveState> {
        // Every update of the state is a single insert/remove; a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a set of protected blocks; release it with [`Live::release`].
    pub(crate) fn open(&self) -> u64 {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.sessions.insert(id, HashSet::new());
        id
    }

    /// Protects blocks on behalf of set `id`.
    pub(crate) fn record<'a>(&self, id: u64, cids: impl IntoIterator<Item = &'a Cid>) {
        let keys: Vec<Vec<u8>> = cids.into_iter().map(block_key).collect();
        let mut st = self.lock();
        if let Some(set) = st.sessions.get_mut(&id) {
            set.extend(keys);
        }
    }

    /// Ends set `id`; its blocks stay protected until a running GC finishes.
    pub(crate) fn release(&self, id: u64) {
        let mut st = self.lock();
        if let Some(set) = st.sessions.remove(&id) {
            if st.gc_running {
                st.held.extend(set);
            }
        }
    }

    /// Tells a running GC that `root` was just registered as a root.
    pub(crate) fn root_added(&self, root: Cid) {
        let mut st = self.lock();
        if st.gc_running {
            st.new_roots.push(root);
        }
    }

    /// Number of blocks protected by open sets (for tests and stats).
    pub(crate) fn protected(&self) -> usize {
        let st = self.lock();
        st.sessions.values().map(HashSet::len).sum::<usize>() + st.held.len()
    }
}

/// Named GC roots besides pins: a later MFS or a mount registers the root of what it shows so
/// GC keeps that whole DAG. Durable roots survive restarts (they are kept in the pin journal,
/// beside the pins); transient ones live in memory for as long as this process has the repo open.
#[derive(Debug, Clone)]
pub struct Roots {
    journal: Arc<Journal>,
    transient: Arc<Mutex<HashMap<String, Cid>>>,
    live: Arc<Live>,
}

impl Roots {
    pub(crate) fn new(journal: Arc<Journal>, live: Arc<Live>) -> Self {
        Roots {
            journal,
            transient: Arc::default(),
            live,
        }
    }

    fn transient(&self) -> MutexGuard<'_, HashMap<String, Cid>> {
        self.transient.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or moves) the durable root `name`.
    pub fn set(&self, name: &str, root: Cid) -> Result<(), StoreError> {
        // Record first, then tell a running GC: a GC that starts in between lists it.
        self.journal.commit(&[Change::SetRoot {
            name: name.to_string(),
            cid: root,
        }])?;
        self.live.root_added(root);
        Ok(())
    }

    /// Registers (or moves) several durable roots in one journal record (all or none).
    pub fn set_many(&self, roots: &[(String, Cid)]) -> Result<(), StoreError> {
        let changes: Vec<Change> = roots
            .iter()
            .map(|(name, cid)| Change::SetRoot {
                name: name.clone(),
                cid: *cid,
            })
            .collect();
        self.journal.commit(&changes)?;
        for (_, cid) in roots {
            self.live.root_added(*cid);
        }
        Ok(())
    }

    /// Removes several durable roots in one journal record; names that are not roots are
    /// skipped.
    pub fn remove_many(&self, names: &[String]) -> Result<(), StoreError> {
        let changes: Vec<Change> = names
            .iter()
            .filter(|n| self.journal.has_root(n))
            .map(|n| Change::RemoveRoot { name: n.clone() })
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        self.journal.commit(&changes)
    }

    /// Registers (or moves) a root that is forgotten when the repo is closed.
    pub fn set_transient(&self, name: &str, root: Cid) {
        // Insert first, then tell a running GC: a GC that starts in between lists it.
        self.transient().insert(name.to_string(), root);
        self.live.root_added(root);
    }

    /// Removes root `name` (durable or transient). Returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let t = self.transient().remove(name).is_some();
        let d = self.journal.has_root(name);
        if d {
            self.journal.commit(&[Change::RemoveRoot {
                name: name.to_string(),
            }])?;
        }
        Ok(t || d)
    }

    /// Whether a durable root of this name is set.
    pub fn has(&self, name: &str) -> bool {
        self.journal.has_root(name)
    }

    /// The durable root named `name`, if set.
    pub fn get(&self, name: &str) -> Option<Cid> {
        self.journal.root(name)
    }

    /// The durable roots only (those [`Roots::set`] registered), by name.
    pub fn durable(&self) -> Vec<(String, Cid)> {
        self.journal.roots()
    }

    /// Every root, by name.
    pub fn list(&self) -> Result<Vec<(String, Cid)>, StoreError> {
        let mut out: Vec<(String, Cid)> = self
            .transient()
            .iter()
            .map(|(n, c)| (n.clone(), *c))
            .collect();
        out.extend(self.journal.roots());
        Ok(out)
    }
}

/// Marks everything reachable from `root` into `marked`; missing blocks are tolerated
/// (they cannot be deleted anyway), anything that hides links aborts. `walked` holds the blocks
/// earlier recursive walks of this GC visited: their subtrees are marked already and are not
/// walked again, so pins and roots sharing a DAG cost one walk of it.
fn mark(
    store: &SledStore,
    root: Cid,
    recursive: bool,
    marked: &mut HashSet<Vec<u8>>,
    walked: &mut HashSet<Vec<u8>>,
) -> Result<(), GcError> {
    if !recursive {
        marked.insert(block_key(&root));
        return Ok(());
    }
    let mut walk =
        DagWalk::new(store, root, WalkMode::Structure).with_visited(std::mem::take(walked));
    for visit in walk.by_ref() {
        match visit {
            Ok(v) => {
                marked.insert(block_key(&v.cid));
            }
            Err(WalkError::Missing { cid }) => {
                marked.insert(block_key(&cid));
            }
            Err(e) => {
                return Err(GcError::Walk {
                    root,
                    source: Box::new(e),
                })
            }
        }
    }
    *walked = walk.into_visited();
    Ok(())
}

/// Refuses to collect by an index or a pin set that may have lost entries: deleting what they
/// do not know would delete live data. Returns how many pack records are not indexed.
fn check_trust(store: &SledStore, journal: &Journal) -> Result<u64, GcError> {
    if !journal.complete() {
        return Err(GcError::Untrusted(StoreError::Untrusted {
            problem: IndexProblem::NoPinJournal {
                path: journal.path().to_path_buf(),
            },
        }));
    }
    let census = store.census(false)?;
    let mut unindexed_files = 0u64;
    let mut unindexed_records = 0u64;
    for key in &census.files {
        if store.entry(key)?.is_none() {
            unindexed_files += 1;
        }
    }
    for key in census.packed.keys() {
        if !census.files.contains(key) && store.entry(key)?.is_none() {
            unindexed_records += 1;
        }
    }
    if unindexed_files + unindexed_records > GC_UNINDEXED_TOLERANCE {
        return Err(GcError::Untrusted(StoreError::Untrusted {
            problem: IndexProblem::Disagrees {
                indexed: store.stats()?.blocks,
                on_disk: census.len(),
            },
        }));
    }
    Ok(unindexed_records)
}

/// Runs one mark-and-sweep collection. Callers serialise collections (the repo holds a mutex).
pub(crate) fn collect(
    store: &SledStore,
    pins: &Pins,
    roots: &Roots,
    live: &Live,
) -> Result<GcReport, GcError> {
    let unindexed_records = check_trust(store, pins.journal())?;
    live.lock().gc_running = true;
    let result = collect_inner(store, pins, roots, live).map(|mut r| {
        r.unindexed_records = unindexed_records;
        r
    });
    let mut st = live.lock();
    st.gc_running = false;
    st.held.clear();
    st.new_roots.clear();
    drop(st);
    result
}

fn collect_inner(
    store: &SledStore,
    pins: &Pins,
    roots: &Roots,
    live: &Live,
) -> Result<GcReport, GcError> {
    // Mark. Pins and roots are read after `gc_running` is set (rule 3).
    let mut marked: HashSet<Vec<u8>> = HashSet::new();
    let mut walked: HashSet<Vec<u8>> = HashSet::new();
    for pin in pins.list()? {
        let recursive = pin.kind == PinKind::Recursive;
        mark(store, pin.cid, recursive, &mut marked, &mut walked)?;
    }
    for (_, root) in roots.list()? {
        mark(store, root, true, &mut marked, &mut walked)?;
    }

    // Candidates: indexed blocks nobody reaches (the index is read without touching block data).
    let mut candidates = Vec::new();
    for entry in store.entries() {
        let (key, _) = entry?;
        if !marked.contains(&key) {
            candidates.push(key);
        }
    }

    let mut report = GcReport::default();
    let mut removed = Vec::new();
    for chunk in candidates.chunks(SWEEP_BATCH) {
        let mut st = live.lock();
        for root in std::mem::take(&mut st.new_roots) {
            mark(store, root, true, &mut marked, &mut walked)?;
        }
        store.delete_keys(
            chunk,
            |k| marked.contains(k) || st.protects(k),
            &mut removed,
        )?;
        drop(st);
    }
    for (key, entry) in &removed {
        report.removed_blocks += 1;
        report.removed_bytes += entry.size;
        report.removed.push(SledStore::cid_of(key, entry)?);
    }
    report.marked = marked.len() as u64;
    (report.orphan_files, report.orphan_bytes) = store.remove_orphan_files()?;
    store.flush()?;
    (report.packs_compacted, report.pack_bytes_reclaimed) = store.compact_packs()?;
    Ok(report)
}
