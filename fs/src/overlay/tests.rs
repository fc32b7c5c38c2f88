//! Tests of the overlay without FUSE: random operation sequences against a model, crashes at
//! every journal record and inside every record, commits against `import_path` of the same
//! tree on disk (identical CIDs), and the cost of a commit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cairn_store::{
    import_path, links, Block, BlockSink, BlockSource, ChunkerSpec, Cid, DagReader, EntryKind,
    GetError, ImportOptions, StoreError,
};
use proptest::prelude::*;

use super::*;

/// Blocks in memory: the committed store and the commit's sink at once. Counts what it
/// receives.
#[derive(Clone, Default, Debug)]
struct Mem {
    blocks: Arc<Mutex<HashMap<Cid, Bytes>>>,
    received: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Cid>>>,
    reads: Arc<AtomicUsize>,
}

impl BlockSink for Mem {
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        self.received.fetch_add(blocks.len(), Ordering::SeqCst);
        let mut map = self.blocks.lock().unwrap();
        let mut log = self.log.lock().unwrap();
        for b in blocks {
            cairn_store::verify(b.cid(), b.data()).unwrap();
            let (cid, data) = b.into_parts();
            log.push(cid);
            map.insert(cid, data);
        }
        Ok(())
    }
}

impl BlockSource for Mem {
    async fn get(&self, cid: &Cid) -> Result<Bytes, GetError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.blocks
            .lock()
            .unwrap()
            .get(cid)
            .cloned()
            .ok_or(GetError::NotFoundLocally(*cid))
    }
    fn has_local(&self, cid: &Cid) -> bool {
        self.blocks.lock().unwrap().contains_key(cid)
    }
}

impl Mem {
    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    fn since(&self, n: usize) -> Vec<Cid> {
        self.log.lock().unwrap()[n..].to_vec()
    }

    /// Every block of the DAG under `root`.
    fn dag(&self, root: &Cid) -> HashSet<Cid> {
        let mut seen = HashSet::new();
        let mut stack = vec![*root];
        while let Some(c) = stack.pop() {
            if !seen.insert(c) {
                continue;
            }
            let data = self.blocks.lock().unwrap().get(&c).cloned().unwrap();
            stack.extend(links(&c, &data).unwrap());
        }
        seen
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

fn import(dir: &Path, opts: &ImportOptions, mem: &Mem) -> (Cid, u64) {
    let r = import_path(dir, opts, mem, &mut |_| {}).unwrap();
    (r.cid, r.size)
}

/// The paths added, removed or modified from `old` to `new`, as `cairn share diff` counts them
/// (directories in both are compared entry by entry; an added or removed directory is one).
fn reference_diff(mem: &Mem, old: Cid, new: Cid) -> u64 {
    let rt = rt();
    let reader = DagReader::new(mem.clone());
    let mut count = 0;
    let mut stack = vec![(Some(old), Some(new))];
    while let Some((a, b)) = stack.pop() {
        if a == b {
            continue;
        }
        let (Some(a), Some(b)) = (a, b) else {
            count += 1;
            continue;
        };
        let ka = rt.block_on(reader.stat(&a)).unwrap().kind;
        let kb = rt.block_on(reader.stat(&b)).unwrap().kind;
        if ka != EntryKind::Directory || kb != EntryKind::Directory {
            count += 1;
            continue;
        }
        let la: BTreeMap<String, Cid> = rt
            .block_on(reader.read_dir(&a))
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.cid))
            .collect();
        let lb: BTreeMap<String, Cid> = rt
            .block_on(reader.read_dir(&b))
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.cid))
            .collect();
        let names: std::collections::BTreeSet<&String> = la.keys().chain(lb.keys()).collect();
        for n in names {
            stack.push((la.get(n).copied(), lb.get(n).copied()));
        }
    }
    count
}

/// The model: what a plain directory would hold.
#[derive(Debug, Clone, PartialEq, Eq)]
enum M {
    File {
        data: Vec<u8>,
        mode: u32,
        /// Set explicitly and not changed since (else unknown to the model).
        mtime: Option<SystemTime>,
    },
    Dir {
        mode: u32,
        mtime: Option<SystemTime>,
        entries: BTreeMap<String, M>,
    },
    Link(String),
}

impl M {
    fn dir() -> M {
        M::Dir {
            mode: 0o755,
            mtime: None,
            entries: BTreeMap::new(),
        }
    }

    fn files_size(&self) -> u64 {
        match self {
            M::File { data, .. } => data.len() as u64,
            M::Dir { entries, .. } => entries.values().map(M::files_size).sum(),
            M::Link(_) => 0,
        }
    }

    fn get(&self, path: &[String]) -> Result<&M, i32> {
        let mut at = self;
        for c in path {
            match at {
                M::Dir { entries, .. } => at = entries.get(c).ok_or(libc::ENOENT)?,
                _ => return Err(libc::ENOTDIR),
            }
        }
        Ok(at)
    }

    fn get_mut(&mut self, path: &[String]) -> Result<&mut M, i32> {
        let mut at = self;
        for c in path {
            match at {
                M::Dir { entries, .. } => at = entries.get_mut(c).ok_or(libc::ENOENT)?,
                _ => return Err(libc::ENOTDIR),
            }
        }
        Ok(at)
    }

