//! The event loop's side of Bitswap: messages and failures from the behaviour go to the engine
//! (received blocks on to the store, wants to serve jobs), and the engine's outbox goes out.

use super::EventLoop;
use crate::bitswap::protocol::Message;
use crate::bitswap::{self};

impl EventLoop {
    pub(super) fn on_bitswap(&mut self, ev: bitswap::Event) {
        match ev {
            bitswap::Event::Message { peer, msg } => {
                if self.engine.banned.contains_key(&peer) {
                    return;
                }
                let Message {
                    wantlist,
                    full,
                    blocks,
                    presences,
                    ..
                } = msg;
                if !blocks.is_empty() {
                    let fresh = self.engine.on_blocks(peer, blocks);
                    if !self.engine.actions.ban.is_empty() {
                        return;
                    }
                    self.to_store.extend(fresh);
                }
                for (cid, p) in presences {
                    self.engine.on_presence(peer, cid, p);
                }
                if !wantlist.is_empty() || full {
                    let job = self.engine.on_wantlist(peer, full, wantlist);
                    if !job.is_empty() {
                        self.queue_serve(peer, job);
                    }
                }
            }
            bitswap::Event::Malformed { peer, error } => {
                tracing::warn!(%peer, %error, "malformed bitswap message, banning peer");
                self.engine.actions.ban.push(peer);
            }
            bitswap::Event::SendFailed { peer, unsupported } => {
                if unsupported {
                    if let Some(i) = self.engine.peers.get_mut(&peer) {
                        i.bitswap = Some(false);
                    }
                }
                // Whatever was asked of this peer may never arrive: ask elsewhere.
                self.engine.on_peer_gone(peer, false);
            }
        }
    }

    pub(super) fn flush_outbox(&mut self) {
        if self.engine.outbox.is_empty() {
            return;
        }
        let outbox = std::mem::take(&mut self.engine.outbox);
        for (peer, msgs) in outbox {
            for m in msgs {
                let blocks = m.blocks.len() as u64;
                let bytes: u64 = m.blocks.iter().map(|(_, d)| d.len() as u64).sum();
                if self.swarm.behaviour_mut().bitswap.send(peer, m) {
                    self.engine.stats.blocks_sent += blocks;
                    self.engine.stats.bytes_sent += bytes;
                }
            }
        }
    }
}
