//! Writers' heads of shares with several writers: each share has a gossipsub topic of its own,
//! `/cairn/heads/1/<share id>`, whose messages are single commits (see `cairn_store::commit`),
//! each signed by its writer. A message is checked before it is used or forwarded: at most
//! [`MAX_COMMIT_BYTES`], a commit of the topic's share whose signature verifies with the
//! writer key it names. Whether the writer may write (the member list) is the daemon's to
//! check, since the list lives in the repo. A peer whose messages keep failing is banned, as
//! for records.
//!
//! The head this node announced last for a share is announced again whenever a peer subscribes
//! to the topic (a writer back from offline, a member that just joined: gossipsub resends
//! subscriptions on every new connection), at most once per [`REANNOUNCE_GAP`] per share (a
//! subscription within the gap is answered when it ends), so a late joiner hears every online
//! writer's head without waiting for its next commit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_store::commit::{Commit, MAX_COMMIT_BYTES};
use cairn_store::IpnsName;
use libp2p::{gossipsub, PeerId};

use super::EventLoop;
use crate::command::{HeadEvent, Reply};
use crate::error::NetError;

/// The shortest time between two announcements of one share's head prompted by subscriptions.
const REANNOUNCE_GAP: Duration = Duration::from_secs(2);

/// The heads topic of share `name`.
pub fn heads_topic(name: &IpnsName) -> String {
    format!("/cairn/heads/1/{name}")
}

/// What the loop keeps about heads.
#[derive(Default)]
pub(crate) struct Heads {
    /// Topics joined, and the share each is for.
    pub topics: HashMap<gossipsub::TopicHash, IpnsName>,
    /// The head this node announced last per share, and when it last went out.
    pub own: HashMap<IpnsName, (Vec<u8>, Option<Instant>)>,
    /// Shares whose head is to go out again once [`REANNOUNCE_GAP`] has passed (a peer
    /// subscribed too soon after the last announcement).
    pub again: Vec<IpnsName>,
}

impl EventLoop {
    /// Joins share `name`'s heads topic: other writers' heads arrive as [`HeadEvent`]s.
    pub(super) fn serve_heads(&mut self, name: IpnsName, reply: Reply<()>) {
        let topic = gossipsub::IdentTopic::new(heads_topic(&name));
        self.heads.topics.insert(topic.hash(), name);
        let r = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map(|_| ())
            .map_err(|e| NetError::Transport(e.to_string()));
        let _ = reply.send(r);
    }

    /// Leaves share `name`'s heads topic and forgets its head.
    pub(super) fn leave_heads(&mut self, name: IpnsName) {
        let topic = gossipsub::IdentTopic::new(heads_topic(&name));
        self.heads.topics.remove(&topic.hash());
        self.heads.own.remove(&name);
        self.heads.again.retain(|n| *n != name);
        self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
    }

    /// Announces `commit` (this node's head of share `name`, made or taken here) on the share's
    /// heads topic, and keeps it to announce again to peers that subscribe later. Returns
    /// whether any peer was subscribed to hear it.
    pub(super) fn announce_head(&mut self, name: IpnsName, commit: Vec<u8>, reply: Reply<bool>) {
        if let Err(e) = Commit::verify(&commit, &name) {
            let _ = reply.send(Err(NetError::BadRecord(e.to_string())));
            return;
        }
        let topic = gossipsub::IdentTopic::new(heads_topic(&name));
        if let std::collections::hash_map::Entry::Vacant(e) = self.heads.topics.entry(topic.hash())
        {
            e.insert(name);
            let _ = self.swarm.behaviour_mut().gossipsub.subscribe(&topic);
        }
        self.heads.own.insert(name, (commit, None));
        let _ = reply.send(Ok(self.send_head(name)));
    }

    /// Publishes the kept head of `name`; whether a subscribed peer was there to hear it.
    fn send_head(&mut self, name: IpnsName) -> bool {
        let Some((bytes, _)) = self.heads.own.get(&name) else {
            return false;
        };
        let data = bytes.clone();
        let topic = gossipsub::IdentTopic::new(heads_topic(&name));
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => {
                // Only a head that went out to someone counts against the gap.
                if let Some((_, sent)) = self.heads.own.get_mut(&name) {
                    *sent = Some(Instant::now());
                }
                true
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => false,
            Err(e) => {
                tracing::debug!(share = %name, error = %e, "cannot announce the head");
                false
            }
        }
    }

    /// A peer subscribed to a topic: if it is a heads topic with a head of ours, the head goes
    /// out again (not more often than [`REANNOUNCE_GAP`]). Returns whether it was a heads topic.
    pub(super) fn on_heads_subscribed(&mut self, topic: &gossipsub::TopicHash) -> bool {
        let Some(name) = self.heads.topics.get(topic).copied() else {
            return false;
        };
        let due = self
            .heads
            .own
            .get(&name)
            .is_some_and(|(_, sent)| sent.is_none_or(|t| t.elapsed() >= REANNOUNCE_GAP));
        if due {
            // Once the peer's subscription is in: publishing inside the event that reports it
            // reaches it (gossipsub flood-publishes to every subscribed peer).
            self.send_head(name);
        } else if self.heads.own.contains_key(&name) && !self.heads.again.contains(&name) {
            self.heads.again.push(name);
        }
        true
    }

    /// Sends the heads whose announcement was put off, once their gap has passed.
    pub(super) fn reannounce_heads(&mut self) {
        let due: Vec<IpnsName> = self
            .heads
            .again
            .iter()
            .copied()
            .filter(|n| {
                self.heads
                    .own
                    .get(n)
                    .is_none_or(|(_, sent)| sent.is_none_or(|t| t.elapsed() >= REANNOUNCE_GAP))
            })
            .collect();
        self.heads.again.retain(|n| !due.contains(n));
        for name in due {
            self.send_head(name);
        }
    }

    /// A gossipsub message on a heads topic: checked, reported, and passed on as a
    /// [`HeadEvent`]. Returns `false` if the topic is not a heads topic.
    pub(super) fn on_head_message(
        &mut self,
        propagation_source: PeerId,
        message_id: &gossipsub::MessageId,
        message: &gossipsub::Message,
    ) -> bool {
        let Some(name) = self.heads.topics.get(&message.topic).copied() else {
            return false;
        };
        let verdict = if message.data.len() > MAX_COMMIT_BYTES {
            self.strike(propagation_source, &name, "a head over 16 KiB");
            gossipsub::MessageAcceptance::Reject
        } else {
            match Commit::verify(&message.data, &name) {
                Ok(_) => {
                    let _ = self.head_events.send(HeadEvent {
                        name,
                        commit: message.data.clone(),
                        from: propagation_source,
                    });
                    gossipsub::MessageAcceptance::Accept
                }
                Err(e) => {
                    self.strike(propagation_source, &name, &format!("bad head: {e}"));
                    gossipsub::MessageAcceptance::Reject
                }
            }
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, &propagation_source, verdict);
        true
    }
}
