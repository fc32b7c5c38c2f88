//! Pins: the DAGs (recursive) and single blocks (direct) that GC must keep.
//!
//! Kept in the pin journal (`journal.rs`, `<repo>/pins.journal`), not in sled, so that pins
//! survive the loss of the index: key = the pinned CID's binary form as given (a CIDv0 pin
//! stays v0), with its kind and optional name. A CID has at most one pin; pinning a direct pin
//! recursively upgrades it.
//!
//! A pin is written only after every block it covers has been found present and valid and the
//! store has been flushed, so a pin on disk always covers durable blocks.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use cid::Cid;

use crate::blockstore::{Blockstore, StoreError};
use crate::gc::Live;
use crate::journal::{Change, Journal, PinEntry};
use crate::sled_store::{block_key, SledStore};
use crate::walk::{DagWalk, WalkError, WalkMode};

/// What a pin keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinKind {
    /// The block and everything below it.
    Recursive,
    /// The block alone.
    Direct,
}

impl PinKind {
    /// `"recursive"` or `"direct"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PinKind::Recursive => "recursive",
            PinKind::Direct => "direct",
        }
    }
}

impl fmt::Display for PinKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The pinned CID.
    pub cid: Cid,
    /// Recursive or direct.
    pub kind: PinKind,
    /// The name given when pinning.
    pub name: Option<String>,
}

/// Why a pin operation failed. A failed add writes no pin.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// Some block under the root is missing, corrupt or unwalkable.
    #[error("cannot pin {root}")]
    Incomplete {
        /// The root being pinned.
        root: Cid,
        /// The first problem found, naming its block.
        source: Box<WalkError>,
    },
    /// A direct pin was asked for a CID pinned recursively.
    #[error("{cid} is already pinned recursively")]
    AlreadyRecursive {
        /// The CID.
        cid: Cid,
    },
    /// A stored pin could not be decoded.
    #[error("pin store holds an undecodable entry ({len}-byte key)")]
    BadEntry {
        /// Length of the key.
        len: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of checking one pin.
#[derive(Debug)]
pub struct PinReport {
    /// The pin.
    pub pin: Pin,
    /// Blocks found present and valid.
    pub blocks: u64,
    /// Every problem found (missing, corrupt, undecodable blocks).
    pub problems: Vec<WalkError>,
}

impl PinReport {
    /// Whether every block of the pin is present and valid.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for PinReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.pin.cid, self.pin.kind)?;
        if self.ok() {
            write!(f, "ok ({} blocks)", self.blocks)
        } else {
            write!(f, "BROKEN ({} blocks ok)", self.blocks)?;
            for p in &self.problems {
                write!(f, "; {p}")?;
            }
            Ok(())
        }
    }
}

impl serde::Serialize for PinReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let problems: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        let mut st = s.serialize_struct("PinReport", 6)?;
        st.serialize_field("cid", &self.pin.cid.to_string())?;
        st.serialize_field("type", self.pin.kind.as_str())?;
        st.serialize_field("name", &self.pin.name)?;
        st.serialize_field("ok", &self.ok())?;
        st.serialize_field("blocks", &self.blocks)?;
        st.serialize_field("problems", &problems)?;
        st.end()
    }
}

/// The pin set of a repo. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pins {
    journal: Arc<Journal>,
    store: Arc<SledStore>,
    live: Arc<Live>,
    write: Arc<Mutex<()>>,
}

fn decode(k: &[u8], e: PinEntry) -> Result<Pin, PinError> {
    let cid = Cid::try_from(k).map_err(|_| PinError::BadEntry { len: k.len() })?;
    Ok(Pin {
        cid,
        kind: e.kind,
        name: e.name,
    })
}

impl Pins {
    pub(crate) fn new(store: Arc<SledStore>, live: Arc<Live>, journal: Arc<Journal>) -> Self {
        Pins {
            journal,
            store,
            live,
            write: Arc::default(),
        }
    }

    /// The journal the pins live in.
    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Pins `cid`. A recursive pin first walks the whole DAG, reading and verifying every
    /// block; the first missing or corrupt block fails the pin and nothing is written.
    pub fn add(&self, cid: Cid, kind: PinKind, name: Option<&str>) -> Result<(), PinError> {
        self.add_many(
            &[Pin {
                cid,
                kind,
                name: name.map(str::to_string),
            }],
            WalkMode::Verify,
        )
    }

    /// Pins several CIDs at once: all are checked, then all are written in one batch.
    /// `mode` is [`WalkMode::Verify`] for user pins; an import session that wrote the blocks
    /// itself uses [`WalkMode::Present`].
    pub(crate) fn add_many(&self, pins: &[Pin], mode: WalkMode) -> Result<(), PinError> {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let guard = self.live.open();
        let result = self.check_and_write(pins, mode, guard);
        self.live.release(guard);
        result
    }

