//! The per-connection half of Bitswap.
//!
//! Why a custom handler rather than `request-response`: Bitswap messages are one-way. A reply
//! (block, HAVE) travels as a separate message on a stream the *answerer* opens, and inbound
//! streams may carry many messages, so request/response pairing does not fit.
//!
//! Outbound: long-lived streams ("lanes") carry our messages; if writing fails (the remote closed
//! the stream, as send-and-close peers such as Helia may) the stream is reopened and the message
//! retried once. Lane 0 carries every message with a wantlist, in order, so wants and cancels never
//! overtake each other; messages of only blocks and presences take any free lane, up to
//! [`OUT_LANES`] at once. Several lanes matter because each Yamux stream has its own flow-control
//! window (256 KiB, which libp2p-yamux does not let us raise, and which its RTT-based auto-tuning
//! never grows on a sub-millisecond link), so one stream would send 256 KiB blocks stop-and-wait. Inbound: every stream the remote opens is read frame by frame until it
//! ends, at most [`MAX_INBOUND_STREAMS`] at a time. Received blocks are hashed here, never on the
//! swarm's event loop: a message with much block data is decoded on a blocking thread while the
//! connection reads the next one (at most [`DECODE_AHEAD`] per stream), a small one inline.
//!
//! Block data is not copied by the codec: outgoing blocks are written from the `Bytes` the store
//! returned, and incoming blocks are slices of the received frame.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;

use futures::future::{self, BoxFuture};
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use libp2p::core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamUpgradeError, SubstreamProtocol,
};
use libp2p::StreamProtocol;

use super::protocol::{self, DecodeError, Message, Version, MAX_MESSAGE_BYTES, PROTOCOLS};

/// Messages waiting for the outbound stream; beyond this, new ones are dropped.
pub const MAX_QUEUED_MESSAGES: usize = 1024;
/// Concurrent inbound streams per connection; more are reset.
pub const MAX_INBOUND_STREAMS: usize = 32;
/// Outbound streams per connection (see the module doc).
pub const OUT_LANES: usize = 4;
/// Frames of one inbound stream being decoded (hashed) while the next is read.
pub const DECODE_AHEAD: usize = 2;
/// Messages at least this large are decoded (their blocks hashed) on a blocking thread.
const OFFLOAD_BYTES: usize = 64 << 10;

/// Negotiates any of the three Bitswap versions and yields the stream with the chosen protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upgrade;

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = std::array::IntoIter<StreamProtocol, 3>;
    fn protocol_info(&self) -> Self::InfoIter {
        PROTOCOLS.into_iter()
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = future::Ready<Result<Self::Output, Infallible>>;
    fn upgrade_inbound(self, s: Stream, info: StreamProtocol) -> Self::Future {
        future::ready(Ok((s, info)))
    }
}

impl OutboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = future::Ready<Result<Self::Output, Infallible>>;
    fn upgrade_outbound(self, s: Stream, info: StreamProtocol) -> Self::Future {
        future::ready(Ok((s, info)))
    }
}

/// From the behaviour to a connection.
#[derive(Debug)]
pub enum HandlerIn {
    /// Send this message.
    Send(Message),
}

/// From a connection to the behaviour.
#[derive(Debug)]
pub enum HandlerOut {
    /// A decoded message (block CIDs computed from their bytes).
    Received(Message),
    /// The remote sent bytes that are not a valid message.
    Malformed(DecodeError),
    /// Messages could not be sent; `unsupported` when the remote does not speak Bitswap.
    SendFailed {
        /// How many messages were lost.
        dropped: usize,
        /// The remote refused every Bitswap protocol.
        unsupported: bool,
    },
}

type SendFuture = BoxFuture<'static, Result<(Stream, Version), (std::io::Error, Message, bool)>>;

enum Outbound {
    Idle(Option<(Stream, Version)>),
    Opening,
    Busy(SendFuture),
}

/// One per connection.
pub struct Handler {
    queue: VecDeque<(Message, bool)>,
    lanes: [Outbound; OUT_LANES],
    inbound: SelectAll<BoxStream<'static, Result<Message, DecodeError>>>,
    events: VecDeque<HandlerOut>,
    unsupported: bool,
}

impl Handler {
    pub(crate) fn new() -> Self {
        Handler {
            queue: VecDeque::new(),
            lanes: std::array::from_fn(|_| Outbound::Idle(None)),
            inbound: SelectAll::new(),
            events: VecDeque::new(),
            unsupported: false,
        }
    }

    fn lost(&mut self, dropped: usize, unsupported: bool) {
        self.events.push_back(HandlerOut::SendFailed {
            dropped,
            unsupported,
        });
    }
}

fn send(mut stream: Stream, version: Version, msg: Message, retried: bool) -> SendFuture {
    async move {
        let parts = protocol::encode_parts(&msg, version);
        match protocol::write_frame_parts(&mut stream, &parts).await {
            Ok(()) => Ok((stream, version)),
            Err(e) => Err((e, msg, retried)),
        }
    }
    .boxed()
}

/// Decodes a frame, hashing its blocks on a blocking thread when there is much to hash.
async fn decode(body: Bytes) -> Result<Message, DecodeError> {
    if body.len() >= OFFLOAD_BYTES {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let shared = body.clone();
            if let Ok(r) = rt
                .spawn_blocking(move || protocol::decode_shared(&shared))
                .await
            {
                return r;
            }
            // The blocking pool is shutting down: decode here.
        }
    }
    protocol::decode_shared(&body)
}

