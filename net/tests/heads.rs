//! Writers' heads between real nodes: a head announced on a share's heads topic reaches the
//! writers on it, a node that joins later hears the heads announced before it came, and a
//! plain rust-libp2p peer that signs its gossip correctly but sends bad heads (a forged
//! signature, another share's commit, garbage, an oversized one) reaches nobody and is banned.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use cairn_store::commit::{Commit, CommitFields};
use cairn_store::{HashAlg, IpnsName, ShareKey, RAW};
use common::*;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identity, Multiaddr};

fn commit(writer: &ShareKey, share: IpnsName, seq: u64) -> Commit {
    let cid = |n: u8| cairn_store::cid_for(1, RAW, HashAlg::Sha2_256, &[n]);
    Commit::create(
        writer,
        &CommitFields {
            share,
            seq,
            parents: vec![],
            root: cid(1),
            ids: cid(2),
            members: cid(3),
            time: SystemTime::now(),
        },
    )
    .unwrap()
}

async fn next_head(
    events: &mut tokio::sync::broadcast::Receiver<cairn_net::HeadEvent>,
    what: &str,
) -> cairn_net::HeadEvent {
    tokio::time::timeout(Duration::from_secs(15), events.recv())
        .await
        .unwrap_or_else(|_| panic!("{what} in time"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_reach_the_writers_on_the_topic_and_late_joiners_hear_them() {
    let share = ShareKey::from_seed(&[31; 32]);
    let name = share.name();
    let bob = ShareKey::from_seed(&[32; 32]);
    let (a, _) = start_mem(test_config()).await;
    let (b, _) = start_mem(test_config()).await;
    let (c, _) = start_mem(test_config()).await;

    // A announces before anyone listens: nobody hears it yet.
    let first = commit(&share, name, 1);
    assert!(!a
        .announce_head(name, first.as_bytes().to_vec())
        .await
        .unwrap());
    // B joins and connects: A's head reaches it when B's subscription does.
    b.serve_heads(name).await.unwrap();
    let mut b_heads = b.head_events();
    b.connect(&addr(&a).await).await.unwrap();
    let ev = next_head(&mut b_heads, "A's head at B").await;
    assert_eq!((ev.name, ev.from), (name, a.peer_id()));
    assert_eq!(ev.commit, first.as_bytes());

    // B's own head reaches A (A joined the topic by announcing on it).
    let mut a_heads = a.head_events();
    let by_bob = commit(&bob, name, 1);
    b.announce_head(name, by_bob.as_bytes().to_vec())
        .await
        .unwrap();
    let ev = next_head(&mut a_heads, "B's head at A").await;
    assert_eq!(ev.commit, by_bob.as_bytes());

    // C comes later, connected to B only: it hears B's head at once, and A's newer one as it
    // is announced (forwarded by B).
    c.serve_heads(name).await.unwrap();
    let mut c_heads = c.head_events();
    c.connect(&addr(&b).await).await.unwrap();
    // (A's first head may come first, forwarded by B.)
    while next_head(&mut c_heads, "B's head at C").await.commit != by_bob.as_bytes() {}
    let second = commit(&share, name, 2);
    // Wait for the mesh to include C's subscription before A's next head goes out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.announce_head(name, second.as_bytes().to_vec())
        .await
        .unwrap();
    let got = loop {
        let ev = next_head(&mut c_heads, "A's second head at C").await;
        if ev.commit == second.as_bytes() {
            break ev;
        }
    };
    assert_eq!(got.name, name);

    // A node refuses to announce what is not a commit of the share.
    let other = ShareKey::from_seed(&[33; 32]).name();
    assert!(a
        .announce_head(other, first.as_bytes().to_vec())
        .await
        .is_err());
    assert!(a.announce_head(name, b"nonsense".to_vec()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_heads_from_a_real_peer_reach_nobody_and_the_peer_is_banned() {
    let share = ShareKey::from_seed(&[41; 32]);
    let name = share.name();
    let (a, _) = start_mem(test_config()).await;
    a.serve_heads(name).await.unwrap();
    let mut heads = a.head_events();

    let hk = identity::Keypair::generate_ed25519();
    let mut swarm = hostile_swarm(hk.clone(), signed_gossip(&hk));
    let a_addr: Multiaddr = addr(&a).await.parse().unwrap();
    swarm.dial(a_addr).unwrap();
    let topic = gossipsub::IdentTopic::new(cairn_net::heads_topic(&name));
    swarm.behaviour_mut().subscribe(&topic).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) = ev {
                    if peer_id == a.peer_id() {
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => panic!("the hostile peer never met A's subscription"),
        }
    }

    let good = commit(&share, name, 1);
    let mut forged = good.as_bytes().to_vec();
    let n = forged.len();
    forged[n - 2] ^= 0x01;
    let foreign = commit(&share, ShareKey::from_seed(&[42; 32]).name(), 1);
    for bad in [
        forged,
        foreign.as_bytes().to_vec(),
        b"not a commit".to_vec(),
        vec![0xa1; 17 * 1024],
    ] {
        let _ = swarm.behaviour_mut().publish(topic.clone(), bad);
        pump(&mut swarm, Duration::from_millis(300)).await;
    }
    until_banned(&mut swarm, a.peer_id()).await;
    assert!(heads.try_recv().is_err(), "a bad head got through");
    let stats = a.bitswap_stats().await.unwrap();
    assert!(stats.peers_banned >= 1, "{stats:?}");
}
