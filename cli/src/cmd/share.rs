//! `cairn share new|ls|rm|log|diff|restore|retention`: shared folders, each an IPNS name whose
//! versions are signed records (see `cairn_store::share`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use cairn_store::{
    import_path, BlockSink, Blockstore, Cid, DagReader, EntryKind, ImportOptions, LocalSource,
    NodeInfo, PbNode, Repo, Retention, Share, ShareError, Version, DAG_PB,
};
use serde_json::json;

use crate::args::ShareCommand;

use super::Ctx;

/// `cairn share ...`.
pub async fn run(ctx: &Ctx<'_>, cmd: ShareCommand) -> Result<()> {
    let shares = ctx.repo.shares();
    let mut out = ctx.console.output();
    match cmd {
        ShareCommand::New { label, from } => {
            cairn_store::check_label(&label)?;
            match shares.find(&label) {
                Err(ShareError::NotFound(_)) => {}
                Ok(_) => return Err(ShareError::LabelTaken(label).into()),
                Err(e) => return Err(e.into()),
            }
            let share = match from {
                None => {
                    let block = empty_dir();
                    ctx.repo.store().put(&block)?;
                    ctx.repo.store().flush()?;
                    shares.create(&label, *block.cid(), 0)?
                }
                // Created while an import's blocks are still held from GC.
                Some(from) => {
                    initial_root(ctx, &from, |root, size| shares.create(&label, root, size)).await?
                }
            };
            let root = share
                .head
                .as_ref()
                .map(|v| v.root.to_string())
                .unwrap_or_default();
            out.ack(&share_json(&share), || {
                format!(
                    "created share {} ({}), version 1 = {root}\nshare id: {}",
                    share.label, share.name, share.name
                )
            })?;
        }
        ShareCommand::Ls => {
            for share in shares.list()? {
                let mounted = ctx.mounts.share(&share.name).map(|(dir, _)| dir);
                let mut j = share_json(&share);
                j["mounted_at"] = json!(mounted.as_ref().map(|d| d.display().to_string()));
                out.item(&j, || {
                    let head = match &share.head {
                        Some(v) => format!(
                            "v{} {} {} bytes {}",
                            v.sequence,
                            v.root,
                            v.size,
                            time_text(v.time)
                        ),
                        None => "no valid head".to_string(),
                    };
                    let mut at = mounted
                        .as_ref()
                        .map(|d| format!(" mounted at {}", d.display()))
                        .unwrap_or_default();
                    if let Some((t, from)) = &share.seen {
                        at.push_str(&format!(" (seen {} from {from})", time_text(*t)));
                    }
                    if share.pinned {
                        at.push_str(" pinned");
                    }
                    format!(
                        "{} {} {} {head}{at}",
                        share.label,
                        share.name,
                        if share.writable { "rw" } else { "ro" }
                    )
                })?;
            }
        }
        ShareCommand::Status { share } => return status(ctx, share.as_deref(), None).await,
        ShareCommand::Grant {
            share,
            writer,
            label,
            publish,
        } => {
            let s = shares.find(&share)?;
            let w = writer_key(&writer)?;
            let id = w.to_string();
            let label = label.unwrap_or_else(|| id[id.len() - 8..].to_string());
            let list = shares.set_member(&s.name, &w, Some((&label, publish)), 0)?;
            list_version(ctx, &s)?;
            out.ack(
                &members_json(&s, &list_entries(&s, Some(&list)), Some(&list)),
                || {
                    format!(
                        "granted {label} ({w}) write access to {}{}; member list {}",
                        s.label,
                        if publish {
                            " and the share's key to publish its record (sealed to that writer \
                             in the member list; a revocation cannot take a key back)"
                        } else {
                            ""
                        },
                        list.seq
                    )
                },
            )?;
        }
        ShareCommand::Revoke { share, writer } => {
            let s = shares.find(&share)?;
            let w = writer_key(&writer)?;
            // Its commits so far stay accepted (those in the history here); later ones not.
            let keep = shares.last_seq_of(&s.name, &w);
            let published = shares.members(&s.name)?.is_some_and(|l| l.may_publish(&w));
            let list = shares.set_member(&s.name, &w, None, keep)?;
            list_version(ctx, &s)?;
            out.ack(
                &members_json(&s, &list_entries(&s, Some(&list)), Some(&list)),
                || {
                    format!(
                        "revoked {w} from {}: its later commits are refused; member list {}{}",
                        s.label,
                        list.seq,
                        if published {
                            "\nnote: it held the share's key (it published), and still does: \
                             records it signs now are refused where they name its later commits, \
                             but it can still re-sign older versions; to shut it out entirely, \
                             copy the share to a new one"
                        } else {
                            ""
                        }
                    )
                },
            )?;
        }
        ShareCommand::Conflicts { share } => {
            let s = shares.find(&share)?;
            let Some(head) = &s.head else {
                return Err(ShareError::NoHead {
                    name: s.name,
                    why: "no valid head record".into(),
                }
                .into());
            };
            let reader = DagReader::new(LocalSource::new(ctx.repo.store().clone()));
            for (path, cid) in conflict_copies(&reader, head.root).await? {
                let j =
                    json!({ "share": s.name.to_string(), "path": path, "cid": cid.to_string() });
                out.item(&j, || format!("{path}\t{cid}"))?;
            }
        }
        ShareCommand::Members { share } => {
            let s = shares.find(&share)?;
            let list = shares.members(&s.name)?;
            for m in list_entries(&s, list.as_ref()) {
                let j = serde_json::json!({
                    "share": s.name.to_string(),
                    "writer": m.0,
                    "label": m.1,
                    "role": m.2,
                    "publish": m.3,
                    "list": list.as_ref().map(|l| l.seq),
                });
                out.item(&j, || {
                    format!(
                        "{} {} {}{}",
                        m.0,
                        m.1,
                        m.2,
                        if m.3 { " publishes" } else { "" }
                    )
                })?;
            }
        }
        ShareCommand::Follow { share, .. } => crate::fail!(
            "needs_daemon",
            "following {share} needs the network: start `cairn daemon`, connect it to a peer \
             with the share (or set network.bootstrap), then run this again"
        ),
        ShareCommand::Commit { share } => {
            let s = shares.find(&share)?;
            let outcome = commit(ctx, &s).await?;
            let j = match &outcome {
                Some(c) => json!({
                    "name": s.name.to_string(),
                    "committed": true,
                    "sequence": c.sequence,
                    "root": c.root.to_string(),
                    "record": c.record.to_string(),
                    "size": c.size,
                    "changed": c.changed,
                    "blocks": c.blocks,
                    "ms": c.took.as_millis() as u64,
                }),
                None => json!({ "name": s.name.to_string(), "committed": false }),
            };
            out.ack(&j, || match &outcome {
                Some(c) => format!(
                    "committed {} v{} = {} ({} changed, {} new blocks, {} ms)",
                    s.label,
                    c.sequence,
                    c.root,
                    c.changed,
                    c.blocks,
                    c.took.as_millis()
                ),
                None => format!("{}: nothing to commit", s.label),
            })?;
        }
        ShareCommand::Rm { share } => {
            let s = shares.find(&share)?;
            refuse_if_mounted(ctx, &s, "remove it")?;
            shares.remove(&s.name)?;
            out.ack(&json!({ "removed": s.name.to_string(), "label": s.label }), || {
                format!(
                    "removed share {} ({}); its versions are unpinned and go at the next `cairn repo gc`",
                    s.label, s.name
                )
            })?;
        }
        ShareCommand::Log { share } => {
            let s = shares.find(&share)?;
            for v in shares.log(&s.name)? {
                // Who made it, and whether it merged writers' heads (its commit says).
                let commit = v.commit.and_then(|c| shares.read_commit(&s.name, &c));
                let writer = commit.as_ref().map(|c| shares.writer_label(&s.name, c));
                let parents = commit.as_ref().map_or(0, |c| c.parents.len());
                let mut j = version_json(&v);
                j["writer"] = json!(writer);
                j["parents"] = json!(parents);
                out.item(&j, || {
                    let by = match (&writer, parents) {
                        (Some(w), p) if p >= 2 => format!("  merge by {w}"),
                        (Some(w), _) => format!("  by {w}"),
                        (None, _) => String::new(),
                    };
                    format!(
                        "v{:<5} {}  {}  {:>12} bytes  {} changed{by}",
                        v.sequence,
                        time_text(v.time),
                        v.root,
                        v.size,
                        v.changed
                    )
                })?;
            }
        }
        ShareCommand::Diff { share, from, to } => {
            let s = shares.find(&share)?;
            let log = shares.log(&s.name)?;
            // A version (sequence number, root or record CID), or any directory CID here.
            let root_of = |which: &str| -> Result<(Cid, u64)> {
                match shares.version(&s.name, which) {
                    Ok(v) => Ok((v.root, v.sequence)),
                    Err(e @ ShareError::NoVersion { .. }) => match Cid::try_from(which) {
                        Ok(cid) => Ok((cid, u64::MAX)),
                        Err(_) => Err(e.into()),
                    },
                    Err(e) => Err(e.into()),
                }
            };
            let (to_root, to_seq) = match &to {
                Some(t) => root_of(t)?,
                None => (log[0].root, log[0].sequence),
            };
            let from_root = match &from {
                Some(f) => Some(root_of(f)?.0),
                // Against the version before `to`.
                None => log.iter().find(|v| v.sequence < to_seq).map(|v| v.root),
            };
            for change in diff(ctx.repo, from_root, to_root).await? {
                out.item(
                    &json!({ "change": change.0, "path": change.1, "type": change.2 }),
                    || {
                        let mark = match change.0 {
                            "added" => "+",
                            "removed" => "-",
                            _ => "M",
                        };
                        format!("{mark} {}", change.1)
                    },
                )?;
            }
        }
        ShareCommand::Restore { share, which } => {
            let s = shares.find(&share)?;
            refuse_if_mounted(ctx, &s, "restore a version")?;
            // Staged changes left by a crash become a version first: restoring keeps them in
            // the history rather than dropping them.
            if s.writable {
                commit(ctx, &s).await?;
            }
            let old = shares.version(&s.name, &which)?;
            let head = shares.log(&s.name)?.remove(0);
            let changed = diff(ctx.repo, Some(head.root), old.root).await?.len() as u64;
            let v = shares.commit(
                &s.name,
                old.root,
                old.ids,
                old.size,
                changed,
                &ctx.mounts.roots(),
            )?;
            ctx.mounts.head_moved(&s.name, v.root, v.sequence);
            out.ack(&version_json(&v), || {
                format!(
                    "restored v{} of {} as v{} ({})",
                    old.sequence, s.label, v.sequence, v.root
                )
            })?;
        }
        ShareCommand::Retention {
            share,
            versions,
            secs,
        } => {
            let s = shares.find(&share)?;
            let mut r = s.retention;
            if versions.is_some() || secs.is_some() {
                r = Retention {
                    keep_versions: versions.unwrap_or(r.keep_versions).max(1),
                    keep_secs: secs.unwrap_or(r.keep_secs),
                };
                shares.set_retention(&s.name, r)?;
            }
            out.item(
                &json!({ "name": s.name.to_string(), "keep_versions": r.keep_versions, "keep_secs": r.keep_secs }),
                || {
                    format!(
                        "{}: keeps the newest {} versions{}",
                        s.label,
                        r.keep_versions,
                        if r.keep_secs > 0 {
                            format!(" and every version younger than {} s", r.keep_secs)
                        } else {
                            String::new()
                        }
                    )
                },
            )?;
        }
    }
    out.finish()
}

