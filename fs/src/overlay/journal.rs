//! The staging journal: the tree operations of a writable mount since its base version, in an
//! append-only file, so that a restart replays them over the base and gets the same tree.
//!
//! `<stage>/journal` is the 8-byte magic `CAIRNOV1`, then records
//!
//! ```text
//! payload length (u32 LE) | crc32 of (length bytes ++ payload) (u32 LE) | payload
//! ```
//!
//! The first record is the header `H` (the base root and the first free node id); the others
//! are the operations of [`Record`]. The CRC covers the length too, so a damaged length is never
//! followed. Reading stops at the first record that is short, too long or fails its CRC: that
//! is a torn tail (a crash during an append, or an unsynced tail that the disk lost), and
//! everything after it is dropped, never applied. Opening for appends cuts the file there
//! (and syncs the cut) so that a new record never sits between a torn one and stale bytes.
//! Appends are one `pwrite` each; a failed one is cut off again. `sync` is one `fdatasync`.
//! A new journal (a new base) is written beside, fsynced and renamed over the old one, so a
//! crash leaves one or the other.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use cairn_store::{Cid, EntryKind, UnixTime};

use super::tree::Base;
use super::NodeId;

/// The journal's magic.
pub(super) const MAGIC: &[u8; 8] = b"CAIRNOV1";
/// The largest record payload accepted (a record holds at most two names and a symlink target).
pub(super) const MAX_RECORD: usize = 64 << 10;

/// One journaled operation. Ids are the overlay's node ids; a record only names nodes that a
/// record before it introduced (`Bind`, `New`), or the root (id 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    /// The first record: the base root and the first node id not used yet.
    Header { base: Cid, next_id: u64 },
    /// Names the committed entry `name` of `parent` (unchanged until now) as node `id`, with
    /// what the committed DAG says about it, so that replay needs no block reads.
    Bind {
        parent: NodeId,
        id: NodeId,
        name: String,
        kind: EntryKind,
        base: Base,
    },
    /// A new file, directory or symlink `id` named `name` in `parent`.
    New {
        parent: NodeId,
        id: NodeId,
        name: String,
        kind: EntryKind,
        mode: u32,
        time: UnixTime,
        target: String,
    },
    /// The entry `name` of `parent` is removed (unlink, rmdir).
    Remove {
        parent: NodeId,
        name: String,
        time: UnixTime,
    },
    /// A rename, replacing what the destination named, or swapping the two entries.
    Rename {
        src_parent: NodeId,
        src_name: String,
        dst_parent: NodeId,
        dst_name: String,
        exchange: bool,
        time: UnixTime,
    },
    /// Mode or mtime of `id` changed (`explicit`: the mtime was set, not implied by a write).
    SetAttr {
        id: NodeId,
        mode: Option<u32>,
        mtime: Option<UnixTime>,
        explicit: bool,
        ctime: UnixTime,
    },
    /// File `id`'s content now lives in its staging file, which holds the first `copied`
    /// bytes of its committed content (copied and synced before this record was written).
    Stage { id: NodeId, copied: u64 },
    /// A commit of this staged state was built, with root `root`.
    Committed { root: Cid },
}

fn kind_code(k: EntryKind) -> u8 {
    match k {
        EntryKind::File => 0,
        EntryKind::Directory => 1,
        EntryKind::Symlink => 2,
    }
}

fn kind_from(c: u8) -> Option<EntryKind> {
    Some(match c {
        0 => EntryKind::File,
        1 => EntryKind::Directory,
        2 => EntryKind::Symlink,
        _ => return None,
    })
}

/// Little-endian field writer.
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn id(&mut self, v: NodeId) {
        self.u64(v.0);
    }
    fn time(&mut self, t: UnixTime) {
        self.0.extend_from_slice(&t.seconds.to_le_bytes());
        self.u32(t.nanos.unwrap_or(0));
    }
    fn cid(&mut self, c: &Cid) {
        let b = c.to_bytes();
        self.u8(u8::try_from(b.len()).unwrap_or(u8::MAX));
        self.0.extend_from_slice(&b);
    }
    /// A name (at most 255 bytes, checked before it gets here).
    fn name(&mut self, s: &str) {
        self.u8(u8::try_from(s.len()).unwrap_or(u8::MAX));
        self.0.extend_from_slice(s.as_bytes());
    }
    /// A symlink target (at most 4096 bytes, checked before it gets here).
    fn text(&mut self, s: &str) {
        let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// Little-endian field reader; `None` on anything short or malformed.
struct In<'a>(&'a [u8]);

