//! Helpers shared by the network tests: nodes on 127.0.0.1, test blocks and DAGs, waiting.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_net::{DhtMode, MemoryStore, NetConfig, Node};
use cairn_store::{
    Block, Blockstore, Cid, HashAlg, PbLink, PbNode, StoreError, StoreStats, DAG_PB, RAW,
};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A fresh identity seed.
pub fn seed() -> [u8; 32] {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&n.to_le_bytes());
    s[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    s[12..20].copy_from_slice(&t.to_le_bytes());
    s
}

pub fn test_config() -> NetConfig {
    NetConfig {
        dht_mode: DhtMode::Server,
        fetch_timeout: Duration::from_secs(20),
        provider_search_delay: Duration::from_millis(300),
        block_request_timeout: Duration::from_secs(5),
        dial_timeout: Duration::from_secs(3),
        ..NetConfig::local()
    }
}

/// [`test_config`] bootstrapping from `addr`.
#[allow(dead_code)] // not every test binary uses it
pub fn with_bootstrap(addr: &str) -> NetConfig {
    NetConfig {
        bootstrap: vec![addr.to_string()],
        ..test_config()
    }
}

pub async fn start(store: Arc<dyn Blockstore>, cfg: NetConfig) -> Node {
    Node::start(cfg, seed(), store).await.unwrap()
}

pub async fn start_mem(cfg: NetConfig) -> (Node, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let node = start(store.clone(), cfg).await;
    (node, store)
}

pub async fn addr(n: &Node) -> String {
    n.listen_addrs().await.unwrap()[0].to_string()
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

pub fn raw_block(seed: u64, len: usize) -> Block {
    Block::encode(1, RAW, HashAlg::Sha2_256, bytes(seed, len))
}

/// A two-level dag-pb DAG: a root linking `leaves` raw leaves of `leaf_size` bytes.
/// Returns (root CID, all blocks).
pub fn dag(seed: u64, leaves: usize, leaf_size: usize) -> (Cid, Vec<Block>) {
    let mut blocks: Vec<Block> = (0..leaves)
        .map(|i| raw_block(seed * 1_000_003 + i as u64, leaf_size))
        .collect();
    let links = blocks
        .iter()
        .map(|b| PbLink {
            cid: *b.cid(),
            name: Some(String::new()),
            tsize: Some(b.data().len() as u64),
        })
        .collect();
    let root = PbNode {
        links,
        data: Some(Bytes::from_static(b"\x08\x02")),
    };
    let root = Block::encode(0, DAG_PB, HashAlg::Sha2_256, Bytes::from(root.encode()));
    let cid = *root.cid();
    blocks.push(root);
    (cid, blocks)
}

/// Polls `f` until it is true, failing after `secs`.
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let r = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "timed out waiting for {what}");
}

/// A blockstore that serves every block with its bytes flipped (a hostile peer's store).
pub struct CorruptingStore(pub MemoryStore);

fn corrupt(b: Bytes) -> Bytes {
    let mut v = b.to_vec();
    if v.is_empty() {
        v.push(1);
    } else {
        v[0] ^= 0xff;
    }
    Bytes::from(v)
}

impl Blockstore for CorruptingStore {
    fn put(&self, block: &Block) -> Result<bool, StoreError> {
        self.0.put(block)
    }
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        Ok(self.0.get(cid)?.map(corrupt))
    }
    fn get_verified(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        self.get(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.0.has(cid)
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        self.0.size(cid)
    }
    fn delete(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.0.delete(cid)
    }
    fn cids(&self) -> Box<dyn Iterator<Item = Result<Cid, StoreError>> + Send + '_> {
        self.0.cids()
    }
    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.0.stats()
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A record of `key`'s name pointing at a small raw block, version `seq`, valid for
/// `valid_for` from now.
pub fn record(key: &cairn_store::ShareKey, seq: u64, valid_for: Duration) -> Vec<u8> {
    let root = *raw_block(seq, 8).cid();
    let fields = cairn_store::RecordFields::new(
        cairn_store::RecordValue::ipfs(root),
        seq,
        std::time::SystemTime::now() + valid_for,
    );
    cairn_store::IpnsRecord::create(key, &fields)
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// Gossipsub as a hostile test peer runs it: messages signed correctly by `hk`, so only cairn's
/// own checks stand in the way of what it sends.
pub fn signed_gossip(hk: &libp2p::identity::Keypair) -> libp2p::gossipsub::Behaviour {
    let gcfg = libp2p::gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    libp2p::gossipsub::Behaviour::new(
        libp2p::gossipsub::MessageAuthenticity::Signed(hk.clone()),
        gcfg,
    )
    .unwrap()
}

/// A hostile test peer's swarm: TCP, Noise, Yamux and `behaviour`.
pub fn hostile_swarm<B: libp2p::swarm::NetworkBehaviour>(
    hk: libp2p::identity::Keypair,
    behaviour: B,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(hk)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Runs a test peer's swarm for `d` (what it sent travels, what comes in is taken).
pub async fn pump<B: libp2p::swarm::NetworkBehaviour>(swarm: &mut libp2p::Swarm<B>, d: Duration) {
    use futures::StreamExt;
    let until = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < until {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }
}

/// Runs a hostile test peer's swarm until `by` has dropped its connection (banned it), at
/// most 20 s.
pub async fn until_banned<B: libp2p::swarm::NetworkBehaviour>(
    swarm: &mut libp2p::Swarm<B>,
    by: libp2p::PeerId,
) {
    use futures::StreamExt;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while swarm.is_connected(&by) {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = tokio::time::sleep_until(until) => panic!("the hostile peer was not banned"),
        }
    }
}
