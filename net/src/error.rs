//! Errors of the network node.

use cairn_store::Cid;

/// Why a network operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    /// An IPNS record that is not valid (what is wrong with it).
    #[error("invalid IPNS record: {0}")]
    BadRecord(String),
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
        /// The transport's reason (its whole chain of causes).
        reason: String,
    },
    /// Another socket (another program, another cairn daemon) listens on the address already.
    #[error("cannot listen on {addr}: address already in use (by another program, or another cairn daemon)")]
    AddrInUse {
        /// The address.
        addr: String,
    },
    /// Neither a peer id nor a multiaddr.
    #[error("{text:?} is neither a peer id (12D3Koo..., Qm...) nor a multiaddr (/ip4/1.2.3.4/tcp/4001/p2p/12D3Koo...)")]
    BadPeer {
        /// What was given.
        text: String,
    },
    /// No connection to close.
    #[error("not connected to {target}")]
    NotConnected {
        /// The peer id or address given.
        target: String,
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
    /// No connected peer has the block and a DHT query that ran to completion found no
    /// provider of it (rather than running out of time).
    #[error("no providers found for block {cid} (the DHT query ended after {peers_queried} peer{})", if *.peers_queried == 1 { "" } else { "s" })]
    NoProviders {
        /// The block.
        cid: Cid,
        /// Peers the DHT query asked.
        peers_queried: u32,
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

/// The next cause of `e`: an `io::Error` wrapping another error yields that error (its own
/// `source()` skips it), anything else its `source()`.
fn cause<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => Some(inner),
        None => e.source(),
    }
}

/// The messages of `e` and of every error in its chain of causes, joined by ": ", skipping
/// empty ones and ones that repeat the text before them (libp2p's `TransportError::Other`
/// displays as nothing: its cause is in the chain).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        let text = text.trim();
        if !text.is_empty() && !parts.last().is_some_and(|p| p.ends_with(text)) {
            parts.push(text.to_string());
        }
        cur = cause(err);
    }
    if parts.is_empty() {
        "no reason given".to_string()
    } else {
        parts.join(": ")
    }
}

/// Whether `e` or one of its causes is an I/O error of kind `kind`.
pub(crate) fn has_io_kind(e: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
        {
            return true;
        }
        cur = cause(err);
    }
    false
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An error that displays as nothing, like libp2p's `TransportError::Other`.
    #[derive(Debug)]
    struct Silent(std::io::Error);

    impl std::fmt::Display for Silent {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            Ok(())
        }
    }

    impl std::error::Error for Silent {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_chain_skips_empty_and_repeated_messages_and_finds_io_kinds() {
        let inner = std::io::Error::from(std::io::ErrorKind::AddrNotAvailable);
        let text = inner.to_string();
        // io::Error wrapping another error: `source()` would skip the wrapped one.
        let wrapped = Silent(std::io::Error::other(Silent(inner)));
        assert_eq!(chain(&wrapped), text);
        assert!(has_io_kind(&wrapped, std::io::ErrorKind::AddrNotAvailable));
        assert!(!has_io_kind(&wrapped, std::io::ErrorKind::AddrInUse));
        let empty = Silent(std::io::Error::other(Silent(std::io::Error::other(""))));
        assert_eq!(chain(&empty), "no reason given");
    }
}
