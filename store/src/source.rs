//! The narrow, asynchronous read trait that the filesystem and DAG reader use.
//!
//! `fs` never knows where a block comes from: the local store ([`LocalSource`]) or
//! "local store, then peers" (implemented in `cairn-net`).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;

use crate::blockstore::{Blockstore, StoreError};

/// Why a block could not be had.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Not in the local store and no network to ask.
    #[error("block {0} not found locally")]
    NotFoundLocally(Cid),
    /// Asked the network, nobody delivered it in time.
    #[error("block {cid} not found within {secs} s")]
    Timeout {
        /// The block.
        cid: Cid,
        /// The deadline that passed, in seconds.
        secs: u64,
    },
    /// The block exists locally but its bytes do not match its CID.
    #[error("corrupt block {0}: content does not match its CID")]
    Corrupt(Cid),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The network node is gone or failed.
    #[error("network error fetching {cid}: {reason}")]
    Network {
        /// The block.
        cid: Cid,
        /// What went wrong.
        reason: String,
    },
}

impl GetError {
    /// The CID this error is about, where there is one.
    pub fn cid(&self) -> Option<&Cid> {
        match self {
            GetError::NotFoundLocally(c) | GetError::Corrupt(c) => Some(c),
            GetError::Timeout { cid, .. } | GetError::Network { cid, .. } => Some(cid),
            GetError::Store(StoreError::Corrupt { cid }) => Some(cid),
            GetError::Store(_) => None,
        }
    }
}

/// Something blocks can be read from. Every block returned has been verified against its CID.
pub trait BlockSource: Send + Sync + 'static {
    /// The verified bytes of `cid`.
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send;

    /// Whether the block is available without the network (for "how much is local" reports).
    fn has_local(&self, cid: &Cid) -> bool;
}

impl<S: BlockSource> BlockSource for Arc<S> {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send {
        (**self).get(cid)
    }
    fn has_local(&self, cid: &Cid) -> bool {
        (**self).has_local(cid)
    }
}

/// Reads from a local blockstore only, verifying every block.
#[derive(Debug)]
pub struct LocalSource<B> {
    store: Arc<B>,
}

impl<B> Clone for LocalSource<B> {
    fn clone(&self) -> Self {
        LocalSource {
            store: self.store.clone(),
        }
    }
}

impl<B: Blockstore> LocalSource<B> {
    /// Wraps a store.
    pub fn new(store: Arc<B>) -> Self {
        LocalSource { store }
    }

    /// The store behind this source.
    pub fn store(&self) -> &Arc<B> {
        &self.store
    }

    /// The verified block, synchronously.
    pub fn get_sync(&self, cid: &Cid) -> Result<Bytes, GetError> {
        match self.store.get_verified(cid) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(GetError::NotFoundLocally(*cid)),
            Err(StoreError::Corrupt { cid }) => Err(GetError::Corrupt(cid)),
            Err(e) => Err(GetError::Store(e)),
        }
    }
}

impl<B: Blockstore> BlockSource for LocalSource<B> {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send {
        let r = self.get_sync(cid);
        std::future::ready(r)
    }
    fn has_local(&self, cid: &Cid) -> bool {
        self.store.has(cid).unwrap_or(false)
    }
}