    fn check_and_write(&self, pins: &[Pin], mode: WalkMode, guard: u64) -> Result<(), PinError> {
        let mut changes = Vec::with_capacity(pins.len());
        for pin in pins {
            let existing = self.get(&pin.cid)?;
            if pin.kind == PinKind::Direct
                && existing
                    .as_ref()
                    .is_some_and(|p| p.kind == PinKind::Recursive)
            {
                return Err(PinError::AlreadyRecursive { cid: pin.cid });
            }
            let root = pin.cid;
            match pin.kind {
                PinKind::Recursive => {
                    let live = &self.live;
                    let walk = DagWalk::new(&*self.store, root, mode)
                        .before_read(move |c| live.record(guard, [c]));
                    for visit in walk {
                        visit.map_err(|e| PinError::Incomplete {
                            root,
                            source: Box::new(e),
                        })?;
                    }
                }
                PinKind::Direct => {
                    self.live.record(guard, [&root]);
                    let found = self.store.get_verified(&root).map_err(|e| match e {
                        StoreError::Corrupt { cid } => PinError::Incomplete {
                            root,
                            source: Box::new(WalkError::Corrupt { cid }),
                        },
                        e => PinError::Store(e),
                    })?;
                    if found.is_none() {
                        let source = Box::new(WalkError::Missing { cid: root });
                        return Err(PinError::Incomplete { root, source });
                    }
                }
            }
            changes.push(Change::Pin {
                cid: pin.cid,
                entry: PinEntry {
                    kind: pin.kind,
                    name: pin.name.clone(),
                },
            });
        }
        // Blocks durable first, then the pins that cover them.
        self.store.flush()?;
        self.journal.commit(&changes)?;
        Ok(())
    }

    /// Removes the pin on `cid`. Returns whether there was one.
    pub fn remove(&self, cid: &Cid) -> Result<bool, PinError> {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if self.journal.pin(cid).is_none() {
            return Ok(false);
        }
        self.journal.commit(&[Change::Unpin { cid: *cid }])?;
        Ok(true)
    }

    /// The pin on `cid`, if any.
    pub fn get(&self, cid: &Cid) -> Result<Option<Pin>, PinError> {
        match self.journal.pin(cid) {
            Some(e) => decode(&cid.to_bytes(), e).map(Some),
            None => Ok(None),
        }
    }

    /// Every pin, in CID byte order.
    pub fn list(&self) -> Result<Vec<Pin>, PinError> {
        self.journal
            .pins()
            .into_iter()
            .map(|(k, e)| decode(&k, e))
            .collect()
    }

    /// Pins of one kind.
    pub fn list_kind(&self, kind: PinKind) -> Result<Vec<Pin>, PinError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|p| p.kind == kind)
            .collect())
    }

    /// Number of pins.
    pub fn count(&self) -> Result<usize, PinError> {
        Ok(self.journal.pin_count())
    }

    /// Blocks reachable from recursive pins that are not pins themselves (Kubo's "indirect").
    /// Raw leaves are listed without being read.
    pub fn indirect(&self) -> Result<Vec<Cid>, PinError> {
        let pins = self.list()?;
        let pinned: HashSet<Vec<u8>> = pins.iter().map(|p| block_key(&p.cid)).collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        // Blocks walked under an earlier pin are not walked again (shared subtrees once).
        let mut walked = HashSet::new();
        for pin in pins.iter().filter(|p| p.kind == PinKind::Recursive) {
            let mut walk = DagWalk::new(&*self.store, pin.cid, WalkMode::Structure)
                .with_visited(std::mem::take(&mut walked));
            for visit in walk.by_ref() {
                let cid = match visit {
                    Ok(v) => v.cid,
                    Err(WalkError::Missing { cid }) => cid,
                    Err(source) => {
                        return Err(PinError::Incomplete {
                            root: pin.cid,
                            source: Box::new(source),
                        })
                    }
                };
                let key = block_key(&cid);
                if !pinned.contains(&key) && seen.insert(key) {
                    out.push(cid);
                }
            }
            walked = walk.into_visited();
        }
        Ok(out)
    }

    /// Checks that every block of every pin is present and valid; one report per pin.
    pub fn verify(&self) -> Result<Vec<PinReport>, PinError> {
        let mut out = Vec::new();
        for pin in self.list()? {
            let mut report = PinReport {
                pin: pin.clone(),
                blocks: 0,
                problems: Vec::new(),
            };
            if pin.kind == PinKind::Recursive {
                for visit in DagWalk::new(&*self.store, pin.cid, WalkMode::Verify) {
                    match visit {
                        Ok(_) => report.blocks += 1,
                        Err(WalkError::Store(e)) if !matches!(e, StoreError::Corrupt { .. }) => {
                            return Err(e.into())
                        }
                        Err(e) => report.problems.push(e),
                    }
                }
            } else {
                match self.store.get_verified(&pin.cid) {
                    Ok(Some(_)) => report.blocks += 1,
                    Ok(None) => report.problems.push(WalkError::Missing { cid: pin.cid }),
                    Err(StoreError::Corrupt { cid }) => {
                        report.problems.push(WalkError::Corrupt { cid })
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            out.push(report);
        }
        Ok(out)
    }
}
