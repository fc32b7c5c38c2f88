//! [`Repo`]: a cairn repository directory.
//!
//! ```text
//! <repo>/config.toml    Config (written last by init: its presence marks a repo)
//! <repo>/identity.key   32-byte Ed25519 secret seed, mode 0600
//! <repo>/repo.lock      flock'ed by the process that has the repo open; holds its pid
//! <repo>/pins.journal   pins and durable GC roots, append-only (see `journal.rs`)
//! <repo>/blocks/db/     sled: tree `blocks`, the index (rebuildable: `Repo::repair`)
//! <repo>/blocks/files/  blocks larger than `store.inline_max_bytes`, one file each
//! <repo>/blocks/packs/  smaller blocks, appended to pack files (see `pack.rs`)
//! ```
//!
//! The repo is private to its owner: directories 0700, files 0600, whatever the umask.

mod config;
mod lock;
mod session;

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cid::Cid;

pub use config::{
    Config, GatewayConfig, GcConfig, ImportConfig, NetworkConfig, SharesConfig, StoreConfig,
};
pub use lock::RepoLock;
pub use session::ImportSession;

use crate::blockstore::{Blockstore, StoreError};
use crate::car::{self, CarError};
use crate::gc::{self, GcError, GcReport, Live, Roots, GC_UNINDEXED_TOLERANCE};
use crate::journal::{Change, Journal, PinEntry};
use crate::pins::{PinKind, Pins};
use crate::sled_store::{db_err, private_dir, RebuildReport, SledStore, StoreOptions};

const CONFIG: &str = "config.toml";
const IDENTITY: &str = "identity.key";
const LOCK: &str = "repo.lock";
const BLOCKS: &str = "blocks";
const JOURNAL: &str = "pins.journal";

