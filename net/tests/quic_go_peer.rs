//! Bitswap over QUIC with a peer that uses streams the way go-libp2p (Kubo) does.
//!
//! go-libp2p sends every Bitswap message on a new stream, proposes `/ipfs/bitswap/1.2.0` lazily
//! (multistream header, protocol line and message in one write, without waiting for the
//! answer), finishes its send side and closes its receive side at once. Over QUIC the close
//! reaches cairn as STOP_SENDING, before cairn has written its multistream-select confirmation.
//!
//! The peer here is built from the bare `libp2p::quic` transport and its `StreamMuxer`, with
//! multistream-select written by hand, so exactly those bytes and frames go on the wire:
//! `write_all(header ‖ proposal ‖ message)`, `close()` (FIN), then the stream is dropped unread
//! (quinn sends STOP_SENDING). It answers cairn's own streams as a multistream listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use cairn_net::bitswap::protocol::{self, Version, MAX_MESSAGE_BYTES};
use cairn_net::bitswap::{Message, WantEntry, WantType};
use cairn_net::{Multiaddr, PeerId};
use cairn_store::{Block, Blockstore};
use common::*;
use futures::future::poll_fn;
use futures::stream::FuturesUnordered;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::core::muxing::StreamMuxer;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportEvent};
use libp2p::core::{Endpoint, Transport};
use libp2p::quic;
use tokio::sync::mpsc;

const MSS: &[u8] = b"/multistream/1.0.0\n";
const BITSWAP: &[u8] = b"/ipfs/bitswap/1.2.0\n";
/// Long enough for a loaded machine; the fetch fails on its own deadline, never on wall time.
const DEADLINE: Duration = Duration::from_secs(20);

fn uvarint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// One multistream-select message: uvarint length, then the line.
fn mss_line(line: &[u8], out: &mut Vec<u8>) {
    uvarint(line.len() as u64, out);
    out.extend_from_slice(line);
}

