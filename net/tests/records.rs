//! IPNS records between real nodes: put and get through the DHT, pushes over gossipsub, and
//! records that fail validation (bad signature, replay, another name's key, expired, too big)
//! refused by every path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cairn_net::NetConfig;
use cairn_store::ShareKey;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_travel_by_dht_and_by_push_and_bad_ones_are_refused() {
    let (a, _) = start_mem(test_config()).await;
    let a_addr = addr(&a).await;
    let (b, _) = start_mem(with_bootstrap(&a_addr)).await;
    let (c, _) = start_mem(with_bootstrap(&a_addr)).await;
    wait_until(20, "both nodes to reach A", || async {
        a.peers().await.unwrap().len() >= 2
    })
    .await;
    let key = ShareKey::from_seed(&[7; 32]);
    let name = key.name();

    // B follows the name's pushes before anything is published; C, the publisher, is connected
    // to B (a push goes to the subscribers a publisher knows; A, the hub, does not subscribe,
    // so it forwards nothing).
    b.subscribe(name).await.unwrap();
    let mut pushed = b.record_events();
    c.connect(&addr(&b).await).await.unwrap();
    // Gossipsub needs a heartbeat to learn the subscription.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let v1 = record(&key, 1, Duration::from_secs(3600));
    let put = c.put_record(name, v1.clone()).await.unwrap();
    assert!(put.dht, "{put:?}");
    // The DHT answers anyone; the push reached B.
    let got = a
        .get_record(name, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(got, v1);
    let ev = tokio::time::timeout(Duration::from_secs(10), pushed.recv())
        .await
        .expect("a push in time")
        .unwrap();
    assert_eq!(ev.name, name);
    assert_eq!(ev.record, v1);

    // A newer version replaces it; an older one does not come back.
    let v2 = record(&key, 2, Duration::from_secs(3600));
    c.put_record(name, v2.clone()).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), pushed.recv())
        .await
        .expect("a push in time")
        .unwrap();
    assert_eq!(ev.record, v2);
    let got = b.get_record(name, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got.as_deref(), Some(&v2[..]));

    // Bad records: refused by the publishing node itself (put_record validates), and what the
    // DHT serves stays the good one.
    let mut forged = v2.clone();
    let n = forged.len();
    forged[n - 3] ^= 0x40;
    assert!(c.put_record(name, forged).await.is_err());
    let other = ShareKey::from_seed(&[8; 32]);
    assert!(c
        .put_record(name, record(&other, 9, Duration::from_secs(3600)))
        .await
        .is_err());
    assert!(c
        .put_record(name, record(&key, 3, Duration::ZERO))
        .await
        .is_err());
    assert!(c.put_record(name, vec![0u8; 20 * 1024]).await.is_err());
    let got = a.get_record(name, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got.as_deref(), Some(&v2[..]));
    // A name nobody published: none, within the deadline.
    let nobody = ShareKey::from_seed(&[9; 32]).name();
    let t = std::time::Instant::now();
    assert_eq!(
        a.get_record(nobody, Duration::from_secs(3)).await.unwrap(),
        None
    );
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_connects_later_pulls_the_record_and_redials_a_lost_publisher() {
    // The publisher comes back at the same address after a restart.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = NetConfig {
        listen_addrs: vec![format!("/ip4/127.0.0.1/tcp/{port}")],
        ..test_config()
    };
    let seed_a = [31; 32];
    let (a, store_a) = {
        let store = std::sync::Arc::new(cairn_net::MemoryStore::new());
        let node = cairn_net::Node::start(listen.clone(), seed_a, store.clone())
            .await
            .unwrap();
        (node, store)
    };
    let key = ShareKey::from_seed(&[32; 32]);
    let name = key.name();
    a.serve_name(name).await.unwrap();
    let v1 = record(&key, 1, Duration::from_secs(3600));
    a.put_record(name, v1.clone()).await.unwrap();

    // B follows only now: nothing is pushed, the record comes from asking A.
    let (b, _) = start_mem(test_config()).await;
    b.subscribe(name).await.unwrap();
    let mut events = b.record_events();
    b.connect(&addr(&a).await).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("the record pulled in time")
        .unwrap();
    assert_eq!((ev.name, ev.record, ev.from), (name, v1, a.peer_id()));
    assert_eq!(b.record_sources(name).await.unwrap(), vec![a.peer_id()]);

    // A goes away and comes back with a newer record: B dials it again and pulls it.
    a.shutdown().await.unwrap();
    drop(a);
    wait_until(10, "B to see A gone", || async {
        b.record_sources(name).await.unwrap().is_empty()
    })
    .await;
    let a = cairn_net::Node::start(listen, seed_a, store_a)
        .await
        .unwrap();
    a.serve_name(name).await.unwrap();
    let v2 = record(&key, 2, Duration::from_secs(3600));
    a.put_record(name, v2.clone()).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ev = events.recv().await.unwrap();
            if ev.record == v2 {
                return ev;
            }
        }
    })
    .await
    .expect("B to redial A and pull the newer record");
    assert_eq!(ev.from, a.peer_id());
}
