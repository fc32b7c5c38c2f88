//! The cloneable handle to the network node; the commands it sends are in `command`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_store::{Blockstore, Cid, IpnsName};
use libp2p::{identity, Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::addr::parse_addr;
use crate::command::{
    BitswapStats, Command, Fetched, HeadEvent, PeerInfo, ProvideReport, ProviderSearch,
    RecordEvent, RecordLookup, RecordPut, Reply,
};
use crate::config::NetConfig;

/// Pushed records buffered for each subscriber of [`Node::record_events`].
const RECORD_EVENTS: usize = 256;
use crate::error::NetError;
use crate::event_loop::EventLoop;

/// A handle to the running network node. Cheap to clone; the node stops when every handle is
/// dropped or [`Node::shutdown`] is called.
#[derive(Clone)]
pub struct Node {
    tx: mpsc::Sender<Command>,
    /// Valid records pushed for subscribed names.
    records: tokio::sync::broadcast::Sender<RecordEvent>,
    /// Other writers' heads of the shares whose heads topics were joined.
    heads: tokio::sync::broadcast::Sender<HeadEvent>,
    peer_id: PeerId,
    store: Arc<dyn Blockstore>,
    fetch_timeout: Duration,
    readahead_blocks: usize,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

/// The peer id a node started with this 32-byte Ed25519 seed has (without starting one).
pub fn peer_id_from_seed(seed: &[u8; 32]) -> Result<PeerId, NetError> {
    let mut seed = *seed;
    let key =
        identity::Keypair::ed25519_from_bytes(&mut seed).map_err(|_| NetError::BadIdentity)?;
    Ok(key.public().to_peer_id())
}

/// Whether the store holds a block with this multihash (as a raw or dag-pb block, CIDv1 or v0).
/// A store that cannot say counts as holding it: nothing is withdrawn on a read error.
fn stored(store: &dyn Blockstore, multihash: &[u8]) -> bool {
    let v1 = |codec: u8| {
        let mut bytes = vec![1, codec];
        bytes.extend_from_slice(multihash);
        Cid::try_from(bytes.as_slice()).ok()
    };
    // Both codecs are below 0x80, so each is one varint byte; a 34-byte sha2-256 multihash
    // alone is a CIDv0.
    let candidates = [
        v1(cairn_store::RAW as u8),
        v1(cairn_store::DAG_PB as u8),
        Cid::try_from(multihash).ok(),
    ];
    let mut any = false;
    for c in candidates.iter().flatten() {
        any = true;
        if store.has(c).unwrap_or(true) {
            return true;
        }
    }
    // A key that is no CID at all was not announced for a block: leave it alone.
    !any
}

impl Node {
    /// Starts a node with the identity derived from a 32-byte Ed25519 seed, serving and caching
    /// blocks in `store`. Returns once every listen address is bound.
    pub async fn start(
        config: NetConfig,
        seed: [u8; 32],
        store: Arc<dyn Blockstore>,
    ) -> Result<Node, NetError> {
        let mut seed = seed;
        let key =
            identity::Keypair::ed25519_from_bytes(&mut seed).map_err(|_| NetError::BadIdentity)?;
        let peer_id = key.public().to_peer_id();
        let fetch_timeout = config.fetch_timeout;
        let readahead_blocks = config.limits.readahead_blocks;
        let (tx, rx) = mpsc::channel(config.limits.command_queue.max(1));
        let (records, _) = tokio::sync::broadcast::channel(RECORD_EVENTS);
        let (heads, _) = tokio::sync::broadcast::channel(RECORD_EVENTS);
        let event_loop = EventLoop::new(
            config,
            key,
            store.clone(),
            rx,
            records.clone(),
            heads.clone(),
        )
        .await?;
        tokio::spawn(event_loop.run());
        Ok(Node {
            records,
            heads,
            tx,
            peer_id,
            store,
            fetch_timeout,
            readahead_blocks,
        })
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await?;
        rx.await?
    }

    /// Publishes IPNS record `record` of `name` (signed here): kept in this node's DHT store,
    /// put to the DHT, pushed to the peers subscribed to the name's topic. Returns when the
    /// DHT put ended (an empty network is not an error: see [`RecordPut`]).
    pub async fn put_record(&self, name: IpnsName, record: Vec<u8>) -> Result<RecordPut, NetError> {
        self.ask(|reply| Command::PutRecord {
            name,
            record,
            reply,
        })
        .await
    }

    /// The best valid record of `name` this node keeps or the DHT gives within `timeout` (the
    /// first valid one from the network ends the search); `None` if there is none.
    pub async fn get_record(
        &self,
        name: IpnsName,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, NetError> {
        Ok(self.lookup_record(name, timeout).await?.record)
    }

    /// As [`Node::get_record`], and which peers answered (none: the network gave nothing
    /// valid within `timeout`, and the record, if any, is the copy kept here).
    pub async fn lookup_record(
        &self,
        name: IpnsName,
        timeout: Duration,
    ) -> Result<RecordLookup, NetError> {
        self.ask(|reply| Command::GetRecord {
            name,
            timeout,
            reply,
        })
        .await
    }

    /// Stops following (or serving) `name`: its topic, its sources and their redials go.
    pub async fn unsubscribe(&self, name: IpnsName) -> Result<(), NetError> {
        self.ask(|reply| Command::Unsubscribe { name, reply }).await
    }

    /// `record`, a valid record of `name` that the application refused (what it names is not
    /// acceptable): from now on it is not kept, forwarded, answered with or handed up again,
    /// and if it is the record held for `name` it is dropped, `instead` (the application's
    /// own current record, if any) kept in its place. Remembered for a bounded number of
    /// records.
    pub async fn refuse_record(
        &self,
        name: IpnsName,
        record: Vec<u8>,
        instead: Option<Vec<u8>>,
    ) -> Result<(), NetError> {
        self.ask(|reply| Command::RefuseRecord {
            name,
            record,
            instead,
            reply,
        })
        .await
    }

    /// For a name followed here, the connected peers that delivered its current record (the
    /// sources its new records come from); for a name only served here, the connected peers
    /// subscribed to its topic (its followers).
    pub async fn record_sources(&self, name: IpnsName) -> Result<Vec<PeerId>, NetError> {
        self.ask(|reply| Command::RecordSources { name, reply })
            .await
    }

    /// Listens for pushed records of `name` (IPNS over PubSub); they arrive on
    /// [`Node::record_events`].
    pub async fn subscribe(&self, name: IpnsName) -> Result<(), NetError> {
        self.ask(|reply| Command::Subscribe {
            name,
            follow: true,
            reply,
        })
        .await
    }

    /// Joins the topic of `name`, a name published here, without following it: its followers
    /// find this node among the topic's peers and ask it for the newest record.
    pub async fn serve_name(&self, name: IpnsName) -> Result<(), NetError> {
        self.ask(|reply| Command::Subscribe {
            name,
            follow: false,
            reply,
        })
        .await
    }

    /// Joins share `name`'s heads topic: its writers' heads arrive on [`Node::head_events`].
    pub async fn serve_heads(&self, name: IpnsName) -> Result<(), NetError> {
        self.ask(|reply| Command::ServeHeads { name, reply }).await
    }

    /// Announces `commit`, this node's head of share `name`, on the share's heads topic (and
    /// again to every peer that subscribes later). Returns whether a subscribed peer heard it.
    pub async fn announce_head(&self, name: IpnsName, commit: Vec<u8>) -> Result<bool, NetError> {
        self.ask(|reply| Command::AnnounceHead {
            name,
            commit,
            reply,
        })
        .await
    }

    /// Other writers' heads of the shares whose heads topics this node joined.
    pub fn head_events(&self) -> tokio::sync::broadcast::Receiver<HeadEvent> {
        self.heads.subscribe()
    }

    /// Valid records pushed for the names this node subscribed to.
    pub fn record_events(&self) -> tokio::sync::broadcast::Receiver<RecordEvent> {
        self.records.subscribe()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The blockstore the node serves from and caches into.
    pub fn store(&self) -> &Arc<dyn Blockstore> {
        &self.store
    }

    /// The default fetch deadline from the configuration.
    pub fn fetch_timeout(&self) -> Duration {
        self.fetch_timeout
    }

    /// Blocks a [`crate::NetSource`] fetches ahead of a sequential reader.
    pub fn readahead_blocks(&self) -> usize {
        self.readahead_blocks
    }

    /// The addresses the node listens on, each ending in `/p2p/<peer id>`.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(|reply| Command::ListenAddrs { reply }).await
    }

    /// Connects to a peer by multiaddr (with or without `/p2p/<id>`); returns its peer id.
    /// Fails with [`NetError::BadAddr`], [`NetError::Dial`] or [`NetError::DialTimeout`].
    pub async fn connect(&self, addr: &str) -> Result<PeerId, NetError> {
        let addr = parse_addr(addr)?;
        self.ask(|reply| Command::Connect { addr, reply }).await
    }

    /// Peers connected now.
    pub async fn peers(&self) -> Result<Vec<PeerId>, NetError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Every connected peer with its address, latency, transport and protocols, sorted by peer id.
    pub async fn peer_infos(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.ask(|reply| Command::PeerInfos { reply }).await
    }

    /// Closes the connections to a peer, given as a peer id or as a multiaddr (one ending in
    /// `/p2p/<id>` names the peer; otherwise the connections with that remote address are
    /// closed). Returns the peer once its connections are closed; [`NetError::NotConnected`]
    /// if there were none.
    pub async fn disconnect(&self, target: &str) -> Result<PeerId, NetError> {
        let target = match target.trim().parse::<PeerId>() {
            Ok(peer) => Multiaddr::empty().with(libp2p::multiaddr::Protocol::P2p(peer)),
            Err(_) => parse_addr(target).map_err(|_| NetError::BadPeer {
                text: target.to_string(),
            })?,
        };
        self.ask(|reply| Command::Disconnect { target, reply })
            .await
    }

    /// Announces to the DHT that this node provides `cids`. Announcements run with a bounded
    /// number of DHT queries in flight; the call returns when all have finished. The CIDs are
    /// re-announced every `reprovide_interval`.
    pub async fn provide(&self, cids: Vec<Cid>) -> Result<ProvideReport, NetError> {
        self.ask(|reply| Command::Provide { cids, reply }).await
    }

    /// Stops announcing blocks that are no longer in the store: their provider records leave
    /// this node's DHT store (so it stops naming itself for them) and are not re-announced.
    /// Returns how many were withdrawn. The store is consulted on a blocking thread.
    pub async fn withdraw_missing(&self) -> Result<usize, NetError> {
        let keys = self.ask(|reply| Command::ProvidedKeys { reply }).await?;
        let store = self.store.clone();
        let gone = tokio::task::spawn_blocking(move || {
            keys.into_iter()
                .filter(|k| !stored(&*store, k))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|_| NetError::Shutdown)?;
        let n = gone.len();
        if n > 0 {
            self.ask(|reply| Command::StopProviding { keys: gone, reply })
                .await?;
        }
        Ok(n)
    }

    /// Peers the DHT knows as providers of `cid`, gathered for at most `timeout`.
    pub async fn find_providers(
        &self,
        cid: Cid,
        timeout: Duration,
    ) -> Result<Vec<PeerId>, NetError> {
        Ok(self.search_providers(cid, timeout).await?.providers)
    }

    /// [`Node::find_providers`], also saying how the DHT query ended: it ran to completion
    /// (having asked [`ProviderSearch::peers_queried`] peers) or ran out of time.
    pub async fn search_providers(
        &self,
        cid: Cid,
        timeout: Duration,
    ) -> Result<ProviderSearch, NetError> {
        self.ask(|reply| Command::FindProviders {
            cid,
            timeout,
            reply,
        })
        .await
    }

    /// Fetches one block from the network (not the local store) with the configured deadline.
    /// The block is verified against `cid` and written to the store before it is returned.
    pub async fn fetch(&self, cid: Cid) -> Result<Bytes, NetError> {
        self.fetch_with_timeout(cid, self.fetch_timeout).await
    }

    /// [`Node::fetch`] with an explicit deadline.
    pub async fn fetch_with_timeout(&self, cid: Cid, timeout: Duration) -> Result<Bytes, NetError> {
        let fetch = |may_be_stored| {
            self.ask(move |reply| Command::Fetch {
                cid,
                timeout,
                may_be_stored,
                reply,
            })
        };
        match fetch(true).await? {
            Fetched::Block(b) => return Ok(b),
            Fetched::Stored => {
                if let Ok(Some(b)) = cairn_store::read_verified(&self.store, &cid).await {
                    return Ok(b);
                }
            }
        }
        // Stored and gone again (a failed write, a GC): from the network after all.
        match fetch(false).await? {
            Fetched::Block(b) => Ok(b),
            // Never: a fetch that may not be answered from the store is not.
            Fetched::Stored => Err(NetError::Shutdown),
        }
    }

    /// Bitswap counters.
    pub async fn bitswap_stats(&self) -> Result<BitswapStats, NetError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Stops the node: connections close, pending requests fail with [`NetError::Shutdown`].
    pub async fn shutdown(&self) -> Result<(), NetError> {
        match self.ask(|reply| Command::Shutdown { reply }).await {
            Ok(()) | Err(NetError::Shutdown) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
