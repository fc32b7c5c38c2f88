//! Attributes: what `stat` shows for a node (kind, size, mode, times, owner).

use super::*;

pub(super) fn system_time(t: cairn_store::UnixTime) -> SystemTime {
    let nanos = t.nanos.unwrap_or(0).min(999_999_999);
    let base = if t.seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(t.seconds.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(t.seconds.unsigned_abs()))
    };
    base.and_then(|b| b.checked_add(Duration::from_nanos(u64::from(nanos))))
        .unwrap_or(UNIX_EPOCH)
}

impl<S: BlockSource + Clone> Shared<S> {
    pub(super) fn attr(&self, ino: Ino, node: Option<&NodeInfo>) -> FileAttr {
        let (kind, size, perm, mtime) = match node {
            None => (FileType::Directory, 0, 0o555, self.default_mtime),
            Some(info) => {
                let default = match info.kind {
                    EntryKind::File => 0o444,
                    EntryKind::Directory => 0o555,
                    EntryKind::Symlink => 0o777,
                };
                // Setuid/setgid/sticky bits from content are never exposed.
                let perm = info.mode.map_or(default, |m| (m & 0o777) as u16);
                (
                    file_type(info.kind),
                    info.size,
                    perm,
                    info.mtime.map_or(self.default_mtime, system_time),
                )
            }
        };
        FileAttr {
            ino: INodeNo(ino.0),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 256 << 10,
            flags: 0,
        }
    }
}
