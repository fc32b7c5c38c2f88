//! Binding the listen addresses when the node starts: every fixed port is probed first (so a
//! second daemon cannot share it), then each address is bound and awaited until it reports
//! the address it listens on, with listen failures worded for the user.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};

use crate::config::NetConfig;
use crate::error::NetError;
use crate::swarm::NodeBehaviour;

/// Binds every listen address of `cfg`, waiting until each reports one; returns them.
pub(super) async fn listen(
    swarm: &mut Swarm<NodeBehaviour>,
    cfg: &NetConfig,
) -> Result<Vec<Multiaddr>, NetError> {
    let mut parsed = Vec::with_capacity(cfg.listen_addrs.len());
    for a in &cfg.listen_addrs {
        parsed.push((a, crate::addr::parse_addr(a)?));
    }
    // Every fixed port is checked before any is bound (see `check_port`).
    for (text, addr) in &parsed {
        check_port(text, addr)?;
    }
    let mut listeners = HashMap::new();
    for (text, addr) in parsed {
        let id = swarm.listen_on(addr).map_err(|e| listen_error(text, &e))?;
        listeners.insert(id, text.clone());
    }
    let mut listen_addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !listeners.is_empty() {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr {
                listener_id,
                address,
            }) => {
                listeners.remove(&listener_id);
                if cfg.announce_listen_addrs {
                    swarm.add_external_address(address.clone());
                }
                listen_addrs.push(address);
            }
            Ok(SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            }) => {
                let addr = listeners.get(&listener_id).cloned().unwrap_or_else(|| {
                    addresses
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                return Err(match reason {
                    Err(e) => listen_error(&addr, &e),
                    Ok(()) => NetError::Listen {
                        addr,
                        reason: "the listener closed".into(),
                    },
                });
            }
            Ok(other) => tracing::trace!(?other, "event before start"),
            Err(_) => {
                return Err(NetError::Listen {
                    addr: cfg.listen_addrs.join(", "),
                    reason: "no address bound within 5 s".into(),
                })
            }
        }
    }
    Ok(listen_addrs)
}

/// A listen failure as the user should read it: "address already in use", or the whole chain
/// of causes (libp2p's transport errors display as an empty string).
fn listen_error(addr: &str, e: &(dyn std::error::Error + 'static)) -> NetError {
    if crate::error::has_io_kind(e, std::io::ErrorKind::AddrInUse) {
        return NetError::AddrInUse {
            addr: addr.to_string(),
        };
    }
    NetError::Listen {
        addr: addr.to_string(),
        reason: crate::error::chain(e),
    }
}

/// Fails with [`NetError::AddrInUse`] if something listens on the fixed TCP or UDP port of
/// `addr` already, by binding a plain socket there and closing it again just before libp2p
/// binds. Two reasons:
/// - libp2p binds its TCP listeners with `SO_REUSEPORT`, so a second daemon of the same user
///   would bind the same port too and silently share its connections with the first. A plain
///   socket (`SO_REUSEADDR` as std sets it, no `SO_REUSEPORT`) cannot bind a port a listener
///   holds.
/// - QUIC's own bind does fail, but libp2p wraps the I/O error in layers whose `source()` skips
///   it, so its kind is lost; the probe's error keeps it.
fn check_port(text: &str, addr: &Multiaddr) -> Result<(), NetError> {
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let probe = match parts.next() {
        Some(Protocol::Tcp(port)) if port != 0 => std::net::TcpListener::bind((ip, port)).map(drop),
        Some(Protocol::Udp(port)) if port != 0 => std::net::UdpSocket::bind((ip, port)).map(drop),
        _ => return Ok(()),
    };
    match probe {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(NetError::AddrInUse {
            addr: text.to_string(),
        }),
        // Anything else (no such local address, a privileged port) is for libp2p to report.
        _ => Ok(()),
    }
}
