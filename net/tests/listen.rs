//! Listening: an address in use fails the start with a clear error, for TCP and QUIC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use cairn_net::{MemoryStore, NetConfig, NetError, Node};
use common::*;

async fn start_on(addr: &str) -> Result<Node, NetError> {
    let cfg = NetConfig {
        listen_addrs: vec![addr.to_string()],
        ..test_config()
    };
    Node::start(cfg, seed(), Arc::new(MemoryStore::new())).await
}

/// The address a node bound for `addr` with port 0 (its listen address without `/p2p/...`).
async fn bound(node: &Node) -> String {
    let a = node.listen_addrs().await.unwrap()[0].to_string();
    a.split("/p2p/").next().unwrap().to_string()
}

#[tokio::test]
async fn a_tcp_port_in_use_fails_with_address_in_use() {
    let first = start_on("/ip4/127.0.0.1/tcp/0").await.unwrap();
    let addr = bound(&first).await;
    match start_on(&addr).await {
        Err(e @ NetError::AddrInUse { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&addr), "{text}");
            assert!(text.contains("address already in use"), "{text}");
        }
        Err(e) => panic!("expected AddrInUse, got {e:?}"),
        Ok(_) => panic!("a second node listened on {addr} too"),
    }
    first.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_quic_port_in_use_fails_with_address_in_use() {
    let first = start_on("/ip4/127.0.0.1/udp/0/quic-v1").await.unwrap();
    let addr = bound(&first).await;
    match start_on(&addr).await {
        Err(e @ NetError::AddrInUse { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&addr), "{text}");
        }
        Err(e) => panic!("expected AddrInUse, got {e:?}"),
        Ok(_) => panic!("a second node listened on {addr} too"),
    }
    first.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_listen_failure_says_why() {
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: the bind fails with
    // EADDRNOTAVAIL, whose reason must reach the message (libp2p's error displays as "").
    for addr in ["/ip4/192.0.2.1/tcp/4001", "/ip4/192.0.2.1/udp/4001/quic-v1"] {
        match start_on(addr).await {
            Err(e @ NetError::Listen { .. }) => {
                let text = e.to_string();
                let reason = text.rsplit(": ").next().unwrap();
                assert!(!reason.trim().is_empty(), "empty reason: {text:?}");
                assert!(text.contains("address"), "{text}");
            }
            Err(e) => panic!("{addr}: expected Listen, got {e:?}"),
            Ok(_) => panic!("listened on {addr}"),
        }
    }
}