impl In<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn id(&mut self) -> Option<NodeId> {
        self.u64().map(NodeId)
    }
    fn time(&mut self) -> Option<UnixTime> {
        let seconds = i64::from_le_bytes(self.take(8)?.try_into().ok()?);
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return None;
        }
        Some(UnixTime {
            seconds,
            nanos: (nanos > 0).then_some(nanos),
        })
    }
    fn cid(&mut self) -> Option<Cid> {
        let n = usize::from(self.u8()?);
        Cid::try_from(self.take(n)?).ok()
    }
    fn name(&mut self) -> Option<String> {
        let n = usize::from(self.u8()?);
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn text(&mut self) -> Option<String> {
        let n = usize::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?));
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

const B_MODE: u8 = 1;
const B_MTIME: u8 = 2;
const B_NONEMPTY: u8 = 4;
const B_SHARDED: u8 = 8;
const A_MODE: u8 = 1;
const A_MTIME: u8 = 2;
const A_EXPLICIT: u8 = 4;

impl Record {
    /// The payload of the record.
    fn payload(&self) -> Vec<u8> {
        let mut o = Out(Vec::with_capacity(64));
        match self {
            Record::Header { base, next_id } => {
                o.u8(b'H');
                o.cid(base);
                o.u64(*next_id);
            }
            Record::Bind {
                parent,
                id,
                name,
                kind,
                base,
            } => {
                o.u8(b'B');
                o.id(*parent);
                o.id(*id);
                o.u8(kind_code(*kind));
                let mut flags = 0;
                if base.mode.is_some() {
                    flags |= B_MODE;
                }
                if base.mtime.is_some() {
                    flags |= B_MTIME;
                }
                if base.nonempty {
                    flags |= B_NONEMPTY;
                }
                if base.sharded {
                    flags |= B_SHARDED;
                }
                o.u8(flags);
                o.cid(&base.cid);
                o.u64(base.tsize);
                o.u64(base.size);
                o.u32(base.mode.unwrap_or(0));
                o.time(base.mtime.unwrap_or(UnixTime {
                    seconds: 0,
                    nanos: None,
                }));
                o.name(name);
                if *kind == EntryKind::Symlink {
                    o.text(base.target.as_deref().unwrap_or(""));
                }
            }
            Record::New {
                parent,
                id,
                name,
                kind,
                mode,
                time,
                target,
            } => {
                o.u8(b'N');
                o.id(*parent);
                o.id(*id);
                o.u8(kind_code(*kind));
                o.u32(*mode);
                o.time(*time);
                o.name(name);
                if *kind == EntryKind::Symlink {
                    o.text(target);
                }
            }
            Record::Remove { parent, name, time } => {
                o.u8(b'X');
                o.id(*parent);
                o.time(*time);
                o.name(name);
            }
            Record::Rename {
                src_parent,
                src_name,
                dst_parent,
                dst_name,
                exchange,
                time,
            } => {
                o.u8(b'R');
                o.id(*src_parent);
                o.id(*dst_parent);
                o.u8(u8::from(*exchange));
                o.time(*time);
                o.name(src_name);
                o.name(dst_name);
            }
            Record::SetAttr {
                id,
                mode,
                mtime,
                explicit,
                ctime,
            } => {
                o.u8(b'A');
                o.id(*id);
                let mut flags = 0;
                if mode.is_some() {
                    flags |= A_MODE;
                }
                if mtime.is_some() {
                    flags |= A_MTIME;
                }
                if *explicit {
                    flags |= A_EXPLICIT;
                }
                o.u8(flags);
                o.u32(mode.unwrap_or(0));
                o.time(mtime.unwrap_or(*ctime));
                o.time(*ctime);
            }
            Record::Stage { id, copied } => {
                o.u8(b'S');
                o.id(*id);
                o.u64(*copied);
            }
            Record::Committed { root } => {
                o.u8(b'C');
                o.cid(root);
            }
        }
        o.0
    }