/// What go-libp2p writes on a new Bitswap stream: header, proposal and the message at once.
fn go_style_bytes(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    mss_line(MSS, &mut out);
    mss_line(BITSWAP, &mut out);
    let body = protocol::encode(msg, Version::V120);
    uvarint(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out
}

async fn read_mss_line<S: futures::AsyncRead + Unpin>(s: &mut S) -> Option<Vec<u8>> {
    protocol::read_frame(s, 1024).await.ok().flatten()
}

/// Answers a stream cairn opened as a multistream-select listener that only speaks Bitswap
/// 1.2.0, then forwards every message read from it.
async fn serve_inbound(mut s: quic::Stream, inbox: mpsc::UnboundedSender<Message>) {
    if read_mss_line(&mut s).await.as_deref() != Some(MSS) {
        return;
    }
    let mut out = Vec::new();
    mss_line(MSS, &mut out);
    if s.write_all(&out).await.is_err() {
        return;
    }
    loop {
        let Some(proposal) = read_mss_line(&mut s).await else {
            return;
        };
        let mut out = Vec::new();
        let yes = proposal == BITSWAP;
        mss_line(if yes { BITSWAP } else { b"na\n" }, &mut out);
        if s.write_all(&out).await.is_err() {
            return;
        }
        if yes {
            break;
        }
    }
    while let Ok(Some(body)) = protocol::read_frame(&mut s, MAX_MESSAGE_BYTES).await {
        let msg = protocol::decode(&body).expect("cairn sends valid Bitswap messages");
        if inbox.send(msg).is_err() {
            return;
        }
    }
}

/// Sends `msg` as go-libp2p does and drops the stream without reading it.
async fn send_go_style(mut s: quic::Stream, msg: Message) {
    s.write_all(&go_style_bytes(&msg)).await.unwrap();
    // quinn's close only queues the FIN; dropping the unread receive side queues STOP_SENDING.
    s.close().await.unwrap();
    drop(s);
}

/// A connected go-style peer: messages given to `outbox` go out one stream each; messages
/// cairn sends arrive on `inbox`.
struct GoPeer {
    outbox: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Message>,
    /// Keeps the transport (and its UDP socket) alive.
    _task: tokio::task::JoinHandle<()>,
}

impl GoPeer {
    /// Runs the peer's side of `conn`; `transport` is kept alive as long as the connection.
    fn drive(transport: impl Send + 'static, mut conn: quic::Connection) -> GoPeer {
        let (outbox, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (in_tx, inbox) = mpsc::unbounded_channel::<Message>();
        let task = tokio::spawn(async move {
            let _transport = transport;
            let mut tasks = FuturesUnordered::new();
            let mut queued: VecDeque<Message> = VecDeque::new();
            enum Ev {
                Inbound(quic::Stream),
                Outbound(quic::Stream),
                Send(Message),
                Progress,
                Closed,
            }
            loop {
                let ev = poll_fn(|cx| {
                    let mut c = Pin::new(&mut conn);
                    if let Poll::Ready(Err(_)) = c.as_mut().poll(cx) {
                        return Poll::Ready(Ev::Closed);
                    }
                    match c.as_mut().poll_inbound(cx) {
                        Poll::Ready(Ok(s)) => return Poll::Ready(Ev::Inbound(s)),
                        Poll::Ready(Err(_)) => return Poll::Ready(Ev::Closed),
                        Poll::Pending => {}
                    }
                    if !queued.is_empty() {
                        match c.as_mut().poll_outbound(cx) {
                            Poll::Ready(Ok(s)) => return Poll::Ready(Ev::Outbound(s)),
                            Poll::Ready(Err(_)) => return Poll::Ready(Ev::Closed),
                            Poll::Pending => {}
                        }
                    }
                    match out_rx.poll_recv(cx) {
                        Poll::Ready(Some(m)) => return Poll::Ready(Ev::Send(m)),
                        Poll::Ready(None) => return Poll::Ready(Ev::Closed),
                        Poll::Pending => {}
                    }
                    if let Poll::Ready(Some(_)) = tasks.poll_next_unpin(cx) {
                        return Poll::Ready(Ev::Progress);
                    }
                    Poll::Pending
                })
                .await;
                match ev {
                    Ev::Inbound(s) => tasks.push(tokio::spawn(serve_inbound(s, in_tx.clone()))),
                    Ev::Outbound(s) => {
                        let msg = queued
                            .pop_front()
                            .expect("a stream is opened for a message");
                        tasks.push(tokio::spawn(send_go_style(s, msg)));
                    }
                    Ev::Send(m) => queued.push_back(m),
                    Ev::Progress => {}
                    Ev::Closed => return,
                }
            }
        });
        GoPeer {
            outbox,
            inbox,
            _task: task,
        }
    }

    /// Waits for cairn to send a message with a want for `cid`.
    async fn want_of(&mut self, cid: &cairn_store::Cid) -> WantEntry {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let m = self
                    .inbox
                    .recv()
                    .await
                    .expect("the peer's connection is open");
                if let Some(w) = m.wantlist.into_iter().find(|w| w.cid == *cid && !w.cancel) {
                    return w;
                }
            }
        })
        .await
        .expect("cairn asked the peer for the block")
    }

    /// Waits for cairn to send a message carrying a block.
    async fn block(&mut self) -> (cairn_store::Cid, bytes::Bytes) {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let m = self
                    .inbox
                    .recv()
                    .await
                    .expect("the peer's connection is open");
                if let Some(b) = m.blocks.into_iter().next() {
                    return b;
                }
            }
        })
        .await
        .expect("cairn sent the block to the peer")
    }
}

fn transport() -> (quic::tokio::Transport, PeerId) {
    let key = libp2p::identity::Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    (quic::tokio::Transport::new(quic::Config::new(&key)), id)
}

async fn quic_node(store: std::sync::Arc<cairn_net::MemoryStore>) -> (cairn_net::Node, Multiaddr) {
    let cfg = cairn_net::NetConfig {
        listen_addrs: vec!["/ip4/127.0.0.1/udp/0/quic-v1".into()],
        ..test_config()
    };
    let node = start(store, cfg).await;
    let addr = node.listen_addrs().await.unwrap().remove(0);
    assert!(addr.to_string().contains("/quic-v1"), "{addr}");
    (node, addr)
}

/// The go-style peer dials cairn.
async fn peer_dials(cairn: &Multiaddr) -> GoPeer {
    let (mut t, _) = transport();
    let dial = t
        .dial(
            cairn.clone(),
            DialOpts {
                role: Endpoint::Dialer,
                port_use: PortUse::New,
            },
        )
        .unwrap();
    let (_, conn) = tokio::time::timeout(DEADLINE, dial)
        .await
        .expect("QUIC handshake")
        .unwrap();
    GoPeer::drive(t, conn)
}

