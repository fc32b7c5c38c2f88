//! The messages between a [`crate::Node`] handle and the event loop that owns the Swarm: each
//! [`Command`] with its [`Reply`] channel, and the values the replies carry. Both sides import
//! this module, not each other.

use std::time::Duration;

use bytes::Bytes;
use cairn_store::{Cid, IpnsName};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use crate::error::NetError;

/// Bitswap counters since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BitswapStats {
    /// Blocks received that we wanted (verified).
    pub blocks_received: u64,
    /// Bytes of those blocks.
    pub bytes_received: u64,
    /// Blocks sent to peers.
    pub blocks_sent: u64,
    /// Bytes of those blocks.
    pub bytes_sent: u64,
    /// Blocks received again after the want was already satisfied.
    pub dup_blocks: u64,
    /// Bytes of those duplicates.
    pub dup_bytes: u64,
    /// Blocks that matched no want (wrong bytes or unrequested): their sender was banned.
    pub rejected_blocks: u64,
    /// Peers banned so far.
    pub peers_banned: u64,
    /// Peers connected now.
    pub peers: usize,
    /// CIDs wanted from the network now.
    pub wants: usize,
}

/// The outcome of [`Node::provide`](crate::Node::provide).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProvideReport {
    /// CIDs announced to the DHT.
    pub ok: u64,
    /// CIDs whose announcement failed (no peers answered in time).
    pub failed: u64,
}

/// The outcome of [`Node::search_providers`](crate::Node::search_providers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSearch {
    /// Providers found (never this node).
    pub providers: Vec<PeerId>,
    /// The addresses this node knows for each provider (its routing table, identify, open
    /// connections); possibly none.
    pub addresses: std::collections::HashMap<PeerId, Vec<Multiaddr>>,
    /// Peers the DHT query sent a request to before it ended.
    pub peers_queried: u32,
    /// The query was still running when the deadline (the caller's, or the DHT's own query
    /// timeout) ended it; otherwise it ran to completion.
    pub timed_out: bool,
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer dialled us.
    Inbound,
    /// We dialled the peer.
    Outbound,
}

impl Direction {
    /// `"inbound"` or `"outbound"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// A connected peer, as [`Node::peer_infos`](crate::Node::peer_infos) describes it (its oldest connection open now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub peer: PeerId,
    /// The peer's address on that connection (for an inbound one, the port it dialled from).
    pub address: Multiaddr,
    /// Who opened the connection.
    pub direction: Direction,
    /// The last ping round trip on it, once a ping has been answered.
    pub latency: Option<Duration>,
    /// The transport: `tcp`, `quic-v1`, ...
    pub transport: String,
    /// The protocols the peer announced (identify), once it has.
    pub protocols: Option<Vec<String>>,
}

/// What a fetch from the network yields.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The block, verified and stored.
    Block(Bytes),
    /// It arrived for another want moments before this fetch asked and has been stored: read
    /// it from the store (asking the peers again would move it twice).
    Stored,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NetError>>;

/// What a [`Node`] asks of the event loop.
pub(crate) enum Command {
    ListenAddrs {
        reply: Reply<Vec<Multiaddr>>,
    },
    Connect {
        addr: Multiaddr,
        reply: Reply<PeerId>,
    },
    Peers {
        reply: Reply<Vec<PeerId>>,
    },
    PeerInfos {
        reply: Reply<Vec<PeerInfo>>,
    },
    Disconnect {
        target: Multiaddr,
        reply: Reply<PeerId>,
    },
    Provide {
        cids: Vec<Cid>,
        reply: Reply<ProvideReport>,
    },
    /// The keys of the provider records this node announces (multihash bytes).
    ProvidedKeys {
        reply: Reply<Vec<Vec<u8>>>,
    },
    /// Stop announcing these keys (multihash bytes).
    StopProviding {
        keys: Vec<Vec<u8>>,
        reply: Reply<()>,
    },
    FindProviders {
        cid: Cid,
        timeout: Duration,
        reply: Reply<ProviderSearch>,
    },
    Fetch {
        cid: Cid,
        timeout: Duration,
        /// `Fetched::Stored` is an acceptable answer (not when the store just missed it).
        may_be_stored: bool,
        reply: Reply<Fetched>,
    },
    Stats {
        reply: Reply<BitswapStats>,
    },
    Shutdown {
        reply: Reply<()>,
    },
    PutRecord {
        name: IpnsName,
        record: Vec<u8>,
        reply: Reply<RecordPut>,
    },
    GetRecord {
        name: IpnsName,
        timeout: Duration,
        reply: Reply<RecordLookup>,
    },
    Subscribe {
        name: IpnsName,
        /// Followed (its sources are tracked, asked and redialled), or only published here.
        follow: bool,
        reply: Reply<()>,
    },
    RecordSources {
        name: IpnsName,
        reply: Reply<Vec<PeerId>>,
    },
    Unsubscribe {
        name: IpnsName,
        reply: Reply<()>,
    },
    RefuseRecord {
        name: IpnsName,
        record: Vec<u8>,
        instead: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    ServeHeads {
        name: IpnsName,
        reply: Reply<()>,
    },
    AnnounceHead {
        name: IpnsName,
        commit: Vec<u8>,
        reply: Reply<bool>,
    },
}

/// What [`Node::lookup_record`](crate::Node::lookup_record) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordLookup {
    /// The best valid record: the one kept here or a better one from the network.
    pub record: Option<Vec<u8>>,
    /// Peers that answered with a valid record during this lookup (none: only the copy kept
    /// here, if any, was found).
    pub answered_by: Vec<PeerId>,
}

/// What [`Node::put_record`](crate::Node::put_record) reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPut {
    /// At least one DHT peer stored it.
    pub dht: bool,
    /// It was pushed to peers subscribed to the name's topic.
    pub pushed: bool,
}

/// A writer's head of a share whose heads topic this node joined, as a peer forwarded it: a
/// commit of that share whose signature verifies (membership is the receiver's to check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadEvent {
    /// The share.
    pub name: IpnsName,
    /// The commit's bytes.
    pub commit: Vec<u8>,
    /// The peer that forwarded it.
    pub from: PeerId,
}

/// A valid record of a name this node follows, pushed by a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEvent {
    /// The name.
    pub name: IpnsName,
    /// The record's bytes (validated: signature, expiry, size).
    pub record: Vec<u8>,
    /// The peer that forwarded it.
    pub from: PeerId,
}
