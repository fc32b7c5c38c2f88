//! What to mount and how.

use std::time::{Duration, SystemTime};

use cairn_store::Cid;

/// What appears at the mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountRoot {
    /// One CID: a directory appears as the mount's tree; a file or symlink appears as the
    /// single entry of the mount point, named by its CID.
    Cid(Cid),
    /// Any CID, looked up lazily: `<mountpoint>/<cid>/path`. Listing the mount point shows the
    /// CIDs used recently.
    Namespace,
}

/// A version a following mount is to show (see [`crate::mount_follow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowHead {
    /// The version's root directory.
    pub root: Cid,
    /// Its sequence number (what `user.cairn.version` on the mount's root says).
    pub sequence: u64,
    /// Whether this node could not confirm lately that it is the newest version (no peer that
    /// has the share reachable): `user.cairn.stale` on the mount's root says `1`, else `0`. A
    /// change of this alone does not switch anything.
    pub stale: bool,
}

/// Tuning of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// How long one request may wait for blocks before it fails with EIO.
    pub timeout: Duration,
    /// The readahead window after the first sequential read, in bytes.
    pub readahead_min: u64,
    /// The largest readahead window, in bytes; the window doubles on each sequential read.
    pub readahead_max: u64,
    /// Bytes of leaf data kept in memory (shared by all files of the mount).
    pub cache_bytes: u64,
    /// How long the kernel may cache entries and attributes (content is immutable).
    pub attr_ttl: Duration,
    /// Let other users see the mount (needs `user_allow_other` in /etc/fuse.conf unless root).
    pub allow_other: bool,
    /// The modification (and access, change) time of nodes whose UnixFS data records no mtime,
    /// and of the mount's synthetic directories: the time the content was added, when the
    /// caller knows it; `None` (the default): the time the mount started. Never the epoch.
    pub default_mtime: Option<SystemTime>,
    /// `statfs` on the mount reports the filesystem holding this path (the repo's), so `df`
    /// shows the space the content lives on; `None`: a size of 0, as for a pseudo-filesystem.
    pub space_of: Option<std::path::PathBuf>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            timeout: Duration::from_secs(30),
            readahead_min: 256 << 10,
            readahead_max: 4 << 20,
            cache_bytes: 64 << 20,
            attr_ttl: Duration::from_secs(24 * 60 * 60),
            allow_other: false,
            default_mtime: None,
            space_of: None,
        }
    }
}

/// Resolves a name looked up in a namespace mount's root that is not a CID (an IPNS name, a
/// share id) to the root it points at now; `None`: no such name (ENOENT). Given to
/// [`crate::mount_with_names`].
pub type NameResolver = std::sync::Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Cid>> + Send>>
        + Send
        + Sync,
>;
