//! IPNS records between real nodes: put and get through the DHT, pushes over gossipsub, and
//! records that fail validation (bad signature, replay, another name's key, expired, too big)
//! refused by every path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cairn_net::NetConfig;
use cairn_store::ShareKey;
use common::*;

fn with_bootstrap(addr: &str) -> NetConfig {
    NetConfig {
        bootstrap: vec![addr.to_string()],
        ..test_config()
    }
}

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

    // B follows the name's pushes before anything is published.
    b.subscribe(name).await.unwrap();
    let mut pushed = b.record_events();
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
