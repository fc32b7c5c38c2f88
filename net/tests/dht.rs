//! Kademlia: a network of real nodes, providers found through the DHT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use cairn_net::{fetch_dag, NetConfig, NetSource};
use cairn_store::Blockstore;
use common::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprovide_restores_records_a_peer_lost() {
    // A is the only DHT server P can reach. A restarts with the same identity and port but an
    // empty record store; only P's periodic reprovide can tell it about P again.
    let a_seed = seed();
    let a_store = std::sync::Arc::new(cairn_net::MemoryStore::new());
    let a = cairn_net::Node::start(test_config(), a_seed, a_store.clone())
        .await
        .unwrap();
    let a_addr = addr(&a).await;
    let tcp_part = a_addr.split("/p2p/").next().unwrap().to_string();

    let p_cfg = NetConfig {
        reprovide_interval: Some(Duration::from_secs(1)),
        ..with_bootstrap(&a_addr)
    };
    let (p, p_store) = start_mem(p_cfg).await;
    let blk = raw_block(555, 1000);
    p_store.put(&blk).unwrap();
    wait_until(10, "P to reach A", || async {
        p.peers().await.unwrap().contains(&a.peer_id())
    })
    .await;
    assert_eq!(p.provide(vec![*blk.cid()]).await.unwrap().ok, 1);

    a.shutdown().await.unwrap();
    let a2_cfg = NetConfig {
        listen_addrs: vec![tcp_part],
        ..test_config()
    };
    let mut a2 = None;
    for _ in 0..50 {
        // The port may take a moment to be released by the old listener.
        match cairn_net::Node::start(
            a2_cfg.clone(),
            a_seed,
            std::sync::Arc::new(cairn_net::MemoryStore::new()),
        )
        .await
        {
            Ok(n) => {
                a2 = Some(n);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let a2 = a2.expect("A restarts on its old port");
    let (c, _) = start_mem(with_bootstrap(&a_addr)).await;
    wait_until(20, "C to find P through A's re-learned record", || async {
        c.find_providers(*blk.cid(), Duration::from_secs(1))
            .await
            .unwrap()
            .contains(&p.peer_id())
    })
    .await;
    drop(a2);
}
