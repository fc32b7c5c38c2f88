//! cairn-fs: any CID as a read-only FUSE filesystem.
//!
//! [`mount`] serves a UnixFS DAG from any [`cairn_store::BlockSource`] (the local store, or
//! "local store then peers"), so this crate never knows where blocks come from. FUSE threads
//! never wait on blocks: every request that needs them runs as a task on a tokio runtime under
//! [`MountOptions::timeout`]; a block that does not arrive in time fails that one request with
//! EIO and a warning naming the CID. Content is immutable, so the kernel may cache entries,
//! attributes, pages and listings for long.
//!
//! # Layout
//! - `mount`: [`mount`], [`MountHandle`] (unmounts on drop), mount point checks.
//! - `options`: [`MountOptions`], [`MountRoot`] (one CID, or a `<mnt>/<cid>/path` namespace).
//! - `filesystem`: the FUSE callbacks, readahead and the `user.cairn.*` extended attributes.
//! - `inode`: the inode table, keyed by (parent, name), with the kernel's lookup counts
//!   (`forget` shrinks it) and the limits on depth and on paths to one directory.
//! - `listing`: streamed `readdir` over a directory cursor per open handle.
//! - `cache`: the LRU cache of leaf data, bounded in bytes.
//! - `error`: [`MountError`], and the per-request error that becomes an errno.
//! - `writable`: [`mount_share`]'s FUSE callbacks over an overlay, and the committer
//!   ([`CommitPolicy`], [`ShareStore`] where commits go, [`ShareControl`] for a live mount).
//! - `overlay`: [`Overlay`], the staged changes of a writable share over its committed root
//!   (tree, journal, staging files) and the commit that makes a new root DAG of them.
//!
//! ```
//! use cairn_fs::{MountOptions, MountRoot};
//! let options = MountOptions { allow_other: false, ..MountOptions::default() };
//! assert_eq!(options.timeout.as_secs(), 30);
//! assert_eq!(MountRoot::Namespace, MountRoot::Namespace);
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cache;
mod error;
mod filesystem;
mod inode;
mod listing;
mod mount;
mod options;
mod overlay;
mod writable;

pub use error::MountError;
pub use mount::{commit_staged, mount, mount_follow, mount_share, mount_with_names, MountHandle};
pub use options::{FollowHead, MountOptions, MountRoot, NameResolver};
pub use overlay::{
    Attr, CommitStats, DirItem, FileContent, NodeId, Overlay, OverlayDir, OverlayError, SetAttr,
    TimeSet, MAX_FILE_SIZE, NAME_MAX, RENAME_EXCHANGE, RENAME_NOREPLACE, SYMLINK_MAX,
};
pub use writable::{
    AdvanceError, AdvanceJob, Advanced, CommitError, CommitOutcome, CommitPolicy, MountBase,
    PublishError, PublishFuture, Published, ShareControl, ShareMount, ShareStore,
};

/// The extended attribute holding a node's CID as text.
pub const XATTR_CID: &str = filesystem::XATTR_CID;
/// The extended attribute reporting how many of a node's blocks are stored locally.
pub const XATTR_LOCAL: &str = filesystem::XATTR_LOCAL;
/// The extended attribute of a share mount's root giving the version (sequence number) shown.
pub const XATTR_VERSION: &str = filesystem::XATTR_VERSION;
/// The extended attribute of a mount's root giving how many inodes the mount holds (they go
/// when the kernel forgets them).
pub const XATTR_INODES: &str = filesystem::XATTR_INODES;
