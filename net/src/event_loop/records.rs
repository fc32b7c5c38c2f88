//! IPNS records: put and get through the DHT (`/ipns/<multihash>` keys), and the push path,
//! IPNS-over-PubSub (gossipsub topic `/record/<base64url(routing key)>`).
//!
//! Every record from outside is validated before it is used, stored or forwarded: it must
//! decode, be at most 10 KiB, carry a V2 signature by the name's key, not be expired, and (to
//! replace one held) supersede it (a higher sequence, or the same one valid for longer).
//! Inbound DHT `PUT_VALUE`s reach us unstored (`StoreInserts::FilterBoth`) and are stored only
//! if they pass; keys outside `/ipns/` are refused. A peer whose records keep failing is banned.
//! A valid record the application refused (what it names is not acceptable, see
//! `Node::refuse_record`) is dropped from the store and not kept, forwarded or handed up again.
//!
//! The peers seen subscribed to a followed name's topic are its *sources*: each is asked for
//! its newest record as soon as it shows up (`/cairn/ipns/pull/1.0.0`, see `pull.rs`), so a
//! follower that was away catches up without waiting for the next push; and when the last
//! connected source of a name goes away (a publisher restarting, a dropped link), it is dialled
//! again with back-off, so that pushes reach this node again once it is back.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use cairn_store::{IpnsName, IpnsRecord, IPNS_MAX_RECORD_SIZE as MAX_RECORD_SIZE};
use libp2p::kad::store::RecordStore;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{gossipsub, kad, Multiaddr, PeerId};

use super::EventLoop;
use crate::command::{RecordEvent, RecordLookup, RecordPut, Reply};
use crate::error::NetError;

/// Bad records a peer may send before it is banned.
const BAD_RECORDS_BEFORE_BAN: u32 = 3;
/// Sources remembered per name (the newest ones are kept).
const MAX_SOURCES: usize = 16;
/// The first redial of a lost source, doubled after each failed one up to [`REDIAL_MAX`].
const REDIAL_FIRST: Duration = Duration::from_secs(1);
const REDIAL_MAX: Duration = Duration::from_secs(60);
/// A source gone this long is no longer redialled (the DHT poll still finds its records).
const REDIAL_GIVE_UP: Duration = Duration::from_secs(3600);
/// A source is asked again at most this often (a peer may resend its subscription at will).
const PULL_AGAIN_AFTER: Duration = Duration::from_secs(30);
/// Addresses remembered per source (the newest).
const MAX_SOURCE_ADDRS: usize = 8;

/// A running `GET_VALUE`.
pub(crate) struct GetRecord {
    pub name: IpnsName,
    pub best: Option<IpnsRecord>,
    pub answered_by: Vec<PeerId>,
    pub reply: Option<Reply<RecordLookup>>,
    pub deadline: Instant,
}

/// A peer subscribed to a followed name's topic.
pub(crate) struct Source {
    /// Addresses known for it (kept for redialling after it went away), the newest last.
    addrs: Vec<Multiaddr>,
    /// When it was last seen subscribed (for keeping the newest [`MAX_SOURCES`]).
    seen: Instant,
    /// When it was last asked for the record, and whether that question is still open.
    pulled: Option<Instant>,
    pulling: bool,
    /// It delivered a record at least as good as the one held: a source that counts.
    delivered: bool,
    /// Set while it is disconnected and no other delivering source of the name is connected.
    redial: Option<Redial>,
}

impl Source {
    fn new(now: Instant) -> Source {
        Source {
            addrs: Vec::new(),
            seen: now,
            pulled: None,
            pulling: false,
            delivered: false,
            redial: None,
        }
    }

    fn add_addrs(&mut self, addrs: Vec<Multiaddr>) {
        for a in addrs {
            self.addrs.retain(|x| *x != a);
            self.addrs.push(a);
        }
        let over = self.addrs.len().saturating_sub(MAX_SOURCE_ADDRS);
        self.addrs.drain(..over);
    }
}

