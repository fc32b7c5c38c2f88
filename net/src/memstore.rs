//! An in-memory [`Blockstore`] for tests, examples and throwaway nodes.

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;
use cairn_store::{Block, Blockstore, Cid, StoreError, StoreStats};

/// Blocks in a `HashMap` behind a lock. Nothing is persisted.
#[derive(Debug, Default)]
pub struct MemoryStore {
    blocks: RwLock<HashMap<Cid, Bytes>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, HashMap<Cid, Bytes>>, StoreError> {
        self.blocks
            .read()
            .map_err(|_| StoreError::Internal("memory store lock poisoned"))
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, HashMap<Cid, Bytes>>, StoreError> {
        self.blocks
            .write()
            .map_err(|_| StoreError::Internal("memory store lock poisoned"))
    }
}

impl Blockstore for MemoryStore {
    fn put(&self, block: &Block) -> Result<bool, StoreError> {
        Ok(self
            .write()?
            .insert(*block.cid(), block.data().clone())
            .is_none())
    }
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        Ok(self.read()?.get(cid).cloned())
    }
    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.read()?.contains_key(cid))
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        Ok(self.read()?.get(cid).map(|b| b.len() as u64))
    }
    fn delete(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.write()?.remove(cid).is_some())
    }
    fn cids(&self) -> Box<dyn Iterator<Item = Result<Cid, StoreError>> + Send + '_> {
        let all: Vec<Result<Cid, StoreError>> = match self.read() {
            Ok(m) => m.keys().map(|c| Ok(*c)).collect(),
            Err(e) => vec![Err(e)],
        };
        Box::new(all.into_iter())
    }
    fn stats(&self) -> Result<StoreStats, StoreError> {
        let m = self.read()?;
        let bytes = m.values().map(|b| b.len() as u64).sum();
        Ok(StoreStats {
            blocks: m.len() as u64,
            bytes,
            disk_bytes: 0,
        })
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
