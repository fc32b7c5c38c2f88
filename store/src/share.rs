//! Shared folders in the repo: each share is an IPNS name (its Ed25519 key's `k51…` name) whose
//! versions are signed IPNS records. The head (the newest version) is the record in
//! `<repo>/shares/<name>/head`; every version's record is also stored as a raw block, and each
//! record links the previous one's block (`_cairn_prev`), so the whole history is a
//! content-addressed chain that a peer holding only the head can walk.
//!
//! # On disk
//! ```text
//! <repo>/shares/<k51 name>/share.toml   label, creation time, retention (written atomically)
//! <repo>/shares/<k51 name>/key          the Ed25519 seed, 0600 (writable shares only)
//! <repo>/shares/<k51 name>/head         the head record's protobuf bytes (replaced atomically)
//! <repo>/shares/<k51 name>/top-seq      on a node that signs the share's records, the highest
//!                                       sequence of another publisher's record seen here
//! <repo>/shares/<k51 name>/stage/       a writable mount's staged changes (see cairn-fs's overlay)
//! ```
//! Durable GC roots (the pin journal) keep what retention keeps: `share/<name>/v<seq>` is the
//! root directory of version `seq`, `share/<name>/r<seq>` its record block.
//!
//! # A commit, and the crash argument
//! 1. the new root DAG is in the store (the caller flushed it);
//! 2. the new record (sequence one above every sequence this share has used) is signed and
//!    stored as a raw block, and the store is flushed;
//! 3. the two roots of the new version are journaled in one fsynced record;
//! 4. the head file is replaced (written beside, fsynced, renamed, directory fsynced): the
//!    commit point;
//! 5. retention drops the roots of versions it no longer keeps.
//!
//! A crash before 4 leaves the previous head; a version whose roots were journaled but whose
//! head never landed is not shown (versions are read from the head's chain) and its roots go at
//! the next commit's retention. A crash after 4 leaves the new head, perhaps with versions that
//! retention would have dropped. The head is verified (signature against the share's name) on
//! every load; a missing or damaged head file is replaced by the newest valid record among the
//! version roots, so the head is rebuildable from blocks and the journal alone.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::gc::Roots;
use crate::ipns::{
    CborValue, IpnsName, IpnsRecord, KeyError, RecordError, RecordFields, RecordValue, ShareKey,
};
use crate::{cid_for, Block, Blockstore, Bytes, Cid, HashAlg, SledStore, StoreError, RAW};

/// The directory of shares inside the repo.
pub const SHARES_DIR: &str = "shares";
/// Extra record field: the CID (binary, as a byte string) of the previous version's record block.
pub const FIELD_PREV: &str = "_cairn_prev";
/// Extra record field: when the version was made, milliseconds since the Unix epoch.
pub const FIELD_TIME: &str = "_cairn_time";
/// Extra record field: the version's size in bytes (the sum of its files).
pub const FIELD_SIZE: &str = "_cairn_size";
/// Extra record field: the CID (binary) of the version's commit (see [`crate::commit`]).
pub const FIELD_COMMIT: &str = "_cairn_commit";
/// Extra record field: the CID (binary) of the version's id tree (see [`crate::identity`]).
pub const FIELD_IDS: &str = "_cairn_ids";
/// Extra record field: how many paths the version changed against the previous one.
pub const FIELD_CHANGED: &str = "_cairn_changed";
/// The file that holds the highest sequence of another publisher's record seen (see
/// [`Shares::note_sequence`]): decimal text.
const TOP_FILE: &str = "top-seq";
/// How long a record is valid. The head on this node is trusted by its signature whatever its
/// age; validity matters to peers, and publishing re-signs before it runs out.
pub const RECORD_VALIDITY: Duration = Duration::from_secs(48 * 3600);
/// How long peers may cache a record before asking again.
pub const RECORD_TTL: Duration = Duration::from_secs(60);
/// Versions kept by default.
pub const DEFAULT_KEEP_VERSIONS: u64 = 100;
/// The longest label.
pub const MAX_LABEL_LEN: usize = 64;

