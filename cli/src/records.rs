//! The daemon's IPNS records: every head this repo signs is published (the DHT and the name's
//! pubsub topic) when it moves, at start and again before it expires; every share followed here
//! takes the newer records peers push or answer when asked (a follower that was away catches up
//! as soon as it meets a peer with the share), and the DHT is polled in case a push was missed.
//! A followed share is *stale* while no peer with the share is connected and the DHT gave no
//! answer: its mounts say so (`user.cairn.stale`), and so does `cairn share status`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use cairn_net::Node;
use cairn_store::{IpnsName, Repo};

use crate::mounts::Mounts;

/// Own heads are published again this often (records are valid for 48 h).
const REPUBLISH: Duration = Duration::from_secs(4 * 3600);
/// How long a follower waits for a new version's root block before it keeps the current one
/// (at most; less if the configured fetch timeout is shorter).
const ROOT_FETCH: Duration = Duration::from_secs(20);
/// Retries of a version whose root could not be fetched: first wait, longest wait, for how long.
const ROOT_RETRY_FIRST: Duration = Duration::from_secs(5);
const ROOT_RETRY_MAX: Duration = Duration::from_secs(60);
const ROOT_RETRY_FOR: Duration = Duration::from_secs(600);
/// After a new connection, when followed shares ask the DHT for newer records.
const CATCH_UP_AFTER: [Duration; 2] = [Duration::from_millis(300), Duration::from_secs(3)];
/// Followed shares ask the DHT for a newer record this often, in case a push was missed; while
/// peers with the share are connected (pushes and pulls reach us), the interval doubles after
/// each poll that found nothing new, up to [`POLL_MAX`].
const POLL: Duration = Duration::from_secs(60);
const POLL_MAX: Duration = Duration::from_secs(15 * 60);
/// How long a DHT lookup of a followed share may take.
const DHT_WAIT: Duration = Duration::from_secs(20);
/// How often followed shares' connected sources are counted (staleness).
const LIVENESS_TICK: Duration = Duration::from_secs(2);

/// Publishes the head of share `name` (one whose records this repo signs: its own, or one
/// whose owner lets this node publish) in the background.
pub fn publish_head(repo: &Arc<Repo>, node: &Node, name: IpnsName) {
    let Ok((_, record)) = repo.shares().head_record(&name) else {
        return;
    };
    // With other publishers (writers its owner lets publish), this node also follows the
    // share's records: it asks peers for the newest one when they connect, so its next
    // version goes above theirs (see `adopt_once`).
    let others_publish = repo
        .shares()
        .members(&name)
        .ok()
        .flatten()
        .is_some_and(|l| l.members.values().any(|m| m.publish));
    let node = node.clone();
    let bytes = record.as_bytes().to_vec();
    tokio::spawn(async move {
        let joined = if others_publish {
            node.subscribe(name).await
        } else {
            node.serve_name(name).await
        };
        if let Err(e) = joined {
            tracing::debug!(%name, error = %e, "cannot join the share's topic");
        }
        match node.put_record(name, bytes).await {
            Ok(put) => tracing::debug!(%name, dht = put.dht, pushed = put.pushed, "published"),
            Err(e) => tracing::warn!(%name, error = %e, "cannot publish the share's head"),
        }
    });
}

