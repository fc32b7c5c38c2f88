//! A hostile peer sends IPNS records that must not be used: through the DHT (`PUT_VALUE` of a
//! forged record) and through IPNS over PubSub (forged, another key's, expired). The peer is a
//! plain rust-libp2p swarm (Kademlia, gossipsub) that signs its gossip messages correctly, so
//! only cairn's record validation stands in the way. Cairn refuses every record, keeps what it
//! had, and bans the peer after a few.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cairn_store::ShareKey;
use common::*;
use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    gossipsub, identity, kad, noise, tcp, yamux, Multiaddr, StreamProtocol, SwarmBuilder,
};

#[derive(NetworkBehaviour)]
struct Hostile {
    gossipsub: gossipsub::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_from_a_real_peer_are_refused_and_the_peer_is_banned() {
    let (a, _) = start_mem(test_config()).await;
    let key = ShareKey::from_seed(&[21; 32]);
    let name = key.name();
    a.subscribe(name).await.unwrap();
    let mut events = a.record_events();
    let good = record(&key, 5, Duration::from_secs(3600));
    a.put_record(name, good.clone()).await.unwrap();

    let hk = identity::Keypair::generate_ed25519();
    let hostile_id = hk.public().to_peer_id();
    let gcfg = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let behaviour = Hostile {
        gossipsub: gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(hk.clone()),
            gcfg,
        )
        .unwrap(),
        kad: kad::Behaviour::with_config(
            hostile_id,
            kad::store::MemoryStore::new(hostile_id),
            kad::Config::new(StreamProtocol::new("/ipfs/kad/1.0.0")),
        ),
    };
    let mut swarm = SwarmBuilder::with_existing_identity(hk)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let a_addr: Multiaddr = addr(&a).await.parse().unwrap();
    swarm
        .behaviour_mut()
        .kad
        .add_address(&a.peer_id(), a_addr.clone());
    swarm.behaviour_mut().kad.set_mode(Some(kad::Mode::Client));
    swarm.dial(a_addr).unwrap();
    let topic = gossipsub::IdentTopic::new(name.pubsub_topic());
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();

    // 1. A forged record through the DHT.
    let mut forged = good.clone();
    let n = forged.len();
    forged[n - 5] ^= 0x01;
    let mut rec = kad::Record::new(kad::RecordKey::new(&name.routing_key()), forged.clone());
    rec.publisher = None;
    let mut put_done = false;
    let mut a_subscribed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut sent_put = false;
    while !(put_done && a_subscribed) {
        if swarm.is_connected(&a.peer_id()) && !sent_put {
            swarm
                .behaviour_mut()
                .kad
                .put_record(rec.clone(), kad::Quorum::One)
                .unwrap();
            sent_put = true;
        }
        tokio::select! {
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::Behaviour(HostileEvent::Kad(kad::Event::OutboundQueryProgressed {
                    result: kad::QueryResult::PutRecord(_), ..
                })) => put_done = true,
                SwarmEvent::Behaviour(HostileEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, .. }))
                    if peer_id == a.peer_id() => a_subscribed = true,
                _ => {}
            },
            _ = tokio::time::sleep_until(deadline) => panic!("the hostile peer never got going (put {put_done}, subscribed {a_subscribed})"),
        }
    }
    // The DHT still serves the good record.
    let got = a.get_record(name, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        got.as_deref(),
        Some(&good[..]),
        "a forged DHT put replaced the record"
    );

    // 2. Pushes: another key's record, an expired one, a forged one.
    let other = record(
        &ShareKey::from_seed(&[22; 32]),
        99,
        Duration::from_secs(3600),
    );
    let expired = {
        // Valid signature, validity already over.
        record(&key, 6, Duration::ZERO)
    };
    for bad in [other, expired, forged] {
        let _ = swarm.behaviour_mut().gossipsub.publish(topic.clone(), bad);
        // Let it travel.
        let until = tokio::time::Instant::now() + Duration::from_millis(300);
        while tokio::time::Instant::now() < until {
            tokio::select! {
                _ = swarm.select_next_some() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }
    // Banned: the connection goes and stays gone.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while swarm.is_connected(&a.peer_id()) {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = tokio::time::sleep_until(until) => panic!("the hostile peer was not banned"),
        }
    }
    assert!(!a.peers().await.unwrap().contains(&hostile_id));
    // Nothing bad reached cairn's subscribers, and the good record stands.
    assert!(events.try_recv().is_err(), "a bad record got through");
    let got = a.get_record(name, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.as_deref(), Some(&good[..]));
    let stats = a.bitswap_stats().await.unwrap();
    assert!(stats.peers_banned >= 1, "{stats:?}");
}
