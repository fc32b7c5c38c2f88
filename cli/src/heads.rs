//! Writers' heads in the daemon. Every share of the repo has its heads topic joined; the tip of
//! each share this node writes (as owner or member) is announced there whenever it moves, and
//! again to peers that subscribe later (see `net/src/event_loop/heads.rs`). Another writer's
//! head that arrives is handled one at a time per share:
//!
//! 1. the member list it names (also an owner's head's: a grant or revocation it just made) is
//!    fetched (if not here) and kept if it is newer than ours;
//! 2. it is checked: the owner's, or a member's under that list and not past a revocation
//!    under the newest list here; a refused head is logged and goes no further;
//! 3. if this node writes the share, the head's history (the commits not here) is fetched, the
//!    plan made (`Shares::plan`: nothing, fast-forward or merge) and carried out: with a
//!    writable mount of the share, under its lock (`ShareControl::advance`: staged changes
//!    committed first; while files are open for writing it waits and tries again), without
//!    one directly; the tip moves (on the owner: a new version, its record published), mounts
//!    following the share move, and the new tip is announced.
//!
//! A head that could not be taken because something could not be fetched or read (its writer
//! went offline right after announcing it) is tried again, after 1 s doubling up to 60 s, eight
//! times at most, unless a newer head of the same writer arrived meanwhile; a head that is
//! invalid (badly signed, a member list not the owner's, a history that does not check) is
//! logged once and dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cairn_fs::{AdvanceError, Advanced};
use cairn_net::{HeadEvent, NetSource, Node};
use cairn_store::commit::{Commit, Reached};
use cairn_store::heads::{merge_commits, Plan, TipMove};
use cairn_store::{Blockstore, Cid, DagReader, IpnsName, Repo, ShareError};

use crate::mounts::Mounts;

/// How long one fetch (a member list, a commit) may take.
const FETCH: Duration = Duration::from_secs(20);
/// Commits of a head's history fetched at most (the history walk is bounded in the store too).
const MAX_HISTORY_FETCH: usize = 10_000;
/// How often a head is tried again while the mount is busy (files open for writing): after
/// `BUSY_FIRST`, doubling up to `BUSY_RETRY` (a file just closed is released by the kernel a
/// moment after `close` returns, so the first retry comes soon), for `BUSY_FOR` at most.
const BUSY_FIRST: Duration = Duration::from_millis(10);
const BUSY_RETRY: Duration = Duration::from_millis(500);
const BUSY_FOR: Duration = Duration::from_secs(600);
/// Attempts when the tip moved while a merge was prepared.
const MOVED_RETRIES: usize = 8;
/// A head whose blocks could not be fetched (its writer went offline right after announcing it,
/// a peer in between is slow) is tried again after `RETRY_FIRST`, doubling up to `RETRY_MAX`,
/// `RETRIES` times at most, unless a newer head of the same writer arrived meanwhile.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
const RETRIES: usize = 8;
/// Writers whose newest head is remembered at most (see `Newest`).
const MAX_NEWEST: usize = 10_000;

/// Why a head was not taken, and whether trying again later may help (something could not be
/// fetched) or not (the head or what it names is invalid).
#[derive(Debug)]
struct Failed {
    why: String,
    again: bool,
}

impl Failed {
    /// What failed on the way (a fetch, a read through the network): worth another try.
    fn transient(why: String) -> Failed {
        Failed { why, again: true }
    }

    /// What is wrong with the head itself: never worth another try.
    fn invalid(why: String) -> Failed {
        Failed { why, again: false }
    }
}

/// The newest head seen per share and writer (its sequence number).
type Newest = Mutex<HashMap<(IpnsName, IpnsName), u64>>;

/// Per share, a lock that makes heads of one share handled one at a time.
type Locks = Mutex<HashMap<IpnsName, Arc<tokio::sync::Mutex<()>>>>;

