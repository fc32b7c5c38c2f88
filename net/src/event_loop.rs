//! The one task that owns the Swarm.
//!
//! It `select!`s over swarm events, commands from [`crate::Node`] handles, a 200 ms tick (deadlines,
//! retries, ban expiry), the periodic reprovide, and two bounded `JoinSet`s: store reads that
//! serve peers, and store writes of received blocks. It never awaits long work itself.
//!
//! The Bitswap client and server policy lives in [`Engine`], which has no Swarm: it records what
//! to send in an outbox and what else to do (search, dial, ban) in [`Actions`], which the loop
//! carries out after each event.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_store::{Block, Blockstore, Cid};
use futures::StreamExt;
use libp2p::kad::store::RecordStore;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{identify, identity, kad, mdns, ping, Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::addr::p2p_id;
use crate::bitswap::protocol::{
    Message, Presence, WantEntry, WantType, MAX_BLOCK_BYTES, MAX_MESSAGE_BYTES,
    MAX_WANTLIST_ENTRIES,
};
use crate::bitswap::{self};
use crate::command::{
    BitswapStats, Command, Direction, Fetched, PeerInfo as PeerView, ProvideReport, ProviderSearch,
    Reply,
};
use crate::config::NetConfig;
use crate::error::NetError;
use crate::swarm::{self as swarm_build, NodeBehaviour, NodeBehaviourEvent};

/// How often deadlines and retries are checked.
const TICK: Duration = Duration::from_millis(200);
/// A fetch that found nothing asks the DHT again this often.
const RESEARCH_INTERVAL: Duration = Duration::from_secs(5);
/// Serve jobs (one per incoming wantlist) waiting for a store-reading task.
const MAX_SERVE_QUEUE: usize = 1024;
/// Blocks remembered after their want was satisfied, so late duplicates are not taken for forgeries.
const RECENT_BLOCKS: usize = 16_384;
/// Commands handled in one turn of the loop before its outgoing messages are flushed.
const COMMAND_BATCH: usize = 64;
/// Store writes of received blocks running at once; blocks arriving meanwhile wait and are
/// written together by the next one.
const MAX_STORE_TASKS: usize = 2;
/// Blocks (and bytes) written by one store task at most.
const STORE_BATCH_BLOCKS: usize = 256;
/// Most bytes of received blocks written to the store in one batch.
pub const STORE_BATCH_BYTES: usize = 32 << 20;
/// Messages are split before their blocks exceed this.
const SOFT_MESSAGE_BYTES: usize = MAX_MESSAGE_BYTES - MAX_BLOCK_BYTES / 2;

fn provider_key(cid: &Cid) -> kad::RecordKey {
    kad::RecordKey::new(&cid.hash().to_bytes())
}

struct Waiter {
    reply: Reply<Fetched>,
    deadline: Instant,
    secs: u64,
}

/// One CID wanted from the network, however many readers wait for it.
struct Want {
    waiters: Vec<Waiter>,
    /// Peers sent a want-have or want-block for it.
    asked: HashSet<PeerId>,
    /// Peers that said HAVE, not yet asked for the block.
    haves: VecDeque<PeerId>,
    dont_have: HashSet<PeerId>,
    /// Peers whose want-block went unanswered too long (counted with `dont_have` for routing,
    /// but not as a "no": the block may still come).
    stalled: HashSet<PeerId>,
    /// Peers the DHT named as providers.
    providers: HashSet<PeerId>,
    /// The peer asked for the block, and since when.
    block_from: Option<(PeerId, Instant)>,
    created: Instant,
    search: Option<kad::QueryId>,
    last_search: Option<Instant>,
}

impl Want {
    fn new(now: Instant) -> Self {
        Want {
            waiters: Vec::new(),
            asked: HashSet::new(),
            haves: VecDeque::new(),
            dont_have: HashSet::new(),
            stalled: HashSet::new(),
            providers: HashSet::new(),
            block_from: None,
            created: now,
            search: None,
            last_search: None,
        }
    }
}

#[derive(Default)]
struct PeerInfo {
    /// `Some(false)` once we know the peer does not speak Bitswap.
    bitswap: Option<bool>,
    /// Want-blocks outstanding at this peer.
    outstanding: usize,
    /// Blocks this peer delivered to us.
    delivered: u64,
    /// HAVEs this peer sent us.
    haves: u64,
    /// Its wants we have not answered yet.
    ledger: HashMap<Cid, WantType>,
}

/// What a serve task found for one want entry.
enum Answer {
    Block(Bytes),
    Have,
    DontHave,
    Nothing,
}

/// Side effects the engine asks the loop to carry out.
#[derive(Default)]
struct Actions {
    search: Vec<Cid>,
    ban: Vec<PeerId>,
    dial: Vec<PeerId>,
}

/// The Bitswap client and server state, without the Swarm.
struct Engine {
    local: PeerId,
    cfg: NetConfig,
    peers: HashMap<PeerId, PeerInfo>,
    wants: HashMap<Cid, Want>,
    /// Verified blocks being written to the store, with their waiting readers.
    storing: HashMap<Cid, Vec<Waiter>>,
    /// CIDs wanted recently, and whether their block arrived (`false`: the want was
    /// cancelled or expired first).
    recent: HashMap<Cid, bool>,
    recent_order: VecDeque<Cid>,
    outbox: HashMap<PeerId, Vec<Message>>,
    banned: HashMap<PeerId, Instant>,
    stats: BitswapStats,
    actions: Actions,
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
    fn new(local: PeerId, cfg: NetConfig) -> Self {
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

    // ----- client: wants -----

    fn fetch(&mut self, cid: Cid, timeout: Duration, may_be_stored: bool, reply: Reply<Fetched>) {
        if may_be_stored
            && self.recent.get(&cid) == Some(&true)
            && !self.wants.contains_key(&cid)
            && !self.storing.contains_key(&cid)
        {
            // Received and stored since the caller looked in the store.
            let _ = reply.send(Ok(Fetched::Stored));
            return;
        }
        let waiter = Waiter {
            reply,
            deadline: far_deadline(timeout),
            secs: timeout.as_secs(),
        };
        if let Some(ws) = self.storing.get_mut(&cid) {
            ws.push(waiter);
            return;
        }
        if let Some(w) = self.wants.get_mut(&cid) {
            w.waiters.push(waiter);
            return;
        }
        if self.wants.len() >= self.cfg.limits.max_wants {
            let _ = waiter.reply.send(Err(NetError::Busy {
                limit: self.cfg.limits.max_wants,
            }));
            return;
        }
        let mut w = Want::new(Instant::now());
        w.waiters.push(waiter);
        self.wants.insert(cid, w);
        self.dispatch(cid);
    }

    /// Moves a want forward: ask a HAVE peer for the block, or ask peers not asked yet
    /// (want-block to the most promising one, want-have to the rest), or search the DHT.
    fn dispatch(&mut self, cid: Cid) {
        let now = Instant::now();
        let cap = self.cfg.limits.max_block_requests_per_peer;
        let Some(w) = self.wants.get_mut(&cid) else {
            return;
        };
        if w.block_from.is_some() {
            return;
        }
        while let Some(p) = w.haves.pop_front() {
            let Some(info) = self.peers.get_mut(&p) else {
                continue;
            };
            if self.banned.contains_key(&p) {
                continue;
            }
            info.outstanding += 1;
            w.block_from = Some((p, now));
            self.send_want(p, want_entry(cid, WantType::Block, false));
            return;
        }
        let candidates: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(p, i)| {
                i.bitswap != Some(false) && !w.asked.contains(p) && !self.banned.contains_key(p)
            })
            .map(|(p, _)| *p)
            .collect();
        if candidates.is_empty() {
            let exhausted = w
                .asked
                .iter()
                .all(|p| w.dont_have.contains(p) || !self.peers.contains_key(p));
            if exhausted && w.search.is_none() {
                self.actions.search.push(cid);
            }
            return;
        }
        let best = candidates
            .iter()
            .filter(|p| {
                let i = &self.peers[*p];
                (w.providers.contains(*p) || i.delivered > 0 || i.haves > 0) && i.outstanding < cap
            })
            .min_by_key(|p| (self.peers[*p].outstanding, !w.providers.contains(*p)))
            .copied();
        for p in &candidates {
            w.asked.insert(*p);
        }
        if let Some(b) = best {
            w.block_from = Some((b, now));
            if let Some(i) = self.peers.get_mut(&b) {
                i.outstanding += 1;
            }
        }
        for p in candidates {
            let t = if Some(p) == best {
                WantType::Block
            } else {
                WantType::Have
            };
            self.send_want(p, want_entry(cid, t, false));
        }
    }

    /// Whether nobody is left to ask for `cid`: no block request out, no HAVE waiting, and
    /// every connected Bitswap peer asked (and said DONT_HAVE, or left).
    fn exhausted(&self, cid: &Cid) -> bool {
        let Some(w) = self.wants.get(cid) else {
            return false;
        };
        w.block_from.is_none()
            && w.haves.is_empty()
            && self.peers.iter().all(|(p, i)| {
                i.bitswap == Some(false)
                    || self.banned.contains_key(p)
                    || (w.asked.contains(p) && w.dont_have.contains(p) && !w.stalled.contains(p))
            })
    }

    /// A DHT search for `cid` ran to completion after `peers_queried` peers (at least one of
    /// which answered) without finding a provider: if nobody else is left to ask, the readers
    /// are told so now rather than after their deadline. (A query that no peer answered, e.g.
    /// while the node knows no DHT peer yet, is no answer: the want waits and searches again.)
    fn on_search_empty(&mut self, cid: Cid, peers_queried: u32) {
        if peers_queried == 0 || !self.exhausted(&cid) {
            return;
        }
        if let Some(w) = self.retire(cid, None) {
            for x in w.waiters {
                let _ = x
                    .reply
                    .send(Err(NetError::NoProviders { cid, peers_queried }));
            }
        }
    }

    /// Forgets the want-block at `peer` (it failed, left, or said DONT_HAVE).
    fn release(&mut self, cid: &Cid, peer: &PeerId) -> bool {
        let Some(w) = self.wants.get_mut(cid) else {
            return false;
        };
        if w.block_from.is_some_and(|(p, _)| p == *peer) {
            w.block_from = None;
            if let Some(i) = self.peers.get_mut(peer) {
                i.outstanding = i.outstanding.saturating_sub(1);
            }
            return true;
        }
        false
    }

    fn remember(&mut self, cid: Cid, delivered: bool) {
        let known = self.recent.get(&cid).copied();
        self.recent.insert(cid, delivered || known == Some(true));
        if known.is_none() {
            self.recent_order.push_back(cid);
            if self.recent_order.len() > RECENT_BLOCKS {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    /// Drops a want: cancels it at every peer asked. The CID stays "recent", so a block already
    /// on its way when the cancel left is taken as a late block, not a forgery.
    fn retire(&mut self, cid: Cid, except: Option<PeerId>) -> Option<Want> {
        let w = self.wants.remove(&cid)?;
        self.remember(cid, false);
        if let Some((p, _)) = w.block_from {
            if let Some(i) = self.peers.get_mut(&p) {
                i.outstanding = i.outstanding.saturating_sub(1);
            }
        }
        for p in &w.asked {
            if Some(*p) != except && self.peers.contains_key(p) {
                self.send_want(*p, want_entry(cid, WantType::Block, true));
            }
        }
        Some(w)
    }

    /// Blocks from `peer`: all must be wanted (or recently wanted); one forgery discards the
    /// message and bans the peer. Returns the fresh blocks to store.
    fn on_blocks(&mut self, peer: PeerId, blocks: Vec<(Cid, Bytes)>) -> Vec<(Cid, Bytes)> {
        let bad = blocks
            .iter()
            .filter(|(c, _)| {
                !(self.wants.contains_key(c)
                    || self.storing.contains_key(c)
                    || self.recent.contains_key(c))
            })
            .count();
        if bad > 0 {
            tracing::warn!(%peer, bad, "peer sent blocks matching no want (wrong bytes?), banning it");
            self.stats.rejected_blocks += bad as u64;
            self.actions.ban.push(peer);
            return Vec::new();
        }
        let mut fresh = Vec::new();
        for (cid, data) in blocks {
            if let Some(w) = self.retire(cid, Some(peer)) {
                self.stats.blocks_received += 1;
                self.stats.bytes_received += data.len() as u64;
                if let Some(i) = self.peers.get_mut(&peer) {
                    i.delivered += 1;
                    i.bitswap = Some(true);
                }
                self.remember(cid, true);
                self.storing.insert(cid, w.waiters);
                fresh.push((cid, data));
            } else if self.recent.get(&cid) == Some(&false) && !self.storing.contains_key(&cid) {
                // Wanted a moment ago and cancelled before it came (the reader left): the first
                // copy is no duplicate. It is kept, as any received block is.
                self.stats.blocks_received += 1;
                self.stats.bytes_received += data.len() as u64;
                self.remember(cid, true);
                self.storing.insert(cid, Vec::new());
                fresh.push((cid, data));
            } else {
                // Received before (or being stored now): the same block a second time.
                self.stats.dup_blocks += 1;
                self.stats.dup_bytes += data.len() as u64;
            }
        }
        fresh
    }

    fn on_presence(&mut self, peer: PeerId, cid: Cid, p: Presence) {
        let Some(w) = self.wants.get_mut(&cid) else {
            return;
        };
        match p {
            Presence::Have => {
                if let Some(i) = self.peers.get_mut(&peer) {
                    i.haves += 1;
                }
                if w.block_from.is_none_or(|(b, _)| b != peer) && !w.haves.contains(&peer) {
                    w.haves.push_back(peer);
                }
            }
            Presence::DontHave => {
                w.dont_have.insert(peer);
                w.stalled.remove(&peer);
                w.haves.retain(|h| *h != peer);
                self.release(&cid, &peer);
            }
        }
        self.dispatch(cid);
    }

    fn on_peer_connected(&mut self, peer: PeerId) {
        self.peers.entry(peer).or_default();
        let cids: Vec<Cid> = self.wants.keys().copied().collect();
        for cid in cids {
            self.dispatch(cid);
        }
    }

    /// The peer left, was banned, or turned out not to speak Bitswap: re-route its wants.
    fn on_peer_gone(&mut self, peer: PeerId, disconnected: bool) {
        if disconnected {
            self.peers.remove(&peer);
            self.outbox.remove(&peer);
        }
        let cids: Vec<Cid> = self.wants.keys().copied().collect();
        for cid in cids {
            self.release(&cid, &peer);
            if let Some(w) = self.wants.get_mut(&cid) {
                w.haves.retain(|h| *h != peer);
                if w.asked.contains(&peer) {
                    w.dont_have.insert(peer);
                }
            }
            self.dispatch(cid);
        }
    }

    fn on_providers(&mut self, cid: Cid, providers: impl IntoIterator<Item = PeerId>) {
        let local = self.local;
        let mut connected = false;
        let mut to_dial = Vec::new();
        {
            let Some(w) = self.wants.get_mut(&cid) else {
                return;
            };
            for p in providers {
                if p == local || self.banned.contains_key(&p) {
                    continue;
                }
                w.providers.insert(p);
                if self.peers.contains_key(&p) {
                    // Known peer, perhaps asked before it had the block: ask again.
                    w.asked.remove(&p);
                    w.dont_have.remove(&p);
                    w.stalled.remove(&p);
                    connected = true;
                } else {
                    to_dial.push(p);
                }
            }
        }
        self.actions.dial.extend(to_dial);
        if connected {
            self.dispatch(cid);
        }
    }

    // ----- server: ledgers -----

    /// Records a peer's wantlist; returns the entries to look up in the store.
    fn on_wantlist(&mut self, peer: PeerId, full: bool, entries: Vec<WantEntry>) -> Vec<WantEntry> {
        let max = self.cfg.limits.max_ledger_entries;
        let info = self.peers.entry(peer).or_default();
        info.bitswap = Some(true);
        if full {
            info.ledger.clear();
        }
        let mut job = Vec::new();
        for e in entries {
            if e.cancel {
                info.ledger.remove(&e.cid);
                continue;
            }
            match info.ledger.get(&e.cid) {
                // A want-block for a CID whose want-have is still being looked up: the block
                // is what is wanted now (the HAVE answer, when it comes, is dropped).
                Some(WantType::Have) if e.want_type == WantType::Block => {
                    info.ledger.insert(e.cid, WantType::Block);
                    job.push(e);
                }
                Some(_) => {}
                None if info.ledger.len() < max => {
                    info.ledger.insert(e.cid, e.want_type);
                    job.push(e);
                }
                None => {}
            }
        }
        job
    }

    fn on_answers(&mut self, peer: PeerId, answers: Vec<(WantEntry, Answer)>) {
        for (e, a) in answers {
            let still_wanted = self.peers.get_mut(&peer).is_some_and(|i| {
                // Answer only what is still wanted, and as it is wanted now.
                let now = i.ledger.get(&e.cid) == Some(&e.want_type);
                if now {
                    i.ledger.remove(&e.cid);
                }
                now
            });
            if !still_wanted {
                continue;
            }
            match a {
                Answer::Block(b) => self.send_block(peer, e.cid, b),
                Answer::Have => self.send_presence(peer, e.cid, Presence::Have),
                Answer::DontHave => self.send_presence(peer, e.cid, Presence::DontHave),
                Answer::Nothing => {}
            }
        }
    }

    // ----- time -----

    fn tick(&mut self, now: Instant, searches_free: usize) {
        let mut dead = Vec::new();
        let mut stalled = Vec::new();
        let mut to_search = Vec::new();
        for (cid, w) in self.wants.iter_mut() {
            let (expired, keep): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut w.waiters)
                .into_iter()
                .filter(|x| !x.reply.is_closed())
                .partition(|x| x.deadline <= now);
            w.waiters = keep;
            for x in expired {
                let _ = x.reply.send(Err(NetError::FetchTimeout {
                    cid: *cid,
                    secs: x.secs,
                }));
            }
            if w.waiters.is_empty() {
                dead.push(*cid);
                continue;
            }
            if let Some((p, t)) = w.block_from {
                if now.duration_since(t) >= self.cfg.block_request_timeout {
                    stalled.push((*cid, p));
                }
            }
            let due = now.duration_since(w.created) >= self.cfg.provider_search_delay
                && w.last_search
                    .is_none_or(|t| now.duration_since(t) >= RESEARCH_INTERVAL);
            if w.search.is_none() && due {
                to_search.push(*cid);
            }
        }
        for cid in dead {
            self.retire(cid, None);
        }
        for (cid, p) in stalled {
            tracing::debug!(%cid, %p, "want-block unanswered, asking elsewhere");
            self.release(&cid, &p);
            if let Some(w) = self.wants.get_mut(&cid) {
                w.dont_have.insert(p);
                w.stalled.insert(p);
            }
            self.dispatch(cid);
        }
        // Closed waiters of blocks being stored just drop their reply.
        for ws in self.storing.values_mut() {
            ws.retain(|x| !x.reply.is_closed());
        }
        to_search.truncate(searches_free);
        self.actions.search.extend(to_search);
    }
}

/// One open connection, for `swarm peers`.
struct Conn {
    id: ConnectionId,
    address: Multiaddr,
    direction: Direction,
    rtt: Option<Duration>,
}

/// A `disconnect` waiting for the peer's last connection to close.
struct PendingDisconnect {
    peer: PeerId,
    reply: Reply<PeerId>,
    deadline: Instant,
}

/// How long a `disconnect` waits for the connections to close before it answers anyway.
const DISCONNECT_WAIT: Duration = Duration::from_secs(5);

struct PendingDial {
    addr: String,
    reply: Reply<PeerId>,
    deadline: Instant,
}

/// A DHT provider lookup, for a caller of `find_providers` and/or a fetch.
struct Find {
    cid: Cid,
    /// Started by a fetch (counts against `max_provider_searches`).
    for_fetch: bool,
    reply: Option<Reply<ProviderSearch>>,
    found: Vec<PeerId>,
    deadline: Option<Instant>,
    /// Peers the query has sent requests to so far.
    peers_queried: u32,
    /// Peers that answered them.
    peers_answered: u32,
    /// Ended by a deadline rather than run to completion.
    timed_out: bool,
}

struct ProvideJob {
    reply: Option<Reply<ProvideReport>>,
    pending: usize,
    report: ProvideReport,
}

/// Owns the Swarm and all network state.
pub(crate) struct EventLoop {
    swarm: Swarm<NodeBehaviour>,
    engine: Engine,
    store: Arc<dyn Blockstore>,
    commands: mpsc::Receiver<Command>,
    kad_protocol: StreamProtocol,
    listen_addrs: Vec<Multiaddr>,
    bootstrap_peers: HashSet<PeerId>,
    bootstrapped: bool,
    dials: HashMap<ConnectionId, PendingDial>,
    /// Open connections per peer, oldest first.
    conns: HashMap<PeerId, Vec<Conn>>,
    /// Protocols each connected peer announced (identify).
    protocols: HashMap<PeerId, Vec<String>>,
    /// Listen addresses each connected peer announced (identify).
    listen_of: HashMap<PeerId, Vec<Multiaddr>>,
    disconnects: Vec<PendingDisconnect>,
    finds: HashMap<kad::QueryId, Find>,
    searches: usize,
    provide_jobs: HashMap<u64, ProvideJob>,
    next_job: u64,
    provide_queue: VecDeque<(u64, kad::RecordKey)>,
    provide_queries: HashMap<kad::QueryId, u64>,
    serve_queue: VecDeque<(PeerId, Vec<WantEntry>)>,
    serve_tasks: JoinSet<(PeerId, Vec<(WantEntry, Answer)>)>,
    store_tasks: JoinSet<Vec<(Cid, Bytes)>>,
    /// Verified blocks waiting for a store task (bounded by the wants they answer).
    to_store: VecDeque<(Cid, Bytes)>,
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

impl EventLoop {
    /// Builds the swarm, binds every listen address (waiting until each reports one), and dials
    /// the bootstrap peers.
    pub(crate) async fn new(
        cfg: NetConfig,
        key: identity::Keypair,
        store: Arc<dyn Blockstore>,
        commands: mpsc::Receiver<Command>,
    ) -> Result<Self, NetError> {
        let local = key.public().to_peer_id();
        let mut swarm = swarm_build::build(&cfg, key)?;
        let kad_protocol =
            StreamProtocol::try_from_owned(cfg.kad_protocol.clone()).map_err(|_| {
                NetError::BadKadProtocol {
                    name: cfg.kad_protocol.clone(),
                }
            })?;

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

        Ok(EventLoop {
            swarm,
            engine: Engine::new(local, cfg),
            store,
            commands,
            kad_protocol,
            listen_addrs,
            bootstrap_peers,
            bootstrapped: false,
            dials: HashMap::new(),
            conns: HashMap::new(),
            protocols: HashMap::new(),
            listen_of: HashMap::new(),
            disconnects: Vec::new(),
            finds: HashMap::new(),
            searches: 0,
            provide_jobs: HashMap::new(),
            next_job: 0,
            provide_queue: VecDeque::new(),
            provide_queries: HashMap::new(),
            serve_queue: VecDeque::new(),
            serve_tasks: JoinSet::new(),
            store_tasks: JoinSet::new(),
            to_store: VecDeque::new(),
        })
    }

    /// Runs until shut down or every handle is dropped.
    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reprovide_every = self
            .engine
            .cfg
            .reprovide_interval
            .unwrap_or(Duration::from_secs(365 * 24 * 3600));
        let mut reprovide = tokio::time::interval_at(
            tokio::time::Instant::now() + reprovide_every,
            reprovide_every,
        );
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(Ok(()));
                        break;
                    }
                    Some(cmd) => {
                        self.on_command(cmd);
                        // Take what else is queued, so that wants issued together leave
                        // together, in one message per peer.
                        let mut shutdown = None;
                        for _ in 1..COMMAND_BATCH {
                            match self.commands.try_recv() {
                                Ok(Command::Shutdown { reply }) => {
                                    shutdown = Some(reply);
                                    break;
                                }
                                Ok(cmd) => self.on_command(cmd),
                                Err(_) => break,
                            }
                        }
                        if let Some(reply) = shutdown {
                            let _ = reply.send(Ok(()));
                            break;
                        }
                    }
                    None => break,
                },
                Some(done) = self.serve_tasks.join_next(), if !self.serve_tasks.is_empty() => {
                    match done {
                        Ok((peer, answers)) => self.engine.on_answers(peer, answers),
                        Err(e) => tracing::warn!(error = %e, "serve task failed"),
                    }
                }
                Some(done) = self.store_tasks.join_next(), if !self.store_tasks.is_empty() => {
                    match done {
                        Ok(blocks) => self.on_stored(blocks),
                        Err(e) => tracing::warn!(error = %e, "store task failed"),
                    }
                }
                _ = tick.tick() => self.on_tick(),
                _ = reprovide.tick(), if self.engine.cfg.reprovide_interval.is_some() => self.reprovide(),
            }
            self.apply_actions();
            self.pump_store();
            self.pump_serve();
            self.pump_provides();
            self.flush_outbox();
        }
        tracing::debug!("network event loop stopped");
    }

    // ----- commands -----

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::ListenAddrs { reply } => {
                let me = *self.swarm.local_peer_id();
                let addrs = self
                    .listen_addrs
                    .iter()
                    .map(|a| a.clone().with(Protocol::P2p(me)))
                    .collect();
                let _ = reply.send(Ok(addrs));
            }
            Command::Connect { addr, reply } => self.connect(addr, reply),
            Command::Peers { reply } => {
                let _ = reply.send(Ok(self.swarm.connected_peers().copied().collect()));
            }
            Command::PeerInfos { reply } => {
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
            Command::Disconnect { target, reply } => self.disconnect(target, reply),
            Command::Provide { cids, reply } => {
                let keys = cids.iter().map(provider_key).collect();
                self.start_provide_job(keys, Some(reply));
            }
            Command::ProvidedKeys { reply } => {
                let keys = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .provided()
                    .map(|r| r.key.to_vec())
                    .collect();
                let _ = reply.send(Ok(keys));
            }
            Command::StopProviding { keys, reply } => {
                for k in keys {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .stop_providing(&kad::RecordKey::new(&k));
                }
                let _ = reply.send(Ok(()));
            }
            Command::FindProviders {
                cid,
                timeout,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(provider_key(&cid));
                self.finds.insert(
                    id,
                    Find {
                        cid,
                        for_fetch: false,
                        reply: Some(reply),
                        found: Vec::new(),
                        deadline: Some(far_deadline(timeout)),
                        peers_queried: 0,
                        peers_answered: 0,
                        timed_out: false,
                    },
                );
            }
            Command::Fetch {
                cid,
                timeout,
                may_be_stored,
                reply,
            } => self.engine.fetch(cid, timeout, may_be_stored, reply),
            Command::Stats { reply } => {
                let mut s = self.engine.stats;
                s.peers = self.swarm.connected_peers().count();
                s.wants = self.engine.wants.len();
                let _ = reply.send(Ok(s));
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn connect(&mut self, addr: Multiaddr, reply: Reply<PeerId>) {
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

    fn disconnect(&mut self, target: Multiaddr, reply: Reply<PeerId>) {
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
        self.disconnects.push(PendingDisconnect {
            peer,
            reply,
            deadline: Instant::now() + DISCONNECT_WAIT,
        });
    }

    // ----- DHT provide -----

    fn start_provide_job(
        &mut self,
        keys: Vec<kad::RecordKey>,
        reply: Option<Reply<ProvideReport>>,
    ) {
        let limit = self.engine.cfg.limits.max_provided_keys;
        if self.provide_queue.len() + keys.len() > limit {
            if let Some(r) = reply {
                let _ = r.send(Err(NetError::Busy { limit }));
            }
            return;
        }
        if keys.is_empty() {
            if let Some(r) = reply {
                let _ = r.send(Ok(ProvideReport::default()));
            }
            return;
        }
        let job = self.next_job;
        self.next_job += 1;
        self.provide_jobs.insert(
            job,
            ProvideJob {
                reply,
                pending: keys.len(),
                report: ProvideReport::default(),
            },
        );
        self.provide_queue
            .extend(keys.into_iter().map(|k| (job, k)));
    }

    fn pump_provides(&mut self) {
        let max = self.engine.cfg.limits.max_provide_queries.max(1);
        while self.provide_queries.len() < max {
            let Some((job, key)) = self.provide_queue.pop_front() else {
                break;
            };
            match self.swarm.behaviour_mut().kad.start_providing(key) {
                Ok(id) => {
                    self.provide_queries.insert(id, job);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot provide");
                    self.provide_done(job, false);
                }
            }
        }
    }

    fn provide_done(&mut self, job: u64, ok: bool) {
        let Some(j) = self.provide_jobs.get_mut(&job) else {
            return;
        };
        if ok {
            j.report.ok += 1;
        } else {
            j.report.failed += 1;
        }
        j.pending -= 1;
        if j.pending == 0 {
            if let Some(j) = self.provide_jobs.remove(&job) {
                if let Some(r) = j.reply {
                    let _ = r.send(Ok(j.report));
                }
                tracing::debug!(
                    ok = j.report.ok,
                    failed = j.report.failed,
                    "provide job done"
                );
            }
        }
    }

    fn reprovide(&mut self) {
        let keys: Vec<kad::RecordKey> = self
            .swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .provided()
            .map(|r| r.key.clone())
            .collect();
        tracing::info!(keys = keys.len(), "reproviding");
        self.start_provide_job(keys, None);
    }

    // ----- DHT find -----

    fn start_search(&mut self, cid: Cid) {
        if self.searches >= self.engine.cfg.limits.max_provider_searches {
            return;
        }
        let Some(w) = self.engine.wants.get_mut(&cid) else {
            return;
        };
        if w.search.is_some() {
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(provider_key(&cid));
        w.search = Some(id);
        self.searches += 1;
        tracing::debug!(%cid, "searching the DHT for providers");
        self.finds.insert(
            id,
            Find {
                cid,
                for_fetch: true,
                reply: None,
                found: Vec::new(),
                deadline: None,
                peers_queried: 0,
                peers_answered: 0,
                timed_out: false,
            },
        );
    }

    fn finish_find(&mut self, id: kad::QueryId) {
        let Some(f) = self.finds.remove(&id) else {
            return;
        };
        let empty = f.found.is_empty();
        if let Some(r) = f.reply {
            let addresses = f.found.iter().map(|p| (*p, self.known_addrs(p))).collect();
            let _ = r.send(Ok(ProviderSearch {
                providers: f.found,
                addresses,
                peers_queried: f.peers_queried,
                timed_out: f.timed_out,
            }));
        }
        if f.for_fetch {
            self.searches = self.searches.saturating_sub(1);
        }
        if let Some(w) = self.engine.wants.get_mut(&f.cid) {
            if w.search == Some(id) {
                w.search = None;
                w.last_search = Some(Instant::now());
                if empty && !f.timed_out && f.peers_answered > 0 {
                    self.engine.on_search_empty(f.cid, f.peers_queried);
                }
            }
        }
    }

    /// The addresses this node knows for `peer`: its DHT routing table entry, the listen
    /// addresses it announced, and the address of an outbound connection to it.
    fn known_addrs(&mut self, peer: &PeerId) -> Vec<Multiaddr> {
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

    fn on_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => {
                if let Some(f) = self.finds.get_mut(&id) {
                    // Cumulative over the query's steps.
                    f.peers_queried = stats.num_requests();
                    f.peers_answered = stats.num_successes();
                    if let kad::QueryResult::GetProviders(Err(kad::GetProvidersError::Timeout {
                        ..
                    })) = &result
                    {
                        f.timed_out = true;
                    }
                }
                match result {
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })) => {
                        let local = *self.swarm.local_peer_id();
                        if let Some(f) = self.finds.get_mut(&id) {
                            let new: Vec<PeerId> = providers
                                .into_iter()
                                .filter(|p| *p != local && !f.found.contains(p))
                                .collect();
                            f.found.extend(new.iter().copied());
                            let cid = f.cid;
                            self.engine.on_providers(cid, new);
                        }
                    }
                    kad::QueryResult::GetProviders(_) => self.finish_find(id),
                    kad::QueryResult::StartProviding(r) => {
                        if let Some(job) = self.provide_queries.remove(&id) {
                            if let Err(e) = &r {
                                tracing::debug!(error = %e, "provide failed");
                            }
                            self.provide_done(job, r.is_ok());
                        }
                    }
                    kad::QueryResult::Bootstrap(r) => {
                        tracing::debug!(ok = r.is_ok(), "DHT bootstrap step")
                    }
                    other => tracing::trace!(?other, "kad query result"),
                }
                if step.last {
                    self.finish_find(id);
                    if let Some(job) = self.provide_queries.remove(&id) {
                        self.provide_done(job, false);
                    }
                }
            }
            other => tracing::trace!(?other, "kad event"),
        }
    }

    // ----- swarm events -----

    fn on_swarm_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(NodeBehaviourEvent::Bitswap(ev)) => self.on_bitswap(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Kad(ev)) => self.on_kad(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let mut protocols: Vec<String> =
                    info.protocols.iter().map(|p| p.to_string()).collect();
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
            SwarmEvent::Behaviour(NodeBehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
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
            SwarmEvent::Behaviour(NodeBehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result,
            })) => {
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
            SwarmEvent::Behaviour(other) => tracing::trace!(?other, "behaviour event"),
            SwarmEvent::NewListenAddr { address, .. } => {
                if self.engine.cfg.announce_listen_addrs {
                    self.swarm.add_external_address(address.clone());
                }
                self.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
                self.swarm.remove_external_address(&address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                ..
            } => {
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
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(cs) = self.conns.get_mut(&peer_id) {
                    cs.retain(|c| c.id != connection_id);
                }
                if num_established == 0 {
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
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if let Some(d) = self.dials.remove(&connection_id) {
                    let _ = d.reply.send(Err(NetError::Dial {
                        addr: d.addr,
                        reason: error.to_string(),
                    }));
                } else {
                    tracing::debug!(?peer_id, %error, "outgoing connection failed");
                }
            }
            other => tracing::trace!(?other, "swarm event"),
        }
    }

    fn on_bitswap(&mut self, ev: bitswap::Event) {
        match ev {
            bitswap::Event::Message { peer, msg } => {
                if self.engine.banned.contains_key(&peer) {
                    return;
                }
                let Message {
                    wantlist,
                    full,
                    blocks,
                    presences,
                    ..
                } = msg;
                if !blocks.is_empty() {
                    let fresh = self.engine.on_blocks(peer, blocks);
                    if !self.engine.actions.ban.is_empty() {
                        return;
                    }
                    self.to_store.extend(fresh);
                }
                for (cid, p) in presences {
                    self.engine.on_presence(peer, cid, p);
                }
                if !wantlist.is_empty() || full {
                    let job = self.engine.on_wantlist(peer, full, wantlist);
                    if !job.is_empty() {
                        if self.serve_queue.len() < MAX_SERVE_QUEUE {
                            self.serve_queue.push_back((peer, job));
                        } else if let Some(i) = self.engine.peers.get_mut(&peer) {
                            tracing::debug!(%peer, "serve queue full, ignoring wants");
                            for e in job {
                                i.ledger.remove(&e.cid);
                            }
                        }
                    }
                }
            }
            bitswap::Event::Malformed { peer, error } => {
                tracing::warn!(%peer, %error, "malformed bitswap message, banning peer");
                self.engine.actions.ban.push(peer);
            }
            bitswap::Event::SendFailed { peer, unsupported } => {
                if unsupported {
                    if let Some(i) = self.engine.peers.get_mut(&peer) {
                        i.bitswap = Some(false);
                    }
                }
                // Whatever was asked of this peer may never arrive: ask elsewhere.
                self.engine.on_peer_gone(peer, false);
            }
        }
    }

    fn on_stored(&mut self, blocks: Vec<(Cid, Bytes)>) {
        for (cid, data) in blocks {
            if let Some(ws) = self.engine.storing.remove(&cid) {
                for w in ws {
                    let _ = w.reply.send(Ok(Fetched::Block(data.clone())));
                }
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let free = self
            .engine
            .cfg
            .limits
            .max_provider_searches
            .saturating_sub(self.searches);
        self.engine.tick(now, free);

        let expired: Vec<PeerId> = self
            .engine
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.engine.banned.remove(&p);
            self.swarm.behaviour_mut().bans.unblock_peer(p);
        }

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

        let late: Vec<kad::QueryId> = self
            .finds
            .iter()
            .filter(|(_, f)| f.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
            if let Some(f) = self.finds.get_mut(&id) {
                f.timed_out = true;
            }
            self.finish_find(id);
        }
    }

    fn apply_actions(&mut self) {
        let actions = std::mem::take(&mut self.engine.actions);
        for peer in actions.ban {
            if self.engine.banned.contains_key(&peer) {
                continue;
            }
            self.engine
                .banned
                .insert(peer, Instant::now() + self.engine.cfg.ban_duration);
            self.engine.stats.peers_banned += 1;
            self.swarm.behaviour_mut().bans.block_peer(peer);
            self.engine.on_peer_gone(peer, true);
        }
        for peer in actions.dial {
            if self.swarm.is_connected(&peer) {
                continue;
            }
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "cannot dial provider");
            }
        }
        for cid in actions.search {
            self.start_search(cid);
        }
        // Searching may have produced more actions (none today), and dispatch may have queued
        // searches while applying bans.
        if !self.engine.actions.search.is_empty() || !self.engine.actions.ban.is_empty() {
            let more = std::mem::take(&mut self.engine.actions);
            for cid in more.search {
                self.start_search(cid);
            }
            self.engine.actions.ban = more.ban;
            self.engine.actions.dial = more.dial;
        }
    }

    /// Writes received blocks to the store, batching those that arrived while earlier writes ran.
    fn pump_store(&mut self) {
        while self.store_tasks.len() < MAX_STORE_TASKS && !self.to_store.is_empty() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while batch.len() < STORE_BATCH_BLOCKS && bytes < STORE_BATCH_BYTES {
                let Some(b) = self.to_store.pop_front() else {
                    break;
                };
                bytes += b.1.len();
                batch.push(b);
            }
            let store = self.store.clone();
            self.store_tasks.spawn_blocking(move || {
                let blocks: Vec<Block> = batch
                    .iter()
                    .map(|(c, d)| Block::trusted(*c, d.clone()))
                    .collect();
                if let Err(e) = store.put_many(&blocks) {
                    tracing::warn!(error = %e, "cannot cache received blocks");
                }
                batch
            });
        }
    }

    fn pump_serve(&mut self) {
        let max = self.engine.cfg.limits.max_serve_tasks.max(1);
        while self.serve_tasks.len() < max {
            let Some((peer, job)) = self.serve_queue.pop_front() else {
                break;
            };
            let store = self.store.clone();
            self.serve_tasks
                .spawn_blocking(move || (peer, answer(&*store, job)));
        }
    }

    fn flush_outbox(&mut self) {
        if self.engine.outbox.is_empty() {
            return;
        }
        let outbox = std::mem::take(&mut self.engine.outbox);
        for (peer, msgs) in outbox {
            for m in msgs {
                let blocks = m.blocks.len() as u64;
                let bytes: u64 = m.blocks.iter().map(|(_, d)| d.len() as u64).sum();
                if self.swarm.behaviour_mut().bitswap.send(peer, m) {
                    self.engine.stats.blocks_sent += blocks;
                    self.engine.stats.bytes_sent += bytes;
                }
            }
        }
    }
}

