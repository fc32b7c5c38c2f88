//! Directory trees: walking the filesystem, symlinks, flat directories and the choice to shard.

use std::fs::{self, File, Metadata};
use std::io;
use std::path::Path;

use cid::Cid;

use super::file::{self, FileMeta};
use super::update::{directory_into, store_node, symlink_node, DirChild, SERIAL_FILE_MAX};
use super::{Batcher, ImportError, ImportEvent, ImportOptions, Imported};
use crate::blockstore::StoreError;
use crate::pb::PbNode;
use crate::unixfs::UnixTime;

struct Walk<'a, 'b> {
    opts: &'a ImportOptions,
    out: &'a mut Batcher<'b>,
    events: &'a mut dyn FnMut(ImportEvent),
    /// Directory events, reported after all files (children before parents), as Kubo does.
    dir_events: Vec<ImportEvent>,
    bytes_read: u64,
}

/// Imports `path` (file, symlink or directory) and everything below it.
pub(super) fn import_tree(
    path: &Path,
    opts: &ImportOptions,
    out: &mut Batcher,
    events: &mut dyn FnMut(ImportEvent),
) -> Result<Imported, ImportError> {
    let md = fs::symlink_metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ImportError::NotFound {
            path: path.to_path_buf(),
        },
        _ => ImportError::Read {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    let name = match path.file_name() {
        Some(n) => n.to_os_string(),
        // "." or "..": name the root after the directory it resolves to.
        None => fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_os_string()))
            .unwrap_or_default(),
    };
    let name = name.into_string().map_err(|_| ImportError::NonUtf8 {
        path: path.to_path_buf(),
    })?;
    let mut walk = Walk {
        opts,
        out,
        events,
        dir_events: Vec::new(),
        bytes_read: 0,
    };
    let (child, size) = walk.entry(path, &name, md)?;
    for ev in std::mem::take(&mut walk.dir_events) {
        (walk.events)(ev);
    }
    Ok(Imported {
        cid: child.cid,
        size,
        tsize: child.tsize,
    })
}

impl Walk<'_, '_> {
    /// Imports one entry; returns it as a child of its parent, and its content bytes.
    fn entry(
        &mut self,
        path: &Path,
        rel: &str,
        md: Metadata,
    ) -> Result<(DirChild, u64), ImportError> {
        let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
        let ft = md.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| read_err(path, e))?;
            let target =
                target
                    .into_os_string()
                    .into_string()
                    .map_err(|_| ImportError::NonUtf8 {
                        path: path.to_path_buf(),
                    })?;
            let (cid, tsize) = self.store(symlink_node(&target))?;
            (self.events)(ImportEvent::Added {
                cid,
                path: rel.to_string(),
                size: tsize,
            });
            Ok((
                DirChild {
                    name,
                    cid,
                    tsize,
                    nonempty_dir: false,
                },
                0,
            ))
        } else if ft.is_file() {
            let meta = FileMeta {
                mode: self.mode(&md),
                mtime: self.mtime(&md),
            };
            let f = File::open(path).map_err(|e| read_err(path, e))?;
            let base = self.bytes_read;
            let events = &mut *self.events;
            let mut progress = |n: u64| events(ImportEvent::Progress { bytes: base + n });
            let on_err = |e: io::Error| read_err(path, e);
            let imported = if md.len() <= SERIAL_FILE_MAX {
                file::import_serial(f, self.opts, &meta, self.out, &mut progress, &on_err)?
            } else {
                file::import_parallel(f, self.opts, &meta, self.out, &mut progress, &on_err)?
            };
            self.bytes_read += imported.size;
            (self.events)(ImportEvent::Added {
                cid: imported.cid,
                path: rel.to_string(),
                size: imported.tsize,
            });
            Ok((
                DirChild {
                    name,
                    cid: imported.cid,
                    tsize: imported.tsize,
                    nonempty_dir: false,
                },
                imported.size,
            ))
        } else if ft.is_dir() {
            self.directory(path, rel, name, &md)
        } else {
            Err(ImportError::Unsupported {
                path: path.to_path_buf(),
                kind: special_kind(&md),
            })
        }
    }

    fn directory(
        &mut self,
        path: &Path,
        rel: &str,
        name: String,
        md: &Metadata,
    ) -> Result<(DirChild, u64), ImportError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| read_err(path, e))? {
            let entry = entry.map_err(|e| read_err(path, e))?;
            let n = entry
                .file_name()
                .into_string()
                .map_err(|_| ImportError::NonUtf8 { path: entry.path() })?;
            names.push(n);
        }
        // String order is byte order: the order Kubo adds entries and sorts links.
        names.sort();
        let mut children = Vec::with_capacity(names.len());
        let mut size = 0u64;
        for n in &names {
            let p = path.join(n);
            let child_md = fs::symlink_metadata(&p).map_err(|e| read_err(&p, e))?;
            let (child, bytes) = self.entry(&p, &format!("{rel}/{n}"), child_md)?;
            size += bytes;
            children.push(child);
        }
        let built = directory_into(children, self.mode(md), self.mtime(md), self.opts, self.out)?;
        let (cid, tsize) = (built.cid, built.tsize);
        self.dir_events.push(ImportEvent::Added {
            cid,
            path: rel.to_string(),
            size: tsize,
        });
        Ok((
            DirChild {
                name,
                cid,
                tsize,
                nonempty_dir: !names.is_empty(),
            },
            size,
        ))
    }

    /// Encodes a node (links already sorted), queues its block, returns its CID and cumulative size.
    fn store(&mut self, node: PbNode) -> Result<(Cid, u64), StoreError> {
        store_node(&node, self.opts, self.out)
    }

    fn mode(&self, md: &Metadata) -> Option<u32> {
        if !self.opts.preserve_mode {
            return None;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            Some(md.permissions().mode() & 0o7777)
        }
        #[cfg(not(unix))]
        {
            let _ = md;
            None
        }
    }

    fn mtime(&self, md: &Metadata) -> Option<UnixTime> {
        if !self.opts.preserve_mtime {
            return None;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let nanos = u32::try_from(md.mtime_nsec())
                .ok()
                .filter(|&n| n > 0 && n < 1_000_000_000);
            Some(UnixTime {
                seconds: md.mtime(),
                nanos,
            })
        }
        #[cfg(not(unix))]
        {
            let _ = md;
            None
        }
    }
}

fn read_err(path: &Path, source: io::Error) -> ImportError {
    ImportError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn special_kind(md: &Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let ft = md.file_type();
        if ft.is_socket() {
            return "socket";
        }
        if ft.is_fifo() {
            return "FIFO";
        }
        if ft.is_block_device() || ft.is_char_device() {
            return "device";
        }
    }
    let _ = md;
    "special file"
}
