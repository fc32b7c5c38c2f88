//! Kademlia: a network of real nodes, providers found through the DHT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use cairn_net::{fetch_dag, NetConfig, NetSource};
use cairn_store::Blockstore;
use common::*;

fn with_bootstrap(addr: &str) -> NetConfig {
    NetConfig {
        bootstrap: vec![addr.to_string()],
        ..test_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_fetcher_finds_provider_through_the_dht() {
    let (boot, _) = start_mem(test_config()).await;
    let boot_addr = addr(&boot).await;
    let mut nodes = Vec::new();
    for _ in 0..9 {
        nodes.push(start_mem(with_bootstrap(&boot_addr)).await);
    }
    wait_until(20, "every node to reach the bootstrap node", || async {
        boot.peers().await.unwrap().len() >= 9
    })
    .await;

    let (provider, p_store) = &nodes[5];
    let (root, blocks) = dag(42, 30, 20_000);
    p_store.put_many(&blocks).unwrap();
    let report = provider.provide(vec![root]).await.unwrap();
    assert_eq!(report.ok, 1, "{report:?}");

    // The fetcher knows only the bootstrap node, which does not have the blocks.
    let (fetcher, f_store) = start_mem(with_bootstrap(&boot_addr)).await;
    let found = fetcher
        .find_providers(root, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(found.contains(&provider.peer_id()), "{found:?}");

    let source = NetSource::new(fetcher.clone());
    let t = Instant::now();
    let done = tokio::time::timeout(
        Duration::from_secs(30),
        fetch_dag(&source, root, 16, |_| {}),
    )
    .await
    .expect("DAG fetched in time")
    .unwrap();
    assert_eq!(done.blocks, 31);
    for b in &blocks {
        assert!(f_store.has(b.cid()).unwrap());
    }
    eprintln!("fetch via DHT: {:?}", t.elapsed());

    // Cost of announcing: many CIDs at once, bounded in flight.
    let n = 300u64;
    let cids: Vec<_> = (0..n).map(|i| *raw_block(10_000 + i, 16).cid()).collect();
    let (_, p3) = &nodes[3];
    for i in 0..n {
        p3.put(&raw_block(10_000 + i, 16)).unwrap();
    }
    let t = Instant::now();
    let report = nodes[3].0.provide(cids).await.unwrap();
    let el = t.elapsed();
    assert_eq!(report.ok, n, "{report:?}");
    eprintln!(
        "provide: {n} CIDs in {el:?} on a 11-node loopback DHT = {:.2} ms/CID wall ({} ok)",
        el.as_secs_f64() * 1000.0 / n as f64,
        report.ok
    );
}
