//! Errors of the network node.

use cairn_store::Cid;

/// Why a network operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    /// The node has shut down (or its task died).
    #[error("the network node has shut down")]
    Shutdown,
    /// A multiaddr did not parse.
    #[error(
        "bad multiaddr {addr:?}: {reason} (expected e.g. /ip4/1.2.3.4/tcp/4001/p2p/12D3Koo...)"
    )]
    BadAddr {
        /// What was given.
        addr: String,
        /// Why it is wrong.
        reason: String,
    },
    /// Could not listen on an address.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// The transport's reason.
        reason: String,
    },
    /// The seed is not a valid Ed25519 secret key.
    #[error("invalid node identity seed")]
    BadIdentity,
    /// The Kademlia protocol id is not a valid protocol name.
    #[error("bad Kademlia protocol id {name:?} (expected e.g. /ipfs/kad/1.0.0)")]
    BadKadProtocol {
        /// What was configured.
        name: String,
    },
    /// The transport stack could not be built.
    #[error("cannot build the libp2p transport: {0}")]
    Transport(String),
    /// Dialling a peer failed.
    #[error("cannot connect to {addr}: {reason}")]
    Dial {
        /// The address dialled.
        addr: String,
        /// The transport's reason.
        reason: String,
    },
    /// Dialling did not finish in time.
    #[error("connecting to {addr} timed out after {secs} s")]
    DialTimeout {
        /// The address dialled.
        addr: String,
        /// The deadline.
        secs: u64,
    },
    /// Nobody delivered the block in time.
    #[error("block {cid} not found on the network within {secs} s")]
    FetchTimeout {
        /// The block.
        cid: Cid,
        /// The deadline.
        secs: u64,
    },
    /// Too many fetches in flight.
    #[error("too many blocks wanted at once ({limit}); retry later")]
    Busy {
        /// The limit hit.
        limit: usize,
    },
    /// The local blockstore failed.
    #[error("blockstore error: {0}")]
    Store(String),
    /// A DHT operation failed.
    #[error("DHT {op} failed: {reason}")]
    Dht {
        /// The operation.
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// A block of a DAG could not be decoded while walking it.
    #[error("block {cid} is not valid dag-pb: {reason}")]
    BadDag {
        /// The block.
        cid: Cid,
        /// Why.
        reason: String,
    },
}

impl<T> From<tokio::sync::mpsc::error::SendError<T>> for NetError {
    fn from(_: tokio::sync::mpsc::error::SendError<T>) -> Self {
        NetError::Shutdown
    }
}

impl From<tokio::sync::oneshot::error::RecvError> for NetError {
    fn from(_: tokio::sync::oneshot::error::RecvError) -> Self {
        NetError::Shutdown
    }
}
