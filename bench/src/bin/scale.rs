//! A DHT of many real nodes in one process, on 127.0.0.1: how long name resolution (IPNS
//! `GET_VALUE`) and provider lookups take for a share resolved by 1, 10 and 100 followers at
//! once, and again after a fifth of the nodes left.
//!
//! Usage: `cargo build --release -p cairn-bench && ./target/release/scale [NODES]` (default 200).
//! Each node is a full cairn `Node` (TCP, Noise, Yamux, Kademlia in server mode, gossipsub,
//! Bitswap) over a memory store, bootstrapped from a few earlier nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_net::{DhtMode, MemoryStore, NetConfig, Node};
use cairn_store::{
    Block, Blockstore, HashAlg, IpnsRecord, RecordFields, RecordValue, ShareKey, RAW,
};

fn config(bootstrap: Vec<String>) -> NetConfig {
    let mut cfg = NetConfig {
        dht_mode: DhtMode::Server,
        bootstrap,
        fetch_timeout: Duration::from_secs(20),
        // Only TCP (a QUIC socket per node would double the descriptors), few connections
        // each, closed when idle: a process holds at most 20 000 descriptors here.
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/0".into()],
        idle_timeout: Duration::from_secs(5),
        ..NetConfig::local()
    };
    cfg.limits.max_connections = 40;
    cfg
}

fn seed(i: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    s[8..16].copy_from_slice(&(i + 1).to_le_bytes());
    s
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Resolves the name and looks the root's providers up from `resolvers` at once.
async fn measure(
    resolvers: &[Node],
    name: cairn_store::IpnsName,
    root: cairn_store::Cid,
) -> (Vec<Duration>, Vec<Duration>, usize) {
    let mut tasks = Vec::new();
    for n in resolvers {
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let rec = n
                .get_record(name, Duration::from_secs(30))
                .await
                .ok()
                .flatten();
            let resolve = t.elapsed();
            let t = Instant::now();
            let provs = n
                .find_providers(root, Duration::from_secs(30))
                .await
                .unwrap_or_default();
            (resolve, rec.is_some(), t.elapsed(), !provs.is_empty())
        }));
    }
    let (mut res, mut prov, mut failed) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        let (r, ok, p, found) = t.await.unwrap();
        if ok {
            res.push(r);
        }
        if found {
            prov.push(p);
        }
        if !(ok && found) {
            failed += 1;
        }
    }
    res.sort();
    prov.sort();
    (res, prov, failed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(200);
    let t = Instant::now();
    let mut nodes: Vec<Node> = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    for i in 0..count {
        // Each node knows up to three earlier nodes, so the network is not a star.
        let boot: Vec<String> = (0..3)
            .filter_map(|k| i.checked_sub(1 + k * (i / 3 + 1)).map(|j| addrs[j].clone()))
            .collect();
        let store: Arc<dyn Blockstore> = Arc::new(MemoryStore::new());
        let node = Node::start(config(boot), seed(i as u64), store)
            .await
            .unwrap();
        let a = node.listen_addrs().await.unwrap()[0].to_string();
        addrs.push(a);
        nodes.push(node);
    }
    // Let the routing tables fill.
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!(
        "{count} nodes up in {:.1} s (with 10 s for routing tables)",
        t.elapsed().as_secs_f64()
    );

    // The publisher: a share's record and its root's provider record.
    let publisher = &nodes[count / 2];
    let key = ShareKey::from_seed(&[99; 32]);
    let name = key.name();
    let block = Block::encode(
        1,
        RAW,
        HashAlg::Sha2_256,
        cairn_store::Bytes::from_static(b"scale"),
    );
    publisher.store().put(&block).unwrap();
    let fields = RecordFields::new(
        RecordValue::ipfs(*block.cid()),
        1,
        std::time::SystemTime::now() + Duration::from_secs(3600),
    );
    let record = IpnsRecord::create(&key, &fields).unwrap();
    let put = publisher
        .put_record(name, record.as_bytes().to_vec())
        .await
        .unwrap();
    let provided = publisher.provide(vec![*block.cid()]).await.unwrap();
    println!("published: dht put {}, provide {provided:?}", put.dht);

    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut pick = |n: usize, alive: &[usize]| -> Vec<usize> {
        let mut out = Vec::new();
        // The publisher is never picked.
        while out.len() < n.min(alive.len() - 1) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let c = alive[(rng % alive.len() as u64) as usize];
            if !out.contains(&c) && c != count / 2 {
                out.push(c);
            }
        }
        out
    };
    let mut alive: Vec<usize> = (0..count).collect();
    for phase in ["all nodes", "after 20 % left"] {
        if phase != "all nodes" {
            let leaving = pick(count / 5, &alive);
            for &i in &leaving {
                let _ = nodes[i].shutdown().await;
            }
            alive.retain(|i| !leaving.contains(i));
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        println!(
            "\n{phase} ({} up): resolve (GET_VALUE) and provider lookup, ms",
            alive.len()
        );
        for followers in [1usize, 10, 100] {
            let who = pick(followers, &alive);
            let resolvers: Vec<Node> = who.iter().map(|&i| nodes[i].clone()).collect();
            let (res, prov, failed) = measure(&resolvers, name, *block.cid()).await;
            if res.is_empty() || prov.is_empty() {
                println!(
                    "  {followers:>3} followers: {} resolved, {} found providers, of {}",
                    res.len(),
                    prov.len(),
                    resolvers.len()
                );
                continue;
            }
            println!(
                "  {followers:>3} followers: resolve p50 {:>6.1} p99 {:>6.1} | providers p50 {:>6.1} p99 {:>6.1} | failed {failed}",
                percentile(&res, 0.5),
                percentile(&res, 0.99),
                percentile(&prov, 0.5),
                percentile(&prov, 0.99),
            );
        }
    }
    for n in &nodes {
        let _ = n.shutdown().await;
    }
}
