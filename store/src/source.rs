//! The narrow, asynchronous read trait that the filesystem and DAG reader use.
//!
//! `fs` never knows where a block comes from: the local store ([`LocalSource`]) or
//! "local store, then peers" (implemented in `cairn-net`).
//!
//! # Blocking work
//! Reading a block from the store (a sled lookup, for big blocks a file read) and hashing it
//! are blocking work. [`read_verified`] does it on tokio's blocking pool for blocks over
//! [`INLINE_READ_MAX`] bytes (the store's index says how big a block is before it is read);
//! smaller blocks are read and hashed on the calling task, where that costs about what a hop
//! to a blocking thread would (a few microseconds), so directory walks over many small nodes
//! do not pay a thread hop per node. Outside a tokio runtime everything runs inline.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;

use crate::blockstore::{Blockstore, StoreError};

/// Blocks up to this size are read and verified on the calling task; bigger ones on a blocking
/// thread (see the module doc).
pub const INLINE_READ_MAX: u64 = 16 << 10;

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
    /// Asked the network: no connected peer has it, and a DHT query that ran to completion
    /// found no provider.
    #[error("no providers found for block {cid} (the DHT query ended after {peers_queried} peer{})", if *.peers_queried == 1 { "" } else { "s" })]
    NoProviders {
        /// The block.
        cid: Cid,
        /// Peers the DHT query asked.
        peers_queried: u32,
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
    /// The blocking thread reading the block went away (the runtime is shutting down).
    #[error("reading block {0} was cancelled (shutting down)")]
    Cancelled(Cid),
}

impl GetError {
    /// The CID this error is about, where there is one.
    pub fn cid(&self) -> Option<&Cid> {
        match self {
            GetError::NotFoundLocally(c) | GetError::Corrupt(c) | GetError::Cancelled(c) => Some(c),
            GetError::Timeout { cid, .. }
            | GetError::NoProviders { cid, .. }
            | GetError::Network { cid, .. } => Some(cid),
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

    /// The verified block if it can be had right now, without waiting on peers or on a big
    /// read: a local block of at most [`INLINE_READ_MAX`] bytes. `None` means "ask
    /// [`BlockSource::get`]" (also for a block that is missing or corrupt, so that `get` reports
    /// or repairs it). For callers that must answer without waiting, such as a FUSE thread
    /// answering a lookup from a directory's small nodes. The default has nothing at hand.
    fn get_now(&self, cid: &Cid) -> Option<Bytes> {
        let _ = cid;
        None
    }

    /// A local block of any size, verified, read and hashed on the calling thread; `None` if
    /// it is not local (or not intact: then [`BlockSource::get`] reports or repairs it). Only
    /// for threads that are not async runtime workers — a FUSE thread answering a read of
    /// local content without a task round trip. The default has nothing.
    fn get_local_blocking(&self, cid: &Cid) -> Option<Bytes> {
        let _ = cid;
        None
    }
}

impl<S: BlockSource> BlockSource for Arc<S> {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send {
        (**self).get(cid)
    }
    fn has_local(&self, cid: &Cid) -> bool {
        (**self).has_local(cid)
    }
    fn get_now(&self, cid: &Cid) -> Option<Bytes> {
        (**self).get_now(cid)
    }
    fn get_local_blocking(&self, cid: &Cid) -> Option<Bytes> {
        (**self).get_local_blocking(cid)
    }
}

/// A small local block, verified, if the store has it (see [`BlockSource::get_now`]).
pub fn read_small_now<B: Blockstore + ?Sized>(store: &B, cid: &Cid) -> Option<Bytes> {
    match store.size(cid) {
        Ok(Some(n)) if n <= INLINE_READ_MAX => store.get_verified(cid).ok().flatten(),
        _ => None,
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
        verified(&*self.store, cid)?.ok_or(GetError::NotFoundLocally(*cid))
    }
}

fn verified<B: Blockstore + ?Sized>(store: &B, cid: &Cid) -> Result<Option<Bytes>, GetError> {
    match store.get_verified(cid) {
        Ok(b) => Ok(b),
        Err(StoreError::Corrupt { cid }) => Err(GetError::Corrupt(cid)),
        Err(e) => Err(GetError::Store(e)),
    }
}

/// The verified block under `cid` from `store` (`Ok(None)` if it is not stored), read and
/// hashed on a blocking thread when it is bigger than [`INLINE_READ_MAX`].
pub async fn read_verified<B: Blockstore + ?Sized>(
    store: &Arc<B>,
    cid: &Cid,
) -> Result<Option<Bytes>, GetError> {
    let small = match store.size(cid) {
        Ok(None) => return Ok(None),
        Ok(Some(n)) => n <= INLINE_READ_MAX,
        Err(e) => return Err(GetError::Store(e)),
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if !small => {
            let (store, cid) = (store.clone(), *cid);
            rt.spawn_blocking(move || verified(&*store, &cid))
                .await
                .map_err(|_| GetError::Cancelled(cid))?
        }
        _ => verified(&**store, cid),
    }
}

impl<B: Blockstore> BlockSource for LocalSource<B> {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, GetError>> + Send {
        let (store, cid) = (self.store.clone(), *cid);
        async move {
            read_verified(&store, &cid)
                .await?
                .ok_or(GetError::NotFoundLocally(cid))
        }
    }
    fn has_local(&self, cid: &Cid) -> bool {
        self.store.has(cid).unwrap_or(false)
    }
    fn get_now(&self, cid: &Cid) -> Option<Bytes> {
        read_small_now(&*self.store, cid)
    }
    fn get_local_blocking(&self, cid: &Cid) -> Option<Bytes> {
        self.store.get_verified(cid).ok().flatten()
    }
}