    /// The directory at `path` (ENOTDIR if it is something else).
    fn dir_at(&mut self, path: &[String]) -> Result<&mut M, i32> {
        let d = self.get_mut(path)?;
        match d {
            M::Dir { .. } => Ok(d),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn entries(&mut self) -> &mut BTreeMap<String, M> {
        match self {
            M::Dir { entries, mtime, .. } => {
                *mtime = None;
                entries
            }
            _ => unreachable!("checked by dir_at"),
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self, M::Dir { .. })
    }

    fn is_empty_dir(&self) -> bool {
        matches!(self, M::Dir { entries, .. } if entries.is_empty())
    }
}

type P = Vec<String>;

fn split(p: &P) -> (&[String], &String) {
    let (last, parent) = p.split_last().unwrap();
    (parent, last)
}

/// An operation on paths `T`: concrete paths, or (as generated) [`Sel`]ections resolved
/// against the model when the operation runs.
#[derive(Debug, Clone)]
enum Op<T = P> {
    Create(T, u32),
    Mkdir(T, u32),
    Symlink(T, String),
    Unlink(T),
    Rmdir(T),
    Rename(T, T, u32),
    Write(T, u64, usize, u8),
    Truncate(T, u64),
    Chmod(T, u32),
    Utime(T, u32),
    Sync,
    Commit,
    Reopen,
}

/// How a generated operation picks a path, so that most operations meet entries that exist.
#[derive(Debug, Clone)]
enum Sel {
    /// The i-th (modulo) entry of the model, in path order.
    Existing(usize),
    /// A name in the i-th (modulo) directory of the model (the root included).
    In(usize, String),
    /// Any path.
    Random(P),
}

impl Sel {
    fn pick(&self, m: &M) -> P {
        fn walk(m: &M, at: &mut P, all: &mut Vec<(P, bool)>) {
            if let M::Dir { entries, .. } = m {
                for (name, child) in entries {
                    at.push(name.clone());
                    all.push((at.clone(), child.is_dir()));
                    walk(child, at, all);
                    at.pop();
                }
            }
        }
        let mut all = Vec::new();
        walk(m, &mut Vec::new(), &mut all);
        match self {
            Sel::Existing(i) if !all.is_empty() => all[i % all.len()].0.clone(),
            Sel::In(i, name) => {
                let mut dirs: Vec<P> = vec![Vec::new()];
                dirs.extend(all.iter().filter(|(_, d)| *d).map(|(p, _)| p.clone()));
                let mut p = dirs[i % dirs.len()].clone();
                p.push(name.clone());
                p
            }
            Sel::Existing(_) => vec!["a".to_string()],
            Sel::Random(p) => p.clone(),
        }
    }
}

impl Op<Sel> {
    fn resolve(&self, m: &M) -> Op {
        match self {
            Op::Create(s, x) => Op::Create(s.pick(m), *x),
            Op::Mkdir(s, x) => Op::Mkdir(s.pick(m), *x),
            Op::Symlink(s, t) => Op::Symlink(s.pick(m), t.clone()),
            Op::Unlink(s) => Op::Unlink(s.pick(m)),
            Op::Rmdir(s) => Op::Rmdir(s.pick(m)),
            Op::Rename(a, b, f) => Op::Rename(a.pick(m), b.pick(m), *f),
            Op::Write(s, o, l, d) => Op::Write(s.pick(m), *o, *l, *d),
            Op::Truncate(s, n) => Op::Truncate(s.pick(m), *n),
            Op::Chmod(s, x) => Op::Chmod(s.pick(m), *x),
            Op::Utime(s, t) => Op::Utime(s.pick(m), *t),
            Op::Sync => Op::Sync,
            Op::Commit => Op::Commit,
            Op::Reopen => Op::Reopen,
        }
    }
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    if seed.is_multiple_of(4) {
        return vec![0; len];
    }
    let mut x = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Applies `op` to the model, with the errors the overlay must give.
fn model_apply(m: &mut M, op: &Op) -> Result<(), i32> {
    match op {
        Op::Create(p, mode) | Op::Mkdir(p, mode) => {
            let (parent, name) = split(p);
            let entries = m.dir_at(parent)?.entries();
            if entries.contains_key(name) {
                return Err(libc::EEXIST);
            }
            let node = match op {
                Op::Create(..) => M::File {
                    data: Vec::new(),
                    mode: mode & 0o7777,
                    mtime: None,
                },
                _ => M::Dir {
                    mode: mode & 0o7777,
                    mtime: None,
                    entries: BTreeMap::new(),
                },
            };
            entries.insert(name.clone(), node);
            Ok(())
        }
        Op::Symlink(p, target) => {
            let (parent, name) = split(p);
            let entries = m.dir_at(parent)?.entries();
            if entries.contains_key(name) {
                return Err(libc::EEXIST);
            }
            entries.insert(name.clone(), M::Link(target.clone()));
            Ok(())
        }
        Op::Unlink(p) | Op::Rmdir(p) => {
            let (parent, name) = split(p);
            let d = m.dir_at(parent)?;
            let node = match d {
                M::Dir { entries, .. } => entries.get(name).ok_or(libc::ENOENT)?,
                _ => unreachable!(),
            };
            match op {
                Op::Unlink(_) if node.is_dir() => return Err(libc::EISDIR),
                Op::Rmdir(_) if !node.is_dir() => return Err(libc::ENOTDIR),
                Op::Rmdir(_) if !node.is_empty_dir() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
            d.entries().remove(name);
            Ok(())
        }
        Op::Rename(src, dst, flags) => {
            let (sp, sn) = split(src);
            let (dp, dn) = split(dst);
            m.get(sp)?;
            m.get(dp)?;
            if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
                || *flags == RENAME_NOREPLACE | RENAME_EXCHANGE
            {
                return Err(libc::EINVAL);
            }
            m.dir_at(sp)?;
            m.dir_at(dp)?;
            let exchange = flags & RENAME_EXCHANGE != 0;
            let s = m.get(src)?.clone();
            let d = m.get(dst).ok().cloned();
            if exchange && d.is_none() {
                return Err(libc::ENOENT);
            }
            if flags & RENAME_NOREPLACE != 0 && d.is_some() {
                return Err(libc::EEXIST);
            }
            if src == dst {
                return Ok(());
            }
            if s.is_dir() && dp.starts_with(src) {
                return Err(libc::EINVAL);
            }
            if let Some(d) = &d {
                if exchange {
                    if d.is_dir() && sp.starts_with(dst) {
                        return Err(libc::EINVAL);
                    }
                } else if s.is_dir() && !d.is_dir() {
                    return Err(libc::ENOTDIR);
                } else if !s.is_dir() && d.is_dir() {
                    return Err(libc::EISDIR);
                } else if d.is_dir() && !d.is_empty_dir() {
                    return Err(libc::ENOTEMPTY);
                }
            }
            if exchange {
                let d = d.unwrap_or_else(|| unreachable!());
                m.dir_at(sp)?.entries().insert(sn.clone(), d);
                m.dir_at(dp)?.entries().insert(dn.clone(), s);
            } else {
                m.dir_at(sp)?.entries().remove(sn);
                m.dir_at(dp)?.entries().insert(dn.clone(), s);
            }
            Ok(())
        }
        Op::Write(p, off, len, seed) => match m.get_mut(p)? {
            M::File {
                data: content,
                mtime,
                ..
            } => {
                if *len > 0 {
                    let end = *off as usize + len;
                    if content.len() < end {
                        content.resize(end, 0);
                    }
                    content[*off as usize..end].copy_from_slice(&data(*seed, *len));
                    *mtime = None;
                }
                Ok(())
            }
            M::Dir { .. } => Err(libc::EISDIR),
            M::Link(_) => Err(libc::EINVAL),
        },
        Op::Truncate(p, size) => match m.get_mut(p)? {
            M::File {
                data: content,
                mtime,
                ..
            } => {
                content.resize(*size as usize, 0);
                *mtime = None;
                Ok(())
            }
            M::Dir { .. } => Err(libc::EISDIR),
            M::Link(_) => Err(libc::EINVAL),
        },
        Op::Chmod(p, mode) => {
            match m.get_mut(p)? {
                M::File { mode: m, .. } | M::Dir { mode: m, .. } => *m = mode & 0o7777,
                M::Link(_) => {}
            }
            Ok(())
        }
        Op::Utime(p, secs) => {
            let t = at(
                1_500_000_000 + u64::from(*secs),
                secs.wrapping_mul(7919) % 1_000_000_000,
            );
            match m.get_mut(p)? {
                M::File { mtime, .. } | M::Dir { mtime, .. } => *mtime = Some(t),
                M::Link(_) => {}
            }
            Ok(())
        }
        Op::Sync | Op::Commit | Op::Reopen => Ok(()),
    }
}

/// The files a test says are open across a commit: those with odd ids (so that random tests
/// see both kinds).
fn kept_files(ov: &Overlay<Mem>) -> HashSet<NodeId> {
    ov.tree
        .nodes
        .keys()
        .copied()
        .filter(|id| id.0 % 2 == 1)
        .collect()
}

/// An overlay over an in-memory store, with its head (the committed root it is based on).
struct World {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    stage: PathBuf,
    mem: Mem,
    opts: ImportOptions,
    ov: Option<Overlay<Mem>>,
    head: Cid,
    head_size: u64,
    /// The head's id tree.
    head_ids: Option<Cid>,
    /// Commits keep the staging files of [`kept_files`].
    keep: bool,
}

impl World {
    /// A world whose committed root is the directory `initial` (or an empty one).
    fn new(opts: ImportOptions, initial: Option<&Path>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mem = Mem::default();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let (head, head_size) = import(initial.unwrap_or(&empty), &opts, &mem);
        let stage = dir.path().join("stage");
        let rt = rt();
        let ov = rt
            .block_on(Overlay::open(&stage, head, DagReader::new(mem.clone())))
            .unwrap();
        World {
            rt,
            _dir: dir,
            stage,
            mem,
            opts,
            ov: Some(ov),
            head,
            head_size,
            head_ids: None,
            keep: true,
        }
    }

    fn ov(&mut self) -> &mut Overlay<Mem> {
        self.ov.as_mut().unwrap()
    }

    fn reopen_at(&mut self, stage: &Path, head: Cid) -> Result<Overlay<Mem>, OverlayError> {
        self.rt
            .block_on(Overlay::open(stage, head, DagReader::new(self.mem.clone())))
    }

    /// Drops the overlay without a sync (as `kill -9` would) and opens it again.
    fn reopen(&mut self) {
        self.ov = None;
        let stage = self.stage.clone();
        let head = self.head;
        self.ov = Some(self.reopen_at(&stage, head).unwrap());
        let ids = self.head_ids;
        self.ov().set_base_ids(ids);
    }

    fn resolve(&mut self, path: &[String]) -> Result<NodeId, i32> {
        let mut id = NodeId::ROOT;
        for c in path {
            let ov = self.ov.as_mut().unwrap();
            id = self
                .rt
                .block_on(ov.lookup(id, c))
                .map_err(|e| e.errno())?
                .id;
        }
        Ok(id)
    }

    fn commit(&mut self) -> CommitStats {
        let (mem, opts, size) = (self.mem.clone(), self.opts.clone(), self.head_size);
        let ov = self.ov.as_mut().unwrap();
        let stats = self.rt.block_on(ov.commit(&mem, &opts, size)).unwrap();
        let keep = if self.keep {
            kept_files(ov)
        } else {
            HashSet::new()
        };
        ov.committed_keeping(stats.root, &keep).unwrap();
        self.head = stats.root;
        self.head_size = stats.size;
        self.head_ids = stats.ids;
        stats
    }

    fn apply(&mut self, op: &Op) -> Result<(), i32> {
        let e = |e: OverlayError| e.errno();
        match op {
            Op::Create(p, mode) | Op::Mkdir(p, mode) => {
                let (parent, name) = split(p);
                let pid = self.resolve(parent)?;
                let ov = self.ov.as_mut().unwrap();
                let fut = match op {
                    Op::Create(..) => self.rt.block_on(ov.create(pid, name, *mode)),
                    _ => self.rt.block_on(ov.mkdir(pid, name, *mode)),
                };
                fut.map(|_| ()).map_err(e)
            }
            Op::Symlink(p, target) => {
                let (parent, name) = split(p);
                let pid = self.resolve(parent)?;
                let ov = self.ov.as_mut().unwrap();
                self.rt
                    .block_on(ov.symlink(pid, name, target))
                    .map(|_| ())
                    .map_err(e)
            }
            Op::Unlink(p) | Op::Rmdir(p) => {
                let (parent, name) = split(p);
                let pid = self.resolve(parent)?;
                let ov = self.ov.as_mut().unwrap();
                match op {
                    Op::Unlink(_) => self.rt.block_on(ov.unlink(pid, name)),
                    _ => self.rt.block_on(ov.rmdir(pid, name)),
                }
                .map_err(e)
            }
            Op::Rename(src, dst, flags) => {
                let (sp, sn) = split(src);
                let (dp, dn) = split(dst);
                let spid = self.resolve(sp)?;
                let dpid = self.resolve(dp)?;
                let ov = self.ov.as_mut().unwrap();
                self.rt
                    .block_on(ov.rename(spid, sn, dpid, dn, *flags))
                    .map_err(e)
            }
            Op::Write(p, off, len, seed) => {
                let id = self.resolve(p)?;
                let ov = self.ov.as_mut().unwrap();
                let n = self
                    .rt
                    .block_on(ov.write(id, *off, &data(*seed, *len)))
                    .map_err(e)?;
                assert_eq!(n, *len);
                Ok(())
            }
            Op::Truncate(p, size) => {
                let id = self.resolve(p)?;
                let set = SetAttr {
                    size: Some(*size),
                    ..SetAttr::default()
                };
                let ov = self.ov.as_mut().unwrap();
                self.rt.block_on(ov.setattr(id, set)).map(|_| ()).map_err(e)
            }
            Op::Chmod(p, mode) => {
                let id = self.resolve(p)?;
                let set = SetAttr {
                    mode: Some(*mode),
                    ..SetAttr::default()
                };
                let ov = self.ov.as_mut().unwrap();
                self.rt.block_on(ov.setattr(id, set)).map(|_| ()).map_err(e)
            }
            Op::Utime(p, secs) => {
                let id = self.resolve(p)?;
                let t = at(
                    1_500_000_000 + u64::from(*secs),
                    secs.wrapping_mul(7919) % 1_000_000_000,
                );
                let set = SetAttr {
                    mtime: Some(TimeSet::At(t)),
                    ..SetAttr::default()
                };
                let ov = self.ov.as_mut().unwrap();
                self.rt.block_on(ov.setattr(id, set)).map(|_| ()).map_err(e)
            }
            Op::Sync => self.ov().sync().map_err(e),
            Op::Commit => Ok(()),
            Op::Reopen => {
                self.reopen();
                Ok(())
            }
        }
    }

    /// Checks the overlay against the model: names, kinds, bytes, modes, symlink targets,
    /// mtimes that were set. With `contents`, the model of each file's bytes is any of
    /// `contents` (for a crash inside a record: before or after it).
    fn check(&mut self, model: &M, alt: Option<&M>) {
        self.check_at(NodeId::ROOT, model, alt, &mut Vec::new());
    }

    fn check_at(&mut self, id: NodeId, model: &M, alt: Option<&M>, path: &mut Vec<String>) {
        let attr = self.ov().getattr(id).unwrap();
        match model {
            M::Dir {
                mode,
                mtime,
                entries,
            } => {
                assert_eq!(attr.kind, EntryKind::Directory, "{path:?}");
                assert_eq!(attr.mode, *mode, "mode of {path:?}");
                if let Some(t) = mtime {
                    assert_eq!(attr.mtime, *t, "mtime of {path:?}");
                }
                let ov = self.ov.as_ref().unwrap();
                let listed = self.rt.block_on(ov.read_dir(id)).unwrap();
                let names: Vec<&String> = listed.iter().map(|i| &i.name).collect();
                let expected: Vec<&String> = entries.keys().collect();
                assert_eq!(names, expected, "listing of {path:?}");
                for (name, child) in entries {
                    let ov = self.ov.as_mut().unwrap();
                    let c = self.rt.block_on(ov.lookup(id, name)).unwrap();
                    let item = listed.iter().find(|i| &i.name == name).unwrap();
                    assert_eq!(item.kind, Some(c.kind), "{path:?}/{name}");
                    path.push(name.clone());
                    let alt_child = alt.and_then(|a| a.get(path).ok());
                    self.check_at(c.id, child, alt_child, path);
                    path.pop();
                }
            }
            M::File { data, mode, mtime } => {
                assert_eq!(attr.kind, EntryKind::File, "{path:?}");
                assert_eq!(attr.mode, *mode, "mode of {path:?}");
                if let Some(t) = mtime {
                    assert_eq!(attr.mtime, *t, "mtime of {path:?}");
                }
                let ov = self.ov.as_mut().unwrap();
                let got = self
                    .rt
                    .block_on(ov.read(id, 0, attr.size as usize + 10))
                    .unwrap();
                assert_eq!(got.len() as u64, attr.size);
                let alt_data = match alt {
                    Some(M::File { data, .. }) => Some(data),
                    _ => None,
                };
                assert!(
                    got[..] == data[..] || alt_data.is_some_and(|a| got[..] == a[..]),
                    "content of {path:?}: {} bytes, model {} bytes",
                    got.len(),
                    data.len()
                );
            }
            M::Link(target) => {
                assert_eq!(attr.kind, EntryKind::Symlink, "{path:?}");
                assert_eq!(&self.ov().readlink(id).unwrap(), target);
                assert_eq!(attr.size, target.len() as u64);
            }
        }
    }

    /// Writes the model to a plain directory with the overlay's modes and mtimes and
    /// imports it: the CID `cairn add` gives for the tree.
    fn add_model(&mut self, model: &M) -> Cid {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        self.materialize(NodeId::ROOT, model, &root);
        import(&root, &self.opts, &Mem::default()).0
    }

    fn materialize(&mut self, id: NodeId, model: &M, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let attr = self.ov().getattr(id).unwrap();
        match model {
            M::Dir { entries, .. } => {
                std::fs::create_dir(path).unwrap();
                for (name, child) in entries {
                    let ov = self.ov.as_mut().unwrap();
                    let c = self.rt.block_on(ov.lookup(id, name)).unwrap();
                    self.materialize(c.id, child, &path.join(name));
                }
            }
            M::File { data, .. } => std::fs::write(path, data).unwrap(),
            M::Link(target) => std::os::unix::fs::symlink(target, path).unwrap(),
        }
        if !matches!(model, M::Link(_)) {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(attr.mode)).unwrap();
            std::fs::File::open(path)
                .unwrap()
                .set_modified(attr.mtime)
                .unwrap();
        }
    }
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("c".to_string()),
        Just("d".to_string())
    ]
}

/// Mostly short paths, so that operations meet entries that exist.
fn path() -> impl Strategy<Value = P> {
    prop_oneof![
        5 => prop::collection::vec(name(), 1..2),
        4 => prop::collection::vec(name(), 2..3),
        2 => prop::collection::vec(name(), 3..4),
    ]
}

fn mode() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0o644),
        Just(0o600),
        Just(0o755),
        Just(0o700),
        Just(0o640)
    ]
}

