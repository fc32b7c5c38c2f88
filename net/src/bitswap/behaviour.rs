//! The swarm-wide half of Bitswap: routes outgoing messages to a connection of the peer and
//! surfaces incoming ones. Policy (what to want, what to serve, whom to ban) lives in the event
//! loop, which owns the blockstore and the want table; this type only moves messages.

use std::collections::{HashMap, VecDeque};
use std::task::{Context, Poll};

use libp2p::core::{transport::PortUse, Endpoint};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use super::handler::{Handler, HandlerIn, HandlerOut};
use super::protocol::{DecodeError, Message};

/// What Bitswap reports to the event loop.
#[derive(Debug)]
pub enum Event {
    /// A peer sent a message.
    Message {
        /// The sender.
        peer: PeerId,
        /// The message, with block CIDs computed from their bytes.
        msg: Message,
    },
    /// A peer sent bytes that do not decode.
    Malformed {
        /// The sender.
        peer: PeerId,
        /// What was wrong.
        error: DecodeError,
    },
    /// Messages to a peer were lost.
    SendFailed {
        /// The peer.
        peer: PeerId,
        /// The peer does not speak Bitswap at all.
        unsupported: bool,
    },
}

/// The Bitswap network behaviour.
#[derive(Default)]
pub struct Behaviour {
    connections: HashMap<PeerId, usize>,
    events: VecDeque<ToSwarm<Event, HandlerIn>>,
}

impl Behaviour {
    /// A behaviour with no connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `msg` for `peer`. Returns false (and drops it) when the peer is not connected.
    pub fn send(&mut self, peer: PeerId, msg: Message) -> bool {
        if msg.is_empty() || !self.connections.contains_key(&peer) {
            return false;
        }
        self.events.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::Any,
            event: HandlerIn::Send(msg),
        });
        true
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new())
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(c) => {
                *self.connections.entry(c.peer_id).or_default() += 1;
            }
            FromSwarm::ConnectionClosed(c) => {
                if let Some(n) = self.connections.get_mut(&c.peer_id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.connections.remove(&c.peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let ev = match event {
            HandlerOut::Received(msg) => Event::Message { peer, msg },
            HandlerOut::Malformed(error) => Event::Malformed { peer, error },
            HandlerOut::SendFailed { unsupported, .. } => Event::SendFailed { peer, unsupported },
        };
        self.events.push_back(ToSwarm::GenerateEvent(ev));
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(ev) => Poll::Ready(ev),
            None => Poll::Pending,
        }
    }
}
