//! Multiaddr helpers: parsing a user's address, naming its transport, finding its peer id.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::error::NetError;

/// Parses a multiaddr given by a user.
pub fn parse_addr(s: &str) -> Result<Multiaddr, NetError> {
    s.trim()
        .parse::<Multiaddr>()
        .map_err(|e| NetError::BadAddr {
            addr: s.to_string(),
            reason: e.to_string(),
        })
}

/// The transport a multiaddr uses, as a short name (`tcp`, `quic-v1`, `quic`, `udp`, ...).
pub fn transport_name(addr: &Multiaddr) -> String {
    let mut name = "unknown";
    for p in addr.iter() {
        match p {
            Protocol::Tcp(_) => name = "tcp",
            Protocol::Udp(_) => name = "udp",
            Protocol::QuicV1 => name = "quic-v1",
            Protocol::Quic => name = "quic",
            Protocol::Ws(_) => name = "ws",
            Protocol::Wss(_) => name = "wss",
            Protocol::WebTransport => name = "webtransport",
            Protocol::WebRTCDirect => name = "webrtc-direct",
            _ => {}
        }
    }
    name.to_string()
}

/// The peer id an address names in its `/p2p/<id>` part, if it has one.
pub(crate) fn p2p_id(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}
