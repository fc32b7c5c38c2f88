//! cairn-net: the libp2p node that trades blocks with the IPFS world.
//!
//! A [`Node`] is a cloneable handle to one task that owns the libp2p Swarm (TCP + QUIC, Noise,
//! Yamux, identify, ping, Kademlia, optional mDNS, connection limits, and Bitswap 1.2.0).
//! [`NetSource`] implements `cairn_store::BlockSource` as "local store first, then peers", and
//! [`fetch_dag`] pulls a whole DAG with a window of parallel wants.
//!
//! # Layout
//! - `config`: [`NetConfig`], [`DhtMode`], [`ProvideStrategy`], [`Limits`].
//! - `error`: [`NetError`].
//! - `node`: the [`Node`] handle.
//! - `command`: the commands a [`Node`] sends to the event loop, and the values they answer with.
//! - `event_loop`: the task owning the Swarm: its state, `run` and dispatch. Submodules, one
//!   concern each: `engine` (the I/O-free Bitswap policy: `engine/client` wants,
//!   `engine/server` ledgers), `bitswap` (Bitswap events and the outbox), `dht` (provider
//!   searches, provide jobs, reprovide), `dial` (connections, identify, mDNS, ping), `listen`
//!   (binding at start), `store_io` (the store reading and writing tasks).
//! - `addr`: [`parse_addr`], [`transport_name`], and a multiaddr's peer id.
//! - `swarm`: builds the transport and the composed behaviour.
//! - `pull`: the `/cairn/ipns/pull/1.0.0` codec (a peer's newest record of a name).
//! - `quic`: the QUIC muxer wrapper that accepts streams a peer stopped reading at once.
//! - `bitswap`: the Bitswap protocol (`protocol`, `handler`, `behaviour`).
//! - `source`: [`NetSource`], [`fetch_dag`].
//! - `readahead`: fetches ahead of a sequential reader of a [`NetSource`].
//! - `memstore`: [`MemoryStore`], an in-memory blockstore.
//!
//! ```
//! use cairn_net::{NetConfig, DhtMode};
//! let cfg = NetConfig { dht_mode: DhtMode::Server, ..NetConfig::local() };
//! assert_eq!(cfg.kad_protocol, "/ipfs/kad/1.0.0");
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod addr;
pub mod bitswap;
mod command;
mod config;
mod error;
mod event_loop;
mod memstore;
mod node;
mod pull;
mod quic;
mod readahead;
mod source;
mod swarm;

pub use addr::{parse_addr, transport_name};
pub use command::{
    BitswapStats, Direction, HeadEvent, PeerInfo, ProvideReport, ProviderSearch, RecordEvent,
    RecordLookup, RecordPut,
};
pub use config::{DhtMode, Limits, NetConfig, ProvideStrategy, KAD_PROTOCOL, LAN_KAD_PROTOCOL};
pub use error::NetError;
pub use event_loop::{heads_topic, STORE_BATCH_BYTES};
pub use libp2p::{Multiaddr, PeerId};
pub use memstore::MemoryStore;
pub use node::{peer_id_from_seed, Node};
pub use source::{fetch_dag, fetch_many, DagError, DagProgress, NetSource};