/// Why a repo could not be created, opened or checked.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// `open` on a directory that is not a repo.
    #[error("no cairn repo at {path}; run `cairn init`")]
    NotInitialised {
        /// The directory.
        path: PathBuf,
    },
    /// `init` on a directory that already is one.
    #[error("a cairn repo already exists at {path}")]
    AlreadyInitialised {
        /// The directory.
        path: PathBuf,
    },
    /// Another open holds the lock.
    #[error("repo {path} is in use by another cairn process{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse {
        /// The directory.
        path: PathBuf,
        /// The pid written in the lock file.
        pid: Option<u32>,
    },
    /// A file of the repo could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `config.toml` does not parse.
    #[error("invalid config {path}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        source: toml::de::Error,
    },
    /// `identity.key` is not 32 bytes.
    #[error("invalid identity key {path}: expected 32 bytes, found {len}")]
    Identity {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The OS random source failed.
    #[error("cannot generate an identity key: {0}")]
    Random(getrandom::Error),
    /// The blockstore could not be opened or read.
    #[error("blockstore at {path}")]
    Store {
        /// The blocks directory.
        path: PathBuf,
        /// The error.
        source: StoreError,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`Repo::verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Blocks checked.
    pub checked: u64,
    /// Blocks whose bytes do not match their CID, or whose bytes are gone.
    pub corrupt: Vec<Cid>,
    /// dag-pb blocks that match their CID but do not decode.
    pub undecodable: Vec<Cid>,
    /// Valid blocks in the block files and packs that the index does not know (a few are left
    /// by an interrupted write; many mean the index lost entries).
    pub unindexed: u64,
    /// Blocks found in the block files and packs, without the index.
    pub on_disk: u64,
    /// Damaged stretches of pack files.
    pub damaged_records: u64,
}

impl VerifyReport {
    /// Whether nothing is wrong: every indexed block is present and valid, and the index
    /// agrees with the block files (up to what an interrupted write leaves unindexed).
    pub fn ok(&self) -> bool {
        self.corrupt.is_empty()
            && self.undecodable.is_empty()
            && self.damaged_records == 0
            && !self.index_disagrees()
    }

    /// Whether more blocks are on disk than an interrupted write could explain.
    pub fn index_disagrees(&self) -> bool {
        self.unindexed > GC_UNINDEXED_TOLERANCE
    }
}

/// What [`Repo::repair`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepairReport {
    /// The index rebuild.
    #[serde(flatten)]
    pub index: RebuildReport,
    /// Pins in the journal.
    pub pins: u64,
    /// Whether the pin journal was missing (recreated empty: earlier pins are unknown).
    pub pins_lost: bool,
}

/// An open repository, held exclusively by this process until dropped.
#[derive(Debug)]
pub struct Repo {
    path: PathBuf,
    config: Config,
    identity: [u8; 32],
    store: Arc<SledStore>,
    pins: Pins,
    roots: Roots,
    shares: crate::share::Shares,
    live: Arc<Live>,
    gc_lock: Mutex<()>,
    // Last, so it is released after sled has closed.
    _lock: RepoLock,
}

fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        cache_bytes: config.store.cache_mib << 20,
        inline_max: config.store.inline_max_bytes,
        reserve: config.store.reserve_mib.map(|m| m << 20),
        pack_target: config.store.pack_max_mib.max(1) << 20,
    }
}

/// Finds the repo at `path`, takes its lock (before anything else is read), tightens its
/// permissions, and reads its config and identity.
fn take(path: &Path) -> Result<(PathBuf, RepoLock, Config, [u8; 32]), RepoError> {
    let dir = path.canonicalize().map_err(|_| RepoError::NotInitialised {
        path: path.to_path_buf(),
    })?;
    if !dir.join(CONFIG).is_file() {
        return Err(RepoError::NotInitialised { path: dir });
    }
    let guard = lock(&dir)?;
    make_private(&dir);
    let (config, seed) = read_config_and_identity(&dir)?;
    Ok((dir, guard, config, seed))
}

fn read_config_and_identity(dir: &Path) -> Result<(Config, [u8; 32]), RepoError> {
    let config_path = dir.join(CONFIG);
    let text = fs::read_to_string(&config_path).map_err(io_at(&config_path))?;
    let config: Config = toml::from_str(&text).map_err(|source| RepoError::Config {
        path: config_path.clone(),
        source,
    })?;
    let key_path = dir.join(IDENTITY);
    let mut key = Vec::new();
    fs::File::open(&key_path)
        .and_then(|mut f| f.read_to_end(&mut key))
        .map_err(io_at(&key_path))?;
    let seed: [u8; 32] = key.as_slice().try_into().map_err(|_| RepoError::Identity {
        path: key_path.clone(),
        len: key.len(),
    })?;
    Ok((config, seed))
}

/// Makes the repo directory and its top-level files private (best effort: a repo made by an
/// older cairn under umask 022 is tightened when it is opened).
fn make_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    for name in [CONFIG, IDENTITY, LOCK, JOURNAL] {
        let p = dir.join(name);
        if p.exists() {
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o600));
        }
    }
    let blocks = dir.join(BLOCKS);
    if blocks.is_dir() {
        let _ = fs::set_permissions(&blocks, fs::Permissions::from_mode(0o700));
    }
}

/// Creates the pin journal of a repo made by an older cairn, which kept pins and roots in the
/// sled trees `pins` and `roots`; they are moved into the journal and the trees emptied. With
/// neither a journal nor legacy pins but blocks in the store, the journal is created
/// *incomplete*: earlier pins may be lost, and GC refuses until `repo repair` acknowledges it.
fn migrate_pins(store: &SledStore, journal: &Path) -> Result<(), StoreError> {
    let pins = store.db().open_tree("pins").map_err(db_err)?;
    let roots = store.db().open_tree("roots").map_err(db_err)?;
    let mut changes = Vec::new();
    for r in pins.iter() {
        let (k, v) = r.map_err(db_err)?;
        let Ok(cid) = Cid::try_from(&k[..]) else {
            continue;
        };
        let kind = match v.first() {
            Some(b'r') => PinKind::Recursive,
            Some(b'd') => PinKind::Direct,
            _ => continue,
        };
        let name = std::str::from_utf8(&v[1..])
            .ok()
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        changes.push(Change::Pin {
            cid,
            entry: PinEntry { kind, name },
        });
    }
    for r in roots.iter() {
        let (k, v) = r.map_err(db_err)?;
        if let Ok(cid) = Cid::try_from(&v[..]) {
            changes.push(Change::SetRoot {
                name: String::from_utf8_lossy(&k).into_owned(),
                cid,
            });
        }
    }
    let complete = !changes.is_empty() || store.stats()?.blocks == 0;
    if !complete {
        tracing::warn!(path = %journal.display(), "pin journal missing on a store with blocks: gc refuses until `cairn repo repair`");
    }
    Journal::create(journal, complete, &changes)?;
    pins.clear().map_err(db_err)?;
    roots.clear().map_err(db_err)?;
    store.db().flush().map_err(db_err)?;
    Ok(())
}

fn lock(dir: &Path) -> Result<RepoLock, RepoError> {
    RepoLock::acquire(&dir.join(LOCK)).map_err(|e| match e {
        lock::LockError::Held(pid) => RepoError::InUse {
            path: dir.to_path_buf(),
            pid,
        },
        lock::LockError::Io(source) => RepoError::Io {
            path: dir.join(LOCK),
            source,
        },
    })
}

impl Repo {
    /// Creates a repo in `path` (created if missing) with default config and a fresh identity,
    /// and opens it.
    pub fn init(path: &Path) -> Result<Repo, RepoError> {
        Self::init_with(path, Config::default())
    }

    /// Creates a repo with the given config.
    pub fn init_with(path: &Path, config: Config) -> Result<Repo, RepoError> {
        private_dir(path).map_err(|e| match e {
            StoreError::Io { path, source, .. } => RepoError::Io { path, source },
            e => RepoError::Store {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        let dir = path.canonicalize().map_err(io_at(path))?;
        if dir.join(CONFIG).exists() {
            return Err(RepoError::AlreadyInitialised { path: dir });
        }
        make_private(&dir);
        let guard = lock(&dir)?;
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(RepoError::Random)?;
        let key_path = dir.join(IDENTITY);
        // A half-initialised repo (killed during init) may have left a key: replace it.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(io_at(&key_path))?;
        f.write_all(&seed)
            .and_then(|()| f.sync_all())
            .map_err(io_at(&key_path))?;
        let journal = dir.join(JOURNAL);
        Journal::create(&journal, true, &[]).map_err(|source| RepoError::Store {
            path: journal.clone(),
            source,
        })?;
        // The config goes last, atomically: its presence is what makes the directory a repo.
        let text = toml::to_string_pretty(&config).unwrap_or_default();
        let config_path = dir.join(CONFIG);
        crate::atomic::replace_file(&config_path, text.as_bytes(), 0o600)
            .map_err(io_at(&config_path))?;
        Self::finish_open(dir, config, seed, guard)
    }

    /// Opens the repo at `path`, taking its exclusive lock before anything else.
    pub fn open(path: &Path) -> Result<Repo, RepoError> {
        let (dir, guard, config, seed) = take(path)?;
        Self::finish_open(dir, config, seed, guard)
    }

    fn finish_open(
        dir: PathBuf,
        config: Config,
        identity: [u8; 32],
        guard: RepoLock,
    ) -> Result<Repo, RepoError> {
        let blocks = dir.join(BLOCKS);
        let store_err = |source| RepoError::Store {
            path: blocks.clone(),
            source,
        };
        let store = Arc::new(SledStore::open(&blocks, store_options(&config)).map_err(store_err)?);
        store.make_private();
        Self::assemble(dir, config, identity, guard, store)
    }

    fn assemble(
        dir: PathBuf,
        config: Config,
        identity: [u8; 32],
        guard: RepoLock,
        store: Arc<SledStore>,
    ) -> Result<Repo, RepoError> {
        let journal_path = dir.join(JOURNAL);
        let journal_err = |source| RepoError::Store {
            path: journal_path.clone(),
            source,
        };
        if !Journal::exists(&journal_path) {
            migrate_pins(&store, &journal_path).map_err(journal_err)?;
        }
        let journal = Arc::new(Journal::open(&journal_path).map_err(journal_err)?);
        let live = Arc::new(Live::default());
        let pins = Pins::new(store.clone(), live.clone(), journal.clone());
        let roots = Roots::new(journal, live.clone());
        let retention = crate::share::Retention {
            keep_versions: config.shares.keep_versions.max(1),
            keep_secs: config.shares.keep_secs,
        };
        let shares = crate::share::Shares::new(&dir, store.clone(), roots.clone(), retention);
        Ok(Repo {
            shares,
            path: dir,
            config,
            identity,
            store,
            pins,
            roots,
            live,
            gc_lock: Mutex::new(()),
            _lock: guard,
        })
    }

    /// Rebuilds the block index of the repo at `path` from its block files and pack files
    /// (verifying every block), and opens the repo. A missing pin journal is recreated empty
    /// and reported (`pins_lost`). `progress(blocks)` is called as blocks are read.
    pub fn repair(
        path: &Path,
        progress: impl FnMut(u64),
    ) -> Result<(Repo, RepairReport), RepoError> {
        let (dir, guard, config, seed) = take(path)?;
        let blocks = dir.join(BLOCKS);
        let (store, index) = SledStore::rebuild(&blocks, store_options(&config), progress)
            .map_err(|source| RepoError::Store {
                path: blocks.clone(),
                source,
            })?;
        let journal_path = dir.join(JOURNAL);
        let repo = Self::assemble(dir, config, seed, guard, Arc::new(store))?;
        let pins_lost = !repo.pins.journal().complete();
        // The user is told below that earlier pins are unknown; from now on GC trusts the journal.
        repo.pins
            .journal()
            .mark_complete()
            .map_err(|source| RepoError::Store {
                path: journal_path,
                source,
            })?;
        let pins = repo.pins.count().unwrap_or(0) as u64;
        Ok((
            repo,
            RepairReport {
                index,
                pins,
                pins_lost,
            },
        ))
    }

    /// The repo directory (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration read at open.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The 32-byte Ed25519 secret seed of this node's identity.
    /// This node's key as a writer of shares (the same key as its peer id).
    pub fn identity_key(&self) -> crate::ShareKey {
        crate::ShareKey::from_seed(&self.identity)
    }

    pub fn identity_seed(&self) -> &[u8; 32] {
        &self.identity
    }

    /// The blockstore.
    pub fn store(&self) -> Arc<SledStore> {
        self.store.clone()
    }

    /// The pin set.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// The shared folders of this repo.
    pub fn shares(&self) -> &crate::share::Shares {
        &self.shares
    }

    /// Extra GC roots (MFS, mounts).
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// A GC-safe sink for one import; see [`ImportSession`].
    pub fn session(&self) -> ImportSession {
        ImportSession::new(self.store.clone(), self.pins.clone(), self.live.clone())
    }

    /// `Ok` if `incoming` bytes can be written while leaving the free-space reserve.
    pub fn check_space(&self, incoming: u64) -> Result<(), StoreError> {
        self.store.check_space(incoming)
    }

    /// Blocks currently protected by sessions and pins in progress.
    pub fn protected_blocks(&self) -> usize {
        self.live.protected()
    }

    /// Removes every block not reachable from a pin, a root or a live session, then flushes.
    /// Collections are serialised; imports and pins may run concurrently.
    pub fn gc(&self) -> Result<GcReport, GcError> {
        let _one = self.gc_lock.lock().unwrap_or_else(|p| p.into_inner());
        gc::collect(&self.store, &self.pins, &self.roots, &self.live)
    }

    /// Reads and checks every block; see [`Repo::verify_with`].
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_with(|_, _| {})
    }

    /// Reads every block, checks it against its CID and, for dag-pb, that it decodes.
    /// `progress(checked, total)` is called after each block.
    pub fn verify_with(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<VerifyReport, StoreError> {
        let total = self.store.stats()?.blocks;
        let mut report = VerifyReport::default();
        for entry in self.store.entries() {
            let (key, entry) = entry?;
            let cid = SledStore::cid_of(&key, &entry)?;
            report.checked += 1;
            match self.store.get_verified(&cid) {
                Ok(Some(data)) => {
                    if crate::walk::links(&cid, &data).is_err()
                        && cid.codec() == crate::hash::DAG_PB
                    {
                        report.undecodable.push(cid);
                    }
                }
                // Deleted meanwhile: not a problem.
                Ok(None) => report.checked -= 1,
                Err(StoreError::Corrupt { cid }) => report.corrupt.push(cid),
                Err(e) => return Err(e),
            }
            progress(report.checked, total);
        }
        // The other direction: blocks on disk that the index does not know.
        // Indexed blocks were just verified; the census only needs to know what else is there.
        let census = self.store.census(false)?;
        report.on_disk = census.len();
        report.damaged_records = census.damaged;
        let mut unindexed = 0u64;
        for key in census
            .files
            .iter()
            .chain(census.packed.keys().filter(|k| !census.files.contains(*k)))
        {
            if self.store.entry(key)?.is_none() {
                unindexed += 1;
            }
        }
        report.unindexed = unindexed;
        Ok(report)
    }

    /// Writes the DAG under `root` as a CAR v1 stream.
    pub fn export_car<W: Write>(&self, root: &Cid, out: W) -> Result<car::CarStats, CarError> {
        car::export(&*self.store, &[*root], out)
    }

    /// Reads a CAR v1 stream, verifying every block before storing it, and returns its roots.
    /// With `pin_roots`, pins them all (recursively) once every block is in, or none.
    pub fn import_car<R: io::Read>(&self, input: R, pin_roots: bool) -> Result<Vec<Cid>, CarError> {
        self.import_car_counted(input, pin_roots)
            .map(|(roots, _)| roots)
    }

    /// [`Repo::import_car`], also saying how many blocks and bytes were read.
    pub fn import_car_counted<R: io::Read>(
        &self,
        input: R,
        pin_roots: bool,
    ) -> Result<(Vec<Cid>, car::CarStats), CarError> {
        let session = self.session();
        let (roots, stats) = car::import_counted(input, &session)?;
        if pin_roots {
            session.pin_all(&roots)?;
        } else {
            session.commit()?;
        }
        Ok((roots, stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_open_lock_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r");
        let err = Repo::open(&p).unwrap_err();
        assert!(err.to_string().contains("run `cairn init`"), "{err}");
        let repo = Repo::init(&p).unwrap();
        let seed = *repo.identity_seed();
        assert!(matches!(
            Repo::init(&p),
            Err(RepoError::AlreadyInitialised { .. })
        ));
        let err = Repo::open(&p).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("in use by another cairn process"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(repo);
        let repo = Repo::open(&p).unwrap();
        assert_eq!(*repo.identity_seed(), seed);
        assert_eq!(repo.config().network.dht_mode, "auto");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(p.join(IDENTITY)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