/// Starts the record work of a daemon: publishing own heads when they move and periodically,
/// following the followed shares, and keeping `live` (and the following mounts' staleness)
/// current.
pub fn start(repo: Arc<Repo>, node: Node, mounts: Arc<Mounts>, live: Arc<Liveness>) {
    let (r, n) = (repo.clone(), node.clone());
    mounts.on_head_moved(Box::new(move |name: &IpnsName| {
        if r.shares().publishes(name, &r.identity_key()) {
            publish_head(&r, &n, *name);
        }
    }));
    let mut pushed = node.record_events();
    let (r, n, m) = (repo.clone(), node.clone(), mounts.clone());
    tokio::spawn(async move {
        for share in r.shares().list().unwrap_or_default() {
            // Own shares too: their followers find the publisher among the topic's peers,
            // and ask it for the newest record when they connect.
            if share.writable {
                publish_head(&r, &n, share.name);
                continue;
            }
            if let Err(e) = n.subscribe(share.name).await {
                tracing::warn!(share = %share.name, error = %e, "cannot follow the share's pushes");
            }
            // A writer allowed to publish: its tip is in the record (one is made if the
            // record does not name it yet), published as the owner's are.
            let me = r.identity_key();
            if r.shares().publishes(&share.name, &me) {
                let protected = m.roots();
                if let Err(e) = r.shares().publish_tip(&share.name, &me, &protected) {
                    tracing::warn!(share = %share.name, error = %e, "cannot sign the share's record for this node's tip");
                }
                publish_head(&r, &n, share.name);
            }
        }
        catch_up(&r, &n, &m);
        loop {
            match pushed.recv().await {
                Ok(ev) => {
                    // Each on its own: a root that is slow to arrive does not hold up others.
                    let (r, n, m) = (r.clone(), n.clone(), m.clone());
                    tokio::spawn(async move {
                        adopt(&r, &n, &m, ev.name, &ev.record, &ev.from.to_string()).await
                    });
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "missed pushed records; the DHT poll catches up")
                }
                Err(_) => return,
            }
        }
    });
    let (r, n) = (repo.clone(), node.clone());
    tokio::spawn(async move {
        let mut republish = tokio::time::interval(REPUBLISH);
        republish.tick().await;
        loop {
            republish.tick().await;
            for share in r.shares().list().unwrap_or_default() {
                if share.writable || r.shares().publishes(&share.name, &r.identity_key()) {
                    publish_head(&r, &n, share.name);
                }
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LIVENESS_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            check_followed(&repo, &node, &mounts, &live).await;
        }
    });
}

/// What this daemon knows of how current each followed share is.
#[derive(Default)]
pub struct Liveness {
    shares: Mutex<HashMap<IpnsName, Live>>,
}

/// One followed share's liveness.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Connected peers that follow or publish it (its pushes and pulls come from them).
    pub sources: Vec<cairn_net::PeerId>,
    /// When the DHT was last asked for a newer record, and whether a peer answered.
    pub checked: Option<(SystemTime, bool)>,
    /// No source connected and the DHT gave no answer: the version here may not be the
    /// newest.
    pub stale: bool,
    /// The DHT poll's interval now (it backs off while sources are connected).
    poll_every: Duration,
    next_poll: Option<Instant>,
    polling: bool,
}

impl Liveness {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpnsName, Live>> {
        self.shares.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is known of followed share `name` (nothing yet: `None`).
    pub fn get(&self, name: &IpnsName) -> Option<Live> {
        self.lock().get(name).cloned()
    }
}

/// One round of the liveness check: each followed share's connected sources are counted, the
/// DHT is asked when its poll is due or when the last source just went away, and the shares'
/// staleness is updated (and told to their following mounts).
async fn check_followed(repo: &Arc<Repo>, node: &Node, mounts: &Arc<Mounts>, live: &Arc<Liveness>) {
    let now = Instant::now();
    let followed: Vec<IpnsName> = repo
        .shares()
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.writable)
        .map(|s| s.name)
        .collect();
    live.lock().retain(|n, _| followed.contains(n));
    for name in followed {
        let sources = node.record_sources(name).await.unwrap_or_default();
        let poll = {
            let mut all = live.lock();
            let l = all.entry(name).or_insert_with(|| Live {
                poll_every: POLL,
                ..Live::default()
            });
            let lost_all = sources.is_empty() && !l.sources.is_empty();
            l.sources = sources;
            if l.sources.is_empty() {
                // Without a source, pushes cannot arrive: poll at the base rate.
                l.poll_every = POLL;
            }
            let due = l.next_poll.is_none_or(|t| t <= now) || lost_all;
            let poll = due && !l.polling;
            if poll {
                l.polling = true;
                l.next_poll = Some(now + l.poll_every);
            }
            l.stale = l.sources.is_empty() && !l.checked.is_some_and(|(_, answered)| answered);
            if lost_all {
                // Until the DHT says otherwise: an answer from before the loss says nothing.
                l.checked = None;
                l.stale = true;
            }
            mounts.set_stale(&name, l.stale);
            poll
        };
        if poll {
            let (repo, node, mounts, live) =
                (repo.clone(), node.clone(), mounts.clone(), live.clone());
            tokio::spawn(async move { poll_dht(&repo, &node, &mounts, &live, name).await });
        }
    }
}

