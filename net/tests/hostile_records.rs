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
use libp2p::{gossipsub, identity, kad, Multiaddr, StreamProtocol};

#[derive(NetworkBehaviour)]
struct Hostile {
    gossipsub: gossipsub::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

/// A cairn node following share `seed`'s name and holding its good record (sequence 5).
struct Following {
    node: cairn_net::Node,
    key: ShareKey,
    name: cairn_store::IpnsName,
    events: tokio::sync::broadcast::Receiver<cairn_net::RecordEvent>,
    good: Vec<u8>,
}

async fn following(seed: u8) -> Following {
    let (node, _) = start_mem(test_config()).await;
    let key = ShareKey::from_seed(&[seed; 32]);
    let name = key.name();
    node.subscribe(name).await.unwrap();
    let events = node.record_events();
    let good = record(&key, 5, Duration::from_secs(3600));
    node.put_record(name, good.clone()).await.unwrap();
    Following {
        node,
        key,
        name,
        events,
        good,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_from_a_real_peer_are_refused_and_the_peer_is_banned() {
    let Following {
        node: a,
        key,
        name,
        mut events,
        good,
    } = following(21).await;

    let hk = identity::Keypair::generate_ed25519();
    let hostile_id = hk.public().to_peer_id();
    let behaviour = Hostile {
        gossipsub: signed_gossip(&hk),
        kad: kad::Behaviour::with_config(
            hostile_id,
            kad::store::MemoryStore::new(hostile_id),
            kad::Config::new(StreamProtocol::new("/ipfs/kad/1.0.0")),
        ),
    };
    let mut swarm = hostile_swarm(hk, behaviour);
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
        pump(&mut swarm, Duration::from_millis(300)).await;
    }
    // Banned: the connection goes and stays gone.
    until_banned(&mut swarm, a.peer_id()).await;
    assert!(!a.peers().await.unwrap().contains(&hostile_id));
    // Nothing bad reached cairn's subscribers, and the good record stands.
    assert!(events.try_recv().is_err(), "a bad record got through");
    let got = a.get_record(name, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.as_deref(), Some(&good[..]));
    let stats = a.bitswap_stats().await.unwrap();
    assert!(stats.peers_banned >= 1, "{stats:?}");
}

/// The hostile peer's side of `/cairn/ipns/pull/1.0.0`: raw bytes each way.
#[derive(Clone, Default)]
struct PullCodec;

impl libp2p::request_response::Codec for PullCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        futures::AsyncReadExt::read_to_end(io, &mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        futures::AsyncReadExt::read_to_end(io, &mut buf).await?;
        Ok(buf)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        futures::AsyncWriteExt::write_all(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        futures::AsyncWriteExt::write_all(io, &res).await
    }
}

#[derive(NetworkBehaviour)]
struct HostilePuller {
    gossipsub: gossipsub::Behaviour,
    pull: libp2p::request_response::Behaviour<PullCodec>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_answering_a_pull_are_refused_and_the_peer_is_banned() {
    use libp2p::request_response;
    let Following {
        node: a,
        key,
        name,
        mut events,
        good,
    } = following(23).await;

    let hk = identity::Keypair::generate_ed25519();
    let hostile_id = hk.public().to_peer_id();
    let behaviour = HostilePuller {
        gossipsub: signed_gossip(&hk),
        pull: request_response::Behaviour::new(
            [(
                StreamProtocol::new("/cairn/ipns/pull/1.0.0"),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default(),
        ),
    };
    let mut swarm = hostile_swarm(hk, behaviour);
    let a_addr: Multiaddr = addr(&a).await.parse().unwrap();
    swarm.dial(a_addr).unwrap();
    let topic = gossipsub::IdentTopic::new(name.pubsub_topic());
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();

    // The hostile peer answers cairn's question with a forged record, then spams SUBSCRIBE
    // (gossipsub reports each one): cairn asks again at most every 30 s, so once here.
    let mut forged = good.clone();
    let n = forged.len();
    forged[n - 5] ^= 0x01;
    let mut asked = 0;
    let spam_until = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => if let SwarmEvent::Behaviour(HostilePullerEvent::Pull(
                request_response::Event::Message {
                    message: request_response::Message::Request { request, channel, .. }, ..
                },
            )) = ev {
                assert_eq!(request, name.routing_key(), "cairn asked for another name");
                asked += 1;
                let _ = swarm.behaviour_mut().pull.send_response(channel, forged.clone());
            },
            _ = tick.tick() => {
                let _ = swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
                swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
            }
            _ = tokio::time::sleep_until(spam_until) => break,
        }
    }
    assert_eq!(
        asked, 1,
        "cairn asked {asked} times while its subscription was spammed"
    );
    // Two more bad records (pushed: another key's, an expired one) make three: banned.
    for bad in [
        record(
            &ShareKey::from_seed(&[24; 32]),
            99,
            Duration::from_secs(3600),
        ),
        record(&key, 6, Duration::ZERO),
    ] {
        let _ = swarm.behaviour_mut().gossipsub.publish(topic.clone(), bad);
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while swarm.is_connected(&a.peer_id()) {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = tokio::time::sleep_until(until) => panic!("the hostile peer was not banned"),
        }
    }
    assert!(!a.peers().await.unwrap().contains(&hostile_id));
    assert!(events.try_recv().is_err(), "a bad record got through");
    let got = a.get_record(name, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.as_deref(), Some(&good[..]));
}
