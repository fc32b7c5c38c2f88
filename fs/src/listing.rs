//! Streamed `readdir`: every open directory handle keeps a [`DirCursor`] and the offset it has
//! reached, so a directory of any size is sent a reply buffer at a time without ever being
//! held in memory, and `readdir` creates no inodes (the kernel does not count `d_ino`).
//!
//! Offsets: 0 is `.`, 1 is `..`, entry `i` of the listing is offset `i + 2`; the offset sent
//! with an entry is that of the one after it, which is what the kernel passes back to continue.
//! A read at another offset than the handle's (`seekdir`, `rewinddir`, a read cut short by a
//! timeout) starts the cursor again and skips to it without stat'ing what it skips.

use std::collections::VecDeque;
use std::sync::Mutex;

use cairn_store::{BlockSource, Cid, DagReader, DirCursor, DirEntry, EntryKind, RAW};
use fuser::{FileType, INodeNo, ReplyDirectory};
use tokio::task::JoinSet;

use crate::error::FsError;
use crate::inode::{Ino, InodeTable};

/// Entries read ahead per refill (and so at most held per open directory).
const BATCH: usize = 128;
/// Entries stat'ed at once to learn their type (dag-pb entries only; raw blocks are files).
const STAT_PARALLEL: usize = 32;

/// The listing state of one open directory handle.
pub(crate) struct DirStream<S> {
    dir: Cid,
    cursor: Option<DirCursor<S>>,
    /// The offset of the next item to send.
    next: u64,
    /// Entries read from the cursor but not sent yet, with their types.
    pending: VecDeque<(String, EntryKind)>,
    /// The cursor has no more entries.
    end: bool,
    /// A fill did not finish (error, timeout): start again on the next one.
    dirty: bool,
}

pub(crate) fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Directory => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single update; a panic cannot leave the state half-changed.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S: BlockSource + Clone> DirStream<S> {
    pub(crate) fn new(dir: Cid) -> Self {
        DirStream {
            dir,
            cursor: None,
            next: 0,
            pending: VecDeque::new(),
            end: false,
            dirty: false,
        }
    }

    fn restart(&mut self) {
        self.cursor = None;
        self.next = 0;
        self.pending.clear();
        self.end = false;
    }

    fn cursor(&mut self, reader: &DagReader<S>) -> &mut DirCursor<S> {
        let dir = self.dir;
        self.cursor.get_or_insert_with(|| reader.dir_cursor(&dir))
    }

    /// Moves forward to `offset`, skipping entries without learning their types.
    async fn skip_to(&mut self, reader: &DagReader<S>, offset: u64) -> Result<(), FsError> {
        while self.next < offset {
            if self.next >= 2
                && self.pending.pop_front().is_none()
                && (self.end || self.cursor(reader).next_entry().await?.is_none())
            {
                self.end = true;
                return Ok(());
            }
            self.next += 1;
        }
        Ok(())
    }

    /// Reads up to [`BATCH`] more entries into `pending`, with their types.
    async fn refill(&mut self, reader: &DagReader<S>) -> Result<(), FsError> {
        let mut batch: Vec<DirEntry> = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            match self.cursor(reader).next_entry().await? {
                Some(e) => batch.push(e),
                None => {
                    self.end = true;
                    break;
                }
            }
        }
        let mut kinds: Vec<Option<EntryKind>> = batch
            .iter()
            .map(|e| (e.cid.codec() == RAW).then_some(EntryKind::File))
            .collect();
        let mut todo: Vec<usize> = (0..batch.len()).filter(|&i| kinds[i].is_none()).collect();
        todo.reverse();
        let mut tasks = JoinSet::new();
        loop {
            while tasks.len() < STAT_PARALLEL {
                let Some(i) = todo.pop() else { break };
                let (reader, cid) = (reader.clone(), batch[i].cid);
                tasks.spawn(async move { (i, reader.stat(&cid).await) });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            match done {
                Ok((i, Ok(info))) => kinds[i] = Some(info.kind),
                Ok((_, Err(e))) => return Err(e.into()),
                Err(_) => return Err(FsError::TaskFailed),
            }
        }
        for (entry, kind) in batch.into_iter().zip(kinds) {
            let Some(kind) = kind else {
                return Err(FsError::TaskFailed);
            };
            self.pending.push_back((entry.name, kind));
        }
        Ok(())
    }

    /// Adds entries from `offset` to `reply` until it is full or the listing ends.
    /// `ino` is the directory, `parent` its parent (for `..`).
    pub(crate) async fn fill(
        &mut self,
        reader: &DagReader<S>,
        table: &Mutex<InodeTable>,
        (ino, parent): (Ino, Ino),
        offset: u64,
        reply: &mut ReplyDirectory,
    ) -> Result<(), FsError> {
        if self.dirty || offset < self.next {
            self.restart();
        }
        self.dirty = true;
        self.skip_to(reader, offset).await?;
        loop {
            let (child, kind, name) = match self.next {
                0 => (ino, EntryKind::Directory, ".".to_string()),
                1 => (parent, EntryKind::Directory, "..".to_string()),
                _ => {
                    if self.pending.is_empty() {
                        if self.end {
                            break;
                        }
                        self.refill(reader).await?;
                        continue;
                    }
                    let Some((name, kind)) = self.pending.front() else {
                        break;
                    };
                    let child = lock(table).child(ino, name).unwrap_or(Ino::UNKNOWN);
                    (child, *kind, name.clone())
                }
            };
            if reply.add(INodeNo(child.0), self.next + 1, file_type(kind), &name) {
                break;
            }
            if self.next >= 2 {
                self.pending.pop_front();
            }
            self.next += 1;
        }
        self.dirty = false;
        Ok(())
    }
}
