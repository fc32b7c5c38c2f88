//! Bitswap 1.2.0 (answering 1.1.0 and 1.0.0 too): the wire format, the per-connection handler,
//! and the swarm behaviour. See `docs/DESIGN.md`, "Network: Bitswap and Kademlia".

pub mod behaviour;
pub mod handler;
pub mod protocol;

pub use behaviour::{Behaviour, Event};
pub use protocol::{Message, Presence, WantEntry, WantType};