/// Announces this node's tip of share `name`, if it writes it. The tip is read when the
/// announcement goes out, one share's announcements one at a time: announcements of moves in
/// quick succession never leave an older tip as the one announced (a peer would merge with it).
pub fn announce(repo: &Arc<Repo>, node: &Node, name: IpnsName) {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let (repo, node) = (repo.clone(), node.clone());
    tokio::spawn(async move {
        let _one = ONE_AT_A_TIME.lock().await;
        let shares = repo.shares();
        if !shares
            .writer_key(&name, &repo.identity_key())
            .is_ok_and(|k| k.is_some())
        {
            return;
        }
        let Ok(Some(tip)) = shares.tip(&name) else {
            return;
        };
        if let Err(e) = node.announce_head(name, tip.as_bytes().to_vec()).await {
            tracing::debug!(share = %name, error = %e, "cannot announce the head");
        }
    });
}

/// Starts the heads work of a daemon (see the module notes).
pub fn start(repo: Arc<Repo>, node: Node, mounts: Arc<Mounts>) {
    let (r, n) = (repo.clone(), node.clone());
    mounts.on_head_moved(Box::new(move |name: &IpnsName| announce(&r, &n, *name)));
    let locks: Arc<Locks> = Arc::default();
    // A writable mount whose commit was merged into a tip that had moved under it moves onto
    // the tip (under the share's heads lock, as a head would move it).
    let (r, n, l, m) = (
        repo.clone(),
        node.clone(),
        locks.clone(),
        Arc::downgrade(&mounts),
    );
    mounts.on_diverged(Box::new(move |name: &IpnsName| {
        let (r, n, l, m, name) = (r.clone(), n.clone(), l.clone(), m.clone(), *name);
        tokio::spawn(async move {
            let Some(m) = m.upgrade() else { return };
            let _one = share_lock(&l, name).lock_owned().await;
            let Ok(Some(tip)) = r.shares().tip(&name) else {
                return;
            };
            if let Err(e) = advance(&r, &n, &m, name, &tip).await {
                tracing::warn!(share = %name, error = %e, "the mount cannot move onto the share's tip yet");
            }
        });
    }));
    let mut events = node.head_events();
    let newest: Arc<Newest> = Arc::default();
    tokio::spawn(async move {
        for share in repo.shares().list().unwrap_or_default() {
            if let Err(e) = node.serve_heads(share.name).await {
                tracing::warn!(share = %share.name, error = %e, "cannot join the share's heads topic");
            }
            announce(&repo, &node, share.name);
        }
        loop {
            match events.recv().await {
                Ok(ev) => {
                    let seen = note_newest(&newest, &ev);
                    let (r, n, m, l) = (repo.clone(), node.clone(), mounts.clone(), locks.clone());
                    let newest = newest.clone();
                    tokio::spawn(async move { take(&r, &n, &m, &l, &newest, ev, seen).await });
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "missed writers' heads; they are announced again as peers reconnect"
                    )
                }
                Err(_) => return,
            }
        }
    });
}

/// Records `ev` as its writer's newest head if it is; returns (share and writer, sequence), or
/// `None` for what is no commit (refused in `on_head`).
fn note_newest(newest: &Newest, ev: &HeadEvent) -> Option<((IpnsName, IpnsName), u64)> {
    let c = Commit::verify(&ev.commit, &ev.name).ok()?;
    let mut newest = newest.lock().unwrap_or_else(PoisonError::into_inner);
    // Keys cost nothing to make: a flood of strangers' heads must not grow it.
    if newest.len() >= MAX_NEWEST {
        newest.clear();
    }
    let e = newest.entry((ev.name, c.writer)).or_insert(c.seq);
    *e = (*e).max(c.seq);
    Some(((ev.name, c.writer), c.seq))
}