/// Asks the DHT for a newer record of followed share `name`.
async fn poll_dht(
    repo: &Arc<Repo>,
    node: &Node,
    mounts: &Arc<Mounts>,
    live: &Liveness,
    name: IpnsName,
) {
    let before = repo
        .shares()
        .head_record(&name)
        .ok()
        .map(|(v, _)| v.sequence);
    let found = node.lookup_record(name, DHT_WAIT).await.unwrap_or_default();
    if let Some(bytes) = &found.record {
        adopt(repo, node, mounts, name, bytes, "dht").await;
    }
    let after = repo
        .shares()
        .head_record(&name)
        .ok()
        .map(|(v, _)| v.sequence);
    let mut all = live.lock();
    let Some(l) = all.get_mut(&name) else { return };
    l.polling = false;
    let answered = !found.answered_by.is_empty();
    l.checked = Some((SystemTime::now(), answered));
    if after != before || l.sources.is_empty() {
        l.poll_every = POLL;
    } else {
        // Nothing new while sources push: the DHT is asked less and less often.
        l.poll_every = (l.poll_every * 2).min(POLL_MAX);
    }
    l.next_poll = Some(Instant::now() + l.poll_every);
    l.stale = l.sources.is_empty() && !answered;
    mounts.set_stale(&name, l.stale);
}

/// Asks the DHT, in the background, for newer records of every followed share (after a new
/// connection: a follower that was away catches up at once, without waiting for a push).
pub fn catch_up(repo: &Arc<Repo>, node: &Node, mounts: &Arc<Mounts>) {
    let (repo, node, mounts) = (repo.clone(), node.clone(), mounts.clone());
    tokio::spawn(async move {
        // A new peer joins the routing table once identify has run: ask soon, and again.
        for wait in CATCH_UP_AFTER {
            tokio::time::sleep(wait).await;
            for share in repo.shares().list().unwrap_or_default() {
                if !share.writable {
                    if let Ok(Some(bytes)) =
                        node.get_record(share.name, Duration::from_secs(20)).await
                    {
                        adopt(&repo, &node, &mounts, share.name, &bytes, "dht").await;
                    }
                }
            }
        }
    });
}

/// A valid record of a followed share: its head here if newer, and the following mounts move.
/// A version whose root block cannot be fetched does not replace one that works: it is tried
/// again in the background (5 s, then doubling to a minute, for ten minutes), each time with
/// the best record known then, until one is taken.
async fn adopt(
    repo: &Arc<Repo>,
    node: &Node,
    mounts: &Arc<Mounts>,
    name: IpnsName,
    record: &[u8],
    from: &str,
) {
    if adopt_once(repo, node, mounts, name, record, from).await != Adopted::RootMissing {
        return;
    }
    if !mounts.start_root_retry(&name) {
        return;
    }
    let (repo, node, mounts) = (repo.clone(), node.clone(), mounts.clone());
    tokio::spawn(async move {
        let (mut wait, started) = (ROOT_RETRY_FIRST, Instant::now());
        while started.elapsed() < ROOT_RETRY_FOR {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(ROOT_RETRY_MAX);
            let Ok(Some(best)) = node.get_record(name, Duration::from_secs(5)).await else {
                continue;
            };
            if adopt_once(&repo, &node, &mounts, name, &best, "dht").await != Adopted::RootMissing {
                break;
            }
        }
        mounts.end_root_retry(&name);
    });
}