fn existing() -> impl Strategy<Value = Sel> {
    prop_oneof![
        5 => any::<usize>().prop_map(Sel::Existing),
        1 => path().prop_map(Sel::Random),
    ]
}

fn fresh() -> impl Strategy<Value = Sel> {
    prop_oneof![
        5 => (any::<usize>(), name()).prop_map(|(i, n)| Sel::In(i, n)),
        1 => existing(),
    ]
}

fn op(with_commit: bool) -> impl Strategy<Value = Op<Sel>> {
    let commit = if with_commit { 2 } else { 0 };
    let flags = prop_oneof![
        6 => Just(0u32),
        1 => Just(RENAME_NOREPLACE),
        2 => Just(RENAME_EXCHANGE),
        1 => Just(libc::RENAME_WHITEOUT)
    ];
    prop_oneof![
        6 => (fresh(), mode()).prop_map(|(p, m)| Op::Create(p, m)),
        4 => (fresh(), mode()).prop_map(|(p, m)| Op::Mkdir(p, m)),
        1 => (fresh(), name()).prop_map(|(p, t)| Op::Symlink(p, format!("../{t}"))),
        3 => existing().prop_map(Op::Unlink),
        2 => existing().prop_map(Op::Rmdir),
        5 => (existing(), fresh(), flags).prop_map(|(s, d, f)| Op::Rename(s, d, f)),
        8 => (existing(), 0u64..2000, 0usize..700, any::<u8>())
            .prop_map(|(p, o, l, s)| Op::Write(p, o, l, s)),
        2 => (existing(), 0u64..2500).prop_map(|(p, s)| Op::Truncate(p, s)),
        1 => (existing(), mode()).prop_map(|(p, m)| Op::Chmod(p, m)),
        1 => (existing(), any::<u32>()).prop_map(|(p, s)| Op::Utime(p, s % 100_000)),
        2 => Just(Op::Sync),
        commit => Just(Op::Commit),
        1 => Just(Op::Reopen),
    ]
}

/// Small chunks and few links, so that small files have deep trees; metadata recorded, so
/// the commit can be compared with `import_path` of a directory written with it.
fn small_opts() -> ImportOptions {
    ImportOptions {
        chunker: ChunkerSpec::Fixed(256),
        max_links: 3,
        preserve_mode: true,
        preserve_mtime: true,
        hamt_shard_threshold: 600,
        ..ImportOptions::default()
    }
}

/// An initial tree on disk for the world to start from.
fn initial_tree(dir: &Path) -> PathBuf {
    let root = dir.join("initial");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::create_dir_all(root.join("c")).unwrap();
    std::fs::write(root.join("a/f"), data(3, 1000)).unwrap();
    std::fs::write(root.join("a/b/c"), data(5, 100)).unwrap();
    std::fs::write(root.join("b"), data(0, 600)).unwrap();
    std::os::unix::fs::symlink("a/f", root.join("c/a")).unwrap();
    for (p, t) in [
        ("a/f", 7),
        ("a/b/c", 8),
        ("b", 9),
        ("a/b", 10),
        ("a", 11),
        ("c", 12),
        ("", 13),
    ] {
        std::fs::File::open(root.join(p))
            .unwrap()
            .set_modified(at(1_600_000_000 + t, 0))
            .unwrap();
    }
    root
}

/// The model of `initial_tree`.
fn initial_model() -> M {
    let t = |s: u64| Some(at(1_600_000_000 + s, 0));
    let mut b = BTreeMap::new();
    b.insert(
        "c".to_string(),
        M::File {
            data: data(5, 100),
            mode: 0o644,
            mtime: t(8),
        },
    );
    let mut a = BTreeMap::new();
    a.insert(
        "f".to_string(),
        M::File {
            data: data(3, 1000),
            mode: 0o644,
            mtime: t(7),
        },
    );
    a.insert(
        "b".to_string(),
        M::Dir {
            mode: 0o755,
            mtime: t(10),
            entries: b,
        },
    );
    let mut c = BTreeMap::new();
    c.insert("a".to_string(), M::Link("a/f".into()));
    let mut root = BTreeMap::new();
    root.insert(
        "a".to_string(),
        M::Dir {
            mode: 0o755,
            mtime: t(11),
            entries: a,
        },
    );
    root.insert(
        "b".to_string(),
        M::File {
            data: data(0, 600),
            mode: 0o644,
            mtime: t(9),
        },
    );
    root.insert(
        "c".to_string(),
        M::Dir {
            mode: 0o755,
            mtime: t(12),
            entries: c,
        },
    );
    M::Dir {
        mode: 0o755,
        mtime: t(13),
        entries: root,
    }
}

