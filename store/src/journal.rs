//! The pin journal: pins and durable GC roots, kept in an append-only file beside sled so that
//! they never depend on the index database.
//!
//! `<repo>/pins.journal` is the 8-byte magic `CAIRNPJ1`, one flag byte (1 complete; 0 this
//! journal was recreated on a store that already held blocks, so earlier pins may be lost and
//! GC refuses to run until `cairn repo repair` acknowledges it), then records
//!
//! ```text
//! payload length (u32 LE) | crc32 of the payload (u32 LE) | payload
//! payload = 'P' kind ('r'|'d') cid_len (u8) cid name…   a pin (added or replaced)
//!         | 'U' cid_len (u8) cid                         a pin removed
//!         | 'R' name_len (u16 LE) name cid               a durable root set or moved
//!         | 'X' name_len (u16 LE) name                   a durable root removed
//! ```
//!
//! Every change is appended and `fdatasync`ed before it is applied in memory, so what a caller
//! was told is pinned survives a crash. Opening replays the records; a torn or damaged tail
//! (a crash mid-append) is cut off. When dead records outnumber live ones the journal is
//! rewritten (temporary file, fsync, rename, fsync of the directory).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cid::Cid;

use crate::blockstore::StoreError;
use crate::pins::PinKind;

const MAGIC: &[u8; 8] = b"CAIRNPJ1";
const HEADER: u64 = 9;
/// Largest record payload accepted when replaying.
const MAX_RECORD: u32 = 64 << 10;

/// A pin as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PinEntry {
    pub kind: PinKind,
    pub name: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    pins: BTreeMap<Vec<u8>, PinEntry>,
    roots: BTreeMap<String, Cid>,
    records: u64,
    complete: bool,
}

/// One change to the journal.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Pin { cid: Cid, entry: PinEntry },
    Unpin { cid: Cid },
    SetRoot { name: String, cid: Cid },
    RemoveRoot { name: String },
}

impl Change {
    fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        match self {
            Change::Pin { cid, entry } => {
                p.push(b'P');
                p.push(match entry.kind {
                    PinKind::Recursive => b'r',
                    PinKind::Direct => b'd',
                });
                let c = cid.to_bytes();
                p.push(u8::try_from(c.len()).unwrap_or(u8::MAX));
                p.extend_from_slice(&c);
                p.extend_from_slice(entry.name.as_deref().unwrap_or("").as_bytes());
            }
            Change::Unpin { cid } => {
                p.push(b'U');
                let c = cid.to_bytes();
                p.push(u8::try_from(c.len()).unwrap_or(u8::MAX));
                p.extend_from_slice(&c);
            }
            Change::SetRoot { name, cid } => {
                p.push(b'R');
                p.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
                p.extend_from_slice(name.as_bytes());
                p.extend_from_slice(&cid.to_bytes());
            }
            Change::RemoveRoot { name } => {
                p.push(b'X');
                p.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
                p.extend_from_slice(name.as_bytes());
            }
        }
        let mut rec = Vec::with_capacity(p.len() + 8);
        rec.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
        rec.extend_from_slice(&p);
        rec
    }

    fn decode(p: &[u8]) -> Option<Change> {
        let (&op, rest) = p.split_first()?;
        match op {
            b'P' => {
                let kind = match *rest.first()? {
                    b'r' => PinKind::Recursive,
                    b'd' => PinKind::Direct,
                    _ => return None,
                };
                let n = usize::from(*rest.get(1)?);
                let cid = Cid::try_from(rest.get(2..2 + n)?).ok()?;
                let name = std::str::from_utf8(rest.get(2 + n..)?).ok()?;
                let name = (!name.is_empty()).then(|| name.to_string());
                Some(Change::Pin {
                    cid,
                    entry: PinEntry { kind, name },
                })
            }
            b'U' => {
                let n = usize::from(*rest.first()?);
                let cid = Cid::try_from(rest.get(1..1 + n)?).ok()?;
                Some(Change::Unpin { cid })
            }
            b'R' | b'X' => {
                let n = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
                let name = std::str::from_utf8(rest.get(2..2 + n)?).ok()?.to_string();
                if op == b'X' {
                    return Some(Change::RemoveRoot { name });
                }
                let cid = Cid::try_from(rest.get(2 + n..)?).ok()?;
                Some(Change::SetRoot { name, cid })
            }
            _ => None,
        }
    }
}

