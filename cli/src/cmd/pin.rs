//! `cairn pin add|rm|ls|verify`.

use anyhow::{bail, Context, Result};
use cairn_store::{DagReader, LocalSource, PinKind};

use crate::args::{PinCommand, PinTypeArg};

use super::{parse_cid, parse_path, Ctx};

/// A pin as every `pin` command prints it under `--json`.
pub fn pin_json(cid: cairn_store::Cid, kind: &str, name: Option<&str>) -> serde_json::Value {
    serde_json::json!({ "cid": cid.to_string(), "type": kind, "name": name })
}

/// `cairn pin ...` on a repo this process owns.
pub async fn run(ctx: &Ctx<'_>, cmd: PinCommand) -> Result<()> {
    let repo = ctx.repo;
    let mut out = ctx.console.output();
    match cmd {
        PinCommand::Add { path, direct, name } => {
            let p = parse_path(&path)?;
            let cid = if p.segments.is_empty() {
                p.root
            } else {
                let reader = DagReader::new(LocalSource::new(repo.store().clone()));
                reader
                    .resolve(&p.root, &p.segments)
                    .await
                    .with_context(|| format!("cannot resolve {path}"))?
            };
            let kind = if direct {
                PinKind::Direct
            } else {
                PinKind::Recursive
            };
            // The error already names the pin ("cannot pin <cid>: …").
            repo.pins().add(cid, kind, name.as_deref())?;
            out.ack(&pin_json(cid, kind.as_str(), name.as_deref()), || {
                format!("pinned {cid} {}", kind.as_str())
            })?;
        }
        PinCommand::Rm { cid } => {
            let cid = parse_cid(&cid)?;
            let Some(pin) = repo.pins().get(&cid)? else {
                crate::fail!(
                    "not_found",
                    "{cid} is not pinned (`cairn pin ls` lists the pins)"
                );
            };
            if !repo.pins().remove(&cid)? {
                crate::fail!(
                    "not_found",
                    "{cid} is not pinned (`cairn pin ls` lists the pins)"
                );
            }
            out.ack(
                &pin_json(cid, pin.kind.as_str(), pin.name.as_deref()),
                || format!("unpinned {cid}"),
            )?;
        }
        PinCommand::Ls { kind } => {
            for pin in repo.pins().list()? {
                let wanted = match kind {
                    PinTypeArg::All => true,
                    PinTypeArg::Recursive => pin.kind == PinKind::Recursive,
                    PinTypeArg::Direct => pin.kind == PinKind::Direct,
                    PinTypeArg::Indirect => false,
                };
                if !wanted {
                    continue;
                }
                let name = pin.name.clone().unwrap_or_default();
                out.item(
                    &pin_json(pin.cid, pin.kind.as_str(), pin.name.as_deref()),
                    || {
                        format!("{} {} {}", pin.cid, pin.kind.as_str(), name)
                            .trim_end()
                            .to_string()
                    },
                )?;
            }
            if kind == PinTypeArg::Indirect || kind == PinTypeArg::All {
                // Indirect pins are every block below a recursive pin.
                for cid in repo.pins().indirect()? {
                    out.item(&pin_json(cid, "indirect", None), || {
                        format!("{cid} indirect")
                    })?;
                }
            }
        }
        PinCommand::Verify => {
            let report = repo.pins().verify()?;
            let mut bad = 0usize;
            for r in &report {
                if !r.ok() {
                    bad += 1;
                }
                out.item(r, || r.to_string())?;
            }
            out.finish()?;
            if bad > 0 {
                bail!("{bad} pin(s) failed verification");
            }
            return Ok(());
        }
    }
    out.finish()
}