fn world_with_initial() -> (World, M, tempfile::TempDir) {
    let src = tempfile::tempdir().unwrap();
    let root = initial_tree(src.path());
    // The umask decides the modes on disk; make the model agree with what was created.
    use std::os::unix::fs::PermissionsExt;
    for p in ["a/f", "a/b/c", "b"] {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for p in ["a/b", "a", "c", ""] {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (p, t) in [("a/b", 10), ("a", 11), ("c", 12), ("", 13)] {
        std::fs::File::open(root.join(p))
            .unwrap()
            .set_modified(at(1_600_000_000 + t, 0))
            .unwrap();
    }
    (World::new(small_opts(), Some(&root)), initial_model(), src)
}

/// Runs `ops` against the overlay and the model, checking every answer and the whole tree
/// after each operation, and every commit against `import_path`.
fn run_against_model(ops: &[Op<Sel>]) {
    let (mut w, mut model, _src) = world_with_initial();
    w.check(&model, None);
    for (i, op) in ops.iter().enumerate() {
        let op = &op.resolve(&model);
        let expected = model_apply(&mut model, op);
        let got = w.apply(op);
        assert_eq!(got, expected, "op {i}: {op:?}");
        if let Op::Commit = op {
            let before = w.head;
            let stats = w.commit();
            assert_eq!(stats.size, model.files_size(), "size after op {i}");
            assert_eq!(
                stats.changed,
                reference_diff(&w.mem, before, stats.root),
                "changed paths after op {i}"
            );
            let added = w.add_model(&model);
            assert_eq!(
                stats.root, added,
                "the commit after op {i} differs from `cairn add` of the same tree"
            );
        }
        w.check(&model, None);
    }
    // A final commit, compared with `cairn add`, then a reopen over it.
    let before = w.head;
    let stats = w.commit();
    assert_eq!(stats.size, model.files_size());
    assert_eq!(stats.changed, reference_diff(&w.mem, before, stats.root));
    assert_eq!(stats.root, w.add_model(&model));
    w.reopen();
    w.check(&model, None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn random_operations_match_the_model(ops in prop::collection::vec(op(true), 1..80)) {
        run_against_model(&ops);
    }
}

/// Copies a staging directory (journal and staging files).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// What a crash test keeps after each operation.
struct Snapshot {
    stage: PathBuf,
    head: Cid,
    model: M,
    journal_len: u64,
    /// The journal was started again (a commit) during this operation.
    new_journal: bool,
}

/// Runs `ops`, copying the staging directory after each one; then opens every copy (a crash
/// at each record boundary) and every copy with its journal cut inside the last operation's
/// records (a torn tail), and checks each against the model. Commits are also interrupted
/// between building and `committed` (the head moved or not).
fn crash_everywhere(ops: &[Op<Sel>]) {
    let (mut w, mut model, _src) = world_with_initial();
    let snaps_dir = tempfile::tempdir().unwrap();
    let journal_len = |stage: &Path| std::fs::metadata(stage.join("journal")).unwrap().len();
    let mut snaps = vec![Snapshot {
        stage: {
            let s = snaps_dir.path().join("s0");
            copy_dir(&w.stage, &s);
            s
        },
        head: w.head,
        model: model.clone(),
        journal_len: journal_len(&w.stage),
        new_journal: false,
    }];
    for (i, op) in ops.iter().enumerate() {
        let op = &op.resolve(&model);
        let expected = model_apply(&mut model, op);
        let mut new_journal = false;
        if let Op::Commit = op {
            // Interrupted commit: built (its root recorded), head moved or not, no reset.
            let (mem, opts, size) = (w.mem.clone(), w.opts.clone(), w.head_size);
            let ov = w.ov.as_mut().unwrap();
            let stats = w.rt.block_on(ov.commit(&mem, &opts, size)).unwrap();
            let mid = snaps_dir.path().join(format!("mid{i}"));
            copy_dir(&w.stage, &mid);
            for head in [w.head, stats.root] {
                let copy = snaps_dir.path().join(format!("mid{i}-{head}"));
                copy_dir(&mid, &copy);
                let ov = w.reopen_at(&copy, head).unwrap();
                let live = w.ov.replace(ov);
                w.check(&model, None);
                w.ov = live;
            }
            let keep = kept_files(w.ov());
            w.ov().committed_keeping(stats.root, &keep).unwrap();
            w.head = stats.root;
            w.head_size = stats.size;
            new_journal = true;
        } else {
            assert_eq!(w.apply(op), expected, "op {i}: {op:?}");
        }
        let s = snaps_dir.path().join(format!("s{}", i + 1));
        copy_dir(&w.stage, &s);
        snaps.push(Snapshot {
            stage: s,
            head: w.head,
            model: model.clone(),
            journal_len: journal_len(&w.stage),
            new_journal,
        });
    }
    w.ov = None;
    for (k, snap) in snaps.iter().enumerate() {
        // A crash right after operation k (on a copy: opening cleans the staging directory).
        let copy = snaps_dir.path().join(format!("open{k}"));
        copy_dir(&snap.stage, &copy);
        let ov = w.reopen_at(&copy, snap.head).unwrap();
        w.ov = Some(ov);
        w.check(&snap.model, None);
        w.ov = None;
        // A crash inside operation k's records: the state before it (file bytes may be
        // either, as staging files are not journaled).
        if k == 0 || snap.new_journal {
            continue;
        }
        let prev = &snaps[k - 1];
        for cut in prev.journal_len..snap.journal_len {
            let copy = snaps_dir.path().join(format!("cut{k}-{cut}"));
            copy_dir(&snap.stage, &copy);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(copy.join("journal"))
                .unwrap();
            f.set_len(cut).unwrap();
            let ov = w.reopen_at(&copy, snap.head).unwrap();
            w.ov = Some(ov);
            w.check(&prev.model, Some(&snap.model));
            w.ov = None;
            std::fs::remove_dir_all(&copy).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn every_crash_point_replays_to_a_state_the_model_had(ops in prop::collection::vec(op(true), 1..30)) {
        crash_everywhere(&ops);
    }
}

fn p(s: &str) -> P {
    s.split('/').map(str::to_string).collect()
}

#[test]
fn names_linux_cannot_store_are_refused() {
    let mut w = World::new(ImportOptions::default(), None);
    let rt = rt();
    let ov = w.ov();
    let bad: Vec<(&[u8], i32)> = vec![
        (b"a/b", libc::EINVAL),
        (b"a\0b", libc::EINVAL),
        (b".", libc::EINVAL),
        (b"..", libc::EINVAL),
        (b"", libc::EINVAL),
        (b"\xff\xfe", libc::EINVAL),
        (&[b'x'; 256], libc::ENAMETOOLONG),
    ];
    use std::os::unix::ffi::OsStrExt;
    for (name, errno) in bad {
        let name = OsStr::from_bytes(name);
        assert_eq!(
            rt.block_on(ov.create(NodeId::ROOT, name, 0o644))
                .unwrap_err()
                .errno(),
            errno,
            "{name:?}"
        );
        assert_eq!(
            rt.block_on(ov.mkdir(NodeId::ROOT, name, 0o755))
                .unwrap_err()
                .errno(),
            errno
        );
        assert_eq!(
            rt.block_on(ov.lookup(NodeId::ROOT, name))
                .unwrap_err()
                .errno(),
            errno
        );
    }
    let longest = "x".repeat(NAME_MAX);
    rt.block_on(ov.create(NodeId::ROOT, &longest, 0o644))
        .unwrap();
    let long_target = "t".repeat(SYMLINK_MAX + 1);
    assert_eq!(
        rt.block_on(ov.symlink(NodeId::ROOT, "l", &long_target))
            .unwrap_err()
            .errno(),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        ov.link(NodeId::ROOT, NodeId::ROOT, "h")
            .unwrap_err()
            .errno(),
        libc::EPERM
    );
    w.reopen();
    assert!(rt.block_on(w.ov().lookup(NodeId::ROOT, &longest)).is_ok());
}

#[test]
fn node_ids_survive_renames_and_commits() {
    let (mut w, _, _src) = world_with_initial();
    w.keep = false;
    let f = w.resolve(&p("a/f")).unwrap();
    let b = w.resolve(&p("a/b")).unwrap();
    w.apply(&Op::Rename(p("a/f"), p("c/g"), 0)).unwrap();
    w.apply(&Op::Rename(p("a/b"), p("b2"), 0)).unwrap();
    assert_eq!(w.resolve(&p("c/g")).unwrap(), f);
    assert_eq!(w.resolve(&p("b2")).unwrap(), b);
    assert_eq!(w.resolve(&p("a/f")), Err(libc::ENOENT));
    w.apply(&Op::Write(p("c/g"), 5, 3, 1)).unwrap();
    let stats = w.commit();
    assert_eq!(w.ov().base(), stats.root);
    assert_eq!(w.resolve(&p("c/g")).unwrap(), f);
    assert_eq!(
        w.resolve(&p("b2/c")).unwrap(),
        w.resolve(&p("b2/c")).unwrap()
    );
    assert_eq!(w.resolve(&p("b2")).unwrap(), b);
    assert!(w.ov().committed_cid(f).unwrap().is_some());
    assert!(!w.ov().getattr(NodeId::ROOT).unwrap().dirty);
    // The committed file is read from blocks again, and a new write stages it again.
    assert!(matches!(
        w.ov().content(f).unwrap(),
        FileContent::Committed(_)
    ));
    w.apply(&Op::Write(p("c/g"), 0, 1, 2)).unwrap();
    assert_eq!(w.ov().content(f).unwrap(), FileContent::Staged);
    assert!(w.ov().getattr(NodeId::ROOT).unwrap().dirty);
}

#[test]
fn an_unlinked_file_stays_usable_until_forgotten() {
    let mut w = World::new(ImportOptions::default(), None);
    w.apply(&Op::Create(p("f"), 0o644)).unwrap();
    w.apply(&Op::Write(p("f"), 0, 100, 1)).unwrap();
    let id = w.resolve(&p("f")).unwrap();
    w.ov().sync().unwrap();
    w.apply(&Op::Unlink(p("f"))).unwrap();
    let rt = rt();
    rt.block_on(w.ov().write(id, 100, b"more")).unwrap();
    let got = rt.block_on(w.ov().read(id, 96, 100)).unwrap();
    assert_eq!(&got[4..], b"more");
    assert_eq!(w.ov().getattr(id).unwrap().nlink, 0);
    rt.block_on(w.ov().setattr(
        id,
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
    ))
    .unwrap();
    assert!(rt
        .block_on(w.ov().read_dir(NodeId::ROOT))
        .unwrap()
        .is_empty());
    w.ov().sync().unwrap();
    let staged = w.stage.join("data").join(format!("{:016x}", id.0));
    assert!(staged.exists(), "still open: its staging file stays");
    let stats = w.commit();
    assert_eq!(stats.size, 0);
    assert!(staged.exists());
    // Forgotten (the create and the two lookups): gone at the next sync.
    w.ov().forget(id, 2);
    assert!(w.ov().getattr(id).is_ok(), "one lookup is still held");
    w.ov().forget(id, 1);
    w.ov().sync().unwrap();
    assert!(!staged.exists());
    assert!(w.ov().getattr(id).is_err());
    // A restart does not bring it back, and replay is clean.
    w.reopen();
    assert!(rt
        .block_on(w.ov().read_dir(NodeId::ROOT))
        .unwrap()
        .is_empty());
    // A committed file unlinked while open, after another commit, is staged on its next write.
    w.apply(&Op::Create(p("g"), 0o644)).unwrap();
    w.apply(&Op::Write(p("g"), 0, 10, 3)).unwrap();
    w.commit();
    let g = w.resolve(&p("g")).unwrap();
    w.apply(&Op::Unlink(p("g"))).unwrap();
    w.commit();
    rt.block_on(w.ov().write(g, 10, b"!")).unwrap();
    let set = SetAttr {
        size: Some(5),
        mode: Some(0o600),
        ..SetAttr::default()
    };
    rt.block_on(w.ov().setattr(g, set)).unwrap();
    assert_eq!(rt.block_on(w.ov().read(g, 0, 100)).unwrap(), data(3, 5));
    w.ov().sync().unwrap();
    w.reopen();
    assert!(rt
        .block_on(w.ov().read_dir(NodeId::ROOT))
        .unwrap()
        .is_empty());
}

#[test]
fn rename_follows_rename2() {
    let mut w = World::new(ImportOptions::default(), None);
    for op in [
        Op::Mkdir(p("d"), 0o755),
        Op::Mkdir(p("d/e"), 0o755),
        Op::Mkdir(p("x"), 0o755),
        Op::Create(p("x/f"), 0o644),
        Op::Create(p("g"), 0o644),
        Op::Write(p("g"), 0, 10, 1),
    ] {
        w.apply(&op).unwrap();
    }
    let cases = [
        (Op::Rename(p("d"), p("d/e/z"), 0), Err(libc::EINVAL)),
        (Op::Rename(p("d"), p("d"), 0), Ok(())),
        (
            Op::Rename(p("g"), p("x/f"), RENAME_NOREPLACE),
            Err(libc::EEXIST),
        ),
        (
            Op::Rename(p("g"), p("nope"), RENAME_EXCHANGE),
            Err(libc::ENOENT),
        ),
        (
            Op::Rename(p("g"), p("x"), RENAME_EXCHANGE | RENAME_NOREPLACE),
            Err(libc::EINVAL),
        ),
        (
            Op::Rename(p("g"), p("x"), libc::RENAME_WHITEOUT),
            Err(libc::EINVAL),
        ),
        (Op::Rename(p("g"), p("x"), 0), Err(libc::EISDIR)),
        (Op::Rename(p("d"), p("g"), 0), Err(libc::ENOTDIR)),
        (Op::Rename(p("d"), p("x"), 0), Err(libc::ENOTEMPTY)),
        (Op::Rename(p("x/f"), p("d/e"), RENAME_EXCHANGE), Ok(())),
        (Op::Rename(p("g"), p("d/e"), 0), Ok(())),
        (Op::Rename(p("nope"), p("z"), 0), Err(libc::ENOENT)),
    ];
    for (op, expected) in cases {
        assert_eq!(w.apply(&op), expected, "{op:?}");
    }
    // x/f (an empty file) and d/e swapped; then g replaced d/e (the empty file).
    let xf = w.resolve(&p("x/f")).unwrap();
    assert_eq!(w.ov().getattr(xf).unwrap().kind, EntryKind::Directory);
    let e = w.resolve(&p("d/e")).unwrap();
    assert_eq!(w.ov().getattr(e).unwrap().size, 10);
    assert_eq!(w.resolve(&p("g")), Err(libc::ENOENT));
}

/// Builds a tree through the overlay and on disk, commits it, and compares with `import_path`.
fn same_as_add(opts: ImportOptions) {
    let mut w = World::new(opts.clone(), None);
    let mut model = M::dir();
    let chunk = match opts.chunker {
        ChunkerSpec::Fixed(n) => n,
        _ => 262_144,
    };
    let mut ops = vec![
        Op::Mkdir(p("docs"), 0o755),
        Op::Mkdir(p("docs/empty"), 0o755),
        Op::Mkdir(p("src"), 0o755),
        Op::Mkdir(p("src/deep"), 0o755),
        Op::Symlink(p("link"), "docs/zero".into()),
        Op::Symlink(p("src/deep/up"), "../../link".into()),
    ];
    for (i, len) in [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 7]
        .into_iter()
        .enumerate()
    {
        let f = format!("docs/f{i}");
        ops.push(Op::Create(p(&f), 0o644));
        ops.push(Op::Write(p(&f), 0, len, i as u8 + 1));
    }
    ops.push(Op::Create(p("src/deep/big"), 0o644));
    for k in 0..12 {
        ops.push(Op::Write(
            p("src/deep/big"),
            k * 300_000,
            300_000,
            k as u8 + 1,
        ));
    }
    ops.push(Op::Create(p("docs/zero"), 0o644));
    ops.push(Op::Truncate(p("docs/zero"), 5 << 20));
    for op in &ops {
        model_apply(&mut model, op).unwrap();
        w.apply(op).unwrap();
    }
    let stats = w.commit();
    assert_eq!(stats.root, w.add_model(&model));
    assert_eq!(stats.size, model.files_size());
    // Change a little and compare again (reused subtrees, rebuilt paths).
    for op in [
        Op::Write(p("docs/f3"), 1, 1, 9),
        Op::Rename(p("docs/empty"), p("src/empty2"), 0),
        Op::Unlink(p("docs/f0")),
        Op::Truncate(p("src/deep/big"), 1_000_000),
    ] {
        model_apply(&mut model, &op).unwrap();
        w.apply(&op).unwrap();
    }
    let before = w.head;
    let stats = w.commit();
    assert_eq!(stats.root, w.add_model(&model));
    assert_eq!(stats.size, model.files_size());
    assert_eq!(stats.changed, reference_diff(&w.mem, before, stats.root));
}

#[test]
fn commits_give_the_cids_of_cairn_add_with_default_options() {
    same_as_add(ImportOptions::default());
}

#[test]
fn commits_give_the_cids_of_cairn_add_with_cidv0_and_metadata() {
    same_as_add(ImportOptions {
        preserve_mode: true,
        preserve_mtime: true,
        ..ImportOptions::with_cid_version(0)
    });
    same_as_add(ImportOptions {
        chunker: ChunkerSpec::Fixed(1000),
        max_links: 4,
        preserve_mtime: true,
        ..ImportOptions::default()
    });
    same_as_add(ImportOptions {
        preserve_mode: true,
        ..ImportOptions::default()
    });
}

#[test]
fn without_preserve_options_only_set_metadata_is_recorded() {
    let mut w = World::new(ImportOptions::default(), None);
    w.keep = false;
    for op in [
        Op::Create(p("plain"), 0o644),
        Op::Write(p("plain"), 0, 10, 1),
        Op::Create(p("tool"), 0o755),
        Op::Write(p("tool"), 0, 10, 2),
        Op::Create(p("dated"), 0o644),
        Op::Write(p("dated"), 0, 10, 3),
        Op::Utime(p("dated"), 77),
    ] {
        w.apply(&op).unwrap();
    }
    let stats = w.commit();
    let reader = DagReader::new(w.mem.clone());
    let rt = rt();
    let stat = |name: &str| {
        let cid = rt
            .block_on(reader.lookup(&stats.root, name))
            .unwrap()
            .unwrap();
        rt.block_on(reader.stat(&cid)).unwrap()
    };
    assert_eq!(
        stat("plain").cid.codec(),
        cairn_store::RAW,
        "a default file is its raw leaf, as `cairn add` makes it"
    );
    assert_eq!(
        stat("tool").mode,
        Some(0o755),
        "an executable keeps its mode"
    );
    let dated = stat("dated");
    assert_eq!(dated.mode, None);
    assert_eq!(dated.mtime.map(|t| t.seconds), Some(1_500_000_077));
    // Touching a committed file without a date changes no CID.
    let tool = w.resolve(&p("tool")).unwrap();
    rt.block_on(w.ov().setattr(
        tool,
        SetAttr {
            mtime: Some(TimeSet::Now),
            ..SetAttr::default()
        },
    ))
    .unwrap();
    let n = w.mem.received();
    let again = w.commit();
    assert_eq!(again.root, stats.root);
    assert_eq!(again.changed, 0);
    assert!(
        w.mem.received() - n <= 1,
        "only the root may be stored again"
    );
}

#[test]
fn sharded_directories_are_built_and_updated_as_cairn_add_does() {
    let opts = ImportOptions {
        hamt_shard_threshold: 4096,
        ..ImportOptions::default()
    };
    let mut w = World::new(opts, None);
    let mut model = M::dir();
    let run = |w: &mut World, model: &mut M, ops: Vec<Op>| {
        for op in &ops {
            model_apply(model, op).unwrap();
            w.apply(op).unwrap();
        }
        let before = w.head;
        let stats = w.commit();
        assert_eq!(stats.root, w.add_model(model));
        assert_eq!(stats.changed, reference_diff(&w.mem, before, stats.root));
        stats
    };
    let mut ops = vec![Op::Mkdir(p("big"), 0o755)];
    for i in 0..600 {
        let f = format!("big/entry-{i:04}");
        ops.push(Op::Create(p(&f), 0o644));
        ops.push(Op::Write(p(&f), 0, 20, (i % 250) as u8 + 1));
    }
    ops.push(Op::Mkdir(p("big/sub"), 0o755));
    ops.push(Op::Create(p("big/sub/x"), 0o644));
    run(&mut w, &mut model, ops);
    let big = w.resolve(&p("big")).unwrap();
    assert!(
        w.ov()
            .tree
            .node(big)
            .unwrap()
            .base
            .as_ref()
            .unwrap()
            .sharded
    );
    // In place: a few added, changed and removed.
    let mut ops = vec![];
    for i in [3, 77, 500] {
        ops.push(Op::Write(p(&format!("big/entry-{i:04}")), 2, 2, 9));
    }
    for i in [5, 6, 7, 300] {
        ops.push(Op::Unlink(p(&format!("big/entry-{i:04}"))));
    }
    ops.push(Op::Create(p("big/new"), 0o644));
    ops.push(Op::Rename(p("big/sub"), p("big/sub2"), 0));
    let n = w.mem.received();
    run(&mut w, &mut model, ops);
    assert!(
        w.mem.received() - n < 40,
        "{} blocks for an update of 9 names",
        w.mem.received() - n
    );
    // Down below the threshold: a plain directory again; then up again.
    let ops: Vec<Op> = (8..590)
        .filter(|i| *i != 77 && *i != 300 && *i != 500)
        .map(|i| Op::Unlink(p(&format!("big/entry-{i:04}"))))
        .collect();
    run(&mut w, &mut model, ops);
    assert!(
        !w.ov()
            .tree
            .node(big)
            .unwrap()
            .base
            .as_ref()
            .unwrap()
            .sharded
    );
    let mut ops = vec![];
    for i in 1000..1400 {
        ops.push(Op::Create(p(&format!("big/entry-{i:04}")), 0o644));
    }
    run(&mut w, &mut model, ops);
    assert!(
        w.ov()
            .tree
            .node(big)
            .unwrap()
            .base
            .as_ref()
            .unwrap()
            .sharded
    );
}

/// A tree of 10 000 files: one sharded directory of 9 000, and 1 000 in nested directories.
fn ten_thousand_files(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    let big = root.join("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..9000 {
        std::fs::write(big.join(format!("file-{i:05}.txt")), format!("file {i}\n")).unwrap();
    }
    for d in 0..10 {
        let sub = root.join(format!("d{d}/e/f/g"));
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..100 {
            std::fs::write(sub.join(format!("n{i}")), format!("nested {d} {i}\n")).unwrap();
        }
    }
    root
}

#[test]
fn a_one_byte_change_in_10000_files_stores_a_few_blocks() {
    let src = tempfile::tempdir().unwrap();
    let root = ten_thousand_files(src.path());
    let mut w = World::new(ImportOptions::default(), Some(&root));
    let total = w.mem.received();
    for (path, on_disk) in [
        ("big/file-01234.txt", "big/file-01234.txt"),
        ("d7/e/f/g/n42", "d7/e/f/g/n42"),
    ] {
        let id = w.resolve(&p(path)).unwrap();
        rt().block_on(w.ov().write(id, 0, b"F")).unwrap();
        let mut bytes = std::fs::read(root.join(on_disk)).unwrap();
        bytes[0] = b'F';
        std::fs::write(root.join(on_disk), bytes).unwrap();
        let n = w.mem.log.lock().unwrap().len();
        let stats = w.commit();
        let (ids, new): (Vec<Cid>, Vec<Cid>) = w
            .mem
            .since(n)
            .into_iter()
            .partition(|c| c.codec() == cairn_store::DAG_CBOR);
        let new_blocks = new.len();
        eprintln!("one byte changed in {path} of a {total}-block tree: {new_blocks} new blocks, {} id blocks", ids.len());
        // The leaf, the shards or directories on the path, the root; one id block per
        // directory on the path (shards are not directories).
        assert!(
            new_blocks <= 7,
            "{new_blocks} blocks for a one-byte change in {path}"
        );
        assert_eq!(
            ids.len(),
            path.matches('/').count() + 1,
            "id blocks for {path}: one per directory on the path"
        );
        assert_eq!(stats.changed, 1);
        assert_eq!(
            stats.root,
            import(&root, &ImportOptions::default(), &Mem::default()).0
        );
    }
}

#[test]
fn unchanged_subtrees_are_reused_not_rebuilt() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("t");
    for d in ["a", "b/x/y", "b/z"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (f, n) in [
        ("a/1", 10),
        ("b/x/y/2", 70_000),
        ("b/z/3", 600_000),
        ("b/4", 5),
    ] {
        std::fs::write(root.join(f), data(n as u8 | 1, n)).unwrap();
    }
    let mut w = World::new(ImportOptions::default(), Some(&root));
    let rt = rt();
    let reader = DagReader::new(w.mem.clone());
    let b_cid = rt.block_on(reader.lookup(&w.head, "b")).unwrap().unwrap();
    let b_blocks = w.mem.dag(&b_cid);
    let n = w.mem.received();
    w.apply(&Op::Write(p("a/1"), 3, 1, 7)).unwrap();
    let stats = w.commit();
    let (ids, new): (Vec<Cid>, Vec<Cid>) = w
        .mem
        .since(n)
        .into_iter()
        .partition(|c| c.codec() == cairn_store::DAG_CBOR);
    assert_eq!(new.len(), 3, "a/1, a and the root: {new:?}");
    assert_eq!(ids.len(), 2, "the id blocks of a and the root");
    assert!(new.iter().all(|c| !b_blocks.contains(c)));
    assert_eq!(
        rt.block_on(reader.lookup(&stats.root, "b")).unwrap(),
        Some(b_cid)
    );
    // Moving b somewhere else stores none of its blocks either.
    let n = w.mem.received();
    w.apply(&Op::Mkdir(p("c"), 0o755)).unwrap();
    w.apply(&Op::Rename(p("b"), p("c/b"), 0)).unwrap();
    let stats = w.commit();
    let (ids, new): (Vec<Cid>, Vec<Cid>) = w
        .mem
        .since(n)
        .into_iter()
        .partition(|c| c.codec() == cairn_store::DAG_CBOR);
    assert!(new.iter().all(|c| !b_blocks.contains(c)), "{new:?}");
    assert_eq!(new.len(), 2, "c and the root");
    assert_eq!(
        ids.len(),
        2,
        "the id blocks of c and the root (b keeps its own)"
    );
    let c = rt
        .block_on(reader.lookup(&stats.root, "c"))
        .unwrap()
        .unwrap();
    assert_eq!(rt.block_on(reader.lookup(&c, "b")).unwrap(), Some(b_cid));
    assert_eq!(stats.changed, 2, "b removed, c added");
    assert_eq!(stats.size, 10 + 70_000 + 600_000 + 5);
}

#[test]
fn sparse_files_stay_sparse() {
    use std::os::unix::fs::MetadataExt;
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("t");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("zeros"), vec![0u8; 8 << 20]).unwrap();
    let mut w = World::new(ImportOptions::default(), Some(&root));
    let rt = rt();
    // A committed file of zeros, changed at its end: the copy leaves holes.
    let z = w.resolve(&p("zeros")).unwrap();
    rt.block_on(w.ov().write(z, (8 << 20) - 1, b"!")).unwrap();
    let staged = w.stage.join("data").join(format!("{:016x}", z.0));
    let md = std::fs::metadata(&staged).unwrap();
    assert_eq!(md.len(), 8 << 20);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "{} bytes allocated",
        md.blocks() * 512
    );
    // A new file written far past its end.
    w.apply(&Op::Create(p("far"), 0o644)).unwrap();
    let far = w.resolve(&p("far")).unwrap();
    rt.block_on(w.ov().write(far, 100 << 20, b"end")).unwrap();
    let md = std::fs::metadata(w.stage.join("data").join(format!("{:016x}", far.0))).unwrap();
    assert!(md.blocks() * 512 < 1 << 20);
    assert_eq!(
        rt.block_on(w.ov().read(far, (100 << 20) - 2, 10)).unwrap(),
        &b"\0\0end"[..]
    );
    let stats = w.commit();
    assert_eq!(stats.size, (8 << 20) + (100 << 20) + 3);
    assert_eq!(
        rt.block_on(w.ov().read(far, (100 << 20) - 2, 10)).unwrap(),
        &b"\0\0end"[..]
    );
    assert_eq!(
        rt.block_on(w.ov().read(z, (8 << 20) - 2, 10)).unwrap(),
        &b"\0!"[..]
    );
}

#[test]
fn interrupted_commits_reopen_on_either_head() {
    let (mut w, mut model, _src) = world_with_initial();
    for op in [
        Op::Create(p("n"), 0o600),
        Op::Write(p("n"), 0, 50, 3),
        Op::Unlink(p("b")),
    ] {
        model_apply(&mut model, &op).unwrap();
        w.apply(&op).unwrap();
    }
    let (mem, opts, size) = (w.mem.clone(), w.opts.clone(), w.head_size);
    let old = w.head;
    let ov = w.ov.as_mut().unwrap();
    let stats = w.rt.block_on(ov.commit(&mem, &opts, size)).unwrap();
    // More changes after the build, then a crash with the head moved: replayed over the old
    // base, which the head contains.
    for op in [Op::Write(p("n"), 50, 5, 4), Op::Mkdir(p("later"), 0o755)] {
        model_apply(&mut model, &op).unwrap();
        w.apply(&op).unwrap();
    }
    assert!(matches!(
        w.ov().committed(stats.root),
        Err(OverlayError::NotPending(_))
    ));
    w.head = stats.root;
    w.reopen();
    assert_eq!(w.ov().base(), old);
    w.check(&model, None);
    // The next commit has everything; a reset works.
    w.head = old;
    let again = w.commit();
    assert_eq!(again.root, w.add_model(&model));
    // A journal that stages nothing is dropped when the head moved; one that stages changes
    // made on another version is refused, not replayed over the wrong tree.
    let f = w.resolve(&p("n")).unwrap();
    w.ov().bind(f).unwrap();
    w.ov = None;
    let fresh = w.reopen_at(&w.stage.clone(), old).unwrap();
    assert_eq!(fresh.base(), old);
    drop(fresh);
    w.head = again.root;
    w.reopen();
    w.apply(&Op::Create(p("pending"), 0o644)).unwrap();
    w.ov = None;
    let err = w.reopen_at(&w.stage.clone(), old).unwrap_err();
    assert!(matches!(err, OverlayError::HeadMoved { .. }), "{err}");
    // Damage is reported, not hidden.
    std::fs::write(w.stage.join("journal"), b"CAIRNOV1garbage").unwrap();
    let err = w.reopen_at(&w.stage.clone(), again.root).unwrap_err();
    assert!(matches!(err, OverlayError::BadJournal { .. }), "{err}");
}

#[test]
fn sync_makes_written_data_and_mtimes_durable() {
    let mut w = World::new(ImportOptions::default(), None);
    w.apply(&Op::Create(p("f"), 0o644)).unwrap();
    w.apply(&Op::Write(p("f"), 0, 4000, 5)).unwrap();
    // Enough files for the sync to be one `syncfs`.
    w.apply(&Op::Mkdir(p("many"), 0o755)).unwrap();
    for i in 0..(data::SYNCFS_AFTER + 5) {
        w.apply(&Op::Create(p(&format!("many/{i}")), 0o644))
            .unwrap();
        w.apply(&Op::Write(p(&format!("many/{i}")), 0, 10, i as u8))
            .unwrap();
    }
    let id = w.resolve(&p("f")).unwrap();
    let mtime = w.ov().getattr(id).unwrap().mtime;
    w.ov().sync().unwrap();
    let synced = std::fs::metadata(w.stage.join("journal")).unwrap().len();
    // Unsynced changes after it, then a power cut that loses the journal's unsynced tail.
    w.apply(&Op::Mkdir(p("d"), 0o755)).unwrap();
    w.apply(&Op::Rename(p("f"), p("d/f"), 0)).unwrap();
    w.ov = None;
    std::fs::OpenOptions::new()
        .write(true)
        .open(w.stage.join("journal"))
        .unwrap()
        .set_len(synced)
        .unwrap();
    w.reopen();
    let id = w.resolve(&p("f")).unwrap();
    assert_eq!(w.resolve(&p("d")), Err(libc::ENOENT));
    let attr = w.ov().getattr(id).unwrap();
    assert_eq!(attr.mtime, mtime);
    assert_eq!(
        rt().block_on(w.ov().read(id, 0, 5000)).unwrap(),
        data(5, 4000)
    );
    for i in 0..(data::SYNCFS_AFTER + 5) {
        let id = w.resolve(&p(&format!("many/{i}"))).unwrap();
        assert_eq!(
            rt().block_on(w.ov().read(id, 0, 100)).unwrap(),
            data(i as u8, 10)
        );
    }
}

#[test]
fn errors_map_to_linux_errnos() {
    let full = OverlayError::Io {
        path: PathBuf::from("x"),
        source: std::io::Error::from_raw_os_error(libc::ENOSPC),
    };
    assert_eq!(full.errno(), libc::ENOSPC);
    assert!(full.is_no_space());
    let store_full =
        OverlayError::Import(cairn_store::ImportError::Store(StoreError::Internal("x")));
    assert_eq!(store_full.errno(), libc::EIO);
    assert_eq!(
        fuser::Errno::from(OverlayError::NotEmpty),
        fuser::Errno::ENOTEMPTY
    );
}

#[test]
fn a_subdirectory_that_fills_can_unshard_its_parent() {
    // The estimate counts a non-empty subdirectory only while it is added: with "aa" empty,
    // 20 files and "aa" exceed the threshold; once "aa" has an entry, the files alone do not.
    let opts = ImportOptions {
        hamt_shard_threshold: 20 * (3 + 36),
        ..ImportOptions::default()
    };
    let mut w = World::new(opts, None);
    let mut model = M::dir();
    let mut ops = vec![Op::Mkdir(p("d"), 0o755), Op::Mkdir(p("d/aa"), 0o755)];
    for i in 0..20 {
        ops.push(Op::Create(p(&format!("d/f{i:02}")), 0o644));
        ops.push(Op::Write(p(&format!("d/f{i:02}")), 0, 5, i + 1));
    }
    let steps = vec![
        ops,
        vec![Op::Create(p("d/aa/x"), 0o644)],
        vec![Op::Unlink(p("d/aa/x"))],
    ];
    for (step, ops) in steps.into_iter().enumerate() {
        for op in &ops {
            model_apply(&mut model, op).unwrap();
            w.apply(op).unwrap();
        }
        let stats = w.commit();
        assert_eq!(stats.root, w.add_model(&model), "step {step}");
        let d = w.resolve(&p("d")).unwrap();
        let sharded = w.ov().tree.node(d).unwrap().base.as_ref().unwrap().sharded;
        assert_eq!(sharded, step != 1, "step {step}");
    }
}

/// The operations' futures can run as tasks on a multi-threaded runtime (FUSE hands replies to
/// tasks).
#[test]
fn operation_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let mut w = World::new(ImportOptions::default(), None);
    let mem = w.mem.clone();
    let opts = ImportOptions::default();
    let ov = w.ov();
    send(&ov.lookup(NodeId::ROOT, "x"));
    send(&ov.write(NodeId::ROOT, 0, b"x"));
    send(&ov.read(NodeId::ROOT, 0, 1));
    send(&ov.rename(NodeId::ROOT, "a", NodeId::ROOT, "b", 0));
    send(&ov.setattr(NodeId::ROOT, SetAttr::default()));
    send(&ov.commit(&mem, &opts, 0));
    send(&ov.dir_cursor(NodeId::ROOT).unwrap().next_entry());
    send(&ov.read_dir(NodeId::ROOT));
    let owned: Overlay<Mem> = w.ov.take().unwrap();
    send(&owned);
}

#[test]
fn files_kept_open_across_commits_are_not_copied_again() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("t");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("log"), data(1, 3 << 20)).unwrap();
    let mut w = World::new(ImportOptions::default(), Some(&root));
    let rt = rt();
    let id = w.resolve(&p("log")).unwrap();
    let mut model = data(1, 3 << 20);
    let open = HashSet::from([id]);
    for round in 0..3u8 {
        let reads = w.mem.reads.load(Ordering::SeqCst);
        let chunk = data(round + 7, 100_000);
        let at = model.len() as u64;
        rt.block_on(w.ov().write(id, at, &chunk)).unwrap();
        model.extend_from_slice(&chunk);
        let reads = w.mem.reads.load(Ordering::SeqCst) - reads;
        if round == 0 {
            assert!(
                reads > 10,
                "the first write copies the committed file ({reads} reads)"
            );
        } else {
            assert_eq!(reads, 0, "round {round}: the kept copy is written in place");
        }
        let (mem, opts, size) = (w.mem.clone(), w.opts.clone(), w.head_size);
        let stats = rt.block_on(w.ov().commit(&mem, &opts, size)).unwrap();
        w.ov().committed_keeping(stats.root, &open).unwrap();
        w.head = stats.root;
        w.head_size = stats.size;
        assert_eq!(stats.size, model.len() as u64);
        assert_eq!(w.ov().content(id).unwrap(), FileContent::Staged);
        assert!(!w.ov().getattr(id).unwrap().dirty);
    }
    // A restart over the last commit finds the copy, and the content is right.
    let head = w.head;
    w.reopen();
    let id = w.resolve(&p("log")).unwrap();
    assert_eq!(rt.block_on(w.ov().read(id, 0, 4 << 20)).unwrap(), model);
    let stats = w.commit();
    assert_eq!(stats.root, head, "the copy holds the committed content");
    // A commit that does not keep it goes back to the committed blocks.
    w.keep = false;
    rt.block_on(w.ov().write(id, 0, b"x")).unwrap();
    w.commit();
    assert!(matches!(
        w.ov().content(id).unwrap(),
        FileContent::Committed(_)
    ));
    assert!(!w.stage.join("data").join(format!("{:016x}", id.0)).exists());
}