/// Why a share operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// No share has this label or name.
    #[error("no share {0:?} in this repo (`cairn share ls` lists them)")]
    NotFound(String),
    /// A share with this label exists.
    #[error("a share labelled {0:?} exists already")]
    LabelTaken(String),
    /// The label cannot be used.
    #[error("invalid share label {label:?}: {why}")]
    BadLabel {
        /// The label.
        label: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The share's key is not in this repo: it can be read, not changed.
    #[error("share {0} is read-only here: its key is not in this repo")]
    ReadOnly(IpnsName),
    /// The share has no valid head.
    #[error("share {name} has no valid head record ({why}); its versions cannot be read")]
    NoHead {
        /// The share.
        name: IpnsName,
        /// What was found.
        why: String,
    },
    /// A version asked for is not in the share's history.
    #[error("share {name} has no version {version}")]
    NoVersion {
        /// The share.
        name: IpnsName,
        /// The version.
        version: String,
    },
    /// The share's key file failed to load or save.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A member list could not be made or read.
    #[error(transparent)]
    Members(#[from] crate::MembersError),
    /// A commit could not be made or read (boxed: the error is big).
    #[error(transparent)]
    Commit(Box<crate::commit::CommitError>),
    /// An id tree could not be made.
    #[error(transparent)]
    Identity(Box<crate::identity::IdentityError>),
    /// A writer named is not a member.
    #[error("{writer} is not a member of share {name} (`cairn share members` lists them)")]
    NotMember {
        /// The share.
        name: IpnsName,
        /// The writer.
        writer: IpnsName,
    },
    /// The share's tip moved while a change to it was prepared.
    #[error("share {0} moved meanwhile; try again")]
    TipMoved(IpnsName),
    /// A record of the share has the highest sequence number there is.
    #[error("share {0} has a record with the highest sequence number there is; no newer version can be signed")]
    SequenceExhausted(IpnsName),
    /// The share's owner was named as a member to grant or revoke.
    #[error("{0} is the share's own key: its owner is always a member")]
    Owner(IpnsName),
    /// A record could not be made or read.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The block store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A share file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `share.toml` is damaged.
    #[error("{path} is damaged: {why}")]
    BadMeta {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        why: String,
    },
}

impl From<crate::commit::CommitError> for ShareError {
    fn from(e: crate::commit::CommitError) -> Self {
        ShareError::Commit(Box::new(e))
    }
}

impl From<crate::identity::IdentityError> for ShareError {
    fn from(e: crate::identity::IdentityError) -> Self {
        ShareError::Identity(Box::new(e))
    }
}

impl ShareError {
    /// Whether the failure was a full disk.
    pub fn is_no_space(&self) -> bool {
        match self {
            ShareError::Store(e) => e.is_no_space(),
            ShareError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            _ => false,
        }
    }
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ShareError + '_ {
    move |source| ShareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One version of a share, as its record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The record's sequence number (1 for the first version).
    pub sequence: u64,
    /// The root directory.
    pub root: Cid,
    /// The record's block.
    pub record: Cid,
    /// The previous version's record block (none for the first).
    pub prev: Option<Cid>,
    /// When it was made.
    pub time: SystemTime,
    /// Its size in bytes.
    pub size: u64,
    /// Paths changed against the previous version.
    pub changed: u64,
    /// Its id tree (the identities of its nodes), if it has one.
    pub ids: Option<Cid>,
    /// Its commit (writer, parents, member list), if it has one.
    pub commit: Option<Cid>,
}

impl Version {
    /// The version a share's record describes (its value must be `/ipfs/<root>`).
    pub fn from_record(record: &IpnsRecord) -> Result<Version, RecordError> {
        let RecordValue::Ipfs(path) = record.value() else {
            return Err(RecordError::Malformed(
                "a share version's value must be /ipfs/<root>",
            ));
        };
        if !path.segments.is_empty() {
            return Err(RecordError::Malformed(
                "a share version's value must be /ipfs/<root>",
            ));
        }
        let extra = record.extra();
        let int = |k: &str| match extra.get(k) {
            Some(CborValue::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        // Bytes, not a tag-42 link: js-ipns (Helia) refuses records whose data holds tags.
        let prev = match extra.get(FIELD_PREV) {
            Some(CborValue::Bytes(b)) => Cid::try_from(b.as_slice()).ok(),
            Some(CborValue::Link(c)) => Some(*c),
            _ => None,
        };
        let cid_field = |k: &str| match extra.get(k) {
            Some(CborValue::Bytes(b)) => Cid::try_from(b.as_slice()).ok(),
            _ => None,
        };
        let (ids, commit) = (cid_field(FIELD_IDS), cid_field(FIELD_COMMIT));
        Ok(Version {
            sequence: record.sequence(),
            root: path.root,
            record: record_cid(record.as_bytes()),
            prev,
            time: UNIX_EPOCH + Duration::from_millis(int(FIELD_TIME)),
            size: int(FIELD_SIZE),
            changed: int(FIELD_CHANGED),
            ids,
            commit,
        })
    }
}

/// The CID of a record's block.
pub fn record_cid(bytes: &[u8]) -> Cid {
    cid_for(1, RAW, HashAlg::Sha2_256, bytes)
}

/// How many versions a share keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Retention {
    /// Keep at least the newest this many versions (the head always).
    pub keep_versions: u64,
    /// Also keep every version younger than this many seconds (0: none by age).
    pub keep_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_versions: DEFAULT_KEEP_VERSIONS,
            keep_secs: 0,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Meta {
    label: String,
    /// Milliseconds since the Unix epoch.
    created: u64,
    #[serde(default)]
    retention: Retention,
    /// A followed share whose versions (as retention keeps them) are pinned here as they come.
    #[serde(default)]
    pinned: bool,
    /// A followed share: when its newest record was last seen (ms since the epoch), and from
    /// where (a peer id, or "dht").
    #[serde(default)]
    seen: Option<u64>,
    #[serde(default)]
    seen_from: Option<String>,
}

/// A share as this repo knows it.
#[derive(Debug, Clone)]
pub struct Share {
    /// Its IPNS name (the share id).
    pub name: IpnsName,
    /// Its local label.
    pub label: String,
    /// Whether this repo holds its key.
    pub writable: bool,
    /// The newest version, if any is valid here.
    pub head: Option<Version>,
    /// What retention keeps.
    pub retention: Retention,
    /// A followed share pinned here: each version it takes is kept (within retention).
    pub pinned: bool,
    /// A followed share: when its newest record was last seen, and from where.
    pub seen: Option<(SystemTime, String)>,
}

/// The shares of a repo. Cheap to clone; commits of one repo are serialised.
#[derive(Clone)]
pub struct Shares {
    dir: PathBuf,
    /// What a new share keeps (`[shares]` in the config).
    default_retention: Retention,
    store: Arc<SledStore>,
    roots: Roots,
    lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Shares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shares").field("dir", &self.dir).finish()
    }
}

fn now_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn root_name(name: &IpnsName, kind: char, seq: u64) -> String {
    format!("share/{name}/{kind}{seq:020}")
}

/// Makes directory `dir` and any missing parent (`shares/` itself) private to the owner
/// (0700, whatever the umask), as the rest of the repo is.
fn private_dir(dir: &Path) -> Result<(), ShareError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_at(dir))?;
    // A directory made before this rule (or by hand) is tightened too.
    for d in [dir, dir.parent().unwrap_or(dir)] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o700)).map_err(io_at(d))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one.