#[derive(Debug, PartialEq, Eq)]
enum Adopted {
    /// Taken, or nothing to take (not newer, not valid, not followed).
    Done,
    /// Newer, but its root block could not be fetched.
    RootMissing,
}

async fn adopt_once(
    repo: &Repo,
    node: &Node,
    mounts: &Mounts,
    name: IpnsName,
    record: &[u8],
    from: &str,
) -> Adopted {
    let owner = match repo.shares().find(&name.to_string()) {
        Ok(s) => s.writable,
        // Not followed (any more): nothing to take.
        Err(_) => return Adopted::Done,
    };
    let Ok(rec) = cairn_store::IpnsRecord::verify(record, &name) else {
        tracing::warn!(share = %name, "refused a record of a share that does not verify");
        return Adopted::Done;
    };
    // Not newer than the head: nothing to take, but the same version is a sign of life.
    if let Ok((head, head_rec)) = repo.shares().head_record(&name) {
        if !rec.supersedes(&head_rec) {
            if rec.sequence() == head.sequence && !owner {
                let _ = repo.shares().note_seen(&name, from);
            }
            return Adopted::Done;
        }
    }
    // Newer: made by another of the share's publishers (a writer its owner lets publish, or
    // the owner). What it names must be a commit this node accepts as a head.
    let version = match cairn_store::Version::from_record(&rec) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(share = %name, error = %e, "refused a record of a share");
            return Adopted::Done;
        }
    };
    match crate::heads::check_record_commit(repo, node, name, &version).await {
        Ok(()) => {}
        Err((why, true)) => {
            tracing::warn!(share = %name, sequence = version.sequence, error = %why, "cannot check a newer record of the share yet; staying on the current version");
            return Adopted::RootMissing;
        }
        Err((why, false)) => {
            tracing::warn!(share = %name, sequence = version.sequence, error = %why, "refused a record of a share");
            // Nor kept, answered with or passed on by this node's network side, which holds
            // the head here instead (a refused record far ahead in sequence would otherwise
            // hide every later valid one from this node's peers).
            let head = repo
                .shares()
                .head_record(&name)
                .ok()
                .map(|(_, r)| r.as_bytes().to_vec());
            if let Err(e) = node.refuse_record(name, record.to_vec(), head).await {
                tracing::debug!(share = %name, error = %e, "cannot drop the refused record");
            }
            return Adopted::Done;
        }
    }
    if owner {
        // The owner's head stays its own (the writer's head, announced beside its record, is
        // what merges here); its next version goes above this one's sequence.
        match repo.shares().note_sequence(&name, rec.sequence()) {
            Ok(true) => {
                tracing::info!(share = %name, sequence = rec.sequence(), "another publisher's record of the share is newer; the next version goes above it")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(share = %name, error = %e, "cannot note another publisher's record")
            }
        }
        answer_older(repo, mounts, name, &version);
        return Adopted::Done;
    }
    if let cairn_store::RecordValue::Ipfs(p) = rec.value() {
        if !node.store().has(&p.root).unwrap_or(false) {
            let wait = node.fetch_timeout().min(ROOT_FETCH);
            if let Err(e) = node.fetch_with_timeout(p.root, wait).await {
                tracing::warn!(share = %name, sequence = rec.sequence(), root = %p.root, error = %e, "the new version's root cannot be fetched yet; staying on the current version");
                return Adopted::RootMissing;
            }
        }
    }
    let took = repo.shares().adopt(&name, record);
    if let Ok(Some(_)) = &took {
        let _ = repo.shares().note_seen(&name, from);
    }
    match took {
        Ok(Some(v)) => {
            tracing::info!(share = %name, sequence = v.sequence, root = %v.root, "followed share moved");
            // Its commit and member list were taken when the record was checked.
            mounts.head_moved(&name, v.root, v.sequence);
            if repo
                .shares()
                .find(&name.to_string())
                .is_ok_and(|s| s.pinned)
            {
                fetch_whole(node, name, v.root);
            }
            answer_older(repo, mounts, name, &v);
        }
        Ok(None) => {}
        Err(cairn_store::ShareError::NotFound(_)) => {}
        Err(e) => tracing::warn!(share = %name, error = %e, "refused a record of a followed share"),
    }
    Adopted::Done
}