/// The id of the node at `path` in a version read with its id tree.
fn id_at(tree: &cairn_store::merge::Tree, path: &str) -> Option<u128> {
    tree.nodes
        .keys()
        .copied()
        .find(|id| tree.path(*id).as_deref() == Some(path))
}

#[test]
fn commits_keep_node_identities_across_renames_edits_and_restarts() {
    use cairn_store::identity::read_version;
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("a/deep")).unwrap();
    std::fs::create_dir(src.path().join("b")).unwrap();
    std::fs::write(src.path().join("a/report.txt"), b"draft").unwrap();
    std::fs::write(src.path().join("a/deep/x"), b"x").unwrap();
    std::fs::write(src.path().join("notes.txt"), b"n").unwrap();
    let mut w = World::new(ImportOptions::default(), Some(src.path()));
    let read = |w: &mut World, root: Cid, ids: Option<Cid>| {
        let reader = DagReader::new(w.mem.clone());
        w.rt.block_on(read_version(&reader, root, ids)).unwrap()
    };
    let s = |x: &str| x.to_string();
    // Version 1: an edit at the top; its id tree names what was derived before.
    let v0 = w.head;
    w.apply(&Op::Write(vec![s("notes.txt")], 0, 3, 1)).unwrap();
    w.apply(&Op::Create(vec![s("made.txt")], 0o644)).unwrap();
    // Building the same staged changes twice gives the same identities.
    let (mem, opts) = (w.mem.clone(), w.opts.clone());
    let first =
        w.rt.block_on(w.ov.as_mut().unwrap().commit(&mem, &opts, 0))
            .unwrap();
    let v1 = w.commit();
    assert_eq!(first.ids, v1.ids, "a rebuild gives the same identities");
    assert!(v1.ids.is_some());
    let t0 = read(&mut w, v0, None);
    let t1 = read(&mut w, v1.root, v1.ids);
    for p in ["a", "a/report.txt", "a/deep/x", "b", "notes.txt"] {
        assert_eq!(id_at(&t0, p), id_at(&t1, p), "{p}");
    }
    // Version 2: a file renamed into another directory and then edited, a directory moved,
    // a new file; a restart (no sync) in the middle replays the journal.
    w.apply(&Op::Rename(
        vec![s("a"), s("report.txt")],
        vec![s("b"), s("final.txt")],
        0,
    ))
    .unwrap();
    w.apply(&Op::Sync).unwrap();
    w.reopen();
    w.apply(&Op::Write(vec![s("b"), s("final.txt")], 0, 10, 2))
        .unwrap();
    // A file made in version 1 (a new identity, not a derived one) moved after the restart.
    w.apply(&Op::Rename(
        vec![s("made.txt")],
        vec![s("b"), s("made.txt")],
        0,
    ))
    .unwrap();
    w.apply(&Op::Rename(vec![s("a"), s("deep")], vec![s("deeper")], 0))
        .unwrap();
    w.apply(&Op::Create(vec![s("b"), s("new.txt")], 0o644))
        .unwrap();
    let v2 = w.commit();
    let t2 = read(&mut w, v2.root, v2.ids);
    assert_eq!(id_at(&t2, "b/final.txt"), id_at(&t1, "a/report.txt"));
    assert!(id_at(&t1, "made.txt").is_some());
    assert_eq!(id_at(&t2, "b/made.txt"), id_at(&t1, "made.txt"));
    assert_eq!(id_at(&t2, "deeper"), id_at(&t1, "a/deep"));
    assert_eq!(id_at(&t2, "deeper/x"), id_at(&t1, "a/deep/x"));
    assert_eq!(id_at(&t2, "notes.txt"), id_at(&t1, "notes.txt"));
    let new = id_at(&t2, "b/new.txt").unwrap();
    assert!(!t1.nodes.contains_key(&new));
    assert_eq!(id_at(&t2, "a/report.txt"), None);
    // Version 3 on an unchanged subtree: ids stay, and untouched directories keep their
    // id blocks (only the changed path's are new).
    w.apply(&Op::Write(vec![s("notes.txt")], 0, 1, 3)).unwrap();
    let v3 = w.commit();
    let t3 = read(&mut w, v3.root, v3.ids);
    for p in ["b", "b/final.txt", "b/new.txt", "deeper", "deeper/x", "a"] {
        assert_eq!(id_at(&t3, p), id_at(&t2, p), "{p}");
    }
    // Version 4: a file moved out of a directory that is then removed (so the directory
    // leaves the node table) keeps its identity, also through a restart's replay.
    w.apply(&Op::Rename(vec![s("deeper"), s("x")], vec![s("x2")], 0))
        .unwrap();
    w.apply(&Op::Rmdir(vec![s("deeper")])).unwrap();
    w.apply(&Op::Sync).unwrap();
    w.reopen();
    let v4 = w.commit();
    let t4 = read(&mut w, v4.root, v4.ids);
    assert_eq!(id_at(&t4, "x2"), id_at(&t3, "deeper/x"));
    assert_eq!(id_at(&t4, "deeper"), None);
}