pub(crate) fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ShareError> {
    crate::atomic::replace_file(path, bytes, mode).map_err(io_at(path))
}

/// How [`Shares::commit_locked`] gets the new version's commit.
// A parameter, passed once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Made<'a> {
    /// A new commit by the share's key, of `root` with id tree `ids` (an empty one, all ids
    /// derived, if `None`), with these parents.
    New {
        root: Cid,
        ids: Option<Cid>,
        parents: Vec<Cid>,
    },
    /// A commit that exists (another writer's): the version is its tree.
    Existing(&'a crate::commit::Commit),
}

/// Checks a label: 1 to 64 letters, digits, `.`, `_` or `-`, not a share id.
pub fn check_label(label: &str) -> Result<(), ShareError> {
    let bad = |why| {
        Err(ShareError::BadLabel {
            label: label.to_string(),
            why,
        })
    };
    if label.is_empty() || label.len() > MAX_LABEL_LEN {
        return bad("labels are 1 to 64 characters");
    }
    if !label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("use letters, digits, '.', '_' and '-'");
    }
    if label.starts_with('.') || label.starts_with('-') {
        return bad("a label starts with a letter or a digit");
    }
    if label.parse::<IpnsName>().is_ok() {
        return bad("it reads as a share id");
    }
    Ok(())
}

impl Shares {
    pub(crate) fn new(
        repo: &Path,
        store: Arc<SledStore>,
        roots: Roots,
        default_retention: Retention,
    ) -> Shares {
        Shares {
            default_retention,
            dir: repo.join(SHARES_DIR),
            store,
            roots,
            lock: Arc::default(),
        }
    }

    pub(crate) fn share_dir(&self, name: &IpnsName) -> PathBuf {
        self.dir.join(name.to_string())
    }

    pub(crate) fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn store(&self) -> &Arc<SledStore> {
        &self.store
    }

    pub(crate) fn roots(&self) -> &Roots {
        &self.roots
    }

    fn read_meta(&self, name: &IpnsName) -> Result<Meta, ShareError> {
        let path = self.share_dir(name).join("share.toml");
        let text = fs::read_to_string(&path).map_err(io_at(&path))?;
        toml::from_str(&text).map_err(|e| ShareError::BadMeta {
            path,
            why: e.to_string(),
        })
    }

    fn write_meta(&self, name: &IpnsName, meta: &Meta) -> Result<(), ShareError> {
        let path = self.share_dir(name).join("share.toml");
        let text = toml::to_string(meta).map_err(|e| ShareError::BadMeta {
            path: path.clone(),
            why: e.to_string(),
        })?;
        replace_file(&path, text.as_bytes(), 0o600)
    }