    /// The record as it is appended: length, CRC, payload.
    pub(super) fn encode(&self) -> Vec<u8> {
        let payload = self.payload();
        let len = u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&len);
        crc.update(&payload);
        let mut out = Vec::with_capacity(payload.len() + 8);
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    fn decode(payload: &[u8]) -> Option<Record> {
        let mut i = In(payload);
        let rec = match i.u8()? {
            b'H' => Record::Header {
                base: i.cid()?,
                next_id: i.u64()?,
            },
            b'B' => {
                let parent = i.id()?;
                let id = i.id()?;
                let kind = kind_from(i.u8()?)?;
                let flags = i.u8()?;
                let cid = i.cid()?;
                let tsize = i.u64()?;
                let size = i.u64()?;
                let mode = i.u32()?;
                let mtime = i.time()?;
                let name = i.name()?;
                let target = match kind {
                    EntryKind::Symlink => Some(i.text()?),
                    _ => None,
                };
                Record::Bind {
                    parent,
                    id,
                    name,
                    kind,
                    base: Base {
                        cid,
                        tsize,
                        size,
                        mode: (flags & B_MODE != 0).then_some(mode),
                        mtime: (flags & B_MTIME != 0).then_some(mtime),
                        nonempty: flags & B_NONEMPTY != 0,
                        sharded: flags & B_SHARDED != 0,
                        target,
                    },
                }
            }
            b'N' => {
                let parent = i.id()?;
                let id = i.id()?;
                let kind = kind_from(i.u8()?)?;
                let mode = i.u32()?;
                let time = i.time()?;
                let name = i.name()?;
                let target = match kind {
                    EntryKind::Symlink => i.text()?,
                    _ => String::new(),
                };
                Record::New {
                    parent,
                    id,
                    name,
                    kind,
                    mode,
                    time,
                    target,
                }
            }
            b'X' => {
                let parent = i.id()?;
                let time = i.time()?;
                let name = i.name()?;
                Record::Remove { parent, name, time }
            }
            b'R' => {
                let src_parent = i.id()?;
                let dst_parent = i.id()?;
                let exchange = match i.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                let time = i.time()?;
                let src_name = i.name()?;
                let dst_name = i.name()?;
                Record::Rename {
                    src_parent,
                    src_name,
                    dst_parent,
                    dst_name,
                    exchange,
                    time,
                }
            }
            b'A' => {
                let id = i.id()?;
                let flags = i.u8()?;
                let mode = i.u32()?;
                let mtime = i.time()?;
                let ctime = i.time()?;
                Record::SetAttr {
                    id,
                    mode: (flags & A_MODE != 0).then_some(mode),
                    mtime: (flags & A_MTIME != 0).then_some(mtime),
                    explicit: flags & A_EXPLICIT != 0,
                    ctime,
                }
            }
            b'S' => Record::Stage {
                id: i.id()?,
                copied: i.u64()?,
            },
            b'C' => Record::Committed { root: i.cid()? },
            _ => return None,
        };
        i.end()?;
        Some(rec)
    }
}

