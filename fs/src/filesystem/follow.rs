//! Following: a read-only mount whose root moves to new versions (a share's head) while it is
//! mounted, without a remount and without stale reads.
//!
//! A switch walks only what the kernel holds (the inode table) and only where the two versions
//! differ: from the root, a directory whose CID is the same in both versions is skipped whole;
//! in a changed directory each known child is looked up in the new listing. A child with the
//! same CID keeps everything (its inode, the kernel's cached pages and attributes). A changed
//! directory keeps its inode number and gets the new node (the kernel drops its cached
//! attributes and listing), and the walk goes on inside it. A changed file or symlink, like a
//! removed entry, leaves the table by name and the kernel drops its entry: the next lookup
//! gives the new version a new inode, as a file replaced by `rename` would, while a file open
//! on the old inode keeps reading the version it opened, pages included (the kernel caches
//! pages per inode, so one inode cannot show two versions). The kernel is told after the
//! table has the new version, so anything it asks again gets the new answer.

use super::*;

/// What the kernel must drop after a switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalidate {
    /// Cached attributes and pages of this inode (and, for a directory, its listing).
    Inode(Ino),
    /// The cached entry `name` of directory `parent`.
    Entry(Ino, String),
}

impl<S: BlockSource + Clone> Shared<S> {
    /// Moves the mount's root to directory `new_root`; what the kernel must drop. The table is
    /// updated only once the new version's nodes were all read: a version whose blocks do not
    /// arrive changes nothing.
    pub(crate) async fn switch_root(&self, new_root: Cid) -> Result<Vec<Invalidate>, FsError> {
        let root_info = self.reader.stat(&new_root).await?;
        if root_info.kind != EntryKind::Directory {
            return Err(FsError::NotADirectory);
        }
        let old_root = match self.inode(Ino::ROOT)?.node {
            Some(info) => info,
            None => return Err(FsError::NotADirectory),
        };
        if old_root.cid == new_root {
            return Ok(Vec::new());
        }
        // Read first, change later.
        let mut replace: Vec<(Ino, NodeInfo)> = vec![(Ino::ROOT, root_info)];
        let mut detach: Vec<(Ino, String)> = Vec::new();
        let mut out = vec![Invalidate::Inode(Ino::ROOT)];
        let mut stack = vec![(Ino::ROOT, new_root)];
        while let Some((dir, new_dir)) = stack.pop() {
            let children = lock(&self.inodes).children(dir);
            for (name, child) in children {
                let Some(old) = lock(&self.inodes).get(child).and_then(|i| i.node.clone()) else {
                    continue;
                };
                let entry = self.reader.lookup_entry(&new_dir, &name).await?;
                let info = match entry {
                    Some(e) if e.cid == old.cid => continue,
                    Some(e) => Some(Self::stat_child(&self.reader, e.cid, e.tsize).await?),
                    None => None,
                };
                match info {
                    Some(info)
                        if info.kind == EntryKind::Directory
                            && old.kind == EntryKind::Directory =>
                    {
                        stack.push((child, info.cid));
                        replace.push((child, info));
                        out.push(Invalidate::Inode(child));
                    }
                    _ => {
                        detach.push((dir, name.to_string()));
                        out.push(Invalidate::Entry(dir, name.to_string()));
                    }
                }
            }
        }
        let mut table = lock(&self.inodes);
        for (ino, info) in replace {
            table.replace_node(ino, info);
        }
        for (dir, name) in &detach {
            table.detach(*dir, name);
        }
        Ok(out)
    }
}