struct Redial {
    at: Instant,
    backoff: Duration,
    since: Instant,
}

/// What the loop keeps about records.
#[derive(Default)]
pub(crate) struct Records {
    pub gets: HashMap<kad::QueryId, GetRecord>,
    pub puts: HashMap<kad::QueryId, (Reply<RecordPut>, usize)>,
    /// Topics subscribed to, and the name each is for.
    pub topics: HashMap<gossipsub::TopicHash, IpnsName>,
    /// Bad records per peer.
    pub strikes: HashMap<PeerId, u32>,
    /// The sources of each followed name.
    pub sources: HashMap<IpnsName, HashMap<PeerId, Source>>,
    /// Pull requests in flight, and whom they went to.
    pub pulls: HashMap<OutboundRequestId, (IpnsName, PeerId)>,
    /// Peers disconnected on request: not redialled until they connect again.
    pub let_go: HashSet<PeerId>,
    /// Valid records the application refused (by their block CID): never kept, forwarded or
    /// handed up again (at most [`MAX_REFUSED`]; the oldest are forgotten first).
    pub refused: HashSet<cairn_store::Cid>,
    pub refused_order: std::collections::VecDeque<cairn_store::Cid>,
}

/// Refused records remembered at most.
const MAX_REFUSED: usize = 4096;

/// The DHT key of `name`'s records.
fn dht_key(name: &IpnsName) -> kad::RecordKey {
    kad::RecordKey::new(&name.routing_key())
}

/// `bytes` as a valid record of `name` now.
fn valid(name: &IpnsName, bytes: &[u8]) -> Result<IpnsRecord, cairn_store::RecordError> {
    IpnsRecord::validate(bytes, name, SystemTime::now())
}

impl EventLoop {
    /// The record of `name` in the DHT store here, if it is still valid.
    fn stored_record(&mut self, name: &IpnsName) -> Option<IpnsRecord> {
        let key = dht_key(name);
        let rec = self.swarm.behaviour_mut().kad.store_mut().get(&key)?;
        valid(name, &rec.value).ok()
    }

    /// Whether the application refused `bytes` (see [`EventLoop::refuse_record`]).
    fn is_refused(&self, bytes: &[u8]) -> bool {
        !self.records.refused.is_empty()
            && self
                .records
                .refused
                .contains(&cairn_store::record_cid(bytes))
    }

    /// Record `bytes` of `name` was refused by the application: remembered, dropped from the
    /// store here if held, `instead` kept in its place.
    pub(super) fn refuse_record(&mut self, name: IpnsName, bytes: &[u8], instead: Option<&[u8]>) {
        let cid = cairn_store::record_cid(bytes);
        if self.records.refused.insert(cid) {
            self.records.refused_order.push_back(cid);
            while self.records.refused_order.len() > MAX_REFUSED {
                if let Some(old) = self.records.refused_order.pop_front() {
                    self.records.refused.remove(&old);
                }
            }
        }
        let key = dht_key(&name);
        let held = self.swarm.behaviour_mut().kad.store_mut().get(&key);
        if held.is_some_and(|r| r.value == bytes) {
            self.swarm.behaviour_mut().kad.store_mut().remove(&key);
            tracing::debug!(%name, "dropped a refused record");
        }
        if let Some(rec) = instead.and_then(|b| valid(&name, b).ok()) {
            self.keep_record(&rec);
        }
    }

    /// Keeps `record` in the DHT store here if it supersedes what is there. Returns whether it
    /// is at least as good as the record held (newer, or the same one): not a stale copy. A
    /// record the application refused is never kept (`false`).
    fn keep_record(&mut self, record: &IpnsRecord) -> bool {
        if self.is_refused(record.as_bytes()) {
            return false;
        }
        if let Some(held) = self.stored_record(record.name()) {
            if !record.supersedes(&held) {
                return !held.supersedes(record);
            }
        }
        let mut rec = kad::Record::new(dht_key(record.name()), record.as_bytes().to_vec());
        rec.expires = Some(Instant::now() + crate::config::RECORD_STORE_TTL);
        if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(rec) {
            tracing::debug!(name = %record.name(), error = %e, "cannot keep the record");
        }
        true
    }