/// cairn dials the go-style peer.
async fn cairn_dials(node: &cairn_net::Node) -> GoPeer {
    let (mut t, id) = transport();
    t.listen_on(
        ListenerId::next(),
        "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
    )
    .unwrap();
    let mut t = Box::pin(t);
    let addr = match poll_fn(|cx| t.as_mut().poll(cx)).await {
        TransportEvent::NewAddress { listen_addr, .. } => listen_addr,
        other => panic!("unexpected transport event {other:?}"),
    };
    let target = format!("{addr}/p2p/{id}");
    let connect = node.connect(&target);
    let accept = async {
        loop {
            if let TransportEvent::Incoming { upgrade, .. } =
                poll_fn(|cx| t.as_mut().poll(cx)).await
            {
                return upgrade.await.unwrap().1;
            }
        }
    };
    let (connected, conn) = tokio::time::timeout(DEADLINE, futures::future::join(connect, accept))
        .await
        .expect("cairn connects over QUIC");
    assert_eq!(connected.unwrap(), id);
    GoPeer::drive(t, conn)
}

/// The peer serves a block cairn wants: the reply arrives on a lazily negotiated stream the
/// peer stops reading at once.
async fn cairn_fetches(node: cairn_net::Node, mut peer: GoPeer) {
    let blk: Block = raw_block(41, 5000);
    let cid = *blk.cid();
    let fetch = tokio::spawn({
        let node = node.clone();
        async move { node.fetch_with_timeout(cid, DEADLINE).await }
    });
    peer.want_of(&cid).await;
    let reply = Message {
        blocks: vec![(cid, blk.data().clone())],
        ..Message::default()
    };
    peer.outbox.send(reply).unwrap();
    let got = fetch
        .await
        .unwrap()
        .expect("cairn reads the block from a stream its sender stopped reading");
    assert_eq!(&got, blk.data());
    let s = node.bitswap_stats().await.unwrap();
    assert_eq!(s.blocks_received, 1);
    assert_eq!(s.rejected_blocks, 0);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_fetches_from_go_style_peer_that_dialed_over_quic() {
    let (node, addr) = quic_node(std::sync::Arc::new(cairn_net::MemoryStore::new())).await;
    let peer = peer_dials(&addr).await;
    cairn_fetches(node, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_fetches_from_go_style_peer_it_dialed_over_quic() {
    let (node, _) = quic_node(std::sync::Arc::new(cairn_net::MemoryStore::new())).await;
    let peer = cairn_dials(&node).await;
    cairn_fetches(node, peer).await;
}

/// The peer's want arrives on a stream it stops reading at once; cairn still serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_serves_a_want_from_go_style_peer_over_quic() {
    let store = std::sync::Arc::new(cairn_net::MemoryStore::new());
    let blk: Block = raw_block(42, 3000);
    store.put(&blk).unwrap();
    let (node, addr) = quic_node(store).await;
    let mut peer = peer_dials(&addr).await;
    let want = Message {
        wantlist: vec![WantEntry {
            cid: *blk.cid(),
            priority: 1,
            cancel: false,
            want_type: WantType::Block,
            send_dont_have: true,
        }],
        ..Message::default()
    };
    peer.outbox.send(want).unwrap();
    let (cid, data) = peer.block().await;
    assert_eq!(cid, *blk.cid());
    assert_eq!(&data, blk.data());
    node.shutdown().await.unwrap();
}

/// Control: two cairn nodes still trade a multi-block DAG over QUIC in both directions (their
/// own streams are long-lived and never stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cairn_nodes_trade_a_dag_over_quic() {
    let a_store = std::sync::Arc::new(cairn_net::MemoryStore::new());
    let b_store = std::sync::Arc::new(cairn_net::MemoryStore::new());
    let (a, a_addr) = quic_node(a_store.clone()).await;
    let (b, _) = quic_node(b_store.clone()).await;
    let (root_a, blocks_a) = dag(43, 24, 200_000);
    let (root_b, blocks_b) = dag(44, 24, 200_000);
    a_store.put_many(&blocks_a).unwrap();
    b_store.put_many(&blocks_b).unwrap();
    b.connect(&a_addr.to_string()).await.unwrap();
    let from_a = cairn_net::fetch_dag(&cairn_net::NetSource::new(b.clone()), root_a, 16, |_| {})
        .await
        .unwrap();
    let from_b = cairn_net::fetch_dag(&cairn_net::NetSource::new(a.clone()), root_b, 16, |_| {})
        .await
        .unwrap();
    assert_eq!((from_a.blocks, from_b.blocks), (25, 25));
    for blk in &blocks_a {
        assert_eq!(b_store.get(blk.cid()).unwrap().as_ref(), Some(blk.data()));
    }
    for blk in &blocks_b {
        assert_eq!(a_store.get(blk.cid()).unwrap().as_ref(), Some(blk.data()));
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
