//! `cairn init` and `cairn repo gc|stat|verify`.

use std::path::Path;

use anyhow::{bail, Result};
use cairn_store::{Blockstore, Repo};
use serde::Serialize;

use crate::args::RepoCommand;
use crate::output::Console;

use super::Ctx;

/// `cairn init`.
pub fn init(dir: &Path, console: &Console) -> Result<()> {
    let repo = Repo::init(dir)?;
    let mut out = console.output();
    let path = repo.path().display().to_string();
    out.item(&serde_json::json!({ "repo": path }), || {
        format!("initialized cairn repo at {path}")
    })?;
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
        RepoCommand::Gc { quiet } => {
            let report = repo.gc()?;
            if !quiet && !json {
                for cid in &report.removed {
                    out.item(&(), || format!("removed {cid}"))?;
                }
            }
            out.item(
                &serde_json::json!({
                    "removed_blocks": report.removed_blocks,
                    "removed_bytes": report.removed_bytes,
                }),
                || {
                    format!(
                        "removed {} blocks ({} bytes)",
                        report.removed_blocks, report.removed_bytes
                    )
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
                out.item(&serde_json::json!({ "corrupt": bad.to_string() }), || {
                    format!("corrupt block {bad}")
                })?;
            }
            out.item(
                &serde_json::json!({ "checked": report.checked, "corrupt": report.corrupt.len() }),
                || {
                    format!(
                        "verified {} blocks, {} corrupt",
                        report.checked,
                        report.corrupt.len()
                    )
                },
            )?;
            out.finish()?;
            if !report.corrupt.is_empty() {
                bail!(
                    "repo verify found {} corrupt block(s)",
                    report.corrupt.len()
                );
            }
            return Ok(());
        }
    }
    out.finish()
}
