//! Connections: dialing (`connect`, the bootstrap peers, peers mDNS finds), disconnecting, the
//! open connections per peer with their latency, and what peers announce about themselves
//! (identify), from which the addresses this node knows for a peer are gathered.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError};
use libp2p::{identify, ping, Multiaddr, PeerId, Swarm};

use super::EventLoop;
use crate::addr::p2p_id;
use crate::command::{Direction, PeerInfo as PeerView, Reply};
use crate::config::NetConfig;
use crate::error::NetError;
use crate::swarm::NodeBehaviour;

/// One open connection, for `swarm peers`.
pub(super) struct Conn {
    id: ConnectionId,
    address: Multiaddr,
    direction: Direction,
    rtt: Option<Duration>,
}

/// A `disconnect` waiting for the peer's last connection to close.
pub(super) struct PendingDisconnect {
    peer: PeerId,
    reply: Reply<PeerId>,
    deadline: Instant,
}

/// How long a `disconnect` waits for the connections to close before it answers anyway.
const DISCONNECT_WAIT: Duration = Duration::from_secs(5);

pub(super) struct PendingDial {
    addr: String,
    reply: Reply<PeerId>,
    deadline: Instant,
}

/// Adds the bootstrap peers to the DHT and dials them; returns them.
pub(super) fn dial_bootstrap(
    swarm: &mut Swarm<NodeBehaviour>,
    cfg: &NetConfig,
) -> Result<HashSet<PeerId>, NetError> {
    let mut bootstrap_peers = HashSet::new();
    for b in &cfg.bootstrap {
        let addr = crate::addr::parse_addr(b)?;
        let peer = p2p_id(&addr).ok_or_else(|| NetError::BadAddr {
            addr: b.clone(),
            reason: "a bootstrap address must end in /p2p/<peer id>".into(),
        })?;
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        bootstrap_peers.insert(peer);
        let opts = DialOpts::peer_id(peer).addresses(vec![addr]).build();
        if let Err(e) = swarm.dial(opts) {
            tracing::warn!(%peer, error = %e, "cannot dial bootstrap peer");
        }
    }
    Ok(bootstrap_peers)
}

