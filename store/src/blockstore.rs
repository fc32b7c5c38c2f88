//! The blockstore trait: where blocks live on this machine.

use bytes::Bytes;
use cid::Cid;

use crate::block::Block;

/// Errors of a blockstore operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing database failed (I/O error, full disk, corruption of the database itself).
    #[error("blockstore database error: {0}")]
    Db(String),
    /// A block on disk does not match its CID.
    #[error("corrupt block on disk: {cid} does not match its content")]
    Corrupt {
        /// The CID under which the bad bytes were stored.
        cid: Cid,
    },
    /// A stored key could not be decoded as a CID.
    #[error("blockstore holds an undecodable key ({len} bytes)")]
    BadKey {
        /// Length of the key.
        len: usize,
    },
}

/// Space and count statistics of a blockstore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Number of blocks.
    pub blocks: u64,
    /// Sum of the block sizes in bytes.
    pub bytes: u64,
    /// Size of the store's files on disk, in bytes.
    pub disk_bytes: u64,
}

/// A local, synchronous store of blocks keyed by CID.
///
/// Implementations must be safe to share between threads. `get` returns the bytes as stored;
/// [`Blockstore::get_verified`] additionally checks them against the CID.
pub trait Blockstore: Send + Sync + 'static {
    /// Stores a block. Returns `true` if it was new.
    fn put(&self, block: &Block) -> Result<bool, StoreError>;
    /// Stores many blocks at once (one batch, one durability point).
    fn put_many(&self, blocks: &[Block]) -> Result<(), StoreError> {
        for b in blocks {
            self.put(b)?;
        }
        Ok(())
    }
    /// The bytes stored under `cid`, unverified.
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError>;
    /// Whether a block is present.
    fn has(&self, cid: &Cid) -> Result<bool, StoreError>;
    /// Size in bytes of a stored block.
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError>;
    /// Removes a block. Returns `true` if it was present.
    fn delete(&self, cid: &Cid) -> Result<bool, StoreError>;
    /// Every CID in the store.
    fn cids(&self) -> Box<dyn Iterator<Item = Result<Cid, StoreError>> + Send + '_>;
    /// Count and size statistics.
    fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// The block under `cid`, checked against the CID.
    fn get_verified(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        match self.get(cid)? {
            Some(data) => {
                crate::hash::verify(cid, &data).map_err(|_| StoreError::Corrupt { cid: *cid })?;
                Ok(Some(data))
            }
            None => Ok(None),
        }
    }
}