/// Takes head `ev` (see [`on_head`]) under its share's lock, trying again while what failed
/// may still come (see `RETRY_FIRST`) and it is its writer's newest head (`seen`).
async fn take(
    repo: &Arc<Repo>,
    node: &Node,
    mounts: &Arc<Mounts>,
    locks: &Locks,
    newest: &Newest,
    ev: HeadEvent,
    seen: Option<((IpnsName, IpnsName), u64)>,
) {
    let mut wait = RETRY_FIRST;
    for attempt in 0.. {
        let done = {
            let _one = share_lock(locks, ev.name).lock_owned().await;
            on_head(repo, node, mounts, ev.name, &ev.commit).await
        };
        let Err(f) = done else { return };
        let superseded = seen.is_some_and(|(who, seq)| {
            newest
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&who)
                .is_some_and(|n| *n > seq)
        });
        if !f.again || attempt >= RETRIES || superseded || seen.is_none() {
            tracing::warn!(share = %ev.name, from = %ev.from, error = %f.why, "cannot take another writer's head");
            return;
        }
        if attempt == 0 {
            tracing::warn!(share = %ev.name, from = %ev.from, error = %f.why, "cannot take another writer's head yet; trying again");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// The lock that makes share `name`'s heads handled one at a time.
fn share_lock(locks: &Locks, name: IpnsName) -> Arc<tokio::sync::Mutex<()>> {
    locks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(name)
        .or_default()
        .clone()
}

/// The verified block `cid`, from the store or the network.
pub(crate) async fn fetch(node: &Node, cid: Cid) -> Result<bytes::Bytes, String> {
    if let Ok(Some(b)) = node.store().get_verified(&cid) {
        return Ok(b);
    }
    node.fetch_with_timeout(cid, FETCH)
        .await
        .map_err(|e| e.to_string())
}

/// Fetches commit `cid` of share `name` (from the store or the network) and the member list it
/// names (kept if newer than the one here: an owner's commit names the newest), checks that it
/// `fits` what the caller needs and is acceptable as `reached`, and keeps it.
/// `Err((why, again))`: refused, and whether it may pass later (something could not be fetched).
async fn take_commit(
    repo: &Repo,
    node: &Node,
    name: IpnsName,
    cid: Cid,
    reached: Reached,
    fits: impl Fn(&Commit) -> Result<(), String>,
) -> Result<Commit, (String, bool)> {
    let data = fetch(node, cid)
        .await
        .map_err(|e| (format!("cannot fetch commit {cid}: {e}"), true))?;
    let c = Commit::verify(&data, &name).map_err(|e| (format!("commit {cid}: {e}"), false))?;
    fits(&c).map_err(|why| (format!("commit {cid} {why}"), false))?;
    take_members(repo, node, &name, c.members)
        .await
        .map_err(|f| (f.why, f.again))?;
    repo.shares()
        .check_commit(&name, &c, reached)
        .map_err(|e| (format!("commit {cid}: {e}"), false))?;
    repo.shares()
        .keep_commit(&name, &c)
        .map_err(|e| (e.to_string(), true))?;
    Ok(c)
}

/// Checks the commit a record of share `name` names (one made elsewhere: the owner's or
/// another publisher's; see [`take_commit`]): it must be of the record's version and the
/// owner's, or a member's under the list it names and not past a revocation under the newest
/// list here. So a writer whose publishing was revoked, who still holds the share's key, cannot
/// bring its later commits to followers through records.
pub(crate) async fn check_record_commit(
    repo: &Repo,
    node: &Node,
    name: IpnsName,
    version: &cairn_store::Version,
) -> Result<(), (String, bool)> {
    let Some(cid) = version.commit else {
        // A share made before commits existed: only its owner signs its records.
        return Ok(());
    };
    let of_version = |c: &Commit| {
        if (c.root, c.ids) == (version.root, version.ids.unwrap_or(c.ids)) {
            Ok(())
        } else {
            Err("is not of the version the record names".to_string())
        }
    };
    take_commit(repo, node, name, cid, Reached::Head, of_version)
        .await
        .map(|_| ())
}

/// Takes the member list `cid` of share `name` (kept if newer than the one here).
async fn take_members(repo: &Repo, node: &Node, name: &IpnsName, cid: Cid) -> Result<(), Failed> {
    let bytes = fetch(node, cid)
        .await
        .map_err(|e| Failed::transient(format!("cannot fetch member list {cid}: {e}")))?;
    repo.shares()
        .receive_members(name, &bytes)
        .map(|_| ())
        .map_err(|e| Failed::invalid(format!("member list {cid}: {e}")))
}

/// Takes the commit that share `name`'s head record names, and the member list it names, from
/// the store or the network, when the share starts to be followed here: a follower learns from
/// them whether it may write the share, and a member's tip starts there. `read_in`: a writer
/// also reads that version in.
pub async fn take_record_commit(
    repo: &Repo,
    node: &Node,
    name: IpnsName,
    read_in: bool,
) -> Result<(), String> {
    let Ok((head, _)) = repo.shares().head_record(&name) else {
        return Ok(());
    };
    let Some(cid) = head.commit else {
        return Ok(());
    };
    let c = take_commit(repo, node, name, cid, Reached::History, |_| Ok(()))
        .await
        .map_err(|(why, _)| why)?;
    let me = repo.identity_key();
    if read_in
        && repo
            .shares()
            .writer_key(&name, &me)
            .ok()
            .flatten()
            .is_some()
    {
        // A writer works on this version, also offline: its directories and id tree (what a
        // commit and a merge read) come here now (later versions come with the heads that
        // bring them).
        let reader = DagReader::new(NetSource::new(node.clone()).with_timeout(FETCH));
        cairn_store::identity::read_version(&reader, c.root, Some(c.ids))
            .await
            .map_err(|e| format!("cannot read version {}: {e}", c.root))?;
    }
    Ok(())
}

/// Another writer's head `bytes` of share `name` arrived (see the module notes).
async fn on_head(
    repo: &Arc<Repo>,
    node: &Node,
    mounts: &Arc<Mounts>,
    name: IpnsName,
    bytes: &[u8],
) -> Result<(), Failed> {
    let shares = repo.shares();
    if shares.find(&name.to_string()).is_err() {
        return Ok(());
    }
    let remote = Commit::verify(bytes, &name).map_err(|e| Failed::invalid(e.to_string()))?;
    tracing::debug!(share = %name, writer = %remote.writer, seq = remote.seq, commit = %remote.block().cid(), "a writer's head arrived");
    // The owner's heads too: the list an owner's commit names is the newest there is (a grant
    // or revocation it just made), which decides what this node may do (write, publish).
    take_members(repo, node, &name, remote.members).await?;
    if let Err(e) = shares.check_commit(&name, &remote, Reached::Head) {
        tracing::warn!(share = %name, writer = %remote.writer, error = %e, "refused a head that is not a member's");
        return Ok(());
    }
    shares
        .keep_commit(&name, &remote)
        .map_err(|e| Failed::invalid(e.to_string()))?;
    let me = repo.identity_key();
    if shares.writer_key(&name, &me).ok().flatten().is_none() {
        // Not a writer here: followers follow the share's record.
        tracing::debug!(share = %name, "not a writer here; the head is kept, not merged");
        return Ok(());
    }
    fetch_history(repo, node, &name, &remote).await?;
    tracing::debug!(share = %name, "history here");
    // The remote version's directories and file roots, read once outside any lock so that the
    // merge under the mount's lock finds them here.
    let reader = DagReader::new(NetSource::new(node.clone()).with_timeout(FETCH));
    cairn_store::identity::read_version(&reader, remote.root, Some(remote.ids))
        .await
        .map_err(|e| {
            Failed::transient(format!(
                "cannot read the head's version {}: {e}",
                remote.root
            ))
        })?;
    tracing::debug!(share = %name, "version read");
    advance(repo, node, mounts, name, &remote)
        .await
        .map_err(Failed::transient)
}

/// Moves this node's copy of share `name` (its tip, and a writable mount of it) on with
/// `remote` (see [`step`]), trying again while the mount is busy or the tip moves meanwhile.
async fn advance(
    repo: &Arc<Repo>,
    node: &Node,
    mounts: &Arc<Mounts>,
    name: IpnsName,
    remote: &Commit,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut moved_retries = 0;
    let mut busy_wait = BUSY_FIRST;
    loop {
        let outcome = match mounts.share(&name) {
            Some((_, control)) => {
                let job = advance_job(
                    repo.clone(),
                    node.clone(),
                    mounts.clone(),
                    name,
                    remote.clone(),
                );
                control.advance(job).await
            }
            None => match step(repo, node, mounts, name, remote, None).await {
                Ok(Some(a)) => (a.finish)().map(|_| true).map_err(AdvanceError::Job),
                Ok(None) => Ok(false),
                Err(e) => Err(AdvanceError::Job(e)),
            },
        };
        tracing::debug!(share = %name, ?outcome, "advanced");
        match outcome {
            Ok(_) => return Ok(()),
            Err(AdvanceError::Busy) if started.elapsed() < BUSY_FOR => {
                tokio::time::sleep(busy_wait).await;
                busy_wait = (busy_wait * 2).min(BUSY_RETRY);
            }
            Err(AdvanceError::Job(e)) if e.contains(MOVED) && moved_retries < MOVED_RETRIES => {
                moved_retries += 1;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// What a job says when the tip moved under it (the head is planned again).
const MOVED: &str = "moved meanwhile";

fn advance_job(
    repo: Arc<Repo>,
    node: Node,
    mounts: Arc<Mounts>,
    name: IpnsName,
    remote: Commit,
) -> cairn_fs::AdvanceJob {
    Box::new(move |base: Cid| {
        Box::pin(async move { step(&repo, &node, &mounts, name, &remote, Some(base)).await })
    })
}

/// Fetches the commits of `remote`'s history that are not here (checked as heads are, each
/// under the member list it names), so that a merge base can be found.
async fn fetch_history(
    repo: &Repo,
    node: &Node,
    name: &IpnsName,
    remote: &Commit,
) -> Result<(), Failed> {
    let shares = repo.shares();
    let mut fetched = 0;
    loop {
        let missing = shares.missing_history(name, remote.block().cid());
        if missing.is_empty() {
            return Ok(());
        }
        for cid in missing {
            if fetched >= MAX_HISTORY_FETCH {
                return Err(Failed::invalid(format!(
                    "the head's history has over {MAX_HISTORY_FETCH} commits not here"
                )));
            }
            fetched += 1;
            let data = fetch(node, cid).await.map_err(|e| {
                Failed::transient(format!(
                    "cannot fetch commit {cid} of the head's history: {e}"
                ))
            })?;
            let c = Commit::verify(&data, name)
                .map_err(|e| Failed::invalid(format!("commit {cid}: {e}")))?;
            if c.writer != *name && !node.store().has(&c.members).unwrap_or(false) {
                take_members(repo, node, name, c.members).await?;
            }
            shares
                .check_commit(name, &c, Reached::History)
                .map_err(|e| Failed::invalid(format!("commit {cid} of the head's history: {e}")))?;
            shares
                .keep_commit(name, &c)
                .map_err(|e| Failed::invalid(e.to_string()))?;
        }
    }
}

/// Plans what to do with `remote` at the tip here and prepares it: `None` when there is
/// nothing to do, else where the share goes and what moves its tip there. `mount`: the root a
/// writable mount of the share shows (with nothing staged); when the tip is up to date but the
/// mount is not on it (a commit of the mount was merged into a tip that had moved), the mount
/// moves onto the tip.
async fn step(
    repo: &Arc<Repo>,
    node: &Node,
    mounts: &Arc<Mounts>,
    name: IpnsName,
    remote: &Commit,
    mount: Option<Cid>,
) -> Result<Option<Advanced>, String> {
    let shares = repo.shares();
    let e = |e: ShareError| e.to_string();
    let local = shares
        .tip(&name)
        .map_err(e)?
        .ok_or_else(|| format!("share {name} has no commit here to merge into"))?;
    let plan = shares.plan(&name, &local, remote).map_err(e)?;
    tracing::debug!(share = %name, local = %local.block().cid(), remote = %remote.block().cid(), ?plan, "planned");
    let reader = DagReader::new(NetSource::new(node.clone()).with_timeout(FETCH));
    let (root, ids, size, to) = match plan {
        Plan::UpToDate if mount.is_some_and(|m| m != local.root) => {
            let tree = cairn_store::identity::read_version(&reader, local.root, Some(local.ids))
                .await
                .map_err(|e| e.to_string())?;
            let expected = *local.block().cid();
            let repo = repo.clone();
            let finish = Box::new(move || -> Result<(), String> {
                match repo.shares().tip(&name) {
                    Ok(Some(t)) if *t.block().cid() == expected => Ok(()),
                    _ => Err(format!("share {name} {MOVED}")),
                }
            });
            return Ok(Some(Advanced {
                root: local.root,
                ids: Some(local.ids),
                size: tree.size(),
                finish,
            }));
        }
        Plan::UpToDate => return Ok(None),
        Plan::FastForward => {
            let tree = cairn_store::identity::read_version(&reader, remote.root, Some(remote.ids))
                .await
                .map_err(|e| e.to_string())?;
            let size = tree.size();
            (remote.root, remote.ids, size, Move::To(remote.clone()))
        }
        Plan::Merge { .. } => {
            let base = shares
                .base_tree(&reader, &name, &local, remote)
                .await
                .map_err(|e| format!("cannot read the merge base: {e}"))?;
            let (ll, rl) = (
                shares.writer_label(&name, &local),
                shares.writer_label(&name, remote),
            );
            let sink = repo.session();
            let out = merge_commits(&reader, &base, (&local, &ll), (remote, &rl), &sink)
                .await
                .map_err(|e| format!("cannot merge {}: {e}", remote.block().cid()))?;
            repo.store().flush().map_err(|e| e.to_string())?;
            tracing::info!(share = %name, local = %local.block().cid(), remote = %remote.block().cid(), root = %out.written.root, conflicts = out.conflicts.len(), "merged another writer's head");
            let parents = vec![*local.block().cid(), *remote.block().cid()];
            (
                out.written.root,
                out.written.ids,
                out.size,
                Move::New {
                    parents,
                    size: out.size,
                    root: out.written.root,
                    ids: out.written.ids,
                },
            )
        }
    };
    let expected = Some(*local.block().cid());
    let (repo, mounts) = (repo.clone(), mounts.clone());
    let finish = Box::new(move || -> Result<(), String> {
        let protected = mounts.roots();
        let me = repo.identity_key();
        let moved = match &to {
            Move::To(c) => repo.shares().move_tip(
                &name,
                &me,
                expected,
                TipMove::To { commit: c, size },
                &protected,
            ),
            Move::New {
                parents,
                size,
                root,
                ids,
            } => repo.shares().move_tip(
                &name,
                &me,
                expected,
                TipMove::New {
                    root: *root,
                    ids: Some(*ids),
                    parents: parents.clone(),
                    size: *size,
                    changed: 0,
                },
                &protected,
            ),
        }
        .map_err(|e| match e {
            ShareError::TipMoved(_) => format!("share {name} {MOVED}"),
            e => e.to_string(),
        })?;
        let sequence = moved
            .version
            .as_ref()
            .map_or(moved.commit.seq, |v| v.sequence);
        mounts.head_moved(&name, moved.commit.root, sequence);
        Ok(())
    });
    Ok(Some(Advanced {
        root,
        ids: Some(ids),
        size,
        finish,
    }))
}

/// How the tip moves (one per plan: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Move {
    To(Commit),
    New {
        parents: Vec<Cid>,
        size: u64,
        root: Cid,
        ids: Cid,
    },
}