    /// Publishes `record` (a valid record of `name`, made here): kept here, put to the DHT and
    /// pushed on the name's topic.
    pub(super) fn put_record(&mut self, name: IpnsName, record: Vec<u8>, reply: Reply<RecordPut>) {
        let parsed = match valid(&name, &record) {
            Ok(r) => r,
            Err(e) => {
                let _ = reply.send(Err(NetError::BadRecord(e.to_string())));
                return;
            }
        };
        self.keep_record(&parsed);
        let topic = gossipsub::IdentTopic::new(name.pubsub_topic());
        let pushed = match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, record.clone())
        {
            Ok(_) => true,
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => false,
            Err(e) => {
                tracing::debug!(%name, error = %e, "cannot push the record");
                false
            }
        };
        let rec = kad::Record::new(dht_key(&name), record);
        match self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(rec, kad::Quorum::One)
        {
            Ok(id) => {
                self.records.puts.insert(id, (reply, usize::from(pushed)));
            }
            Err(e) => {
                tracing::debug!(%name, error = %e, "DHT put not started");
                let _ = reply.send(Ok(RecordPut { dht: false, pushed }));
            }
        }
    }

    /// Looks `name` up: the best valid record among the one kept here and those the DHT gives
    /// before `deadline` (the first valid one from the network ends the search).
    pub(super) fn get_record(
        &mut self,
        name: IpnsName,
        deadline: Instant,
        reply: Reply<RecordLookup>,
    ) {
        let best = self.stored_record(&name);
        let id = self.swarm.behaviour_mut().kad.get_record(dht_key(&name));
        self.records.gets.insert(
            id,
            GetRecord {
                name,
                best,
                answered_by: Vec::new(),
                reply: Some(reply),
                deadline,
            },
        );
    }

    /// Subscribes to the pushes of `name`'s records.
    pub(super) fn subscribe(&mut self, name: IpnsName, follow: bool, reply: Reply<()>) {
        let topic = gossipsub::IdentTopic::new(name.pubsub_topic());
        self.records.topics.insert(topic.hash(), name);
        if follow {
            self.records.sources.entry(name).or_default();
        }
        let r = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map(|_| ())
            .map_err(|e| NetError::Transport(e.to_string()));
        if follow {
            // Peers already connected told us their subscriptions before we cared: they are
            // sources from now on.
            let hash = topic.hash();
            let already: Vec<PeerId> = self
                .swarm
                .behaviour()
                .gossipsub
                .all_peers()
                .filter(|(_, topics)| topics.contains(&&hash))
                .map(|(p, _)| *p)
                .collect();
            for peer in already {
                self.on_source(name, peer);
            }
        }
        let _ = reply.send(r);
    }

    /// Stops following and serving `name`: its topic, sources and redials go.
    pub(super) fn unsubscribe(&mut self, name: IpnsName, reply: Reply<()>) {
        let topic = gossipsub::IdentTopic::new(name.pubsub_topic());
        self.records.topics.remove(&topic.hash());
        self.records.sources.remove(&name);
        self.records.pulls.retain(|_, (n, _)| *n != name);
        self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
        let _ = reply.send(Ok(()));
    }

    /// A peer sent a record that failed: logged, counted, and the peer banned after a few.
    pub(super) fn strike(&mut self, peer: PeerId, name: &IpnsName, why: &str) {
        tracing::warn!(%peer, %name, why, "refused an IPNS record");
        let n = self.records.strikes.entry(peer).or_insert(0);
        *n += 1;
        if *n >= BAD_RECORDS_BEFORE_BAN {
            tracing::warn!(%peer, "banning a peer that keeps sending bad records");
            self.engine.actions.ban.push(peer);
        }
    }

    /// Finishes GET_VALUE `id`, answering with the best record found.
    fn finish_get(&mut self, id: kad::QueryId) {
        if let Some(mut g) = self.records.gets.remove(&id) {
            if let Some(reply) = g.reply.take() {
                let _ = reply.send(Ok(RecordLookup {
                    record: g.best.map(|r| r.as_bytes().to_vec()),
                    answered_by: g.answered_by,
                }));
            }
        }
    }

    /// Ends the record lookups past their deadline.
    pub(super) fn expire_gets(&mut self, now: Instant) {
        let late: Vec<kad::QueryId> = self
            .records
            .gets
            .iter()
            .filter(|(_, g)| g.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
            self.finish_get(id);
        }
    }

    /// Kademlia's record events (query progress and inbound puts); `true` if it was one.
    pub(super) fn on_kad_record(&mut self, ev: &kad::Event) -> bool {
        match ev {
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                kad::QueryResult::GetRecord(r) => {
                    if let Ok(kad::GetRecordOk::FoundRecord(found)) = r {
                        self.on_found_record(*id, found);
                    }
                    if step.last {
                        self.finish_get(*id);
                    }
                    true
                }
                kad::QueryResult::PutRecord(r) => {
                    if let Some((reply, pushed)) = self.records.puts.remove(id) {
                        let _ = reply.send(Ok(RecordPut {
                            dht: r.is_ok(),
                            pushed: pushed > 0,
                        }));
                    }
                    true
                }
                _ => false,
            },
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => {
                self.on_inbound_put(*source, record.clone());
                true
            }
            _ => false,
        }
    }

    fn on_found_record(&mut self, id: kad::QueryId, found: &kad::PeerRecord) {
        let Some(name) = self.records.gets.get(&id).map(|g| g.name) else {
            return;
        };
        let from = found.peer;
        if self.is_refused(&found.record.value) {
            // Not an answer: the query goes on (a peer holding it is not at fault).
            return;
        }
        match valid(&name, &found.record.value) {
            Ok(rec) => {
                self.keep_record(&rec);
                let better = self
                    .records
                    .gets
                    .get(&id)
                    .and_then(|g| g.best.as_ref())
                    .is_none_or(|b| rec.supersedes(b));
                if let Some(g) = self.records.gets.get_mut(&id) {
                    if better {
                        g.best = Some(rec);
                    }
                    if let Some(peer) = from {
                        g.answered_by.push(peer);
                    }
                }
                // The first valid record from the network answers at once (the copy kept
                // here, which Kademlia reports first, does not: the network may know newer).
                if from.is_some() {
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                    self.finish_get(id);
                }
            }
            Err(e) => {
                if let Some(peer) = from {
                    self.strike(peer, &name, &e.to_string());
                }
            }
        }
    }

    fn on_inbound_put(&mut self, source: PeerId, record: kad::Record) {
        let key = record.key.to_vec();
        let Ok(name) = IpnsName::from_routing_key(&key) else {
            tracing::debug!(peer = %source, "refused a DHT record outside /ipns/");
            return;
        };
        if record.value.len() > MAX_RECORD_SIZE {
            self.strike(source, &name, "over 10 KiB");
            return;
        }
        match valid(&name, &record.value) {
            Ok(rec) => {
                self.keep_record(&rec);
            }
            Err(e) => self.strike(source, &name, &e.to_string()),
        }
    }

    /// A gossipsub event.
    pub(super) fn on_gossip(&mut self, ev: gossipsub::Event) {
        let (propagation_source, message_id, message) = match ev {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => (propagation_source, message_id, message),
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                if self.on_heads_subscribed(&topic) {
                    return;
                }
                if let Some(name) = self.records.topics.get(&topic).copied() {
                    self.on_source(name, peer_id);
                }
                return;
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                // Kept (with when it was last asked), but no longer counted as a source.
                if let Some(name) = self.records.topics.get(&topic) {
                    if let Some(s) = self
                        .records
                        .sources
                        .get_mut(name)
                        .and_then(|s| s.get_mut(&peer_id))
                    {
                        s.delivered = false;
                    }
                }
                return;
            }
            ev => {
                tracing::trace!(?ev, "gossipsub event");
                return;
            }
        };
        if self.on_head_message(propagation_source, &message_id, &message) {
            return;
        }
        // Not a topic of ours, or a record refused here: not forwarded, not handed up again.
        let name = self
            .records
            .topics
            .get(&message.topic)
            .copied()
            .filter(|_| !self.is_refused(&message.data));
        let Some(name) = name else {
            let _ = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    gossipsub::MessageAcceptance::Ignore,
                );
            return;
        };
        let verdict = match valid(&name, &message.data) {
            Ok(rec) => {
                if self.keep_record(&rec) {
                    self.delivered(&name, propagation_source);
                }
                let _ = self.record_events.send(RecordEvent {
                    name,
                    record: message.data.clone(),
                    from: propagation_source,
                });
                gossipsub::MessageAcceptance::Accept
            }
            Err(e) => {
                self.strike(propagation_source, &name, &e.to_string());
                gossipsub::MessageAcceptance::Reject
            }
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, verdict);
    }

    /// `peer` follows or publishes `name`: if `name` is followed here, `peer` is remembered as
    /// a source and asked for its record (once per [`PULL_AGAIN_AFTER`], one question at a
    /// time: gossipsub reports every SUBSCRIBE a peer sends, and a peer may send many).
    fn on_source(&mut self, name: IpnsName, peer: PeerId) {
        if !self.records.sources.contains_key(&name) {
            return;
        }
        let addrs = self.known_addrs(&peer);
        let Some(sources) = self.records.sources.get_mut(&name) else {
            return;
        };
        let now = Instant::now();
        if !sources.contains_key(&peer) && sources.len() >= MAX_SOURCES {
            // Room is made from those that never delivered, the longest unseen first; a
            // source that delivered gives way only to the same rule among its kind.
            let evict = sources
                .iter()
                .min_by_key(|(_, s)| (s.delivered, s.seen))
                .map(|(p, _)| *p);
            if let Some(p) = evict {
                sources.remove(&p);
            }
        }
        let s = sources.entry(peer).or_insert_with(|| Source::new(now));
        s.seen = now;
        s.redial = None;
        s.add_addrs(addrs);
        let due = !s.pulling
            && s.pulled
                .is_none_or(|t| now.duration_since(t) >= PULL_AGAIN_AFTER);
        if !due {
            return;
        }
        s.pulling = true;
        s.pulled = Some(now);
        let id = self
            .swarm
            .behaviour_mut()
            .pull
            .send_request(&peer, name.routing_key());
        self.records.pulls.insert(id, (name, peer));
    }

    /// `peer` delivered a record of `name` at least as good as the one held: it counts as a
    /// source, and the name's lost sources need not be redialled.
    fn delivered(&mut self, name: &IpnsName, peer: PeerId) {
        if let Some(sources) = self.records.sources.get_mut(name) {
            if let Some(s) = sources.get_mut(&peer) {
                s.delivered = true;
                for s in sources.values_mut() {
                    s.redial = None;
                }
            }
        }
    }

    fn pull_done(&mut self, name: &IpnsName, peer: &PeerId) {
        if let Some(s) = self
            .records
            .sources
            .get_mut(name)
            .and_then(|s| s.get_mut(peer))
        {
            s.pulling = false;
        }
    }

    /// For a followed name, its connected sources that delivered a current record; for a name
    /// only served here, the connected peers subscribed to its topic (its followers).
    pub(super) fn record_sources(&mut self, name: IpnsName, reply: Reply<Vec<PeerId>>) {
        let mut connected: Vec<PeerId> = match self.records.sources.get(&name) {
            Some(sources) => sources
                .iter()
                .filter(|(p, s)| s.delivered && self.swarm.is_connected(p))
                .map(|(p, _)| *p)
                .collect(),
            None => {
                let topic = gossipsub::IdentTopic::new(name.pubsub_topic()).hash();
                self.swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(p, topics)| topics.contains(&&topic) && self.swarm.is_connected(p))
                    .map(|(p, _)| *p)
                    .collect()
            }
        };
        connected.sort();
        let _ = reply.send(Ok(connected));
    }

    /// `peer`'s last connection closed: a name it was the last connected source of gets its
    /// sources redialled (unless it was let go on request).
    pub(super) fn on_source_gone(&mut self, peer: PeerId) {
        if self.records.let_go.contains(&peer) {
            return;
        }
        let addrs = self.known_addrs(&peer);
        let now = Instant::now();
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        for sources in self.records.sources.values_mut() {
            let Some(s) = sources.get_mut(&peer) else {
                continue;
            };
            s.add_addrs(addrs.clone());
            // Asked afresh once it is back (what it has may have moved meanwhile).
            s.pulling = false;
            s.pulled = None;
            s.delivered = false;
            if sources
                .iter()
                .any(|(p, s)| *p != peer && s.delivered && connected.contains(p))
            {
                continue;
            }
            for s in sources.values_mut() {
                s.redial.get_or_insert(Redial {
                    at: now + REDIAL_FIRST,
                    backoff: REDIAL_FIRST,
                    since: now,
                });
            }
        }
    }

    /// Dials the lost sources whose time has come.
    pub(super) fn redial_sources(&mut self, now: Instant) {
        let mut dial: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for sources in self.records.sources.values_mut() {
            for (peer, s) in sources.iter_mut() {
                let Some(r) = &mut s.redial else { continue };
                if now.duration_since(r.since) > REDIAL_GIVE_UP {
                    s.redial = None;
                    continue;
                }
                if r.at > now {
                    continue;
                }
                r.backoff = (r.backoff * 2).min(REDIAL_MAX);
                r.at = now + r.backoff;
                if !dial.iter().any(|(p, _)| p == peer) {
                    dial.push((*peer, s.addrs.clone()));
                }
            }
        }
        for (peer, mut addrs) in dial {
            if self.swarm.is_connected(&peer) || self.records.let_go.contains(&peer) {
                continue;
            }
            for a in self.known_addrs(&peer) {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            if addrs.is_empty() {
                continue;
            }
            tracing::debug!(%peer, "dialling a lost source of a followed name");
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    /// A pull request's event: a peer's answer, its question, or a failure.
    pub(super) fn on_pull(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let answer = IpnsName::from_routing_key(&request)
                        .ok()
                        .and_then(|name| self.stored_record(&name))
                        .map(|r| r.as_bytes().to_vec())
                        .unwrap_or_default();
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .pull
                        .send_response(channel, answer);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    let Some((name, _)) = self.records.pulls.remove(&request_id) else {
                        return;
                    };
                    self.pull_done(&name, &peer);
                    if response.is_empty() {
                        return;
                    }
                    match valid(&name, &response) {
                        Ok(rec) => {
                            if self.keep_record(&rec) {
                                self.delivered(&name, peer);
                                let _ = self.record_events.send(RecordEvent {
                                    name,
                                    record: response,
                                    from: peer,
                                });
                            }
                        }
                        Err(e) => self.strike(peer, &name, &e.to_string()),
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((name, _)) = self.records.pulls.remove(&request_id) {
                    self.pull_done(&name, &peer);
                    tracing::debug!(%peer, %name, %error, "pull of a record failed");
                }
            }
            ev => tracing::trace!(?ev, "pull event"),
        }
    }
}
