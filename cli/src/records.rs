//! The daemon's IPNS records: every head this repo signs is published (the DHT and the name's
//! pubsub topic) when it moves, at start and again before it expires; every share followed here
//! takes the newer records peers push, and a follower that was away catches up from the DHT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use cairn_net::Node;
use cairn_store::{IpnsName, Repo};

use crate::mounts::Mounts;

/// Own heads are published again this often (records are valid for 48 h).
const REPUBLISH: Duration = Duration::from_secs(4 * 3600);
/// How long a follower waits for a new version's root block before it keeps the current one.
const ROOT_FETCH: Duration = Duration::from_secs(20);
/// After a new connection, when followed shares ask the DHT for newer records.
const CATCH_UP_AFTER: [Duration; 2] = [Duration::from_millis(300), Duration::from_secs(3)];
/// Followed shares ask the DHT for a newer record this often, in case a push was missed.
const POLL: Duration = Duration::from_secs(60);

/// Publishes the head of share `name` (one this repo holds the key of) in the background.
pub fn publish_head(repo: &Arc<Repo>, node: &Node, name: IpnsName) {
    let Ok((_, record)) = repo.shares().head_record(&name) else {
        return;
    };
    let node = node.clone();
    let bytes = record.as_bytes().to_vec();
    tokio::spawn(async move {
        match node.put_record(name, bytes).await {
            Ok(put) => tracing::debug!(%name, dht = put.dht, pushed = put.pushed, "published"),
            Err(e) => tracing::warn!(%name, error = %e, "cannot publish the share's head"),
        }
    });
}

/// Starts the record work of a daemon: publishing own heads when they move and periodically,
/// following the followed shares.
pub fn start(repo: Arc<Repo>, node: Node, mounts: Arc<Mounts>) {
    let (r, n) = (repo.clone(), node.clone());
    mounts.on_head_moved(Box::new(move |name: &IpnsName| {
        if r.shares().find(&name.to_string()).is_ok_and(|s| s.writable) {
            publish_head(&r, &n, *name);
        }
    }));
    let mut pushed = node.record_events();
    let (r, n, m) = (repo.clone(), node.clone(), mounts.clone());
    tokio::spawn(async move {
        for share in r.shares().list().unwrap_or_default() {
            if share.writable {
                publish_head(&r, &n, share.name);
            } else if let Err(e) = n.subscribe(share.name).await {
                tracing::warn!(share = %share.name, error = %e, "cannot follow the share's pushes");
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
    tokio::spawn(async move {
        let mut republish = tokio::time::interval(REPUBLISH);
        let mut poll = tokio::time::interval(POLL);
        republish.tick().await;
        poll.tick().await;
        loop {
            tokio::select! {
                _ = republish.tick() => {
                    for share in repo.shares().list().unwrap_or_default() {
                        if share.writable {
                            publish_head(&repo, &node, share.name);
                        }
                    }
                }
                _ = poll.tick() => {
                    for share in repo.shares().list().unwrap_or_default() {
                        if !share.writable {
                            if let Ok(Some(bytes)) = node.get_record(share.name, Duration::from_secs(20)).await {
                                adopt(&repo, &node, &mounts, share.name, &bytes, "dht").await;
                            }
                        }
                    }
                }
            }
        }
    });
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
async fn adopt(
    repo: &Repo,
    node: &Node,
    mounts: &Mounts,
    name: IpnsName,
    record: &[u8],
    from: &str,
) {
    let Ok(rec) = cairn_store::IpnsRecord::verify(record, &name) else {
        tracing::warn!(share = %name, "refused a record of a followed share that does not verify");
        return;
    };
    // Not newer than the head: nothing to take, but the same version is a sign of life.
    if let Ok((head, head_rec)) = repo.shares().head_record(&name) {
        if !rec.supersedes(&head_rec) {
            if rec.sequence() == head.sequence {
                let _ = repo.shares().note_seen(&name, from);
            }
            return;
        }
    }
    // A version whose root cannot be fetched does not replace one that works: the record is
    // taken once its root block is here (a later push or poll tries again).
    if let cairn_store::RecordValue::Ipfs(p) = rec.value() {
        if !node.store().has(&p.root).unwrap_or(false) {
            if let Err(e) = node.fetch_with_timeout(p.root, ROOT_FETCH).await {
                tracing::warn!(share = %name, root = %p.root, error = %e, "the new version's root cannot be fetched yet; staying on the current version");
                return;
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
            mounts.head_moved(&name, v.root, v.sequence);
            if repo
                .shares()
                .find(&name.to_string())
                .is_ok_and(|s| s.pinned)
            {
                fetch_whole(node, name, v.root);
            }
        }
        Ok(None) => {}
        Err(cairn_store::ShareError::NotFound(_)) => {}
        Err(e) => tracing::warn!(share = %name, error = %e, "refused a record of a followed share"),
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
    if let Some(head) = share.head {
        mounts.head_moved(&name, head.root, head.sequence);
    }
    Ok(())
}

/// The newest record of `name`: a share of this repo answers from its head (its own is
/// authoritative; a followed one also asks the DHT for a newer one).
pub async fn resolve(
    repo: &Repo,
    node: &Node,
    mounts: &Mounts,
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