fn read_messages(stream: Stream) -> BoxStream<'static, Result<Message, DecodeError>> {
    let frames = futures::stream::unfold(Some(stream), |s| async move {
        let mut s = s?;
        match protocol::read_frame(&mut s, MAX_MESSAGE_BYTES).await {
            Ok(Some(body)) => Some((Bytes::from(body), Some(s))),
            // End of stream or a reset: not the peer's fault, just stop reading.
            Ok(None) | Err(_) => None,
        }
    });
    frames
        .map(decode)
        .buffered(DECODE_AHEAD)
        // After a malformed message the stream is abandoned.
        .scan(false, |failed, r| {
            let item = (!*failed).then(|| {
                *failed = r.is_err();
                r
            });
            future::ready(item)
        })
        .boxed()
}

/// What [`Handler::poll_lanes`] did.
enum Lanes {
    /// A lane needs a new stream.
    Open(usize),
    /// Something changed: poll again.
    Progress,
    /// Every lane waits (or nothing is queued).
    Waiting,
}

impl Handler {
    /// Drives the outbound lanes and hands the next queued message to a free one.
    fn poll_lanes(&mut self, cx: &mut Context<'_>) -> Lanes {
        for i in 0..OUT_LANES {
            let Outbound::Busy(fut) = &mut self.lanes[i] else {
                continue;
            };
            match fut.poll_unpin(cx) {
                Poll::Ready(Ok(s)) => {
                    self.lanes[i] = Outbound::Idle(Some(s));
                    return Lanes::Progress;
                }
                Poll::Ready(Err((e, msg, retried))) => {
                    self.lanes[i] = Outbound::Idle(None);
                    tracing::debug!(error = %e, retried, "bitswap write failed");
                    if retried {
                        self.lost(1, false);
                    } else {
                        // Probably a stale stream the remote closed: reopen and retry once.
                        self.queue.push_front((msg, true));
                    }
                    return Lanes::Progress;
                }
                Poll::Pending => {}
            }
        }
        let Some((msg, _)) = self.queue.front() else {
            return Lanes::Waiting;
        };
        // Wantlists keep their order on lane 0; other messages take any free lane, one with an
        // open stream first.
        let lane = if msg.wantlist.is_empty() && !msg.full {
            let open = |l: &Outbound| matches!(l, Outbound::Idle(Some(_)));
            let free = |l: &Outbound| matches!(l, Outbound::Idle(_));
            (0..OUT_LANES)
                .find(|&i| open(&self.lanes[i]))
                .or_else(|| (0..OUT_LANES).find(|&i| free(&self.lanes[i])))
        } else {
            matches!(self.lanes[0], Outbound::Idle(_)).then_some(0)
        };
        let Some(lane) = lane else {
            return Lanes::Waiting;
        };
        let (Some((msg, retried)), Outbound::Idle(slot)) =
            (self.queue.pop_front(), &mut self.lanes[lane])
        else {
            return Lanes::Waiting;
        };
        match slot.take() {
            Some((stream, v)) => {
                self.lanes[lane] = Outbound::Busy(send(stream, v, msg, retried));
                Lanes::Progress
            }
            None => {
                self.queue.push_front((msg, retried));
                self.lanes[lane] = Outbound::Opening;
                Lanes::Open(lane)
            }
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = HandlerIn;
    type ToBehaviour = HandlerOut;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    /// The lane the stream is for.
    type OutboundOpenInfo = usize;

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade, ()> {
        SubstreamProtocol::new(Upgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        !self.queue.is_empty() || self.lanes.iter().any(|l| !matches!(l, Outbound::Idle(_)))
    }

    fn on_behaviour_event(&mut self, ev: HandlerIn) {
        let HandlerIn::Send(msg) = ev;
        if self.unsupported {
            self.lost(1, true);
        } else if self.queue.len() >= MAX_QUEUED_MESSAGES {
            tracing::debug!("bitswap outbound queue full, dropping a message");
            self.lost(1, false);
        } else {
            self.queue.push_back((msg, false));
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol, (), usize>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, _proto),
                ..
            }) => {
                if self.inbound.len() >= MAX_INBOUND_STREAMS {
                    tracing::debug!("too many inbound bitswap streams, dropping one");
                    drop(stream);
                } else {
                    self.inbound.push(read_messages(stream));
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, proto),
                info: lane,
            }) => {
                if let Some(l) = self.lanes.get_mut(lane) {
                    *l = Outbound::Idle(Some((stream, Version::of(&proto))));
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, info: lane }) => {
                if let Some(l) = self.lanes.get_mut(lane) {
                    *l = Outbound::Idle(None);
                }
                let unsupported = matches!(error, StreamUpgradeError::NegotiationFailed);
                if unsupported {
                    self.unsupported = true;
                }
                let n = self.queue.len();
                self.queue.clear();
                tracing::debug!(?error, "bitswap stream could not be opened");
                self.lost(n, unsupported);
            }
            _ => {}
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Upgrade, usize, HandlerOut>> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(ev));
            }
            match self.poll_lanes(cx) {
                Lanes::Open(lane) => {
                    return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                        protocol: SubstreamProtocol::new(Upgrade, lane),
                    })
                }
                Lanes::Progress => continue,
                Lanes::Waiting => {}
            }
            match self.inbound.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(m))) => {
                    return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(
                        HandlerOut::Received(m),
                    ))
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(
                        HandlerOut::Malformed(e),
                    ))
                }
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}