#[test]
fn a_clean_staging_area_rebases_onto_another_version_keeping_the_nodes_still_there() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("docs/old")).unwrap();
    std::fs::write(src.path().join("docs/report.txt"), b"draft").unwrap();
    std::fs::write(src.path().join("docs/old/gone.txt"), b"bye").unwrap();
    std::fs::write(src.path().join("kind"), b"a file").unwrap();
    let mut w = World::new(ImportOptions::default(), Some(src.path()));
    let s = |x: &str| x.to_string();
    // The kernel knows these nodes (looked up), and holds them across the rebase.
    let docs = w.resolve(&[s("docs")]).unwrap();
    let report = w.resolve(&[s("docs"), s("report.txt")]).unwrap();
    let gone = w.resolve(&[s("docs"), s("old"), s("gone.txt")]).unwrap();
    let kind = w.resolve(&[s("kind")]).unwrap();
    // Another writer's version: the report edited, docs/old removed, `kind` now a directory,
    // a new file.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("docs")).unwrap();
    std::fs::create_dir_all(other.path().join("kind")).unwrap();
    std::fs::write(other.path().join("docs/report.txt"), b"reviewed by bob").unwrap();
    std::fs::write(other.path().join("new.txt"), b"new").unwrap();
    let (theirs, _) = import(other.path(), &w.opts, &w.mem);

    // Staged changes are refused: commit first.
    w.apply(&Op::Create(vec![s("mine.txt")], 0o644)).unwrap();
    let ov = w.ov.as_mut().unwrap();
    assert!(matches!(
        w.rt.block_on(ov.rebase(theirs, None)),
        Err(OverlayError::Staged)
    ));
    w.apply(&Op::Unlink(vec![s("mine.txt")])).unwrap();
    w.commit();
    let ov = w.ov.as_mut().unwrap();
    assert!(
        ov.is_clean(),
        "root dirty {:?}, staged {:?}, pending {}",
        ov.tree.node(NodeId::ROOT).map(|n| n.dirty),
        ov.tree
            .nodes
            .values()
            .filter(|n| n.staged())
            .map(|n| n.name.clone())
            .collect::<Vec<_>>(),
        ov.pending.is_some()
    );
    let r = w.rt.block_on(ov.rebase(theirs, None)).unwrap();
    assert_eq!(ov.base(), theirs);
    for id in [NodeId::ROOT, docs, report] {
        assert!(r.changed.contains(&id), "{id:?} stays and changed");
    }
    // Gone: docs/old (and what is under it), and `kind`, which is another kind now.
    let gone_names: Vec<&str> = r.gone.iter().map(|(_, n)| n.as_str()).collect();
    assert!(gone_names.contains(&"old"), "{gone_names:?}");
    assert!(gone_names.contains(&"kind"), "{gone_names:?}");
    // The same inodes read the new content; the gone ones are no longer in the tree.
    let got = w.rt.block_on(ov.read(report, 0, 100)).unwrap();
    assert_eq!(&got[..], b"reviewed by bob");
    assert_eq!(ov.getattr(report).unwrap().size, 15);
    assert_eq!(w.resolve(&[s("docs"), s("report.txt")]).unwrap(), report);
    assert!(w.resolve(&[s("docs"), s("old")]).is_err());
    let new_kind = w.resolve(&[s("kind")]).unwrap();
    assert_ne!(new_kind, kind, "a directory now: a new node");
    assert_ne!(new_kind, gone);
    assert!(w.resolve(&[s("new.txt")]).is_ok());
    // A restart opens on the new version with nothing staged; a commit of nothing is none.
    w.head = theirs;
    w.head_ids = None;
    w.reopen();
    assert!(w.ov.as_mut().unwrap().is_clean());
    w.apply(&Op::Write(vec![s("new.txt")], 0, 3, 9)).unwrap();
    let v = w.commit();
    let reader = DagReader::new(w.mem.clone());
    let cid =
        w.rt.block_on(reader.resolve(&v.root, &["docs", "report.txt"]))
            .unwrap();
    assert_eq!(
        &w.rt.block_on(reader.read(&cid, 0, 100)).unwrap()[..],
        b"reviewed by bob"
    );
}
