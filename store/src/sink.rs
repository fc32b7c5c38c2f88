//! Where an import puts the blocks it makes.

use std::sync::Arc;

use crate::block::Block;
use crate::blockstore::{Blockstore, StoreError};

/// A destination for freshly built blocks. Implementations are shared across the importer's
/// worker threads.
pub trait BlockSink: Send + Sync {
    /// Accepts a batch of blocks whose CIDs the importer has just computed.
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError>;
}

/// Discards blocks (for `add --only-hash`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl BlockSink for NullSink {
    fn put_blocks(&self, _blocks: Vec<Block>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Writes straight into a blockstore (no GC protection; see `Repo` for the session-tracked sink).
#[derive(Debug, Clone)]
pub struct StoreSink<B>(pub Arc<B>);

impl<B: Blockstore> BlockSink for StoreSink<B> {
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        self.0.put_many(&blocks)
    }
}
