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
            let mut w = ctx.console.binary_out(
                output.as_deref(),
                &format!("the CAR of {cid}"),
                None,
            )?;
            // The export checks that the whole DAG is here before it writes a byte.
            repo.export_car(&cid, &mut w)
                .with_context(|| format!("cannot export {cid}"))?;
            w.finish()
        }
        DagCommand::Import { files, pin_roots } => {
            let mut out = ctx.console.output();
            let mut roots = Vec::new();
            if files.is_empty() {
                let stdin = std::io::stdin();
                roots.extend(
                    repo.import_car(BufReader::new(stdin.lock()), pin_roots)
                        .context("cannot import CAR from stdin")?,
                );
            }
            for f in &files {
                let file = std::fs::File::open(ctx.path(f))
                    .with_context(|| format!("cannot open {}", f.display()))?;
                roots.extend(
                    repo.import_car(BufReader::with_capacity(1 << 20, file), pin_roots)
                        .with_context(|| format!("cannot import {}", f.display()))?,
                );
            }
            for root in roots {
                out.item(
                    &serde_json::json!({ "root": root.to_string(), "pinned": pin_roots }),
                    || {
                        if pin_roots {
                            format!("pinned root {root}")
                        } else {
                            format!("imported root {root}")
                        }
                    },
                )?;
            }
            out.finish()
        }
    }
}