/// A newer record of share `name` from another publisher, naming an older version than this
/// node's tip (two records of one sequence, the older version's valid longer): on a node that
/// signs the share's records, a record of its tip goes above it (see
/// `Shares::answer_older_record`), so followers are not left on the older one.
fn answer_older(repo: &Repo, mounts: &Mounts, name: IpnsName, other: &cairn_store::Version) {
    let Some(named) = other.commit else { return };
    match repo
        .shares()
        .answer_older_record(&name, &repo.identity_key(), &named, &mounts.roots())
    {
        Ok(Some(v)) => {
            tracing::info!(share = %name, sequence = v.sequence, behind = other.sequence, "another publisher's record named an older version; signed this node's tip above it");
            mounts.head_moved(&name, v.root, v.sequence);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(share = %name, error = %e, "cannot sign a record above another publisher's older one")
        }
    }
}

/// Fetches every block of `root` (a version of pinned share `name`) in the background.
pub fn fetch_whole(node: &Node, name: IpnsName, root: cairn_store::Cid) {
    let source = cairn_net::NetSource::new(node.clone());
    tokio::spawn(async move {
        match cairn_net::fetch_dag(&source, root, 16, |_| {}).await {
            Ok(done) => {
                tracing::info!(share = %name, %root, blocks = done.blocks, "pinned version fetched")
            }
            Err(e) => {
                tracing::warn!(share = %name, %root, error = %e, "cannot fetch the pinned version yet")
            }
        }
    });
}

/// Follows share `name` from the network if this repo does not know it: its newest record
/// from the DHT becomes its head here (labelled `label`), and its pushes are listened to.
pub async fn follow_new(
    repo: &Repo,
    node: &Node,
    mounts: &Mounts,
    name: IpnsName,
    label: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    if repo.shares().find(&name.to_string()).is_ok() {
        return Ok(());
    }
    let Some(bytes) = node.get_record(name, timeout).await? else {
        crate::fail!(
            "unreachable",
            "no record of /ipns/{name} found on the network within {} s: is its publisher (or \
             a follower) connected? (`cairn swarm connect ADDR`)",
            timeout.as_secs()
        );
    };
    let id = name.to_string();
    let default_label = format!("followed-{}", &id[id.len() - 8..]);
    let label = label.unwrap_or(&default_label);
    let (share, _) = repo.shares().follow(&name, label, &bytes)?;
    node.subscribe(name).await?;
    // Its writers' heads too: this node may be granted write access (the head's commit and
    // member list say whether it is).
    node.serve_heads(name).await?;
    if let Err(e) = crate::heads::take_record_commit(repo, node, name, true).await {
        tracing::warn!(share = %name, error = %e, "cannot read the share's commit and member list yet");
    }
    if let Some(head) = share.head {
        mounts.head_moved(&name, head.root, head.sequence);
    }
    Ok(())
}

/// The newest record of `name`: a share of this repo answers from its head (its own is
/// authoritative; a followed one also asks the DHT for a newer one).
pub async fn resolve(
    repo: &Arc<Repo>,
    node: &Node,
    mounts: &Arc<Mounts>,
    name: IpnsName,
    timeout: Duration,
) -> Result<Option<Vec<u8>>> {
    if let Ok(share) = repo.shares().find(&name.to_string()) {
        if !share.writable {
            if let Ok(Some(bytes)) = node.get_record(name, timeout).await {
                adopt(repo, node, mounts, name, &bytes, "dht").await;
            }
        }
        return Ok(repo
            .shares()
            .head_record(&name)
            .ok()
            .map(|(_, r)| r.as_bytes().to_vec()));
    }
    Ok(node.get_record(name, timeout).await?)
}

