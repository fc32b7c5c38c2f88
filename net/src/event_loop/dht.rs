//! The DHT side of the event loop: provider searches (for a fetch or for `find_providers`),
//! provide jobs with a bounded number of `start_providing` queries in flight, the periodic
//! reprovide, and the Kademlia events that answer them.

use std::time::{Duration, Instant};

use cairn_store::Cid;
use libp2p::kad::store::RecordStore;
use libp2p::{kad, PeerId};

use super::{far_deadline, EventLoop};
use crate::command::{ProvideReport, ProviderSearch, Reply};
use crate::error::NetError;

fn provider_key(cid: &Cid) -> kad::RecordKey {
    kad::RecordKey::new(&cid.hash().to_bytes())
}

/// A DHT provider lookup, for a caller of `find_providers` and/or a fetch.
pub(super) struct Find {
    cid: Cid,
    /// Started by a fetch (counts against `max_provider_searches`).
    for_fetch: bool,
    reply: Option<Reply<ProviderSearch>>,
    found: Vec<PeerId>,
    deadline: Option<Instant>,
    /// Peers the query has sent requests to so far.
    peers_queried: u32,
    /// Peers that answered them.
    peers_answered: u32,
    /// Ended by a deadline rather than run to completion.
    timed_out: bool,
}

pub(super) struct ProvideJob {
    reply: Option<Reply<ProvideReport>>,
    pending: usize,
    report: ProvideReport,
}

impl EventLoop {
    // ----- DHT provide -----

    pub(super) fn provide(&mut self, cids: Vec<Cid>, reply: Reply<ProvideReport>) {
        let keys = cids.iter().map(provider_key).collect();
        self.start_provide_job(keys, Some(reply));
    }

    pub(super) fn provided_keys(&mut self, reply: Reply<Vec<Vec<u8>>>) {
        let keys = self
            .swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .provided()
            .map(|r| r.key.to_vec())
            .collect();
        let _ = reply.send(Ok(keys));
    }

    pub(super) fn stop_providing(&mut self, keys: Vec<Vec<u8>>, reply: Reply<()>) {
        for k in keys {
            self.swarm
                .behaviour_mut()
                .kad
                .stop_providing(&kad::RecordKey::new(&k));
        }
        let _ = reply.send(Ok(()));
    }

    fn start_provide_job(
        &mut self,
        keys: Vec<kad::RecordKey>,
        reply: Option<Reply<ProvideReport>>,
    ) {
        let limit = self.engine.cfg.limits.max_provided_keys;
        if self.provide_queue.len() + keys.len() > limit {
            if let Some(r) = reply {
                let _ = r.send(Err(NetError::Busy { limit }));
            }
            return;
        }
        if keys.is_empty() {
            if let Some(r) = reply {
                let _ = r.send(Ok(ProvideReport::default()));
            }
            return;
        }
        let job = self.next_job;
        self.next_job += 1;
        self.provide_jobs.insert(
            job,
            ProvideJob {
                reply,
                pending: keys.len(),
                report: ProvideReport::default(),
            },
        );
        self.provide_queue
            .extend(keys.into_iter().map(|k| (job, k)));
    }

    pub(super) fn pump_provides(&mut self) {
        let max = self.engine.cfg.limits.max_provide_queries.max(1);
        while self.provide_queries.len() < max {
            let Some((job, key)) = self.provide_queue.pop_front() else {
                break;
            };
            match self.swarm.behaviour_mut().kad.start_providing(key) {
                Ok(id) => {
                    self.provide_queries.insert(id, job);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot provide");
                    self.provide_done(job, false);
                }
            }
        }
    }

    fn provide_done(&mut self, job: u64, ok: bool) {
        let Some(j) = self.provide_jobs.get_mut(&job) else {
            return;
        };
        if ok {
            j.report.ok += 1;
        } else {
            j.report.failed += 1;
        }
        j.pending -= 1;
        if j.pending == 0 {
            if let Some(j) = self.provide_jobs.remove(&job) {
                if let Some(r) = j.reply {
                    let _ = r.send(Ok(j.report));
                }
                tracing::debug!(
                    ok = j.report.ok,
                    failed = j.report.failed,
                    "provide job done"
                );
            }
        }
    }

    pub(super) fn reprovide(&mut self) {
        let keys: Vec<kad::RecordKey> = self
            .swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .provided()
            .map(|r| r.key.clone())
            .collect();
        tracing::info!(keys = keys.len(), "reproviding");
        self.start_provide_job(keys, None);
    }

