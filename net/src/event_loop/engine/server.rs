//! The Bitswap server: a ledger per peer of the wants it sent us and we have not answered
//! (bounded by `max_ledger_entries`), and the answers that store lookups produce for them.

use bytes::Bytes;
use libp2p::PeerId;

use super::Engine;
use crate::bitswap::protocol::{Presence, WantEntry, WantType};

/// What a serve task found for one want entry.
pub(crate) enum Answer {
    Block(Bytes),
    Have,
    DontHave,
    Nothing,
}

impl Engine {
    /// Records a peer's wantlist; returns the entries to look up in the store.
    pub(crate) fn on_wantlist(
        &mut self,
        peer: PeerId,
        full: bool,
        entries: Vec<WantEntry>,
    ) -> Vec<WantEntry> {
        let max = self.cfg.limits.max_ledger_entries;
        let info = self.peers.entry(peer).or_default();
        info.bitswap = Some(true);
        if full {
            info.ledger.clear();
        }
        let mut job = Vec::new();
        for e in entries {
            if e.cancel {
                info.ledger.remove(&e.cid);
                continue;
            }
            match info.ledger.get(&e.cid) {
                // A want-block for a CID whose want-have is still being looked up: the block
                // is what is wanted now (the HAVE answer, when it comes, is dropped).
                Some(WantType::Have) if e.want_type == WantType::Block => {
                    info.ledger.insert(e.cid, WantType::Block);
                    job.push(e);
                }
                Some(_) => {}
                None if info.ledger.len() < max => {
                    info.ledger.insert(e.cid, e.want_type);
                    job.push(e);
                }
                None => {}
            }
        }
        job
    }

    pub(crate) fn on_answers(&mut self, peer: PeerId, answers: Vec<(WantEntry, Answer)>) {
        for (e, a) in answers {
            let still_wanted = self.peers.get_mut(&peer).is_some_and(|i| {
                // Answer only what is still wanted, and as it is wanted now.
                let now = i.ledger.get(&e.cid) == Some(&e.want_type);
                if now {
                    i.ledger.remove(&e.cid);
                }
                now
            });
            if !still_wanted {
                continue;
            }
            match a {
                Answer::Block(b) => self.send_block(peer, e.cid, b),
                Answer::Have => self.send_presence(peer, e.cid, Presence::Have),
                Answer::DontHave => self.send_presence(peer, e.cid, Presence::DontHave),
                Answer::Nothing => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testing::{block, engine_with_peers};
    use super::super::want_entry;
    use super::*;
    use cairn_store::{HashAlg, RAW};

    #[test]
    fn ledger_is_bounded_and_cancels_remove_entries() {
        let (mut e, peers) = engine_with_peers(1);
        let max = e.cfg.limits.max_ledger_entries;
        let entries: Vec<WantEntry> = (0..max + 10)
            .map(|i| {
                let cid = cairn_store::cid_for(1, RAW, HashAlg::Sha2_256, &i.to_le_bytes());
                want_entry(cid, WantType::Block, false)
            })
            .collect();
        let first = entries[0].cid;
        let job = e.on_wantlist(peers[0], false, entries);
        assert_eq!(job.len(), max);
        let job = e.on_wantlist(
            peers[0],
            false,
            vec![want_entry(first, WantType::Block, true)],
        );
        assert!(job.is_empty());
        assert!(!e.peers[&peers[0]].ledger.contains_key(&first));
    }

    #[test]
    fn a_want_block_upgrades_a_pending_want_have() {
        let (mut e, peers) = engine_with_peers(1);
        let (cid, data) = block(9);
        let have = e.on_wantlist(
            peers[0],
            false,
            vec![want_entry(cid, WantType::Have, false)],
        );
        assert_eq!(have.len(), 1);
        // The want-block arrives while the want-have is still being looked up.
        let block = e.on_wantlist(
            peers[0],
            false,
            vec![want_entry(cid, WantType::Block, false)],
        );
        assert_eq!(block.len(), 1, "the upgrade is looked up too");
        e.on_answers(peers[0], vec![(have[0].clone(), Answer::Have)]);
        assert!(e.outbox.is_empty(), "the stale HAVE is not sent");
        e.on_answers(peers[0], vec![(block[0].clone(), Answer::Block(data))]);
        let sent: usize = e.outbox[&peers[0]].iter().map(|m| m.blocks.len()).sum();
        assert_eq!(sent, 1);
    }
}
