//! The Bitswap engine: the client's wants and the server's ledgers, without the Swarm or the
//! store. Its methods take one event (a command, a message, a tick) and record what to send in
//! `outbox` and what else to do (search, dial, ban) in [`Actions`], which the event loop carries
//! out after each event. Having no I/O, it is unit-tested on plain structs.
//!
//! - `client`: the wants, routed over the peers; received blocks and presences; deadlines.
//! - `server`: the ledgers of what peers want from us, and the answers to them.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use cairn_store::Cid;
use libp2p::PeerId;

use crate::bitswap::protocol::{
    Message, Presence, WantEntry, WantType, MAX_BLOCK_BYTES, MAX_MESSAGE_BYTES,
    MAX_WANTLIST_ENTRIES,
};
use crate::command::BitswapStats;
use crate::config::NetConfig;

mod client;
mod server;

use client::{Waiter, Want};
pub(super) use server::Answer;

/// Messages are split before their blocks exceed this.
const SOFT_MESSAGE_BYTES: usize = MAX_MESSAGE_BYTES - MAX_BLOCK_BYTES / 2;

#[derive(Default)]
pub(super) struct PeerInfo {
    /// `Some(false)` once we know the peer does not speak Bitswap.
    pub(super) bitswap: Option<bool>,
    /// Want-blocks outstanding at this peer.
    pub(super) outstanding: usize,
    /// Blocks this peer delivered to us.
    pub(super) delivered: u64,
    /// HAVEs this peer sent us.
    pub(super) haves: u64,
    /// Its wants we have not answered yet.
    pub(super) ledger: HashMap<Cid, WantType>,
}

/// Side effects the engine asks the loop to carry out.
#[derive(Default)]
pub(super) struct Actions {
    pub(super) search: Vec<Cid>,
    pub(super) ban: Vec<PeerId>,
    pub(super) dial: Vec<PeerId>,
}

/// The Bitswap client and server state, without the Swarm.
pub(super) struct Engine {
    local: PeerId,
    pub(super) cfg: NetConfig,
    pub(super) peers: HashMap<PeerId, PeerInfo>,
    pub(super) wants: HashMap<Cid, Want>,
    /// Verified blocks being written to the store, with their waiting readers.
    pub(super) storing: HashMap<Cid, Vec<Waiter>>,
    /// CIDs wanted recently, and whether their block arrived (`false`: the want was
    /// cancelled or expired first).
    recent: HashMap<Cid, bool>,
    recent_order: VecDeque<Cid>,
    pub(super) outbox: HashMap<PeerId, Vec<Message>>,
    pub(super) banned: HashMap<PeerId, Instant>,
    pub(super) stats: BitswapStats,
    pub(super) actions: Actions,
}

fn want_entry(cid: Cid, want_type: WantType, cancel: bool) -> WantEntry {
    WantEntry {
        cid,
        priority: 1,
        cancel,
        want_type,
        send_dont_have: !cancel,
    }
}

impl Engine {
    pub(super) fn new(local: PeerId, cfg: NetConfig) -> Self {
        Engine {
            local,
            cfg,
            peers: HashMap::new(),
            wants: HashMap::new(),
            storing: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            outbox: HashMap::new(),
            banned: HashMap::new(),
            stats: BitswapStats::default(),
            actions: Actions::default(),
        }
    }

    // ----- outbox -----

    fn last_message(&mut self, peer: PeerId, fits: impl Fn(&Message) -> bool) -> &mut Message {
        let msgs = self.outbox.entry(peer).or_default();
        if msgs.last().is_none_or(|m| !fits(m)) {
            msgs.push(Message::default());
        }
        let n = msgs.len() - 1;
        &mut msgs[n]
    }

    fn send_want(&mut self, peer: PeerId, entry: WantEntry) {
        self.last_message(peer, |m| m.wantlist.len() < MAX_WANTLIST_ENTRIES)
            .wantlist
            .push(entry);
    }

    fn send_block(&mut self, peer: PeerId, cid: Cid, data: Bytes) {
        let len = data.len();
        self.last_message(peer, |m| {
            m.blocks.is_empty() || m.block_bytes() + len + 64 <= SOFT_MESSAGE_BYTES
        })
        .blocks
        .push((cid, data));
    }

    fn send_presence(&mut self, peer: PeerId, cid: Cid, p: Presence) {
        self.last_message(peer, |m| m.presences.len() < 4096)
            .presences
            .push((cid, p));
    }
}

/// Helpers the tests of `client` and `server` share.
#[cfg(test)]
mod testing {
    use bytes::Bytes;
    use cairn_store::{Block as StoreBlock, Cid, HashAlg, RAW};
    use libp2p::PeerId;

    use super::Engine;
    use crate::config::NetConfig;

    pub(super) fn block(n: u8) -> (Cid, Bytes) {
        StoreBlock::encode(1, RAW, HashAlg::Sha2_256, Bytes::from(vec![n; 100])).into_parts()
    }

    pub(super) fn engine_with_peers(n: usize) -> (Engine, Vec<PeerId>) {
        let mut e = Engine::new(PeerId::random(), NetConfig::local());
        let peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        for p in &peers {
            e.on_peer_connected(*p);
        }
        (e, peers)
    }
}
