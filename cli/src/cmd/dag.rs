//! `cairn dag export|import` (CAR v1).

use std::io::BufReader;

use anyhow::{Context, Result};

use crate::args::DagCommand;

use super::{parse_cid, Ctx};

/// `cairn dag ...`.
pub fn run(ctx: &Ctx<'_>, cmd: DagCommand) -> Result<()> {
    let repo = ctx.repo;
    match cmd {
        DagCommand::Export { cid, output } => {
            let cid = parse_cid(&cid)?;
            let output = output.map(|o| ctx.path(&o));
            let mut w =
                ctx.console
                    .binary_out(output.as_deref(), &format!("the CAR of {cid}"), None)?;
            // The export checks that the whole DAG is here before it writes a byte.
            repo.export_car(&cid, &mut w)
                .with_context(|| format!("cannot export {cid}"))?;
            w.finish()
        }
        DagCommand::Import { files, pin_roots } => {
            let mut out = ctx.console.output();
            let mut roots = Vec::new();
            let (mut blocks, mut bytes) = (0u64, 0u64);
            let mut add = |(r, stats): (Vec<cairn_store::Cid>, cairn_store::CarStats)| {
                roots.extend(r);
                blocks += stats.blocks;
                bytes += stats.bytes;
            };
            if files.is_empty() {
                let stdin = std::io::stdin();
                add(repo
                    .import_car_counted(BufReader::new(stdin.lock()), pin_roots)
                    .context("cannot import CAR from stdin")?);
            }
            for f in &files {
                let file = std::fs::File::open(ctx.path(f))
                    .with_context(|| format!("cannot open {}", f.display()))?;
                add(repo
                    .import_car_counted(BufReader::with_capacity(1 << 20, file), pin_roots)
                    .with_context(|| format!("cannot import {}", f.display()))?);
            }
            let names: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
            out.item(
                &serde_json::json!({
                    "roots": names,
                    "blocks": blocks,
                    "bytes": bytes,
                    "pinned": pin_roots,
                }),
                || {
                    let mut text = format!("imported {blocks} blocks ({bytes} bytes)");
                    for r in &names {
                        let verb = if pin_roots { "pinned root" } else { "root" };
                        text.push_str(&format!("\n{verb} {r}"));
                    }
                    text
                },
            )?;
            out.finish()
        }
    }
}