/// Why a journal cannot be used at all (as opposed to a torn tail, which is cut).
#[derive(Debug, thiserror::Error)]
pub(super) enum JournalError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not a staging journal ({why})", path.display())]
    Bad { path: PathBuf, why: &'static str },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A journal as read from disk.
#[derive(Debug)]
pub(super) struct Replayed {
    /// The base root of the header.
    pub base: Cid,
    /// The header's first free node id.
    pub next_id: u64,
    /// The intact records after the header, with the offset each one ends at.
    pub records: Vec<(Record, u64)>,
    /// Bytes up to the end of the last intact record.
    pub valid_len: u64,
    /// The file's length (more than `valid_len`: a tail was torn).
    pub file_len: u64,
}

/// One record at `pos`, if an intact one is there: the record and its length on disk.
fn record_at(bytes: &[u8], pos: usize) -> Option<(Record, usize)> {
    let len_bytes = bytes.get(pos..pos + 4)?;
    let len = u32::from_le_bytes(len_bytes.try_into().ok()?) as usize;
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let crc = u32::from_le_bytes(bytes.get(pos + 4..pos + 8)?.try_into().ok()?);
    let payload = bytes.get(pos + 8..pos + 8 + len)?;
    let mut h = crc32fast::Hasher::new();
    h.update(len_bytes);
    h.update(payload);
    if h.finalize() != crc {
        return None;
    }
    Some((Record::decode(payload)?, 8 + len))
}

/// Reads the journal at `path`: `None` if there is none.
pub(super) fn read(path: &Path) -> Result<Option<Replayed>, JournalError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(io_at(path))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    let bad = |why| JournalError::Bad {
        path: path.to_path_buf(),
        why,
    };
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(bad("wrong magic"));
    }
    let mut pos = MAGIC.len();
    let Some((Record::Header { base, next_id }, n)) = record_at(&bytes, pos) else {
        // The header is written with the magic, synced, then renamed into place: it is never torn.
        return Err(bad("damaged header"));
    };
    pos += n;
    let mut records = Vec::new();
    while let Some((rec, n)) = record_at(&bytes, pos) {
        if matches!(rec, Record::Header { .. }) {
            break;
        }
        pos += n;
        records.push((rec, pos as u64));
    }
    Ok(Some(Replayed {
        base,
        next_id,
        records,
        valid_len: pos as u64,
        file_len: bytes.len() as u64,
    }))
}

/// The open journal, appended to.
#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes of intact records.
    len: u64,
    /// Bytes known durable (up to the last `sync`).
    synced: u64,
    /// An append failed and could not be cut off: nothing more may be appended.
    broken: bool,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

impl Journal {
    /// Writes a new journal (magic and header) at `path`, replacing any old one atomically.
    pub(super) fn create(path: &Path, base: Cid, next_id: u64) -> Result<Journal, JournalError> {
        Journal::create_with(path, base, next_id, &[])
    }

