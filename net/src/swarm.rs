//! Builds the libp2p Swarm: transports, the composed behaviour, limits.

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity, kad, mdns, noise, ping,
    quic, request_response, tcp, yamux, StreamProtocol, Swarm, SwarmBuilder, Transport,
};

use crate::bitswap;
use crate::config::{DhtMode, NetConfig};
use crate::error::NetError;
use crate::quic::Muxer as StopTolerantMuxer;

/// Identify's protocol-version string (the protocol id itself is always `/ipfs/id/1.0.0`).
const IDENTIFY_VERSION: &str = "ipfs/0.1.0";

/// Everything the node's swarm speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct NodeBehaviour {
    pub(crate) bans: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) bitswap: bitswap::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) pull: request_response::Behaviour<crate::pull::Codec>,
}

/// Whether the DHT should run as a server under `cfg`.
pub(crate) fn dht_server(cfg: &NetConfig) -> bool {
    match cfg.dht_mode {
        DhtMode::Server => true,
        DhtMode::Client => false,
        DhtMode::Auto => !cfg.listen_addrs.is_empty(),
    }
}

pub(crate) fn build(
    cfg: &NetConfig,
    key: identity::Keypair,
) -> Result<Swarm<NodeBehaviour>, NetError> {
    let peer_id = key.public().to_peer_id();
    let kad_protocol = StreamProtocol::try_from_owned(cfg.kad_protocol.clone()).map_err(|_| {
        NetError::BadKadProtocol {
            name: cfg.kad_protocol.clone(),
        }
    })?;

    let mut kad_cfg = kad::Config::new(kad_protocol);
    // The node re-announces on its own schedule (the reprovider), not libp2p's 12 h default.
    kad_cfg.set_provider_publication_interval(None);
    kad_cfg.set_query_timeout(std::time::Duration::from_secs(60));
    // Records are validated before they are stored (IPNS only; see `event_loop/records.rs`),
    // kept as long as cairn's records are valid, and republished by their publishers.
    kad_cfg.set_record_filtering(kad::StoreInserts::FilterBoth);
    kad_cfg.set_record_ttl(Some(crate::config::RECORD_STORE_TTL));
    kad_cfg.set_publication_interval(None);
    kad_cfg.set_replication_interval(None);
    let store_cfg = kad::store::MemoryStoreConfig {
        max_records: 65_536,
        max_provided_keys: cfg.limits.max_provided_keys,
        ..Default::default()
    };
    let mut kademlia = kad::Behaviour::with_config(
        peer_id,
        kad::store::MemoryStore::with_config(peer_id, store_cfg),
        kad_cfg,
    );
    kademlia.set_mode(Some(if dht_server(cfg) {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    }));

    let mdns = if cfg.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| NetError::Transport(e.to_string()))?,
        )
    } else {
        None
    };

    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.limits.max_connections))
        .with_max_established_per_peer(Some(cfg.limits.max_connections_per_peer))
        .with_max_pending_incoming(Some(cfg.limits.max_pending_incoming));

    // IPNS over PubSub: records are validated before they are forwarded.
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        // The bigger of a record (10 KiB) and a head (a commit, 16 KiB), plus framing.
        .max_transmit_size(
            cairn_store::IPNS_MAX_RECORD_SIZE.max(cairn_store::commit::MAX_COMMIT_BYTES) + 4096,
        )
        .build()
        .map_err(|e| NetError::Transport(e.to_string()))?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_cfg,
    )
    .map_err(|e| NetError::Transport(e.to_string()))?;

    let behaviour = NodeBehaviour {
        bans: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_VERSION.to_string(), key.public())
                .with_agent_version(format!("cairn/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(ping::Config::new()),
        kad: kademlia,
        mdns: Toggle::from(mdns),
        bitswap: bitswap::Behaviour::new(),
        gossipsub,
        pull: request_response::Behaviour::new(
            [(
                crate::pull::PROTOCOL,
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(std::time::Duration::from_secs(10))
                .with_max_concurrent_streams(64),
        ),
    };

    let idle = cfg.idle_timeout;
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(e.to_string()))?
        // QUIC as `with_quic` builds it, with inbound streams that tolerate STOP_SENDING
        // (see `quic.rs`: go-libp2p peers stop reading their Bitswap streams at once).
        .with_other_transport(|key| {
            quic::tokio::Transport::new(quic::Config::new(key))
                .map(|(peer, conn), _| (peer, StopTolerantMuxer::new(conn)))
        })
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_behaviour(move |_| behaviour)
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