    // ----- DHT find -----

    pub(super) fn find_providers(
        &mut self,
        cid: Cid,
        timeout: Duration,
        reply: Reply<ProviderSearch>,
    ) {
        let id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(provider_key(&cid));
        self.finds.insert(
            id,
            Find {
                cid,
                for_fetch: false,
                reply: Some(reply),
                found: Vec::new(),
                deadline: Some(far_deadline(timeout)),
                peers_queried: 0,
                peers_answered: 0,
                timed_out: false,
            },
        );
    }

    pub(super) fn start_search(&mut self, cid: Cid) {
        if self.searches >= self.engine.cfg.limits.max_provider_searches {
            return;
        }
        let Some(w) = self.engine.wants.get_mut(&cid) else {
            return;
        };
        if w.search.is_some() {
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(provider_key(&cid));
        w.search = Some(id);
        self.searches += 1;
        tracing::debug!(%cid, "searching the DHT for providers");
        self.finds.insert(
            id,
            Find {
                cid,
                for_fetch: true,
                reply: None,
                found: Vec::new(),
                deadline: None,
                peers_queried: 0,
                peers_answered: 0,
                timed_out: false,
            },
        );
    }

    fn finish_find(&mut self, id: kad::QueryId) {
        let Some(f) = self.finds.remove(&id) else {
            return;
        };
        let empty = f.found.is_empty();
        if let Some(r) = f.reply {
            let addresses = f.found.iter().map(|p| (*p, self.known_addrs(p))).collect();
            let _ = r.send(Ok(ProviderSearch {
                providers: f.found,
                addresses,
                peers_queried: f.peers_queried,
                timed_out: f.timed_out,
            }));
        }
        if f.for_fetch {
            self.searches = self.searches.saturating_sub(1);
        }
        if let Some(w) = self.engine.wants.get_mut(&f.cid) {
            if w.search == Some(id) {
                w.search = None;
                w.last_search = Some(Instant::now());
                if empty && !f.timed_out && f.peers_answered > 0 {
                    self.engine.on_search_empty(f.cid, f.peers_queried);
                }
            }
        }
    }

    /// Ends the `find_providers` searches whose deadline passed.
    pub(super) fn expire_finds(&mut self, now: Instant) {
        let late: Vec<kad::QueryId> = self
            .finds
            .iter()
            .filter(|(_, f)| f.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
            if let Some(f) = self.finds.get_mut(&id) {
                f.timed_out = true;
            }
            self.finish_find(id);
        }
    }

    pub(super) fn on_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => {
                if let Some(f) = self.finds.get_mut(&id) {
                    // Cumulative over the query's steps.
                    f.peers_queried = stats.num_requests();
                    f.peers_answered = stats.num_successes();
                    if let kad::QueryResult::GetProviders(Err(kad::GetProvidersError::Timeout {
                        ..
                    })) = &result
                    {
                        f.timed_out = true;
                    }
                }
                match result {
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })) => {
                        let local = *self.swarm.local_peer_id();
                        if let Some(f) = self.finds.get_mut(&id) {
                            let new: Vec<PeerId> = providers
                                .into_iter()
                                .filter(|p| *p != local && !f.found.contains(p))
                                .collect();
                            f.found.extend(new.iter().copied());
                            let cid = f.cid;
                            self.engine.on_providers(cid, new);
                        }
                    }
                    kad::QueryResult::GetProviders(_) => self.finish_find(id),
                    kad::QueryResult::StartProviding(r) => {
                        if let Some(job) = self.provide_queries.remove(&id) {
                            if let Err(e) = &r {
                                tracing::debug!(error = %e, "provide failed");
                            }
                            self.provide_done(job, r.is_ok());
                        }
                    }
                    kad::QueryResult::Bootstrap(r) => {
                        tracing::debug!(ok = r.is_ok(), "DHT bootstrap step")
                    }
                    other => tracing::trace!(?other, "kad query result"),
                }
                if step.last {
                    self.finish_find(id);
                    if let Some(job) = self.provide_queries.remove(&id) {
                        self.provide_done(job, false);
                    }
                }
            }
            // Inbound provider records are filtered by hand (`StoreInserts::FilterBoth`, which
            // the IPNS records need): stored as Kademlia would have stored them.
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(record),
                    },
            } => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .add_provider(record)
                {
                    tracing::debug!(error = %e, "cannot keep a provider record");
                }
            }
            other => tracing::trace!(?other, "kad event"),
        }
    }
}