/// Fails when share `s` is mounted writable by this process.
/// A version of share `s` (its head's tree) whose commit names the member list just made, so
/// the list travels with the share's history: writers and followers take it from there.
fn list_version(ctx: &Ctx<'_>, s: &Share) -> Result<()> {
    let Ok((head, _)) = ctx.repo.shares().head_record(&s.name) else {
        return Ok(());
    };
    let v = ctx.repo.shares().commit(
        &s.name,
        head.root,
        head.ids,
        head.size,
        0,
        &ctx.mounts.roots(),
    )?;
    ctx.mounts.head_moved(&s.name, v.root, v.sequence);
    Ok(())
}

fn refuse_if_mounted(ctx: &Ctx<'_>, s: &Share, what: &str) -> Result<()> {
    if let Some((dir, _)) = ctx.mounts.share(&s.name) {
        crate::fail!(
            "repo_busy",
            "share {} is mounted writable at {}: `cairn unmount {}` first, then {what}",
            s.label,
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Commits share `s`'s staged changes: through its mount if this process serves one, else
/// from its staging directory.
async fn commit(ctx: &Ctx<'_>, s: &Share) -> Result<Option<cairn_fs::CommitOutcome>> {
    // A member's writable mount commits with the member's key (and says so if it is no
    // longer one).
    if !s.writable && ctx.mounts.share(&s.name).is_none() {
        crate::fail!(
            "invalid_input",
            "share {} is read-only here: this repo does not hold its key (a member commits \
             through its writable mount of the share)",
            s.label
        );
    }
    let committed = match ctx.mounts.share(&s.name) {
        Some((_, control)) => control.commit().await,
        None => {
            let Some(head) = s.head.clone() else {
                crate::fail!("corrupt", "share {} has no valid head record", s.label);
            };
            if !ctx
                .repo
                .shares()
                .stage_dir(&s.name)
                .join("journal")
                .exists()
            {
                return Ok(None);
            }
            let spec = crate::mount::share_spec(ctx.repo, ctx.mounts, s, &head)?;
            let source = LocalSource::new(ctx.repo.store().clone());
            cairn_fs::commit_staged(source, spec).await
        }
    };
    match committed {
        Ok(c) => Ok(c),
        Err(e) if e.is_no_space() => crate::fail!(
            "no_space",
            "cannot commit share {}: the disk is full; the changes stay staged (free space, then \
             `cairn share commit {}`)",
            s.label,
            s.label
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot commit share {}", s.label))),
    }
}

/// The empty UnixFS directory (the same block as Kubo's).
fn empty_dir() -> cairn_store::Block {
    // UnixFS Data { Type: Directory }, no links.
    let node = PbNode {
        links: Vec::new(),
        data: Some(cairn_store::Bytes::from_static(&[8, 1])),
    };
    cairn_store::Block::encode(
        1,
        DAG_PB,
        cairn_store::HashAlg::Sha2_256,
        cairn_store::Bytes::from(node.encode()),
    )
}

/// The first version of a new share from `--from`: a directory on disk (imported with the
/// repo's import settings) or `<cid>[/path]` of a directory in the repo. `create` runs while
/// an import's blocks are still held from GC.
async fn initial_root(
    ctx: &Ctx<'_>,
    from: &str,
    create: impl FnOnce(Cid, u64) -> Result<Share, ShareError>,
) -> Result<Share> {
    let on_disk = ctx.path(Path::new(from));
    if let Ok(path) = from.parse::<cairn_store::CidPath>() {
        if !on_disk.exists() {
            let reader = DagReader::new(LocalSource::new(ctx.repo.store().clone()));
            let cid = reader
                .resolve(&path.root, &path.segments)
                .await
                .with_context(|| format!("cannot resolve {from}"))?;
            let info = reader
                .stat(&cid)
                .await
                .with_context(|| format!("cannot read {cid}"))?;
            if info.kind != EntryKind::Directory {
                crate::fail!("invalid_input", "--from {from} is not a directory");
            }
            let size = dag_size(ctx.repo, &cid)?;
            return Ok(create(cid, size)?);
        }
    }
    let meta = std::fs::metadata(&on_disk)
        .with_context(|| format!("--from {from}: not a CID in this repo nor a directory"))?;
    if !meta.is_dir() {
        crate::fail!("invalid_input", "--from {from} is not a directory");
    }
    let opts = import_options(ctx.repo)?;
    let session = ctx.repo.session();
    let imported = import_path(&on_disk, &opts, &session as &dyn BlockSink, &mut |_| {})
        .with_context(|| format!("cannot import {from}"))?;
    let share = create(imported.cid, imported.size)?;
    session.commit()?;
    Ok(share)
}

/// How a share's versions encode files: as `cairn add` does with the config's settings, plus
/// modes and mtimes.
pub fn import_options(repo: &Repo) -> Result<ImportOptions> {
    let cfg = &repo.config().import;
    let mut opts = ImportOptions::with_cid_version(cfg.cid_version);
    opts.raw_leaves = cfg.raw_leaves;
    opts.chunker = cfg
        .chunker
        .parse()
        .context("import.chunker in the config")?;
    opts.hash = cfg.hash.parse()?;
    // A share is a folder people work in: modes (git's executable bits) and mtimes (make,
    // rsync) are kept, as on a local disk.
    opts.preserve_mode = true;
    opts.preserve_mtime = true;
    Ok(opts)
}

/// The cumulative size of a DAG as its root records it (its block plus its links' sizes).
fn dag_size(repo: &Repo, root: &Cid) -> Result<u64> {
    let Some(data) = repo.store().get(root)? else {
        return Ok(0);
    };
    let node = PbNode::decode(&data).ok();
    Ok(data.len() as u64
        + node
            .map(|n| n.links.iter().filter_map(|l| l.tsize).sum::<u64>())
            .unwrap_or(0))
}

/// Nodes of the tree under `root` examined at most by `share conflicts`.
const CONFLICT_WALK_MAX: usize = 1_000_000;

/// The paths (and CIDs) under `root` whose names mark them as conflict copies.
async fn conflict_copies(
    reader: &DagReader<LocalSource<cairn_store::SledStore>>,
    root: Cid,
) -> Result<Vec<(String, Cid)>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root)];
    let mut seen = 0usize;
    while let Some((path, dir)) = stack.pop() {
        let info = reader.stat(&dir).await?;
        for (name, cid) in entries(reader, &info).await? {
            seen += 1;
            if seen > CONFLICT_WALK_MAX {
                crate::fail!(
                    "error",
                    "the share has over {CONFLICT_WALK_MAX} entries; stopped looking"
                );
            }
            let full = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            if name.contains(".cairn-conflict-") {
                out.push((full.clone(), cid));
            }
            if reader.stat(&cid).await?.kind == EntryKind::Directory {
                stack.push((full, cid));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A writer named on the command line: a peer id or a key.
fn writer_key(text: &str) -> Result<cairn_store::IpnsName> {
    text.parse().map_err(|e| {
        crate::error::coded(
            "invalid_input",
            format!(
                "invalid writer {text:?}: {e}; give its peer id (12D3Koo…, `cairn id` on its node) \
                 or key (k51…)"
            ),
        )
    })
}

/// The writers of share `s` under `list`: (key, label, role, may publish), the owner first.
fn list_entries(
    s: &Share,
    list: Option<&cairn_store::MemberList>,
) -> Vec<(String, String, &'static str, bool)> {
    let mut out = vec![(s.name.to_string(), s.label.clone(), "owner", true)];
    if let Some(l) = list {
        for (k, m) in &l.members {
            out.push((k.clone(), m.label.clone(), "writer", m.publish));
        }
    }
    out
}

fn members_json(
    s: &Share,
    entries: &[(String, String, &'static str, bool)],
    list: Option<&cairn_store::MemberList>,
) -> serde_json::Value {
    json!({
        "share": s.name.to_string(),
        "list": list.map(|l| l.seq),
        "members": entries
            .iter()
            .map(|(w, l, r, p)| json!({"writer": w, "label": l, "role": r, "publish": p}))
            .collect::<Vec<_>>(),
    })
}

/// `cairn share status`: for each share (or the one named), the version here and how current
/// it is. `online` is the daemon's node and what it knows of followed shares; without it (no
/// daemon) nothing is followed live, so a followed share is stale.
pub async fn status(
    ctx: &Ctx<'_>,
    share: Option<&str>,
    online: Option<(&cairn_net::Node, &crate::records::Liveness)>,
) -> Result<()> {
    let shares = ctx.repo.shares();
    let list = match share {
        Some(s) => vec![shares.find(s)?],
        None => shares.list()?,
    };
    let mut out = ctx.console.output();
    for s in list {
        let mounted = ctx
            .mounts
            .share(&s.name)
            .map(|(dir, _)| dir.display().to_string());
        let (sources, checked, stale) = match online {
            Some((node, live)) => {
                let l = live.get(&s.name);
                let sources = match &l {
                    Some(l) => l.sources.clone(),
                    None => node.record_sources(s.name).await.unwrap_or_default(),
                };
                let checked = l.as_ref().and_then(|l| l.checked);
                // Not checked yet (followed a moment ago): as its mounts say.
                let stale = !s.writable
                    && l.as_ref()
                        .map_or_else(|| ctx.mounts.is_stale(&s.name), |l| l.stale);
                (Some(sources), checked, stale)
            }
            None => (None, None, !s.writable),
        };
        let mut j = share_json(&s);
        j["mounted_at"] = json!(mounted);
        j["role"] = json!(if s.writable { "owner" } else { "follower" });
        j["online"] = json!(online.is_some());
        j["sources"] = json!(sources
            .as_ref()
            .map(|v| v.iter().map(|p| p.to_string()).collect::<Vec<_>>()));
        j["checked"] = json!(checked.map(|(t, _)| time_text(t)));
        j["dht_answered"] = json!(checked.map(|(_, a)| a));
        j["stale"] = json!(stale);
        out.item(&j, || {
            let head = match &s.head {
                Some(v) => format!("v{} {} ({})", v.sequence, v.root, time_text(v.time)),
                None => "no valid head".to_string(),
            };
            let role = if s.writable { "owner" } else { "follower" };
            let mut text = format!("{} {} {role}: {head}", s.label, s.name);
            if let Some(d) = &mounted {
                text.push_str(&format!(", mounted at {d}"));
            }
            if let Some((t, from)) = &s.seen {
                text.push_str(&format!(
                    "\n  newest record seen {} from {from}",
                    time_text(*t)
                ));
            }
            let peers = match &sources {
                None => "no daemon is running: nothing is followed live".to_string(),
                Some(p) if p.is_empty() => "no peer with the share is connected".to_string(),
                Some(p) => format!(
                    "{} peer(s) with the share connected: {}",
                    p.len(),
                    p.iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            text.push_str(&format!("\n  {peers}"));
            if let Some((t, answered)) = checked {
                text.push_str(&format!(
                    "\n  DHT checked {}: {}",
                    time_text(t),
                    if answered { "answered" } else { "no answer" }
                ));
            }
            if stale {
                text.push_str(
                    "\n  stale: a newer version may exist; this is the last one this node has",
                );
            } else if !s.writable {
                text.push_str("\n  current: the newest version the network knows of");
            }
            text
        })?;
    }
    out.finish()
}

fn time_text(t: SystemTime) -> String {
    cairn_store::format_utc_seconds(t)
}

fn share_json(s: &Share) -> serde_json::Value {
    json!({
        "label": s.label,
        "name": s.name.to_string(),
        "writable": s.writable,
        "sequence": s.head.as_ref().map(|v| v.sequence),
        "root": s.head.as_ref().map(|v| v.root.to_string()),
        "size": s.head.as_ref().map(|v| v.size),
        "time": s.head.as_ref().map(|v| time_text(v.time)),
        "mounted_at": null,
        "pinned": s.pinned,
        "seen": s.seen.as_ref().map(|(t, _)| time_text(*t)),
        "seen_from": s.seen.as_ref().map(|(_, f)| f.clone()),
    })
}

fn version_json(v: &Version) -> serde_json::Value {
    json!({
        "sequence": v.sequence,
        "time": time_text(v.time),
        "root": v.root.to_string(),
        "record": v.record.to_string(),
        "size": v.size,
        "changed": v.changed,
        "ids": v.ids.map(|c| c.to_string()),
        "commit": v.commit.map(|c| c.to_string()),
    })
}

/// What changed from `from` (none: everything is new) to `to`: `(added|removed|modified, path,
/// type)`, sorted by path. Unchanged subtrees (same CID) are not read; an added or removed
/// directory is one entry.
pub async fn diff(
    repo: &Repo,
    from: Option<Cid>,
    to: Cid,
) -> Result<Vec<(&'static str, String, &'static str)>> {
    let reader = DagReader::new(LocalSource::new(repo.store().clone()));
    let mut out = Vec::new();
    let mut stack: Vec<(String, Option<Cid>, Option<Cid>)> = vec![(String::new(), from, Some(to))];
    while let Some((path, a, b)) = stack.pop() {
        if a == b {
            continue;
        }
        let stat = |c: Option<Cid>| {
            let reader = reader.clone();
            async move {
                match c {
                    Some(c) => reader
                        .stat(&c)
                        .await
                        .map(Some)
                        .with_context(|| format!("cannot read {c}")),
                    None => Ok(None),
                }
            }
        };
        let (ia, ib) = (stat(a).await?, stat(b).await?);
        match (&ia, &ib) {
            (Some(x), Some(y))
                if x.kind == EntryKind::Directory && y.kind == EntryKind::Directory =>
            {
                let ea = entries(&reader, x).await?;
                let eb = entries(&reader, y).await?;
                let names: std::collections::BTreeSet<&String> =
                    ea.keys().chain(eb.keys()).collect();
                for name in names.into_iter().rev() {
                    let child = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}/{name}")
                    };
                    stack.push((child, ea.get(name).copied(), eb.get(name).copied()));
                }
            }
            (None, Some(y)) if path.is_empty() => {
                // Everything is new: list the top level.
                for (name, cid) in entries(&reader, y).await?.into_iter().rev() {
                    stack.push((name, None, Some(cid)));
                }
            }
            (None, Some(y)) => out.push(("added", path, kind_name(y))),
            (Some(x), None) => out.push(("removed", path, kind_name(x))),
            (Some(_), Some(y)) => out.push(("modified", path, kind_name(y))),
            (None, None) => {}
        }
    }
    out.sort_by(|x, y| x.1.cmp(&y.1));
    Ok(out)
}

async fn entries(
    reader: &DagReader<LocalSource<cairn_store::SledStore>>,
    dir: &NodeInfo,
) -> Result<BTreeMap<String, Cid>> {
    let mut cursor = reader.dir_cursor(&dir.cid);
    let mut out = BTreeMap::new();
    while let Some(e) = cursor
        .next_entry()
        .await
        .with_context(|| format!("cannot list {}", dir.cid))?
    {
        out.insert(e.name, e.cid);
    }
    Ok(out)
}

fn kind_name(info: &NodeInfo) -> &'static str {
    match info.kind {
        EntryKind::File => "file",
        EntryKind::Directory => "directory",
        EntryKind::Symlink => "symlink",
    }
}
