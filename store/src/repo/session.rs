//! [`ImportSession`]: a GC-safe [`BlockSink`] for one import.

use std::sync::Arc;

use cid::Cid;

use crate::block::Block;
use crate::blockstore::{Blockstore, StoreError};
use crate::gc::Live;
use crate::pins::{Pin, PinError, PinKind, Pins};
use crate::sink::BlockSink;
use crate::sled_store::SledStore;
use crate::walk::WalkMode;

/// Writes an import's blocks through to the store and keeps every one of them (including
/// blocks that were already there) safe from GC until the session is committed, pinned or
/// dropped. Share it by reference between importer threads.
#[derive(Debug)]
pub struct ImportSession {
    id: u64,
    store: Arc<SledStore>,
    pins: Pins,
    live: Arc<Live>,
}

impl ImportSession {
    pub(crate) fn new(store: Arc<SledStore>, pins: Pins, live: Arc<Live>) -> Self {
        let id = live.open();
        ImportSession {
            id,
            store,
            pins,
            live,
        }
    }

    /// Pins `root` recursively (checking that every block of its DAG is present, leaves by
    /// lookup, inner nodes by reading and verifying), then releases the session.
    /// On error nothing is pinned and the blocks stay protected until the session is dropped.
    pub fn pin(self, root: Cid, name: Option<&str>) -> Result<(), PinError> {
        let pin = Pin {
            cid: root,
            kind: PinKind::Recursive,
            name: name.map(str::to_string),
        };
        self.pins.add_many(&[pin], WalkMode::Present)
    }

    /// Pins several roots in one batch (a CAR import with several roots): all or none.
    pub fn pin_all(self, roots: &[Cid]) -> Result<(), PinError> {
        let pins: Vec<Pin> = roots
            .iter()
            .map(|c| Pin {
                cid: *c,
                kind: PinKind::Recursive,
                name: None,
            })
            .collect();
        self.pins.add_many(&pins, WalkMode::Present)
    }

    /// Makes the blocks durable and ends the session without pinning (the blocks are GC-able).
    pub fn commit(self) -> Result<(), StoreError> {
        self.store.flush()
    }
}

impl BlockSink for ImportSession {
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        // Protect first, then write: see the race discussion in `gc`.
        self.live.record(self.id, blocks.iter().map(Block::cid));
        self.store.put_many(&blocks)
    }
}

impl Drop for ImportSession {
    fn drop(&mut self) {
        self.live.release(self.id);
    }
}
