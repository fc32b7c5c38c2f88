//! `cairn init` and `cairn repo gc|stat|verify|repair`.

use std::path::Path;

use anyhow::{bail, Result};
use cairn_store::{Blockstore, Repo};
use serde::Serialize;

use crate::args::RepoCommand;
use crate::output::Console;
use crate::progress::Bar;

use super::Ctx;

/// `cairn init`.
pub fn init(dir: &Path, console: &Console, profile: crate::args::Profile) -> Result<()> {
    let repo = Repo::init_with(dir, crate::config::profile_config(profile)?)?;
    let mut out = console.output();
    let path = repo.path().display().to_string();
    let peer_id = cairn_net::peer_id_from_seed(repo.identity_seed())?.to_string();
    let profile = clap::ValueEnum::to_possible_value(&profile)
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    out.ack(
        &serde_json::json!({ "repo": path, "peer_id": peer_id, "profile": profile }),
        || format!("initialized cairn repo at {path} (profile {profile})\npeer id: {peer_id}"),
    )?;
    out.finish()
}

#[derive(Serialize)]
struct Stat {
    repo: String,
    blocks: u64,
    bytes: u64,
    disk_bytes: u64,
    pins: u64,
}

/// `cairn repo ...`.
pub fn run(ctx: &Ctx<'_>, cmd: RepoCommand) -> Result<()> {
    let repo = ctx.repo;
    let json = ctx.console.json();
    let mut out = ctx.console.output();
    match cmd {
        RepoCommand::Gc => {
            let report = repo.gc()?;
            if !ctx.console.quiet() && !json {
                for cid in &report.removed {
                    out.item(&(), || format!("removed {cid}"))?;
                }
            }
            out.item(
                &serde_json::json!({
                    "removed_blocks": report.removed_blocks,
                    "removed_bytes": report.removed_bytes,
                    "orphan_files": report.orphan_files,
                    "orphan_bytes": report.orphan_bytes,
                    "unindexed_records": report.unindexed_records,
                    "packs_compacted": report.packs_compacted,
                    "pack_bytes_reclaimed": report.pack_bytes_reclaimed,
                }),
                || {
                    let mut text = format!(
                        "removed {} blocks ({} bytes)",
                        report.removed_blocks, report.removed_bytes
                    );
                    if report.orphan_files > 0 {
                        text.push_str(&format!(
                            "\nremoved {} unindexed block files ({} bytes) left by an interrupted write",
                            report.orphan_files, report.orphan_bytes
                        ));
                    }
                    if report.packs_compacted > 0 {
                        text.push_str(&format!(
                            "\nrewrote {} pack files, {} bytes reclaimed",
                            report.packs_compacted, report.pack_bytes_reclaimed
                        ));
                    }
                    if report.unindexed_records > 0 {
                        text.push_str(&format!(
                            "\ndropped {} unindexed pack records left by an interrupted write",
                            report.unindexed_records
                        ));
                    }
                    text
                },
            )?;
        }
        RepoCommand::Stat => {
            let s = repo.store().stats()?;
            let stat = Stat {
                repo: repo.path().display().to_string(),
                blocks: s.blocks,
                bytes: s.bytes,
                disk_bytes: s.disk_bytes,
                pins: repo.pins().count()? as u64,
            };
            out.item(&stat, || {
                format!(
                    "repo:       {}\nblocks:     {}\nbytes:      {}\ndisk bytes: {}\npins:       {}",
                    stat.repo, stat.blocks, stat.bytes, stat.disk_bytes, stat.pins
                )
            })?;
        }
        RepoCommand::Verify => {
            let report = repo.verify()?;
            for bad in &report.corrupt {
                out.text(&format!("corrupt block {bad}"))?;
            }
            for bad in &report.undecodable {
                out.text(&format!("undecodable dag-pb block {bad}"))?;
            }
            let names =
                |v: &[cairn_store::Cid]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
            out.item(
                &serde_json::json!({
                    "verified": report.checked,
                    "corrupt": names(&report.corrupt),
                    "undecodable": names(&report.undecodable),
                    "on_disk": report.on_disk,
                    "unindexed": report.unindexed,
                    "damaged_records": report.damaged_records,
                }),
                || {
                    let mut text = format!(
                        "verified {} blocks, {} corrupt; {} blocks in the block files",
                        report.checked,
                        report.corrupt.len(),
                        report.on_disk
                    );
                    if report.unindexed > 0 {
                        text.push_str(&format!(", {} of them not in the index", report.unindexed));
                    }
                    text
                },
            )?;
            out.finish()?;
            if !report.corrupt.is_empty() {
                bail!(
                    "repo verify found {} corrupt block(s); `cairn block rm <cid>` drops one, then re-add it or fetch it again",
                    report.corrupt.len()
                );
            }
            if !report.undecodable.is_empty() {
                bail!(
                    "repo verify found {} undecodable dag-pb block(s)",
                    report.undecodable.len()
                );
            }
            if report.index_disagrees() || report.damaged_records > 0 {
                bail!(
                    "the block index disagrees with the block files ({} blocks on disk are not in it, {} damaged pack records); run `cairn repo repair`",
                    report.unindexed,
                    report.damaged_records
                );
            }
            return Ok(());
        }
        RepoCommand::Repair => {
            bail!(
                "`cairn repo repair` needs the repo to itself: stop the daemon, then run it again"
            )
        }
    }
    out.finish()
}

/// `cairn repo repair`: rebuilds the index without opening the repo the normal way (which
/// refuses an index it cannot trust).
pub fn repair(dir: &Path, console: &Console) -> Result<()> {
    let mut bar = Bar::local(console.progress(), None, "reading blocks");
    let (repo, report) = Repo::repair(dir, |n| bar.set_position(n))?;
    bar.finish();
    let mut out = console.output();
    out.item(&report, || {
        let i = &report.index;
        let mut text = format!(
            "rebuilt the index of {}: {} blocks ({} bytes) from {} pack files and {} block files",
            repo.path().display(),
            i.pack_blocks + i.file_blocks,
            i.bytes,
            i.packs,
            i.file_blocks
        );
        if i.tombstoned > 0 {
            text.push_str(&format!("\n{} deleted blocks stay deleted", i.tombstoned));
        }
        if i.damaged_records > 0 {
            text.push_str(&format!("\n{} damaged pack records skipped", i.damaged_records));
        }
        for c in &i.corrupt {
            text.push_str(&format!(
                "\ncorrupt block {c} left out (block files go to blocks/quarantine/)"
            ));
        }
        text.push_str(&format!("\n{} pins", report.pins));
        if report.pins_lost {
            text.push_str(
                " (the pin journal was missing: earlier pins are unknown; pin again what you need before `repo gc`)",
            );
        }
        text
    })?;
    out.finish()
}