impl EventLoop {
    pub(super) fn connect(&mut self, addr: Multiaddr, reply: Reply<PeerId>) {
        let peer = p2p_id(&addr);
        if let Some(p) = peer {
            if self.swarm.is_connected(&p) {
                let _ = reply.send(Ok(p));
                return;
            }
        }
        let opts = match peer {
            Some(p) => DialOpts::peer_id(p)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::Always)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(
                    id,
                    PendingDial {
                        addr: addr.to_string(),
                        reply,
                        deadline: Instant::now() + self.engine.cfg.dial_timeout,
                    },
                );
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Dial {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                }));
            }
        }
    }

    pub(super) fn disconnect(&mut self, target: Multiaddr, reply: Reply<PeerId>) {
        let by_addr = |a: &Multiaddr| -> Multiaddr {
            a.iter()
                .filter(|p| !matches!(p, Protocol::P2p(_)))
                .collect()
        };
        let peer = match p2p_id(&target) {
            Some(p) => self.conns.contains_key(&p).then_some(p),
            None => {
                let want = by_addr(&target);
                self.conns
                    .iter()
                    .find(|(_, cs)| cs.iter().any(|c| by_addr(&c.address) == want))
                    .map(|(p, _)| *p)
            }
        };
        let Some(peer) = peer else {
            let _ = reply.send(Err(NetError::NotConnected {
                target: target.to_string(),
            }));
            return;
        };
        if self.swarm.disconnect_peer_id(peer).is_err() {
            let _ = reply.send(Err(NetError::NotConnected {
                target: target.to_string(),
            }));
            return;
        }
        self.records.let_go.insert(peer);
        self.disconnects.push(PendingDisconnect {
            peer,
            reply,
            deadline: Instant::now() + DISCONNECT_WAIT,
        });
    }

    pub(super) fn peer_infos(&mut self, reply: Reply<Vec<PeerView>>) {
        let mut infos: Vec<PeerView> = self
            .conns
            .iter()
            .filter_map(|(peer, conns)| {
                let c = conns.first()?;
                Some(PeerView {
                    peer: *peer,
                    address: c
                        .address
                        .iter()
                        .filter(|p| !matches!(p, Protocol::P2p(_)))
                        .collect(),
                    direction: c.direction,
                    latency: c.rtt,
                    transport: crate::addr::transport_name(&c.address),
                    protocols: self.protocols.get(peer).cloned(),
                })
            })
            .collect();
        infos.sort_by_key(|i| i.peer.to_bytes());
        let _ = reply.send(Ok(infos));
    }

    /// The addresses this node knows for `peer`: its DHT routing table entry, the listen
    /// addresses it announced, and the address of an outbound connection to it.
    pub(super) fn known_addrs(&mut self, peer: &PeerId) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> = Vec::new();
        let mut add = |a: &Multiaddr| {
            if !addrs.contains(a) {
                addrs.push(a.clone());
            }
        };
        if let Some(entry) = self.swarm.behaviour_mut().kad.kbucket(*peer) {
            if let Some(e) = entry.iter().find(|e| e.node.key.preimage() == peer) {
                for a in e.node.value.iter() {
                    add(a);
                }
            }
        }
        for a in self.listen_of.get(peer).into_iter().flatten() {
            add(a);
        }
        for c in self.conns.get(peer).into_iter().flatten() {
            if c.direction == Direction::Outbound {
                add(&c.address);
            }
        }
        addrs
    }

    pub(super) fn on_identify(&mut self, peer_id: PeerId, info: identify::Info) {
        let mut protocols: Vec<String> = info.protocols.iter().map(|p| p.to_string()).collect();
        protocols.sort();
        if self.conns.contains_key(&peer_id) {
            self.protocols.insert(peer_id, protocols);
            self.listen_of.insert(peer_id, info.listen_addrs.clone());
        }
        if info.protocols.contains(&self.kad_protocol) {
            for a in info.listen_addrs {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
            }
        }
        let bitswap = info
            .protocols
            .iter()
            .any(|p| p.as_ref().starts_with("/ipfs/bitswap/"));
        if let Some(i) = self.engine.peers.get_mut(&peer_id) {
            let was = i.bitswap;
            i.bitswap = Some(bitswap);
            if !bitswap && was != Some(false) {
                self.engine.on_peer_gone(peer_id, false);
            }
        }
    }

    pub(super) fn on_mdns(&mut self, list: Vec<(PeerId, Multiaddr)>) {
        for (peer, addr) in list {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
            if !self.swarm.is_connected(&peer) {
                let opts = DialOpts::peer_id(peer).addresses(vec![addr]).build();
                let _ = self.swarm.dial(opts);
            }
        }
    }

    pub(super) fn on_ping(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        result: Result<Duration, ping::Failure>,
    ) {
        if let Ok(rtt) = result {
            if let Some(c) = self
                .conns
                .get_mut(&peer)
                .and_then(|cs| cs.iter_mut().find(|c| c.id == connection))
            {
                c.rtt = Some(rtt);
            }
        }
    }

    pub(super) fn on_connection_established(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        num_established: NonZeroU32,
        endpoint: ConnectedPoint,
    ) {
        self.conns.entry(peer_id).or_default().push(Conn {
            id: connection_id,
            address: endpoint.get_remote_address().clone(),
            direction: if endpoint.is_dialer() {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            rtt: None,
        });
        if let Some(d) = self.dials.remove(&connection_id) {
            let _ = d.reply.send(Ok(peer_id));
        }
        self.records.let_go.remove(&peer_id);
        if num_established.get() == 1 {
            self.engine.on_peer_connected(peer_id);
        }
        if !self.bootstrapped && self.bootstrap_peers.contains(&peer_id) {
            self.bootstrapped = true;
            if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                tracing::debug!(error = %e, "DHT bootstrap not started");
            }
        }
    }

    pub(super) fn on_connection_closed(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        num_established: u32,
    ) {
        if let Some(cs) = self.conns.get_mut(&peer_id) {
            cs.retain(|c| c.id != connection_id);
        }
        if num_established == 0 {
            self.on_source_gone(peer_id);
            self.conns.remove(&peer_id);
            self.protocols.remove(&peer_id);
            self.listen_of.remove(&peer_id);
            self.engine.on_peer_gone(peer_id, true);
            let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.disconnects)
                .into_iter()
                .partition(|d| d.peer == peer_id);
            self.disconnects = wait;
            for d in done {
                let _ = d.reply.send(Ok(peer_id));
            }
        }
    }

    pub(super) fn on_outgoing_connection_error(
        &mut self,
        connection_id: ConnectionId,
        peer_id: Option<PeerId>,
        error: DialError,
    ) {
        if let Some(d) = self.dials.remove(&connection_id) {
            let _ = d.reply.send(Err(NetError::Dial {
                addr: d.addr,
                reason: error.to_string(),
            }));
        } else {
            tracing::debug!(?peer_id, %error, "outgoing connection failed");
        }
    }

    /// Answers the `connect`s and `disconnect`s whose deadline passed.
    pub(super) fn expire_dials(&mut self, now: Instant) {
        let late: Vec<ConnectionId> = self
            .dials
            .iter()
            .filter(|(_, d)| d.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(d) = self.dials.remove(&id) {
                let _ = d.reply.send(Err(NetError::DialTimeout {
                    addr: d.addr,
                    secs: self.engine.cfg.dial_timeout.as_secs(),
                }));
            }
        }

        let (late, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.disconnects)
            .into_iter()
            .partition(|d| d.deadline <= now);
        self.disconnects = wait;
        for d in late {
            // The connections are closing; say so rather than keep the caller waiting.
            let _ = d.reply.send(Ok(d.peer));
        }
    }
}
