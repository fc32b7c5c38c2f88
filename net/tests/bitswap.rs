//! Bitswap between real nodes on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_net::{fetch_dag, MemoryStore, NetError, NetSource};
use cairn_store::{Block, BlockSource, Blockstore, Cid, GetError, StoreError, StoreStats};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_fetch_by_cid_and_dag() {
    let (a, a_store) = start_mem(test_config()).await;
    let (b, b_store) = start_mem(test_config()).await;
    let small = raw_block(1, 12);
    let big = raw_block(2, 1 << 20);
    let (root, blocks) = dag(3, 40, 100_000);
    a_store.put(&small).unwrap();
    a_store.put(&big).unwrap();
    a_store.put_many(&blocks).unwrap();

    let peer = b.connect(&addr(&a).await).await.unwrap();
    assert_eq!(peer, a.peer_id());

    let got = b.fetch(*small.cid()).await.unwrap();
    assert_eq!(&got, small.data());
    let got = b.fetch(*big.cid()).await.unwrap();
    assert_eq!(&got, big.data());
    assert!(b_store.has(big.cid()).unwrap(), "fetched blocks are cached");

    let source = NetSource::new(b.clone());
    let mut last = 0;
    let done = fetch_dag(&source, root, 16, |p| last = p.blocks)
        .await
        .unwrap();
    assert_eq!(done.blocks, 41);
    assert_eq!(last, 41);
    for blk in &blocks {
        assert_eq!(b_store.get(blk.cid()).unwrap().as_ref(), Some(blk.data()));
    }
    let s = b.bitswap_stats().await.unwrap();
    assert_eq!(s.blocks_received, 43);
    assert_eq!(s.rejected_blocks, 0);
    let sa = a.bitswap_stats().await.unwrap();
    assert_eq!(sa.blocks_sent, 43);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_of_one_cid_share_one_want() {
    let (a, a_store) = start_mem(test_config()).await;
    let (b, _) = start_mem(test_config()).await;
    let blk = raw_block(9, 300_000);
    a_store.put(&blk).unwrap();
    b.connect(&addr(&a).await).await.unwrap();
    let cid = *blk.cid();
    let (x, y, z) = tokio::join!(b.fetch(cid), b.fetch(cid), b.fetch(cid));
    for r in [x, y, z] {
        assert_eq!(&r.unwrap(), blk.data());
    }
    assert_eq!(a.bitswap_stats().await.unwrap().blocks_sent, 1);
    assert_eq!(b.bitswap_stats().await.unwrap().blocks_received, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cid_ends_with_no_providers_once_every_peer_and_the_dht_said_no() {
    let (a, _) = start_mem(test_config()).await;
    let (b, _) = start_mem(test_config()).await;
    b.connect(&addr(&a).await).await.unwrap();
    // A must be in B's DHT table (identify) for the DHT query to ask it.
    wait_until(10, "A to enter B's routing table", || async {
        b.search_providers(*raw_block(1, 1).cid(), Duration::from_secs(5))
            .await
            .unwrap()
            .peers_queried
            > 0
    })
    .await;
    let missing = raw_block(77, 10);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        b.fetch_with_timeout(*missing.cid(), Duration::from_secs(60)),
    )
    .await
    .expect("the fetch ends when the DHT query does, not at its deadline");
    assert!(
        matches!(r, Err(NetError::NoProviders { cid, peers_queried: 1 }) if cid == *missing.cid()),
        "{r:?}"
    );

    // Through the BlockSource trait the same answer is GetError::NoProviders.
    let source = NetSource::new(b.clone()).with_timeout(Duration::from_secs(60));
    let r = source.get(missing.cid()).await;
    assert!(
        matches!(
            r,
            Err(GetError::NoProviders {
                peers_queried: 1,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        b.bitswap_stats().await.unwrap().wants,
        0,
        "answered wants are dropped"
    );
}

/// A store that says it has every block but takes `delay` to read any (a slow peer).
struct Slow {
    delay: Duration,
}

impl Blockstore for Slow {
    fn put(&self, _: &Block) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn get(&self, _: &Cid) -> Result<Option<Bytes>, StoreError> {
        std::thread::sleep(self.delay);
        Ok(None)
    }
    fn get_verified(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        self.get(cid)
    }
    fn has(&self, _: &Cid) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn size(&self, _: &Cid) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    fn delete(&self, _: &Cid) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn cids(&self) -> Box<dyn Iterator<Item = Result<Cid, StoreError>> + Send + '_> {
        Box::new(std::iter::empty())
    }
    fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(StoreStats::default())
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_a_peer_does_not_deliver_in_time_times_out_within_the_deadline() {
    let slow = Arc::new(Slow {
        delay: Duration::from_secs(3),
    });
    let a = start(slow, test_config()).await;
    let (b, _) = start_mem(test_config()).await;
    b.connect(&addr(&a).await).await.unwrap();
    let missing = raw_block(78, 10);
    let t = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(6),
        b.fetch_with_timeout(*missing.cid(), Duration::from_secs(1)),
    )
    .await
    .expect("fetch must end by its own deadline");
    assert!(
        matches!(r, Err(NetError::FetchTimeout { cid, secs: 1 }) if cid == *missing.cid()),
        "{r:?}"
    );
    assert!(t.elapsed() >= Duration::from_secs(1));
    let source = NetSource::new(b.clone()).with_timeout(Duration::from_secs(1));
    let r = source.get(raw_block(79, 10).cid()).await;
    assert!(matches!(r, Err(GetError::Timeout { secs: 1, .. })), "{r:?}");
    assert_eq!(
        b.bitswap_stats().await.unwrap().wants,
        0,
        "expired wants are dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_addresses_give_clear_errors() {
    let (b, _) = start_mem(test_config()).await;
    let e = b.connect("not a multiaddr").await.unwrap_err();
    assert!(matches!(e, NetError::BadAddr { .. }), "{e}");
    assert!(e.to_string().contains("not a multiaddr"));

    // Nothing listens on port 1: refused at once.
    let e = b.connect("/ip4/127.0.0.1/tcp/1").await.unwrap_err();
    assert!(matches!(e, NetError::Dial { .. }), "{e}");
    assert!(e.to_string().contains("/ip4/127.0.0.1/tcp/1"), "{e}");

    // A black-holed address: the dial deadline (3 s in tests) answers.
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        b.connect("/ip4/10.255.255.1/tcp/4001"),
    )
    .await;
    let e = r
        .expect("connect must end by its own deadline")
        .unwrap_err();
    assert!(
        matches!(e, NetError::DialTimeout { .. } | NetError::Dial { .. }),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_is_banned_and_honest_peer_delivers() {
    let hostile_store = Arc::new(CorruptingStore(MemoryStore::new()));
    let h = start(hostile_store.clone(), test_config()).await;
    let (a, a_store) = start_mem(test_config()).await;
    let (b, b_store) = start_mem(test_config()).await;
    let (root, blocks) = dag(5, 20, 50_000);
    hostile_store.put_many(&blocks).unwrap();
    a_store.put_many(&blocks).unwrap();

    // Only the hostile peer at first: it says HAVE, then sends wrong bytes.
    b.connect(&addr(&h).await).await.unwrap();
    let fetch = {
        let b = b.clone();
        tokio::spawn(async move { b.fetch(root).await })
    };
    wait_until(10, "the hostile peer to be banned", || async {
        b.bitswap_stats().await.unwrap().peers_banned == 1
    })
    .await;
    assert!(!b.peers().await.unwrap().contains(&h.peer_id()));
    assert!(
        b.connect(&addr(&h).await).await.is_err(),
        "a banned peer is refused"
    );

    b.connect(&addr(&a).await).await.unwrap();
    let got = fetch.await.unwrap().unwrap();
    assert_eq!(&got, blocks.last().unwrap().data());
    let source = NetSource::new(b.clone());
    fetch_dag(&source, root, 8, |_| {}).await.unwrap();
    for blk in &blocks {
        assert_eq!(b_store.get(blk.cid()).unwrap().as_ref(), Some(blk.data()));
    }
    let s = b.bitswap_stats().await.unwrap();
    assert!(s.rejected_blocks >= 1, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_providers_one_killed_mid_transfer() {
    let (a1, s1) = start_mem(test_config()).await;
    let (a2, s2) = start_mem(test_config()).await;
    let (b, b_store) = start_mem(test_config()).await;
    let (root, blocks) = dag(6, 300, 64 * 1024);
    s1.put_many(&blocks).unwrap();
    s2.put_many(&blocks).unwrap();
    b.connect(&addr(&a1).await).await.unwrap();
    b.connect(&addr(&a2).await).await.unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let task = {
        let b = b.clone();
        tokio::spawn(async move {
            let source = NetSource::new(b);
            fetch_dag(&source, root, 32, |p| {
                if p.blocks == 60 {
                    let _ = tx.try_send(());
                }
            })
            .await
        })
    };
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("transfer started");
    let sent1 = a1.bitswap_stats().await.unwrap().blocks_sent;
    let sent2 = a2.bitswap_stats().await.unwrap().blocks_sent;
    a1.shutdown().await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("fetch finishes after a provider dies")
        .unwrap()
        .unwrap();
    assert_eq!(done.blocks, 301);
    for blk in &blocks {
        assert!(b_store.has(blk.cid()).unwrap());
    }
    assert!(
        sent1 > 0 && sent2 > 0,
        "both providers served: {sent1} / {sent2}"
    );
    let s = b.bitswap_stats().await.unwrap();
    assert_eq!(s.blocks_received, 301, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_over_quic() {
    let quic = || cairn_net::NetConfig {
        listen_addrs: vec!["/ip4/127.0.0.1/udp/0/quic-v1".into()],
        ..test_config()
    };
    let (a, a_store) = start_mem(quic()).await;
    let (b, _) = start_mem(quic()).await;
    let blk = raw_block(31, 700_000);
    a_store.put(&blk).unwrap();
    let a_addr = addr(&a).await;
    assert!(a_addr.contains("/quic-v1/"), "{a_addr}");
    b.connect(&a_addr).await.unwrap();
    assert_eq!(&b.fetch(*blk.cid()).await.unwrap(), blk.data());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_many_gets_every_block() {
    use futures::StreamExt;
    let (a, a_store) = start_mem(test_config()).await;
    let (b, _) = start_mem(test_config()).await;
    let blocks: Vec<_> = (0..50).map(|i| raw_block(900 + i, 10_000)).collect();
    a_store.put_many(&blocks).unwrap();
    b.connect(&addr(&a).await).await.unwrap();
    let source = NetSource::new(b.clone());
    let cids = blocks.iter().map(|b| *b.cid()).collect();
    let got: Vec<_> = cairn_net::fetch_many(&source, cids, 16).collect().await;
    assert_eq!(got.len(), 50);
    for (cid, r) in got {
        let want = blocks.iter().find(|b| *b.cid() == cid).unwrap();
        assert_eq!(&r.unwrap(), want.data());
    }
}