/// Looks up a peer's wants in the store (runs on a blocking thread).
fn answer(store: &dyn Blockstore, job: Vec<WantEntry>) -> Vec<(WantEntry, Answer)> {
    job.into_iter()
        .map(|e| {
            let sdh = e.send_dont_have;
            let a = match e.want_type {
                WantType::Block => match store.get_verified(&e.cid) {
                    Ok(Some(b)) if b.len() <= MAX_BLOCK_BYTES => Answer::Block(b),
                    Ok(_) if sdh => Answer::DontHave,
                    Ok(_) => Answer::Nothing,
                    Err(err) => {
                        tracing::warn!(cid = %e.cid, error = %err, "cannot serve block");
                        if sdh {
                            Answer::DontHave
                        } else {
                            Answer::Nothing
                        }
                    }
                },
                WantType::Have => match store.has(&e.cid) {
                    Ok(true) => Answer::Have,
                    _ if sdh => Answer::DontHave,
                    _ => Answer::Nothing,
                },
            };
            (e, a)
        })
        .collect()
}

/// `now + timeout`, saturating at about a century for absurd timeouts instead of overflowing.
fn far_deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use cairn_store::{Block as StoreBlock, HashAlg, RAW};
    use tokio::sync::oneshot;

    fn block(n: u8) -> (Cid, Bytes) {
        StoreBlock::encode(1, RAW, HashAlg::Sha2_256, Bytes::from(vec![n; 100])).into_parts()
    }

    fn engine_with_peers(n: usize) -> (Engine, Vec<PeerId>) {
        let mut e = Engine::new(PeerId::random(), NetConfig::local());
        let peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        for p in &peers {
            e.on_peer_connected(*p);
        }
        (e, peers)
    }

    fn wants_sent(e: &Engine, p: &PeerId) -> Vec<(Cid, WantType, bool)> {
        e.outbox
            .get(p)
            .map(|ms| {
                ms.iter()
                    .flat_map(|m| m.wantlist.iter().map(|w| (w.cid, w.want_type, w.cancel)))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn wants_coalesce_and_follow_have() {
        let (mut e, peers) = engine_with_peers(2);
        let (cid, data) = block(1);
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, _rx2) = oneshot::channel();
        e.fetch(cid, Duration::from_secs(5), true, tx1);
        e.fetch(cid, Duration::from_secs(5), true, tx2);
        assert_eq!(e.wants.len(), 1);
        assert_eq!(e.wants[&cid].waiters.len(), 2);
        for p in &peers {
            assert_eq!(wants_sent(&e, p), vec![(cid, WantType::Have, false)]);
        }
        e.outbox.clear();
        e.on_presence(peers[1], cid, Presence::Have);
        assert_eq!(
            wants_sent(&e, &peers[1]),
            vec![(cid, WantType::Block, false)]
        );
        let fresh = e.on_blocks(peers[1], vec![(cid, data.clone())]);
        assert_eq!(fresh.len(), 1);
        assert!(e.wants.is_empty());
        assert_eq!(e.storing[&cid].len(), 2);
        // The other peer gets a cancel.
        assert!(wants_sent(&e, &peers[0]).contains(&(cid, WantType::Block, true)));
        assert!(
            rx1.try_recv().is_err(),
            "readers are answered once the block is stored"
        );
    }

    #[test]
    fn forged_block_bans_but_late_duplicate_does_not() {
        let (mut e, peers) = engine_with_peers(2);
        let (cid, data) = block(2);
        let (tx, _rx) = oneshot::channel();
        e.fetch(cid, Duration::from_secs(5), true, tx);
        let (other, junk) = block(3);
        assert!(e.on_blocks(peers[0], vec![(other, junk)]).is_empty());
        assert_eq!(e.actions.ban, vec![peers[0]]);
        assert_eq!(e.stats.rejected_blocks, 1);
        e.actions = Actions::default();
        assert_eq!(e.on_blocks(peers[1], vec![(cid, data.clone())]).len(), 1);
        assert!(e.on_blocks(peers[0], vec![(cid, data)]).is_empty());
        assert!(e.actions.ban.is_empty());
        assert_eq!(e.stats.dup_blocks, 1);
    }

    #[test]
    fn a_block_arriving_after_its_cancel_is_late_not_a_duplicate() {
        let (mut e, peers) = engine_with_peers(1);
        let (cid, data) = block(6);
        let (tx, rx) = oneshot::channel();
        e.fetch(cid, Duration::from_secs(5), true, tx);
        // The reader leaves; the want is cancelled at the next tick.
        drop(rx);
        e.tick(Instant::now(), 16);
        assert!(e.wants.is_empty());
        // The block was already on its way.
        assert_eq!(e.on_blocks(peers[0], vec![(cid, data.clone())]).len(), 1);
        assert_eq!((e.stats.blocks_received, e.stats.dup_blocks), (1, 0));
        assert!(e.actions.ban.is_empty());
        // A second copy is a duplicate.
        assert!(e.on_blocks(peers[0], vec![(cid, data)]).is_empty());
        assert_eq!((e.stats.blocks_received, e.stats.dup_blocks), (1, 1));
    }

    #[test]
    fn an_empty_dht_answer_ends_a_want_only_when_nobody_is_left_to_ask() {
        let (mut e, peers) = engine_with_peers(2);
        let (cid, _) = block(7);
        let (tx, mut rx) = oneshot::channel();
        e.fetch(cid, Duration::from_secs(5), true, tx);
        e.on_presence(peers[0], cid, Presence::DontHave);
        // One peer has not answered yet.
        e.on_search_empty(cid, 2);
        assert!(rx.try_recv().is_err() && e.wants.contains_key(&cid));
        e.on_presence(peers[1], cid, Presence::DontHave);
        // A DHT that asked nobody (no routing table yet) is no answer.
        e.on_search_empty(cid, 0);
        assert!(rx.try_recv().is_err() && e.wants.contains_key(&cid));
        e.on_search_empty(cid, 2);
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(NetError::NoProviders {
                peers_queried: 2,
                ..
            }))
        ));
        assert!(e.wants.is_empty());
    }

    #[test]
    fn a_stalled_peer_is_not_a_no() {
        let (mut e, peers) = engine_with_peers(1);
        let (cid, _) = block(8);
        let (tx, mut rx) = oneshot::channel();
        e.fetch(cid, Duration::from_secs(60), true, tx);
        e.on_presence(peers[0], cid, Presence::Have);
        assert!(e.wants[&cid].block_from.is_some());
        // The want-block goes unanswered past the block request timeout.
        e.tick(Instant::now() + e.cfg.block_request_timeout, 16);
        assert!(e.wants[&cid].block_from.is_none());
        e.on_search_empty(cid, 1);
        assert!(rx.try_recv().is_err(), "the slow peer may still deliver");
        assert!(e.wants.contains_key(&cid));
    }

    #[test]
    fn all_dont_have_triggers_a_dht_search() {
        let (mut e, peers) = engine_with_peers(2);
        let (cid, _) = block(4);
        let (tx, _rx) = oneshot::channel();
        e.fetch(cid, Duration::from_secs(5), true, tx);
        assert!(e.actions.search.is_empty());
        e.on_presence(peers[0], cid, Presence::DontHave);
        assert!(e.actions.search.is_empty());
        e.on_presence(peers[1], cid, Presence::DontHave);
        assert_eq!(e.actions.search, vec![cid]);
    }

    #[test]
    fn expired_readers_get_timeouts_and_the_want_is_cancelled() {
        let (mut e, peers) = engine_with_peers(1);
        let (cid, _) = block(5);
        let (tx, mut rx) = oneshot::channel();
        e.fetch(cid, Duration::from_secs(0), true, tx);
        e.outbox.clear();
        e.tick(Instant::now() + Duration::from_millis(1), 16);
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(NetError::FetchTimeout { .. }))
        ));
        assert!(e.wants.is_empty());
        assert_eq!(
            wants_sent(&e, &peers[0]),
            vec![(cid, WantType::Block, true)]
        );
    }

    #[test]
    fn ledger_is_bounded_and_cancels_remove_entries() {
        let (mut e, peers) = engine_with_peers(1);
        let max = e.cfg.limits.max_ledger_entries;
        let entries: Vec<WantEntry> = (0..max + 10)
            .map(|i| {
                let cid = cairn_store::cid_for(1, RAW, HashAlg::Sha2_256, &i.to_le_bytes());
                want_entry(cid, WantType::Block, false)
            })
            .collect();
        let first = entries[0].cid;
        let job = e.on_wantlist(peers[0], false, entries);
        assert_eq!(job.len(), max);
        let job = e.on_wantlist(
            peers[0],
            false,
            vec![want_entry(first, WantType::Block, true)],
        );
        assert!(job.is_empty());
        assert!(!e.peers[&peers[0]].ledger.contains_key(&first));
    }

    #[test]
    fn a_want_block_upgrades_a_pending_want_have() {
        let (mut e, peers) = engine_with_peers(1);
        let (cid, data) = block(9);
        let have = e.on_wantlist(
            peers[0],
            false,
            vec![want_entry(cid, WantType::Have, false)],
        );
        assert_eq!(have.len(), 1);
        // The want-block arrives while the want-have is still being looked up.
        let block = e.on_wantlist(
            peers[0],
            false,
            vec![want_entry(cid, WantType::Block, false)],
        );
        assert_eq!(block.len(), 1, "the upgrade is looked up too");
        e.on_answers(peers[0], vec![(have[0].clone(), Answer::Have)]);
        assert!(e.outbox.is_empty(), "the stale HAVE is not sent");
        e.on_answers(peers[0], vec![(block[0].clone(), Answer::Block(data))]);
        let sent: usize = e.outbox[&peers[0]].iter().map(|m| m.blocks.len()).sum();
        assert_eq!(sent, 1);
    }
}