    /// Every share, by label.
    pub fn list(&self) -> Result<Vec<Share>, ShareError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at(&self.dir))?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpnsName>().ok())
            else {
                continue;
            };
            match self.load(&name) {
                Ok(share) => out.push(share),
                // One damaged share does not hide the others: it is listed, without a head.
                Err(e) => {
                    tracing::warn!(share = %name, error = %e, "share unreadable");
                    out.push(Share {
                        name,
                        label: format!("({e})"),
                        writable: self.share_dir(&name).join("key").exists(),
                        head: None,
                        retention: Retention::default(),
                        pinned: false,
                        seen: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }

    /// The share with this label or share id (`k51…`, `/ipns/k51…`).
    pub fn find(&self, label_or_name: &str) -> Result<Share, ShareError> {
        if let Ok(name) = label_or_name.parse::<IpnsName>() {
            if self.share_dir(&name).join("share.toml").exists() {
                return self.load(&name);
            }
            return Err(ShareError::NotFound(label_or_name.to_string()));
        }
        self.list()?
            .into_iter()
            .find(|s| s.label == label_or_name)
            .ok_or_else(|| ShareError::NotFound(label_or_name.to_string()))
    }

    fn load(&self, name: &IpnsName) -> Result<Share, ShareError> {
        let meta = self.read_meta(name)?;
        let writable = self.share_dir(name).join("key").exists();
        let head = self.head_record(name).ok().map(|(v, _)| v);
        Ok(Share {
            name: *name,
            label: meta.label,
            writable,
            head,
            retention: meta.retention,
            pinned: meta.pinned,
            seen: meta.seen.map(|ms| {
                (
                    UNIX_EPOCH + Duration::from_millis(ms),
                    meta.seen_from.clone().unwrap_or_default(),
                )
            }),
        })
    }

    pub(crate) fn key(&self, name: &IpnsName) -> Result<ShareKey, ShareError> {
        let path = self.share_dir(name).join("key");
        if !path.exists() {
            return Err(ShareError::ReadOnly(*name));
        }
        Ok(ShareKey::load(&path)?)
    }

    /// A verified record from a block, if the block is here and the record is the share's.
    fn record_from_block(&self, name: &IpnsName, cid: &Cid) -> Option<IpnsRecord> {
        let data = self.store.get_verified(cid).ok()??;
        IpnsRecord::verify(&data, name).ok()
    }

    /// The head: the head file's record, verified against the share's name, or (if that file
    /// is missing or damaged) the newest valid record among the version roots.
    pub fn head_record(&self, name: &IpnsName) -> Result<(Version, IpnsRecord), ShareError> {
        let path = self.share_dir(name).join("head");
        let from_file = match fs::read(&path) {
            Ok(bytes) => IpnsRecord::verify(&bytes, name).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let record = match from_file {
            Ok(r) => r,
            Err(why) => {
                let mut best: Option<IpnsRecord> = None;
                for (_, cid) in self.version_roots(name, 'r') {
                    if let Some(r) = self.record_from_block(name, &cid) {
                        if best.as_ref().is_none_or(|b| r.supersedes(b)) {
                            best = Some(r);
                        }
                    }
                }
                match best {
                    Some(r) => {
                        tracing::warn!(share = %name, %why, "head file unusable; using the newest stored version");
                        r
                    }
                    None => return Err(ShareError::NoHead { name: *name, why }),
                }
            }
        };
        Ok((Version::from_record(&record)?, record))
    }

    /// `(sequence, cid)` of the share's roots of `kind` (`v` root, `r` record), oldest first.
    fn version_roots(&self, name: &IpnsName, kind: char) -> Vec<(u64, Cid)> {
        let prefix = format!("share/{name}/{kind}");
        let mut out: Vec<(u64, Cid)> = self
            .roots
            .durable()
            .into_iter()
            .filter_map(|(n, cid)| Some((n.strip_prefix(&prefix)?.parse().ok()?, cid)))
            .collect();
        out.sort();
        out
    }

    /// Share `name`'s member list: the newest one kept here, `None` if no writer was ever
    /// granted. The `members` file holds it; if that is missing or damaged, the newest list
    /// among the share's `m` roots that verifies stands in.
    pub fn members(&self, name: &IpnsName) -> Result<Option<crate::MemberList>, ShareError> {
        let path = self.share_dir(name).join("members");
        match fs::read(&path) {
            Ok(bytes) => match crate::MemberList::verify(&bytes, name) {
                Ok(list) => return Ok(Some(list)),
                Err(e) => {
                    tracing::warn!(share = %name, error = %e, "the members file is damaged; using the newest member list kept as a block")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&path)(e)),
        }
        for (_, cid) in self.version_roots(name, 'm').into_iter().rev() {
            if let Ok(Some(data)) = self.store.get_verified(&cid) {
                if let Ok(list) = crate::MemberList::verify(&data, name) {
                    return Ok(Some(list));
                }
            }
        }
        Ok(None)
    }

    /// Grants (`Some((label, publish))`) or revokes (`None`) writer `writer` on share `name`,
    /// whose key this repo holds: a new member list, one more in sequence, naming the previous
    /// one, signed, stored as a block with an `m` root, then the `members` file. A revoked
    /// writer's commits after sequence `keep_through` are refused from then on (a grant lifts
    /// that).
    pub fn set_member(
        &self,
        name: &IpnsName,
        writer: &IpnsName,
        grant: Option<(&str, bool)>,
        keep_through: u64,
    ) -> Result<crate::MemberList, ShareError> {
        let _g = self.guard();
        let key = self.key(name)?;
        if writer == name {
            return Err(ShareError::Owner(*writer));
        }
        let current = self.members(name)?;
        let (seq, prev, mut members, mut revoked) = match &current {
            Some(l) => (
                l.seq + 1,
                Some(*l.block().cid()),
                l.members.clone(),
                l.revoked.clone(),
            ),
            None => (
                1,
                None,
                std::collections::BTreeMap::new(),
                std::collections::BTreeMap::new(),
            ),
        };
        match grant {
            Some((label, publish)) => {
                crate::check_member_label(label)?;
                revoked.remove(&writer.to_string());
                members.insert(
                    writer.to_string(),
                    crate::Member {
                        writer: *writer,
                        label: label.to_string(),
                        publish,
                        sealed: None,
                    },
                );
            }
            None => {
                if members.remove(&writer.to_string()).is_none() {
                    return Err(ShareError::NotMember {
                        name: *name,
                        writer: *writer,
                    });
                }
                revoked.insert(writer.to_string(), keep_through);
            }
        }
        let list = crate::MemberList::create(&key, seq, prev, members, revoked)?;
        self.store_members_locked(name, &list)?;
        Ok(list)
    }

    /// Keeps `list` as share `name`'s member list: its block (an `m` root), then the
    /// `members` file.
    pub(crate) fn store_members_locked(
        &self,
        name: &IpnsName,
        list: &crate::MemberList,
    ) -> Result<(), ShareError> {
        let block = list.block();
        self.store.put(&block)?;
        self.store.flush()?;
        self.roots
            .set_many(&[(root_name(name, 'm', list.seq), *block.cid())])?;
        replace_file(
            &self.share_dir(name).join("members"),
            list.as_bytes(),
            0o600,
        )
    }

    /// Creates a share labelled `label` whose first version is the directory `root` (in the
    /// store already), with a new key.
    pub fn create(&self, label: &str, root: Cid, size: u64) -> Result<Share, ShareError> {
        check_label(label)?;
        let _g = self.guard();
        if self.list()?.iter().any(|s| s.label == label) {
            return Err(ShareError::LabelTaken(label.to_string()));
        }
        let key = ShareKey::generate()?;
        let name = key.name();
        let dir = self.share_dir(&name);
        private_dir(&dir)?;
        key.save(&dir.join("key"))?;
        let meta = Meta {
            label: label.to_string(),
            created: now_ms(SystemTime::now()),
            retention: self.default_retention,
            pinned: false,
            seen: None,
            seen_from: None,
        };
        self.write_meta(&name, &meta)?;
        let first = Made::New {
            root,
            ids: None,
            parents: Vec::new(),
        };
        self.commit_locked(&name, &key, None, first, size, 0, &[])?;
        self.load(&name)
    }

    /// Follows the share `name`, whose key is elsewhere: `record` (its newest version, as a
    /// peer or the DHT gave it) becomes its head here if it verifies against the name. The
    /// share is created here (labelled `label`) if it is new; otherwise see [`Shares::adopt`].
    pub fn follow(
        &self,
        name: &IpnsName,
        label: &str,
        record: &[u8],
    ) -> Result<(Share, Option<Version>), ShareError> {
        let dir = self.share_dir(name);
        if !dir.join("share.toml").exists() {
            check_label(label)?;
            IpnsRecord::verify(record, name)?;
            let _g = self.guard();
            if self.list()?.iter().any(|s| s.label == label) {
                return Err(ShareError::LabelTaken(label.to_string()));
            }
            private_dir(&dir)?;
            let meta = Meta {
                label: label.to_string(),
                created: now_ms(SystemTime::now()),
                retention: self.default_retention,
                pinned: false,
                seen: None,
                seen_from: None,
            };
            self.write_meta(name, &meta)?;
        }
        let moved = self.adopt(name, record)?;
        Ok((self.load(name)?, moved))
    }

    /// A record of a followed share from a peer: it becomes the head if it verifies against
    /// the share's name and supersedes the head (a higher sequence, or the same one valid for
    /// longer); `Ok(None)` if it does not (an old or replayed record). Its block is stored
    /// and kept (`r` root) so the history chain can be read here; the versions' content is
    /// fetched on demand. A share whose key is here is never moved by someone else's record.
    pub fn adopt(&self, name: &IpnsName, record: &[u8]) -> Result<Option<Version>, ShareError> {
        let record = IpnsRecord::verify(record, name)?;
        let _g = self.guard();
        if self.share_dir(name).join("key").exists() {
            return Ok(None);
        }
        if let Ok((_, head)) = self.head_record(name) {
            if !record.supersedes(&head) {
                return Ok(None);
            }
        }
        let version = Version::from_record(&record)?;
        let block = Block::encode(
            1,
            RAW,
            HashAlg::Sha2_256,
            Bytes::copy_from_slice(record.as_bytes()),
        );
        self.store.put(&block)?;
        self.store.flush()?;
        let pinned = self.read_meta(name).is_ok_and(|m| m.pinned);
        let mut roots = vec![(root_name(name, 'r', version.sequence), *block.cid())];
        if pinned {
            // Kept from now on (its blocks arrive as the caller fetches them).
            roots.push((root_name(name, 'v', version.sequence), version.root));
        }
        self.roots.set_many(&roots)?;
        replace_file(&self.share_dir(name).join("head"), record.as_bytes(), 0o600)?;
        if pinned {
            if let Err(e) = self.retain(name, version.sequence, &[]) {
                tracing::warn!(share = %name, error = %e, "retention failed; old versions stay for now");
            }
        }
        Ok(Some(version))
    }

    /// A valid record of share `name` (whose records this node signs too) made by another of
    /// its publishers: its sequence is remembered, so this node's next version goes above it
    /// (two publishers never keep making the same sequence number). Returns whether it was
    /// higher than any seen.
    pub fn note_sequence(&self, name: &IpnsName, sequence: u64) -> Result<bool, ShareError> {
        let _g = self.guard();
        if self.top_sequence(name) >= sequence {
            return Ok(false);
        }
        replace_file(
            &self.share_dir(name).join(TOP_FILE),
            format!("{sequence}\n").as_bytes(),
            0o600,
        )?;
        Ok(true)
    }

    /// The highest sequence of another publisher's record noted here (0: none; an unreadable
    /// file counts as none: the next record then goes above the versions here only).
    fn top_sequence(&self, name: &IpnsName) -> u64 {
        fs::read_to_string(self.share_dir(name).join(TOP_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Makes `root` (in the store already, flushed) the share's new head version, with id
    /// tree `ids` (in the store too) if known. `protected` lists roots that retention must
    /// keep (versions mounted now).
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &self,
        name: &IpnsName,
        root: Cid,
        ids: Option<Cid>,
        size: u64,
        changed: u64,
        protected: &[Cid],
    ) -> Result<Version, ShareError> {
        let _g = self.guard();
        let key = self.key(name)?;
        let head = self.head_record(name).ok().map(|(v, _)| v);
        let parents = head.as_ref().and_then(|h| h.commit).into_iter().collect();
        self.commit_locked(
            name,
            &key,
            head.as_ref(),
            Made::New { root, ids, parents },
            size,
            changed,
            protected,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_locked(
        &self,
        name: &IpnsName,
        key: &ShareKey,
        head: Option<&Version>,
        made: Made<'_>,
        size: u64,
        changed: u64,
        protected: &[Cid],
    ) -> Result<Version, ShareError> {
        // Above every sequence used, also by a version whose head never landed, and by the
        // records of the share's other publishers seen here.
        let used = self
            .version_roots(name, 'r')
            .last()
            .map(|(s, _)| *s)
            .unwrap_or(0);
        let top = self.top_sequence(name);
        let sequence = used
            .max(head.map_or(0, |h| h.sequence))
            .max(top)
            .checked_add(1)
            .ok_or(ShareError::SequenceExhausted(*name))?;
        let now = SystemTime::now();
        // The version's commit: signed by the share's key (the owner), naming the previous
        // version's commit, the id tree (an empty one, all ids derived, when none is known)
        // and the member list in effect (a first, empty one is made if none was).
        let members = match self.members(name)? {
            Some(l) => l,
            None => {
                let l = crate::MemberList::create(key, 1, None, BTreeMap::new(), BTreeMap::new())?;
                self.store_members_locked(name, &l)?;
                l
            }
        };
        let (root, id_tree, commit_block) = match made {
            // Another writer's commit (a fast-forward to it): the record names it as it is.
            Made::Existing(c) => (c.root, c.ids, c.block()),
            Made::New { root, ids, parents } => {
                let id_tree = match ids {
                    Some(c) => c,
                    None => {
                        let empty = crate::identity::id_block(&crate::identity::IdEntries::new())?;
                        self.store.put(&empty)?;
                        *empty.cid()
                    }
                };
                let commit = crate::commit::Commit::create(
                    key,
                    &crate::commit::CommitFields {
                        share: *name,
                        seq: sequence,
                        parents,
                        root,
                        ids: id_tree,
                        members: *members.block().cid(),
                        time: now,
                    },
                )?;
                (root, id_tree, commit.block())
            }
        };
        self.store.put(&commit_block)?;
        let mut fields =
            RecordFields::new(RecordValue::ipfs(root), sequence, now + RECORD_VALIDITY);
        fields.ttl = RECORD_TTL;
        let mut extra = BTreeMap::new();
        if let Some(h) = head {
            extra.insert(
                FIELD_PREV.to_string(),
                CborValue::Bytes(h.record.to_bytes()),
            );
        }
        extra.insert(
            FIELD_TIME.to_string(),
            CborValue::Int(i128::from(now_ms(now))),
        );
        extra.insert(FIELD_SIZE.to_string(), CborValue::Int(i128::from(size)));
        extra.insert(FIELD_IDS.to_string(), CborValue::Bytes(id_tree.to_bytes()));
        extra.insert(
            FIELD_COMMIT.to_string(),
            CborValue::Bytes(commit_block.cid().to_bytes()),
        );
        extra.insert(
            FIELD_CHANGED.to_string(),
            CborValue::Int(i128::from(changed)),
        );
        fields.extra = extra;
        let record = IpnsRecord::create(key, &fields)?;
        let block = Block::encode(
            1,
            RAW,
            HashAlg::Sha2_256,
            Bytes::copy_from_slice(record.as_bytes()),
        );
        self.store.put(&block)?;
        self.store.flush()?;
        crate::fault::crash_point("share-record-stored");
        let mut roots = vec![
            (root_name(name, 'v', sequence), root),
            (root_name(name, 'r', sequence), *block.cid()),
        ];
        roots.push((root_name(name, 'i', sequence), id_tree));
        roots.push((root_name(name, 'c', sequence), *commit_block.cid()));
        // Kept beyond retention: the history merge bases are looked up in (see heads.rs).
        roots.push((
            format!("share/{name}/h/{}", commit_block.cid()),
            *commit_block.cid(),
        ));
        self.roots.set_many(&roots)?;
        crate::fault::crash_point("share-roots-journaled");
        replace_file(&self.share_dir(name).join("head"), record.as_bytes(), 0o600)?;
        crate::fault::crash_point("share-head-written");
        let version = Version::from_record(&record)?;
        if let Err(e) = self.retain(name, sequence, protected) {
            tracing::warn!(share = %name, error = %e, "retention failed; old versions stay for now");
        }
        Ok(version)
    }

    /// Drops the roots of versions retention no longer keeps (and of versions above the head,
    /// which a crash left without a head).
    fn retain(&self, name: &IpnsName, head_seq: u64, protected: &[Cid]) -> Result<(), ShareError> {
        let retention = self.read_meta(name)?.retention;
        let roots = self.version_roots(name, 'v');
        let records: BTreeMap<u64, Cid> = self.version_roots(name, 'r').into_iter().collect();
        let id_trees: BTreeMap<u64, Cid> = self.version_roots(name, 'i').into_iter().collect();
        let commits: BTreeMap<u64, Cid> = self.version_roots(name, 'c').into_iter().collect();
        let keep_n = retention.keep_versions.max(1);
        let newest_kept = head_seq.saturating_sub(keep_n - 1);
        let cutoff = (retention.keep_secs > 0)
            .then(|| SystemTime::now() - Duration::from_secs(retention.keep_secs));
        let mut drop = Vec::new();
        for (seq, root) in roots {
            let keep = if seq > head_seq {
                false
            } else if seq >= newest_kept || protected.contains(&root) {
                true
            } else {
                match (cutoff, records.get(&seq)) {
                    (Some(cut), Some(rc)) => self
                        .record_from_block(name, rc)
                        .and_then(|r| Version::from_record(&r).ok())
                        .is_some_and(|v| v.time >= cut),
                    _ => false,
                }
            };
            if !keep {
                drop.push(root_name(name, 'v', seq));
                drop.push(root_name(name, 'r', seq));
                if id_trees.contains_key(&seq) {
                    drop.push(root_name(name, 'i', seq));
                }
                if commits.contains_key(&seq) {
                    drop.push(root_name(name, 'c', seq));
                }
            }
        }
        if !drop.is_empty() {
            self.roots.remove_many(&drop)?;
        }
        Ok(())
    }

    /// The versions reachable from the head through the record chain, newest first, as far as
    /// their record blocks are here.
    pub fn log(&self, name: &IpnsName) -> Result<Vec<Version>, ShareError> {
        let (head, _) = self.head_record(name)?;
        let mut out = vec![head];
        while let Some(prev) = out.last().and_then(|v| v.prev) {
            let Some(record) = self.record_from_block(name, &prev) else {
                break;
            };
            let v = Version::from_record(&record)?;
            // The chain goes strictly down; anything else is not history.
            if out.last().is_some_and(|last| v.sequence >= last.sequence) {
                break;
            }
            out.push(v);
        }
        // Past a gap that retention made (versions whose records went), the older versions it
        // kept (mounted ones, or kept by age) are still history: their records are pinned.
        let oldest = out.last().map_or(0, |v| v.sequence);
        for (seq, rc) in self.version_roots(name, 'r').into_iter().rev() {
            if seq >= oldest {
                continue;
            }
            let Some(record) = self.record_from_block(name, &rc) else {
                continue;
            };
            match Version::from_record(&record) {
                Ok(v) if v.sequence == seq => out.push(v),
                _ => {}
            }
        }
        Ok(out)
    }

    /// A version by sequence number, or the version whose root or record is `cid`.
    pub fn version(&self, name: &IpnsName, which: &str) -> Result<Version, ShareError> {
        let log = self.log(name)?;
        let found = match which.parse::<u64>() {
            Ok(seq) => log.into_iter().find(|v| v.sequence == seq),
            Err(_) => {
                let cid = Cid::try_from(which).ok();
                log.into_iter()
                    .find(|v| Some(v.root) == cid || Some(v.record) == cid)
            }
        };
        found.ok_or_else(|| ShareError::NoVersion {
            name: *name,
            version: which.to_string(),
        })
    }

    /// Notes that a valid record of followed share `name`, as new as its head, came from
    /// `from` (a peer id, or "dht") just now.
    pub fn note_seen(&self, name: &IpnsName, from: &str) -> Result<(), ShareError> {
        let _g = self.guard();
        let mut meta = self.read_meta(name)?;
        meta.seen = Some(now_ms(SystemTime::now()));
        meta.seen_from = Some(from.to_string());
        self.write_meta(name, &meta)
    }

    /// Pins (or stops pinning) a followed share: its head version is kept from now on, and each
    /// version it adopts (within retention). Returns the head's root, whose blocks the caller
    /// fetches.
    pub fn set_pinned(&self, name: &IpnsName, pinned: bool) -> Result<Option<Cid>, ShareError> {
        let _g = self.guard();
        let mut meta = self.read_meta(name)?;
        meta.pinned = pinned;
        self.write_meta(name, &meta)?;
        let head = self.head_record(name).ok().map(|(v, _)| v);
        match (&head, pinned) {
            (Some(v), true) => self
                .roots
                .set_many(&[(root_name(name, 'v', v.sequence), v.root)])?,
            (_, false) => {
                let names: Vec<String> = self
                    .version_roots(name, 'v')
                    .into_iter()
                    .map(|(seq, _)| root_name(name, 'v', seq))
                    .collect();
                if !names.is_empty() {
                    self.roots.remove_many(&names)?;
                }
            }
            (None, true) => {}
        }
        Ok(head.map(|v| v.root))
    }

    /// Changes what retention keeps.
    pub fn set_retention(&self, name: &IpnsName, retention: Retention) -> Result<(), ShareError> {
        let _g = self.guard();
        let mut meta = self.read_meta(name)?;
        meta.retention = retention;
        self.write_meta(name, &meta)
    }

    /// The staging directory of a writable mount of share `name` (its uncommitted changes).
    pub fn stage_dir(&self, name: &IpnsName) -> PathBuf {
        self.share_dir(name).join("stage")
    }

    /// Forgets a share: its key, head and settings go, and its versions are unpinned (their
    /// blocks stay until a GC).
    pub fn remove(&self, name: &IpnsName) -> Result<(), ShareError> {
        let _g = self.guard();
        let dir = self.share_dir(name);
        if !dir.join("share.toml").exists() {
            return Err(ShareError::NotFound(name.to_string()));
        }
        // Every root of the share: versions, records, id trees, commits, member lists, a
        // member's tip and the commits kept for merges.
        let prefix = format!("share/{name}/");
        let names: Vec<String> = self
            .roots
            .durable()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if !names.is_empty() {
            self.roots.remove_many(&names)?;
        }
        fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::{Blockstore, Repo};

    /// The empty UnixFS directory's block.
    fn empty_dir() -> crate::Block {
        crate::Block::encode(
            1,
            crate::DAG_PB,
            crate::HashAlg::Sha2_256,
            crate::Bytes::from_static(&[0x0a, 0x02, 0x08, 0x01]),
        )
    }

    fn record_of(repo: &Repo, name: &crate::IpnsName) -> Vec<u8> {
        repo.shares()
            .head_record(name)
            .unwrap()
            .1
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn a_follower_adopts_newer_records_only_and_never_moves_an_owned_share() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Repo::init(a_dir.path()).unwrap();
        let b = Repo::init(b_dir.path()).unwrap();
        let empty = empty_dir();
        a.store().put(&empty).unwrap();
        let share = a.shares().create("docs", *empty.cid(), 0).unwrap();
        let v1 = record_of(&a, &share.name);
        a.shares()
            .commit(&share.name, *empty.cid(), None, 0, 0, &[])
            .unwrap();
        let v2 = record_of(&a, &share.name);

        let (followed, moved) = b.shares().follow(&share.name, "theirs", &v1).unwrap();
        assert!(!followed.writable);
        assert_eq!(moved.unwrap().sequence, 1);
        assert_eq!(
            b.shares()
                .adopt(&share.name, &v2)
                .unwrap()
                .unwrap()
                .sequence,
            2
        );
        // A replay of an older record, or the same one again, changes nothing.
        assert!(b.shares().adopt(&share.name, &v1).unwrap().is_none());
        assert!(b.shares().adopt(&share.name, &v2).unwrap().is_none());
        assert_eq!(b.shares().find("theirs").unwrap().head.unwrap().sequence, 2);
        // The history is readable where it was followed.
        assert_eq!(b.shares().log(&share.name).unwrap().len(), 2);
        // Another share's record, or damaged bytes: refused.
        let other = a.shares().create("other", *empty.cid(), 0).unwrap();
        let foreign = record_of(&a, &other.name);
        assert!(b.shares().adopt(&share.name, &foreign).is_err());
        let mut bad = v2.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(b.shares().adopt(&share.name, &bad).is_err());
        // The owner's head is its own.
        assert!(a.shares().adopt(&share.name, &v1).unwrap().is_none());
        assert_eq!(a.shares().find("docs").unwrap().head.unwrap().sequence, 2);
    }

    #[test]
    fn every_version_has_a_signed_commit_chained_to_the_previous_one_and_kept_by_gc() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(dir.path()).unwrap();
        let empty = empty_dir();
        repo.store().put(&empty).unwrap();
        let share = repo.shares().create("docs", *empty.cid(), 0).unwrap();
        for _ in 0..2 {
            repo.shares()
                .commit(&share.name, *empty.cid(), None, 0, 0, &[])
                .unwrap();
        }
        let log = repo.shares().log(&share.name).unwrap();
        assert_eq!(log.len(), 3);
        let commit_of = |v: &super::Version| {
            let cid = v.commit.expect("a version names its commit");
            let data = repo.store().get_verified(&cid).unwrap().unwrap();
            crate::commit::Commit::verify(&data, &share.name).unwrap()
        };
        let members = repo.shares().members(&share.name).unwrap().unwrap();
        for (i, v) in log.iter().enumerate() {
            let c = commit_of(v);
            assert_eq!(c.writer, share.name, "the owner signs with the share key");
            assert_eq!((c.seq, c.root), (v.sequence, v.root));
            assert_eq!(Some(c.ids), v.ids);
            assert_eq!(c.members, *members.block().cid());
            c.check_member(Some(&members), Some(&members), crate::commit::Reached::Head)
                .unwrap();
            let parent = log.get(i + 1).and_then(|p| p.commit);
            assert_eq!(c.parents, parent.into_iter().collect::<Vec<_>>());
        }
        // The common ancestor of the head and the first version is the first version.
        let parents = |c: &crate::Cid| {
            let data = repo.store().get_verified(c).ok()??;
            Some(
                crate::commit::Commit::verify(&data, &share.name)
                    .ok()?
                    .parents,
            )
        };
        let (head, first) = (log[0].commit.unwrap(), log[2].commit.unwrap());
        assert_eq!(
            crate::commit::merge_base(head, first, parents).unwrap(),
            Some(first)
        );
        // GC keeps commits, id trees and member lists of retained versions.
        repo.gc().unwrap();
        for v in &log {
            assert!(commit_of(v).ids == v.ids.unwrap());
            assert!(repo
                .store()
                .get_verified(&v.ids.unwrap())
                .unwrap()
                .is_some());
        }
    }
}
