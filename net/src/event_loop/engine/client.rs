//! The Bitswap client: one `Want` per CID wanted from the network, however many readers wait
//! for it; routing it over the connected peers (want-block to the most promising, want-have to
//! the rest); blocks and presences received; deadlines, stalled requests and DHT searches due.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_store::Cid;
use libp2p::{kad, PeerId};

use super::{want_entry, Engine};
use crate::bitswap::protocol::{Presence, WantType};
use crate::command::{Fetched, Reply};
use crate::error::NetError;
use crate::event_loop::far_deadline;

/// A fetch that found nothing asks the DHT again this often.
const RESEARCH_INTERVAL: Duration = Duration::from_secs(5);
/// Blocks remembered after their want was satisfied, so late duplicates are not taken for forgeries.
const RECENT_BLOCKS: usize = 16_384;

/// A reader waiting for a want, with its own deadline.
pub(crate) struct Waiter {
    pub(crate) reply: Reply<Fetched>,
    deadline: Instant,
    secs: u64,
}

/// One CID wanted from the network, however many readers wait for it.
pub(crate) struct Want {
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
    pub(crate) search: Option<kad::QueryId>,
    pub(crate) last_search: Option<Instant>,
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

impl Engine {
    pub(crate) fn fetch(
        &mut self,
        cid: Cid,
        timeout: Duration,
        may_be_stored: bool,
        reply: Reply<Fetched>,
    ) {
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
    pub(crate) fn on_search_empty(&mut self, cid: Cid, peers_queried: u32) {
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
    pub(crate) fn on_blocks(
        &mut self,
        peer: PeerId,
        blocks: Vec<(Cid, Bytes)>,
    ) -> Vec<(Cid, Bytes)> {
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

    pub(crate) fn on_presence(&mut self, peer: PeerId, cid: Cid, p: Presence) {
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

    pub(crate) fn on_peer_connected(&mut self, peer: PeerId) {
        self.peers.entry(peer).or_default();
        let cids: Vec<Cid> = self.wants.keys().copied().collect();
        for cid in cids {
            self.dispatch(cid);
        }
    }

    /// The peer left, was banned, or turned out not to speak Bitswap: re-route its wants.
    pub(crate) fn on_peer_gone(&mut self, peer: PeerId, disconnected: bool) {
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

    pub(crate) fn on_providers(&mut self, cid: Cid, providers: impl IntoIterator<Item = PeerId>) {
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

    // ----- time -----

    pub(crate) fn tick(&mut self, now: Instant, searches_free: usize) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testing::{block, engine_with_peers};
    use super::super::Actions;
    use super::*;
    use tokio::sync::oneshot;

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
}
