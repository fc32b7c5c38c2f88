//! The one task that owns the Swarm.
//!
//! It `select!`s over swarm events, commands from [`crate::Node`] handles, a 200 ms tick (deadlines,
//! retries, ban expiry), the periodic reprovide, and two bounded `JoinSet`s: store reads that
//! serve peers, and store writes of received blocks. It never awaits long work itself.
//!
//! The Bitswap client and server policy lives in `engine` ([`Engine`]), which has no Swarm: it
//! records what to send in an outbox and what else to do (search, dial, ban) in `Actions`, which
//! the loop carries out after each event.
//!
//! This file keeps the loop: its state, `run`, and the dispatch of commands, swarm events, ticks
//! and the engine's actions. The work, one concern a file, is done by `impl EventLoop` blocks in:
//! - `bitswap`: Bitswap events into the engine, the engine's outbox out to the peers.
//! - `dht`: provider searches, provide jobs, the reprovide, Kademlia events.
//! - `dial`: connecting, disconnecting, the open connections, identify, mDNS, ping.
//! - `listen`: binding the listen addresses at start.
//! - `store_io`: the `JoinSet`s that read the store to serve peers and write received blocks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_store::{Blockstore, Cid};
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{identify, identity, kad, mdns, ping, Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::bitswap::protocol::WantEntry;
use crate::command::Command;
use crate::config::NetConfig;
use crate::error::NetError;
use crate::swarm::{self as swarm_build, NodeBehaviour, NodeBehaviourEvent};

mod bitswap;
mod dht;
mod dial;
mod engine;
mod heads;
mod listen;
mod records;
mod store_io;

use dht::{Find, ProvideJob};
use dial::{Conn, PendingDial, PendingDisconnect};
use engine::{Answer, Engine};
pub use heads::heads_topic;
pub use store_io::STORE_BATCH_BYTES;

/// How often deadlines and retries are checked.
const TICK: Duration = Duration::from_millis(200);
/// Commands handled in one turn of the loop before its outgoing messages are flushed.
const COMMAND_BATCH: usize = 64;

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
    /// IPNS record lookups, puts and topics.
    records: records::Records,
    /// Where valid pushed records go (the node's subscribers).
    record_events: tokio::sync::broadcast::Sender<crate::command::RecordEvent>,
    /// Shares' heads topics and the heads announced here.
    heads: heads::Heads,
    /// Where other writers' heads go.
    head_events: tokio::sync::broadcast::Sender<crate::command::HeadEvent>,
}

impl EventLoop {
    /// Builds the swarm, binds every listen address (waiting until each reports one), and dials
    /// the bootstrap peers.
    pub(crate) async fn new(
        cfg: NetConfig,
        key: identity::Keypair,
        store: Arc<dyn Blockstore>,
        commands: mpsc::Receiver<Command>,
        record_events: tokio::sync::broadcast::Sender<crate::command::RecordEvent>,
        head_events: tokio::sync::broadcast::Sender<crate::command::HeadEvent>,
    ) -> Result<Self, NetError> {
        let local = key.public().to_peer_id();
        let mut swarm = swarm_build::build(&cfg, key)?;
        let kad_protocol =
            StreamProtocol::try_from_owned(cfg.kad_protocol.clone()).map_err(|_| {
                NetError::BadKadProtocol {
                    name: cfg.kad_protocol.clone(),
                }
            })?;

        let listen_addrs = listen::listen(&mut swarm, &cfg).await?;
        let bootstrap_peers = dial::dial_bootstrap(&mut swarm, &cfg)?;

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
            records: records::Records::default(),
            record_events,
            heads: heads::Heads::default(),
            head_events,
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
            Command::PeerInfos { reply } => self.peer_infos(reply),
            Command::Disconnect { target, reply } => self.disconnect(target, reply),
            Command::Provide { cids, reply } => self.provide(cids, reply),
            Command::ProvidedKeys { reply } => self.provided_keys(reply),
            Command::StopProviding { keys, reply } => self.stop_providing(keys, reply),
            Command::FindProviders {
                cid,
                timeout,
                reply,
            } => self.find_providers(cid, timeout, reply),
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
            Command::PutRecord {
                name,
                record,
                reply,
            } => self.put_record(name, record, reply),
            Command::GetRecord {
                name,
                timeout,
                reply,
            } => self.get_record(name, far_deadline(timeout), reply),
            Command::Subscribe {
                name,
                follow,
                reply,
            } => self.subscribe(name, follow, reply),
            Command::RecordSources { name, reply } => self.record_sources(name, reply),
            Command::Unsubscribe { name, reply } => {
                self.leave_heads(name);
                self.unsubscribe(name, reply)
            }
            Command::RefuseRecord {
                name,
                record,
                instead,
                reply,
            } => {
                self.refuse_record(name, &record, instead.as_deref());
                let _ = reply.send(Ok(()));
            }
            Command::ServeHeads { name, reply } => self.serve_heads(name, reply),
            Command::AnnounceHead {
                name,
                commit,
                reply,
            } => self.announce_head(name, commit, reply),
        }
    }

    // ----- swarm events -----

    fn on_swarm_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(NodeBehaviourEvent::Bitswap(ev)) => self.on_bitswap(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Kad(ev)) => {
                if !self.on_kad_record(&ev) {
                    self.on_kad(ev)
                }
            }
            SwarmEvent::Behaviour(NodeBehaviourEvent::Gossipsub(ev)) => self.on_gossip(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Pull(ev)) => self.on_pull(ev),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.on_identify(peer_id, info),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                self.on_mdns(list)
            }
            SwarmEvent::Behaviour(NodeBehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result,
            })) => self.on_ping(peer, connection, result),
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
            } => self.on_connection_established(peer_id, connection_id, num_established, endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => self.on_connection_closed(peer_id, connection_id, num_established),
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => self.on_outgoing_connection_error(connection_id, peer_id, error),
            other => tracing::trace!(?other, "swarm event"),
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

        self.expire_dials(now);
        self.expire_finds(now);
        self.expire_gets(now);
        self.redial_sources(now);
        self.reannounce_heads();
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
}

/// `now + timeout`, saturating at about a century for absurd timeouts instead of overflowing.
fn far_deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}