impl State {
    fn apply(&mut self, c: &Change) {
        self.records += 1;
        match c {
            Change::Pin { cid, entry } => {
                self.pins.insert(cid.to_bytes(), entry.clone());
            }
            Change::Unpin { cid } => {
                self.pins.remove(&cid.to_bytes());
            }
            Change::SetRoot { name, cid } => {
                self.roots.insert(name.clone(), *cid);
            }
            Change::RemoveRoot { name } => {
                self.roots.remove(name);
            }
        }
    }

    fn live(&self) -> u64 {
        (self.pins.len() + self.roots.len()) as u64
    }

    fn snapshot(&self) -> Vec<Change> {
        let pins = self.pins.iter().filter_map(|(k, e)| {
            Some(Change::Pin {
                cid: Cid::try_from(&k[..]).ok()?,
                entry: e.clone(),
            })
        });
        let roots = self.roots.iter().map(|(n, c)| Change::SetRoot {
            name: n.clone(),
            cid: *c,
        });
        pins.chain(roots).collect()
    }
}

/// The open journal.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    inner: Mutex<(fs::File, State)>,
}

use crate::sled_store::io_err;

fn write_new(path: &Path, complete: bool, changes: &[Change]) -> Result<(), StoreError> {
    let tmp = path.with_extension("journal.tmp");
    let mut buf = MAGIC.to_vec();
    buf.push(u8::from(complete));
    for c in changes {
        buf.extend_from_slice(&c.encode());
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_err("create", &tmp, e))?;
    f.write_all(&buf)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err("rename", &tmp, e))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("sync", dir, e))?;
    }
    Ok(())
}

impl Journal {
    /// Whether a journal exists at `path`.
    pub(crate) fn exists(path: &Path) -> bool {
        path.is_file()
    }

    /// Creates a journal holding `changes`; `complete` says whether it is known to hold every pin.
    pub(crate) fn create(
        path: &Path,
        complete: bool,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        write_new(path, complete, changes)
    }

