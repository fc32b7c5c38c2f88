//! Two nodes on loopback: B fetches a DAG of N blocks from A with `fetch_dag`, then announces
//! CIDs to a small DHT. Prints throughput next to a reference measured in the same run (hashing
//! the same bytes with SHA-256 on one core, which B must do anyway), and the per-CID cost of provide.
//!
//! `cargo run --release -p cairn-net --example bench_fetch -- [blocks] [block KiB] [provide CIDs]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_net::{fetch_dag, DhtMode, MemoryStore, NetConfig, NetSource, Node};
use cairn_store::{cid_for, Block, Blockstore, HashAlg, PbLink, PbNode, DAG_PB, RAW};

fn seed(n: u8) -> [u8; 32] {
    let mut s = [7u8; 32];
    s[0] = n;
    s
}

fn cfg(bootstrap: Vec<String>) -> NetConfig {
    NetConfig {
        dht_mode: DhtMode::Server,
        bootstrap,
        fetch_timeout: Duration::from_secs(60),
        ..NetConfig::local()
    }
}

fn data(i: u64, len: usize) -> Bytes {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(400);
    let kib = args.get(1).copied().unwrap_or(256);
    let provide_n = args.get(2).copied().unwrap_or(2000);

    let leaves: Vec<Block> = (0..n as u64)
        .map(|i| Block::encode(1, RAW, HashAlg::Sha2_256, data(i, kib * 1024)))
        .collect();
    let total: usize = leaves.iter().map(|b| b.data().len()).sum();

    // Reference: SHA-256 over the same bytes on this machine.
    let t = Instant::now();
    for b in &leaves {
        std::hint::black_box(cid_for(1, RAW, HashAlg::Sha2_256, b.data()));
    }
    let hash_secs = t.elapsed().as_secs_f64();

    // A root node linking all leaves (balanced layouts would nest; one level is enough here).
    let mut blocks = leaves;
    let mut level: Vec<PbLink> = blocks
        .iter()
        .map(|b| PbLink {
            cid: *b.cid(),
            name: Some(String::new()),
            tsize: Some(b.data().len() as u64),
        })
        .collect();
    let mut root = None;
    while root.is_none() {
        let mut next = Vec::new();
        for chunk in level.chunks(174) {
            let node = PbNode {
                links: chunk.to_vec(),
                data: Some(Bytes::from_static(b"\x08\x02")),
            };
            let b = Block::encode(0, DAG_PB, HashAlg::Sha2_256, Bytes::from(node.encode()));
            next.push(PbLink {
                cid: *b.cid(),
                name: Some(String::new()),
                tsize: None,
            });
            blocks.push(b);
        }
        if next.len() == 1 {
            root = Some(next[0].cid);
        }
        level = next;
    }
    let root = root.ok_or("no root")?;

    let a_store = Arc::new(MemoryStore::new());
    a_store.put_many(&blocks)?;
    let a = Node::start(cfg(vec![]), seed(1), a_store.clone()).await?;
    let a_addr = a.listen_addrs().await?[0].to_string();
    let b_store = Arc::new(MemoryStore::new());
    let b = Node::start(cfg(vec![a_addr.clone()]), seed(2), b_store.clone()).await?;
    b.connect(&a_addr).await?;

    let source = NetSource::new(b.clone());
    let t = Instant::now();
    let done = fetch_dag(&source, root, 64, |_| {}).await?;
    let secs = t.elapsed().as_secs_f64();
    let mb = total as f64 / 1e6;
    println!(
        "bitswap fetch: {} blocks ({} KiB leaves), {:.1} MB in {:.2} s = {:.0} blocks/s, {:.1} MB/s",
        done.blocks,
        kib,
        mb,
        secs,
        done.blocks as f64 / secs,
        mb / secs
    );
    println!(
        "reference sha256 on one core: {:.1} MB/s  -> fetch/hash ratio {:.2}",
        mb / hash_secs,
        (mb / secs) / (mb / hash_secs)
    );
    let s = b.bitswap_stats().await?;
    println!("B stats: {s:?}");

    // Provide: 4 more DHT servers so that each announcement has peers to reach.
    let mut others = Vec::new();
    for i in 0..4u8 {
        others.push(
            Node::start(
                cfg(vec![a_addr.clone()]),
                seed(10 + i),
                Arc::new(MemoryStore::new()),
            )
            .await?,
        );
    }
    for o in &others {
        o.connect(&a_addr).await?;
    }
    let cids: Vec<_> = (0..provide_n as u64)
        .map(|i| cid_for(1, RAW, HashAlg::Sha2_256, &i.to_le_bytes()))
        .collect();
    let t = Instant::now();
    let report = b.provide(cids).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "provide: {} CIDs ({} ok, {} failed) in {:.2} s on a 6-node loopback DHT = {:.2} ms/CID wall, \
         {:.0} CIDs/s; 100k CIDs would take ~{:.0} s",
        provide_n,
        report.ok,
        report.failed,
        secs,
        secs * 1000.0 / provide_n as f64,
        provide_n as f64 / secs,
        secs * 100_000.0 / provide_n as f64
    );
    Ok(())
}