/// Versions `share log` of a followed share walks back at most.
const HISTORY_MAX: usize = 10_000;

/// Fetches the record blocks of followed share `name`'s history that are not here, walking the
/// chain back from the head (each record names the previous one's block), so that `share log`
/// shows it. Stops at the first record that cannot be fetched within `timeout`, at a record
/// that does not verify or does not go strictly down in sequence, or after [`HISTORY_MAX`].
/// Returns how many record blocks were fetched.
pub async fn fetch_history(repo: &Repo, node: &Node, name: IpnsName, timeout: Duration) -> usize {
    let Ok((head, _)) = repo.shares().head_record(&name) else {
        return 0;
    };
    let (mut prev, mut last_seq, mut fetched) = (head.prev, head.sequence, 0);
    for _ in 0..HISTORY_MAX {
        let Some(cid) = prev else { break };
        let data = match node.store().get_verified(&cid) {
            Ok(Some(b)) => b,
            _ => match node.fetch_with_timeout(cid, timeout).await {
                Ok(b) => {
                    fetched += 1;
                    b
                }
                Err(e) => {
                    tracing::info!(share = %name, record = %cid, error = %e, "history stops here: an older record cannot be fetched");
                    break;
                }
            },
        };
        let Ok(v) = cairn_store::IpnsRecord::verify(&data, &name)
            .map_err(|e| e.to_string())
            .and_then(|r| cairn_store::Version::from_record(&r).map_err(|e| e.to_string()))
        else {
            tracing::warn!(share = %name, record = %cid, "history stops at a record that does not verify");
            break;
        };
        if v.sequence >= last_seq {
            break;
        }
        last_seq = v.sequence;
        prev = v.prev;
    }
    fetched
}

/// How long a name that is not a share here keeps its resolution in a namespace mount, and how
/// long a name nobody answered for stays unanswered.
const NAME_CACHE: Duration = Duration::from_secs(30);
const NAME_MISS_CACHE: Duration = Duration::from_secs(10);

/// Names as the daemon resolves them in a namespace mount: a share of this repo by its head
/// (a followed share's head moves as records arrive), any other IPNS name through the DHT,
/// kept for [`NAME_CACHE`] (a lookup every second would otherwise ask the network each time).
pub fn daemon_names(
    daemon: &Arc<crate::daemon::Daemon>,
    timeout: Duration,
) -> cairn_fs::NameResolver {
    let daemon = daemon.clone();
    // Name -> when resolved and the root (`None`: no record found, kept for a shorter time).
    type Cache = Mutex<HashMap<IpnsName, (Instant, Option<cairn_store::Cid>)>>;
    let cache: Arc<Cache> = Arc::default();
    Arc::new(move |text: String| {
        let (d, cache) = (daemon.clone(), cache.clone());
        Box::pin(async move {
            if let Some(root) = crate::mount::share_head(&d.repo, &text) {
                return Some(root);
            }
            let name: IpnsName = text.parse().ok()?;
            if let Some((at, root)) = cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&name)
            {
                let keep = if root.is_some() {
                    NAME_CACHE
                } else {
                    NAME_MISS_CACHE
                };
                if at.elapsed() < keep {
                    return *root;
                }
            }
            // Half the request's time for the DHT: the rest is for reading what it names.
            let found = resolve(&d.repo, &d.node, &d.mounts, name, timeout / 2)
                .await
                .ok()
                .flatten()
                .and_then(|bytes| cairn_store::IpnsRecord::verify(&bytes, &name).ok())
                .and_then(|record| match record.value() {
                    cairn_store::RecordValue::Ipfs(p) if p.segments.is_empty() => Some(p.root),
                    _ => None,
                });
            let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= 1024 {
                cache.retain(|_, (at, _)| at.elapsed() < NAME_CACHE);
                if cache.len() >= 1024 {
                    cache.clear();
                }
            }
            cache.insert(name, (Instant::now(), found));
            found
        })
    })
}
