//! The daemon's reprovider: announces on the DHT what the repo stores, as
//! `network.provide_strategy` says, when the daemon starts and again every
//! `network.reprovide_interval_secs` (docs/DESIGN.md, "Network", "Provide on start").
//!
//! - `roots`: the CID of every pin (recursive or direct) and every durable GC root;
//! - `pinned`: every block of every recursively pinned DAG, and every directly pinned block;
//! - `all`: every block in the store.
//!
//! A round runs in the background and never delays the daemon: a blocking thread lists the
//! CIDs (a walk of pinned DAGs, or the store's index) and hands them over in batches of
//! [`PROVIDE_BATCH`] through a channel of two batches, and each batch is announced
//! (`Node::provide`, itself at most `limits.max_provide_queries` DHT queries at once) before
//! the next is taken, so memory stays at a few batches whatever the store's size and the DHT is
//! never handed more than one batch at a time. After a round, provider records of blocks that
//! are gone from the store are withdrawn. The node's own reprovide of every record it ever
//! announced is off in the daemon: this is the only schedule, so what is announced again is
//! always what the strategy selects now.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_net::{Node, ProvideReport, ProvideStrategy};
use cairn_store::{Blockstore, Cid, DagWalk, PinKind, Repo, WalkMode};
use tokio::sync::mpsc;

/// CIDs handed to the node in one `provide` call.
pub const PROVIDE_BATCH: usize = 256;

/// How long the first round waits for a first peer when bootstrap peers are configured (an
/// announcement with no peer to take it only reaches this node's own record store).
const FIRST_PEER_WAIT: Duration = Duration::from_secs(30);

/// Runs rounds until the task is aborted: one now (after the first peer connects, if
/// `wait_for_peers`, or [`FIRST_PEER_WAIT`]), then one every `every` (never if `None`).
pub async fn run(
    repo: Arc<Repo>,
    node: Node,
    strategy: ProvideStrategy,
    every: Option<Duration>,
    wait_for_peers: bool,
) {
    if wait_for_peers {
        let deadline = tokio::time::Instant::now() + FIRST_PEER_WAIT;
        while tokio::time::Instant::now() < deadline {
            if node.peers().await.map(|p| !p.is_empty()).unwrap_or(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    loop {
        match round(&repo, &node, strategy).await {
            Ok((cids, report, withdrawn)) => tracing::info!(
                "announced {cids} CIDs ({} accepted by DHT peers, {} not); withdrew {withdrawn} records of blocks no longer stored",
                report.ok,
                report.failed
            ),
            Err(e) => tracing::warn!("announcing stored content failed: {e}"),
        }
        let Some(every) = every else { return };
        tokio::time::sleep(every).await;
    }
}

/// One round: announces the strategy's CIDs batch by batch, then withdraws records of blocks
/// that left the store. Returns the CIDs announced, the DHT's report and the records withdrawn.
async fn round(
    repo: &Arc<Repo>,
    node: &Node,
    strategy: ProvideStrategy,
) -> Result<(u64, ProvideReport, usize), cairn_net::NetError> {
    let (tx, mut rx) = mpsc::channel::<Vec<Cid>>(2);
    let lister = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || list(&repo, strategy, &tx))
    };
    let mut total = ProvideReport::default();
    let mut cids = 0u64;
    while let Some(batch) = rx.recv().await {
        cids += batch.len() as u64;
        let r = node.provide(batch).await?;
        total.ok += r.ok;
        total.failed += r.failed;
    }
    if let Ok(Err(e)) = lister.await {
        tracing::warn!("listing the content to announce stopped early: {e}");
    }
    let withdrawn = node.withdraw_missing().await?;
    Ok((cids, total, withdrawn))
}

/// Lists the strategy's CIDs into `tx`, [`PROVIDE_BATCH`] at a time (runs on a blocking
/// thread). Stops early, without error, when the receiver is gone.
fn list(
    repo: &Repo,
    strategy: ProvideStrategy,
    tx: &mpsc::Sender<Vec<Cid>>,
) -> Result<(), anyhow::Error> {
    let mut batch = Vec::with_capacity(PROVIDE_BATCH);
    let send = |cid: Cid, batch: &mut Vec<Cid>| -> bool {
        batch.push(cid);
        if batch.len() >= PROVIDE_BATCH {
            return tx.blocking_send(std::mem::take(batch)).is_ok();
        }
        true
    };
    match strategy {
        ProvideStrategy::Roots => {
            let mut seen = HashSet::new();
            let pins = repo.pins().list()?.into_iter().map(|p| p.cid);
            let roots = repo.roots().durable().into_iter().map(|(_, c)| c);
            for cid in pins.chain(roots) {
                if seen.insert(cid.hash().to_bytes()) && !send(cid, &mut batch) {
                    return Ok(());
                }
            }
        }
        ProvideStrategy::Pinned => {
            let store = repo.store();
            let mut visited = HashSet::new();
            for pin in repo.pins().list()? {
                if pin.kind == PinKind::Direct {
                    if visited.insert(cid_key(&pin.cid)) && !send(pin.cid, &mut batch) {
                        return Ok(());
                    }
                    continue;
                }
                let mut walk = DagWalk::new(store.as_ref(), pin.cid, WalkMode::Structure)
                    .with_visited(std::mem::take(&mut visited));
                for visit in walk.by_ref() {
                    // A block the walk cannot read is not announced (nor is what is below it).
                    let Ok(v) = visit else { continue };
                    if !send(v.cid, &mut batch) {
                        return Ok(());
                    }
                }
                visited = walk.into_visited();
            }
        }
        ProvideStrategy::All => {
            let store = repo.store();
            for cid in store.cids() {
                if !send(cid?, &mut batch) {
                    return Ok(());
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    Ok(())
}

/// The identity [`DagWalk`] gives a block in its visited set (codec and multihash, CIDv1 bytes).
fn cid_key(cid: &Cid) -> Vec<u8> {
    Cid::new_v1(cid.codec(), *cid.hash()).to_bytes()
}
