//! Name lookups: from the inode table, from local blocks on the FUSE thread, or as a task.

use super::*;

impl<S: BlockSource + Clone> Shared<S> {
    /// The attributes of `parent/name` if the table knows it already (no I/O), counting the
    /// lookup the reply will hand the kernel.
    pub(super) fn known_child(&self, parent: Ino, name: &str) -> Option<FileAttr> {
        let (ino, inode) = lock(&self.inodes).lookup_known(parent, name)?;
        Some(self.attr(ino, inode.node.as_ref()))
    }

    /// `parent/name` answered without waiting, or `None` if that needs a task: from the table,
    /// or from the directory's nodes and the entry's root when they are cached or small and local
    /// (`DagReader::lookup_entry_now`, never the network). A `find` over local content is
    /// answered this way, on the FUSE thread, one round trip per lookup.
    pub(super) fn lookup_now(&self, parent: Ino, name: &str) -> Option<Result<FileAttr, FsError>> {
        if let Some(attr) = self.known_child(parent, name) {
            return Some(Ok(attr));
        }
        let dir = lock(&self.inodes).get(parent)?.node.clone()?;
        if dir.kind != EntryKind::Directory {
            return None;
        }
        let entry = match self.reader.lookup_entry_now(&dir.cid, name)? {
            Ok(Some(e)) => e,
            Ok(None) => return Some(Err(FsError::NotFound)),
            // The task answers it, and logs why.
            Err(_) => return None,
        };
        let info = match (entry.cid.codec(), entry.tsize) {
            (RAW, Some(size)) => NodeInfo::raw_file(entry.cid, size),
            _ => self.reader.stat_now(&entry.cid)?.ok()?,
        };
        let ino = self.remember(parent, name, info.clone());
        Some(ino.map(|ino| self.attr(ino, Some(&info))))
    }

    /// Adds `parent/name` to the table (or counts one more lookup of it).
    pub(super) fn remember(&self, parent: Ino, name: &str, info: NodeInfo) -> Result<Ino, FsError> {
        let r = lock(&self.inodes).remember(parent, name, info);
        r.map_err(|refused| match refused {
            Refused::NoParent => FsError::NotFound,
            Refused::TooDeep => FsError::TooDeep,
            Refused::TooManyAliases { cid, first } => {
                if first {
                    tracing::warn!(
                        %cid,
                        max = crate::inode::MAX_DIR_ALIASES,
                        "directory reached through too many paths at once; refusing more \
                         (a DAG that links the same directory from many places?)"
                    );
                }
                FsError::TooManyAliases
            }
        })
    }

    /// A node's metadata; a raw block with a size-carrying link needs no fetch.
    pub(super) async fn stat_child(
        reader: &DagReader<S>,
        cid: Cid,
        tsize: Option<u64>,
    ) -> Result<NodeInfo, ReadError> {
        match (cid.codec(), tsize) {
            (RAW, Some(size)) => Ok(NodeInfo::raw_file(cid, size)),
            _ => reader.stat(&cid).await,
        }
    }

    pub(super) async fn lookup(
        self: Arc<Self>,
        parent: Ino,
        name: String,
    ) -> Result<FileAttr, FsError> {
        let dir = self.inode(parent)?;
        let info = match &dir.node {
            None if self.namespace => {
                let cid = Cid::try_from(name.as_str()).map_err(|_| FsError::NotFound)?;
                self.reader.stat(&cid).await?
            }
            None => return Err(FsError::NotFound),
            Some(info) if info.kind != EntryKind::Directory => return Err(FsError::NotADirectory),
            Some(info) => {
                let entry = self
                    .reader
                    .lookup_entry(&info.cid, &name)
                    .await?
                    .ok_or(FsError::NotFound)?;
                Self::stat_child(&self.reader, entry.cid, entry.tsize).await?
            }
        };
        let ino = self.remember(parent, &name, info.clone())?;
        Ok(self.attr(ino, Some(&info)))
    }

    /// `<mnt>/<name>` in a namespace mount, `name` not a CID: the root `names` resolves it to
    /// now. Each version is its own entry (keyed by name and root), so a file read through the
    /// old one keeps reading the old version.
    pub(super) async fn lookup_name(
        self: Arc<Self>,
        names: crate::options::NameResolver,
        name: String,
    ) -> Result<FileAttr, FsError> {
        let cid = names(name.clone()).await.ok_or(FsError::NotFound)?;
        let info = self.reader.stat(&cid).await?;
        let ino = self.remember(Ino::ROOT, &format!("{name}@{cid}"), info.clone())?;
        Ok(self.attr(ino, Some(&info)))
    }
}
