//! Network configuration.

use std::time::Duration;

/// How this node takes part in the DHT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DhtMode {
    /// Answer DHT queries from others (needs reachable listen addresses).
    Server,
    /// Only query; never advertise `/ipfs/kad/1.0.0`.
    Client,
    /// Server when there are listen addresses, client otherwise.
    #[default]
    Auto,
}

/// Which blocks the daemon announces to the DHT. The node announces what it is given through
/// [`crate::Node::provide`]; this setting tells the caller (and the reprovider) what to give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProvideStrategy {
    /// Every block in the store (one DHT query per block: slow for large stores).
    All,
    /// Every block of every pinned DAG.
    Pinned,
    /// Only the roots of pinned DAGs (the default: peers find the root, then fetch the rest by
    /// Bitswap from the same provider).
    #[default]
    Roots,
}

/// Bounds on what the node holds and does at once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Established connections in total.
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
    /// Pending (handshaking) inbound connections.
    pub max_pending_incoming: u32,
    /// Distinct CIDs wanted from the network at once; further fetches fail fast with `Busy`.
    pub max_wants: usize,
    /// Want-blocks outstanding at one peer.
    pub max_block_requests_per_peer: usize,
    /// Pending want entries kept per remote peer (its ledger).
    pub max_ledger_entries: usize,
    /// Concurrent tasks reading blocks from the store to serve peers.
    pub max_serve_tasks: usize,
    /// Concurrent DHT provide queries.
    pub max_provide_queries: usize,
    /// Concurrent DHT provider searches started by fetches.
    pub max_provider_searches: usize,
    /// Commands queued to the event loop.
    pub command_queue: usize,
    /// Provider records we announce ourselves (the DHT store's `max_provided_keys`).
    pub max_provided_keys: usize,
    /// Blocks a `NetSource` fetches ahead of a sequential reader (0: none).
    pub readahead_blocks: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            max_connections_per_peer: 2,
            max_pending_incoming: 64,
            max_wants: 8192,
            max_block_requests_per_peer: 64,
            max_ledger_entries: 4096,
            max_serve_tasks: 8,
            max_provide_queries: 32,
            max_provider_searches: 16,
            command_queue: 1024,
            max_provided_keys: 1 << 20,
            readahead_blocks: 32,
        }
    }
}

/// Everything the node needs to start.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/4001`, `/ip4/0.0.0.0/udp/4001/quic-v1`.
    pub listen_addrs: Vec<String>,
    /// Multiaddrs with `/p2p/<peer id>` dialled at start and added to the DHT.
    pub bootstrap: Vec<String>,
    /// DHT server or client.
    pub dht_mode: DhtMode,
    /// Kademlia protocol id: `/ipfs/kad/1.0.0` (public) or `/ipfs/lan/kad/1.0.0`.
    pub kad_protocol: String,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Which blocks to announce.
    pub provide_strategy: ProvideStrategy,
    /// How often to announce again what has been provided; `None` disables it.
    pub reprovide_interval: Option<Duration>,
    /// Default deadline of a network fetch.
    pub fetch_timeout: Duration,
    /// Deadline of `connect`.
    pub dial_timeout: Duration,
    /// How long to wait for a block from connected peers before asking the DHT for providers.
    pub provider_search_delay: Duration,
    /// How long a want-block may stay unanswered at one peer before another is asked.
    pub block_request_timeout: Duration,
    /// How long a peer that sent a bad block is refused.
    pub ban_duration: Duration,
    /// Close connections idle this long.
    pub idle_timeout: Duration,
    /// Also announce our listen addresses as external addresses (right for LANs and tests;
    /// behind NAT, leave it on and let identify's observed addresses add the public one).
    pub announce_listen_addrs: bool,
    /// Bounds.
    pub limits: Limits,
}

/// The public Amino DHT protocol.
pub const KAD_PROTOCOL: &str = "/ipfs/kad/1.0.0";
/// How long this node keeps an IPNS record in its DHT store (others' and its own): the
/// validity cairn gives its records (publishers put them again before that).
pub(crate) const RECORD_STORE_TTL: std::time::Duration = std::time::Duration::from_secs(48 * 3600);
/// Kubo's LAN DHT protocol.
pub const LAN_KAD_PROTOCOL: &str = "/ipfs/lan/kad/1.0.0";

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen_addrs: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            dht_mode: DhtMode::Auto,
            kad_protocol: KAD_PROTOCOL.into(),
            mdns: false,
            provide_strategy: ProvideStrategy::Roots,
            reprovide_interval: Some(Duration::from_secs(22 * 3600)),
            fetch_timeout: Duration::from_secs(30),
            dial_timeout: Duration::from_secs(10),
            provider_search_delay: Duration::from_millis(1000),
            block_request_timeout: Duration::from_secs(10),
            ban_duration: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(120),
            announce_listen_addrs: true,
            limits: Limits::default(),
        }
    }
}

impl NetConfig {
    /// A configuration for tests and local experiments: TCP on 127.0.0.1, random port.
    pub fn local() -> Self {
        NetConfig {
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/0".into()],
            ..NetConfig::default()
        }
    }
}