    /// Opens and replays the journal at `path`.
    pub(crate) fn open(path: &Path) -> Result<Journal, StoreError> {
        let mut bytes = Vec::new();
        fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io_err("read", path, e))?;
        if bytes.get(..8) != Some(&MAGIC[..]) || bytes.len() < HEADER as usize {
            return Err(StoreError::BadRecord {
                path: path.to_path_buf(),
                offset: 0,
            });
        }
        let mut state = State {
            complete: bytes[8] == 1,
            ..State::default()
        };
        let mut pos = HEADER as usize;
        while pos < bytes.len() {
            let rec = (|| {
                let len = u32::from_le_bytes(bytes.get(pos..pos + 4)?.try_into().ok()?);
                let crc = u32::from_le_bytes(bytes.get(pos + 4..pos + 8)?.try_into().ok()?);
                if len > MAX_RECORD {
                    return None;
                }
                let payload = bytes.get(pos + 8..pos + 8 + len as usize)?;
                if crc32fast::hash(payload) != crc {
                    return None;
                }
                Some((Change::decode(payload)?, 8 + len as usize))
            })();
            let Some((change, n)) = rec else {
                // A torn or damaged tail: everything before it was acknowledged; cut it off
                // so the next append follows a good record.
                tracing::warn!(path = %path.display(), offset = pos, "cutting a damaged tail off the pin journal");
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| io_err("open", path, e))?;
                f.set_len(pos as u64)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| io_err("truncate", path, e))?;
                break;
            };
            state.apply(&change);
            pos += n;
        }
        let file = fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io_err("open", path, e))?;
        Ok(Journal {
            path: path.to_path_buf(),
            inner: Mutex::new((file, state)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (fs::File, State)> {
        // State is only changed after a successful append, in one step.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `changes` durably, then applies them.
    pub(crate) fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut g = self.lock();
        let mut buf = Vec::new();
        for c in changes {
            buf.extend_from_slice(&c.encode());
        }
        let (file, state) = &mut *g;
        let before = file
            .metadata()
            .map_err(|e| io_err("stat", &self.path, e))?
            .len();
        if let Err(e) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            let _ = file.set_len(before);
            return Err(io_err("write", &self.path, e));
        }
        crate::fault::crash_point("journaled");
        for c in changes {
            state.apply(c);
        }
        if state.records > 1024 && state.records > 4 * state.live() {
            let snapshot = state.snapshot();
            let complete = state.complete;
            write_new(&self.path, complete, &snapshot)?;
            *file = fs::OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(|e| io_err("open", &self.path, e))?;
            state.records = snapshot.len() as u64;
        }
        Ok(())
    }

    /// Marks the journal complete (after `repo repair` told the user pins may have been lost).
    pub(crate) fn mark_complete(&self) -> Result<(), StoreError> {
        let mut g = self.lock();
        let (file, state) = &mut *g;
        let snapshot = state.snapshot();
        write_new(&self.path, true, &snapshot)?;
        *file = fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io_err("open", &self.path, e))?;
        state.complete = true;
        state.records = snapshot.len() as u64;
        Ok(())
    }

    /// Whether the journal is known to hold every pin.
    pub(crate) fn complete(&self) -> bool {
        self.lock().1.complete
    }

    /// The journal's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The pin on `cid` (by its bytes).
    pub(crate) fn pin(&self, cid: &Cid) -> Option<PinEntry> {
        self.lock().1.pins.get(&cid.to_bytes()).cloned()
    }

    /// Every pin, in CID byte order.
    pub(crate) fn pins(&self) -> Vec<(Vec<u8>, PinEntry)> {
        self.lock()
            .1
            .pins
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Number of pins.
    pub(crate) fn pin_count(&self) -> usize {
        self.lock().1.pins.len()
    }

    /// Every durable root.
    pub(crate) fn roots(&self) -> Vec<(String, Cid)> {
        self.lock()
            .1
            .roots
            .iter()
            .map(|(n, c)| (n.clone(), *c))
            .collect()
    }

    /// Whether root `name` exists.
    pub(crate) fn root(&self, name: &str) -> Option<Cid> {
        self.lock().1.roots.get(name).copied()
    }

    pub(crate) fn has_root(&self, name: &str) -> bool {
        self.lock().1.roots.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{cid_for, HashAlg, RAW};

    #[test]
    fn replays_cuts_torn_tails_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pins.journal");
        Journal::create(&path, true, &[]).unwrap();
        let a = cid_for(1, RAW, HashAlg::Sha2_256, b"a");
        let b = cid_for(0, crate::hash::DAG_PB, HashAlg::Sha2_256, b"b");
        let j = Journal::open(&path).unwrap();
        let pin = |cid, kind, name: Option<&str>| Change::Pin {
            cid,
            entry: PinEntry {
                kind,
                name: name.map(str::to_string),
            },
        };
        j.commit(&[
            pin(a, PinKind::Recursive, Some("α")),
            pin(b, PinKind::Direct, None),
        ])
        .unwrap();
        j.commit(&[
            Change::SetRoot {
                name: "mfs".into(),
                cid: a,
            },
            Change::Unpin { cid: b },
        ])
        .unwrap();
        drop(j);
        // A torn append: half a record at the end.
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&pin(b, PinKind::Recursive, None).encode()[..7])
            .unwrap();
        drop(f);
        let j = Journal::open(&path).unwrap();
        assert!(j.complete());
        assert_eq!(j.pin_count(), 1);
        assert_eq!(j.pin(&a).unwrap().name.as_deref(), Some("α"));
        assert_eq!(j.pin(&b), None);
        assert_eq!(j.roots(), vec![("mfs".to_string(), a)]);
        // Appends after the cut replay.
        j.commit(&[pin(b, PinKind::Recursive, None)]).unwrap();
        for _ in 0..1100 {
            j.commit(&[Change::RemoveRoot { name: "x".into() }])
                .unwrap();
        }
        let size = fs::metadata(&path).unwrap().len();
        assert!(size < 20_000, "journal was not compacted: {size} bytes");
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.pin_count(), 2);
        assert_eq!(j.pin(&b).unwrap().kind, PinKind::Recursive);
    }

    #[test]
    fn mutated_journals_open_or_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pins.journal");
        let cids: Vec<Cid> = (0..10u8)
            .map(|i| cid_for(1, RAW, HashAlg::Sha2_256, &[i]))
            .collect();
        let changes: Vec<Change> = cids
            .iter()
            .map(|c| Change::Pin {
                cid: *c,
                entry: PinEntry {
                    kind: PinKind::Recursive,
                    name: Some("n".into()),
                },
            })
            .chain([
                Change::Unpin { cid: cids[0] },
                Change::SetRoot {
                    name: "r".into(),
                    cid: cids[1],
                },
            ])
            .collect();
        Journal::create(&path, true, &changes).unwrap();
        let good = fs::read(&path).unwrap();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let mut b = good.clone();
            let at = (next() as usize) % b.len();
            if next() % 2 == 0 {
                b[at] ^= 1 << (next() % 8);
            } else {
                b.truncate(at);
            }
            fs::write(&path, &b).unwrap();
            if let Ok(j) = Journal::open(&path) {
                // A damaged record and everything after it are cut off; what is left replays.
                assert!(j.pin_count() <= 10);
                drop(j);
                assert!(Journal::open(&path).is_ok());
            }
        }
    }
}