    /// [`Journal::create`], holding `records` after the header from the start.
    pub(super) fn create_with(
        path: &Path,
        base: Cid,
        next_id: u64,
        records: &[Record],
    ) -> Result<Journal, JournalError> {
        let tmp = path.with_extension("new");
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&Record::Header { base, next_id }.encode());
        for r in records {
            buf.extend_from_slice(&r.encode());
        }
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&buf).and_then(|()| f.sync_all()));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_at(&tmp)(e));
        }
        fs::rename(&tmp, path).map_err(io_at(path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(io_at(dir))?;
        }
        let len = buf.len() as u64;
        Journal::open(path, len)
    }

    /// Opens the journal at `path` for appends after its first `valid_len` bytes, cutting off
    /// (durably) whatever follows them.
    pub(super) fn open(path: &Path, valid_len: u64) -> Result<Journal, JournalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_at(path))?;
        let on_disk = file.metadata().map_err(io_at(path))?.len();
        if on_disk != valid_len {
            file.set_len(valid_len)
                .and_then(|()| file.sync_all())
                .map_err(io_at(path))?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            len: valid_len,
            synced: valid_len,
            broken: false,
        })
    }

    /// The journal's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of intact records.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Appends one record (not yet durable: see [`Journal::sync`]). A failed append is cut off,
    /// so the journal still ends with an intact record.
    pub(super) fn append(&mut self, rec: &Record) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "an earlier append to the staging journal failed and could not be undone",
            ));
        }
        let buf = rec.encode();
        if let Err(e) = self.file.write_all_at(&buf, self.len) {
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(e);
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Makes every appended record durable (`fdatasync`).
    pub(super) fn sync(&mut self) -> io::Result<()> {
        if self.len > self.synced {
            self.file.sync_data()?;
            self.synced = self.len;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cairn_store::{cid_for, HashAlg, RAW};

    fn t(s: i64, n: u32) -> UnixTime {
        UnixTime {
            seconds: s,
            nanos: (n > 0).then_some(n),
        }
    }

    pub(crate) fn samples() -> Vec<Record> {
        let cid = cid_for(1, RAW, HashAlg::Sha2_256, b"x");
        vec![
            Record::Bind {
                parent: NodeId(1),
                id: NodeId(7),
                name: "docs".into(),
                kind: EntryKind::Directory,
                base: Base {
                    cid,
                    tsize: 99,
                    size: 3,
                    mode: Some(0o700),
                    mtime: Some(t(-5, 7)),
                    nonempty: true,
                    sharded: true,
                    target: None,
                },
            },
            Record::Bind {
                parent: NodeId(7),
                id: NodeId(8),
                name: "ln".into(),
                kind: EntryKind::Symlink,
                base: Base {
                    cid,
                    tsize: 9,
                    size: 4,
                    mode: None,
                    mtime: None,
                    nonempty: false,
                    sharded: false,
                    target: Some("../x".into()),
                },
            },
            Record::New {
                parent: NodeId(7),
                id: NodeId(9),
                name: "ünï".into(),
                kind: EntryKind::Symlink,
                mode: 0o777,
                time: t(1_700_000_000, 5),
                target: "a/b".into(),
            },
            Record::New {
                parent: NodeId(1),
                id: NodeId(10),
                name: "f".repeat(255),
                kind: EntryKind::File,
                mode: 0o4755,
                time: t(1, 0),
                target: String::new(),
            },
            Record::Remove {
                parent: NodeId(7),
                name: "ln".into(),
                time: t(2, 0),
            },
            Record::Rename {
                src_parent: NodeId(1),
                src_name: "a".into(),
                dst_parent: NodeId(7),
                dst_name: "b".into(),
                exchange: true,
                time: t(3, 3),
            },
            Record::SetAttr {
                id: NodeId(10),
                mode: Some(0o600),
                mtime: None,
                explicit: false,
                ctime: t(4, 0),
            },
            Record::SetAttr {
                id: NodeId(10),
                mode: None,
                mtime: Some(t(5, 999_999_999)),
                explicit: true,
                ctime: t(6, 0),
            },
            Record::Stage {
                id: NodeId(10),
                copied: 1 << 40,
            },
            Record::Committed { root: cid },
        ]
    }

    #[test]
    fn records_round_trip() {
        for r in samples() {
            let bytes = r.encode();
            let (back, n) = record_at(&bytes, 0).unwrap();
            assert_eq!(back, r);
            assert_eq!(n, bytes.len());
            // Any one flipped byte is refused, never read as another record.
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x40;
                assert!(record_at(&bad, 0).is_none(), "{r:?} byte {i}");
            }
            // Any cut is refused.
            for cut in 0..bytes.len() {
                assert!(record_at(&bytes[..cut], 0).is_none());
            }
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_follow_the_last_good_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let base = cid_for(1, RAW, HashAlg::Sha2_256, b"base");
        let mut j = Journal::create(&path, base, 2).unwrap();
        let recs = samples();
        for r in &recs {
            j.append(r).unwrap();
        }
        j.sync().unwrap();
        let full = fs::read(&path).unwrap();
        let last = recs.last().unwrap().encode().len();
        for cut in full.len() - last..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let r = read(&path).unwrap().unwrap();
            assert_eq!(r.base, base);
            assert_eq!(r.records.len(), recs.len() - 1, "cut at {cut}");
            assert_eq!(r.valid_len as usize, full.len() - last);
            let mut j = Journal::open(&path, r.valid_len).unwrap();
            // Shorter than the torn record, so a tail that was not cut would show behind it.
            let added = Record::Stage {
                id: NodeId(3),
                copied: 1,
            };
            j.append(&added).unwrap();
            assert_eq!(
                fs::metadata(&path).unwrap().len(),
                r.valid_len + added.encode().len() as u64,
                "nothing of the torn record is left behind the new one"
            );
            let again = read(&path).unwrap().unwrap();
            assert_eq!(again.records.len(), recs.len());
            assert_eq!(again.records.last().unwrap().0, added);
        }
        fs::write(&path, b"CAIRNOV2").unwrap();
        assert!(matches!(read(&path), Err(JournalError::Bad { .. })));
    }
}
