//! `cairn add`: import files and directories, print `added <cid> <name>` lines like Kubo.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cairn_store::{
    import_path, BlockSink, ChunkerSpec, HashAlg, ImportConfig, ImportEvent, ImportOptions,
    NullSink, Repo,
};
use serde::Serialize;

use crate::args::AddArgs;
use crate::output::Console;

use super::Ctx;

#[derive(Serialize)]
struct Added<'a> {
    cid: String,
    name: &'a str,
    size: u64,
}

/// Builds import options from the flags, falling back to the repo's `[import]` settings (when
/// there is a repo) and then to the built-in defaults (CIDv1, raw leaves, 256 KiB, sha2-256).
fn options(args: &AddArgs, defaults: Option<&ImportConfig>) -> Result<ImportOptions> {
    let fallback = ImportConfig::default();
    let defaults = defaults.unwrap_or(&fallback);
    let version = args.cid_version.unwrap_or(defaults.cid_version);
    if version > 1 {
        bail!("CID version {version} in the repo config is not supported (use 0 or 1)");
    }
    let mut opts = ImportOptions::with_cid_version(version);
    // An explicit --cid-version picks Kubo's leaf format for it; otherwise the config decides.
    opts.raw_leaves = match (args.raw_leaves, args.cid_version) {
        (Some(raw), _) => raw,
        (None, Some(v)) => v >= 1,
        (None, None) => defaults.raw_leaves,
    };
    let spec = args.chunker.as_deref().unwrap_or(&defaults.chunker);
    opts.chunker = spec
        .parse::<ChunkerSpec>()
        .with_context(|| format!("bad --chunker {spec:?}"))?;
    let hash = args.hash.as_deref().unwrap_or(&defaults.hash);
    opts.hash = hash.parse::<HashAlg>()?;
    if opts.hash != HashAlg::Sha2_256 && version == 0 {
        bail!("--hash {hash} needs --cid-version 1 (CIDv0 is sha2-256 only)");
    }
    opts.preserve_mode = args.preserve_mode;
    opts.preserve_mtime = args.preserve_mtime;
    Ok(opts)
}

/// Total bytes of regular files below `path` (for the progress bar), without following links.
fn total_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

/// `cairn add --only-hash`: computes CIDs without opening the repository.
pub fn only_hash(console: &Console, cwd: &Path, args: &AddArgs) -> Result<()> {
    add(None, console, cwd, args).map(|_| ())
}

/// `cairn add` into the repo.
/// Returns the root of every path added.
pub fn run(ctx: &Ctx<'_>, args: &AddArgs) -> Result<Vec<cairn_store::Cid>> {
    let repo = if args.only_hash {
        None
    } else {
        Some(&**ctx.repo)
    };
    add(repo, ctx.console, ctx.cwd, args)
}

fn add(
    repo: Option<&Repo>,
    console: &Console,
    cwd: &Path,
    args: &AddArgs,
) -> Result<Vec<cairn_store::Cid>> {
    let opts = options(args, repo.map(|r| &r.config().import))?;
    let paths: Vec<_> = args.paths.iter().map(|p| cwd.join(p)).collect();
    for (path, shown) in paths.iter().zip(&args.paths) {
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("cannot add {}", shown.display()))?;
        if meta.is_dir() && !args.recursive {
            bail!(
                "{} is a directory: use -r to add it recursively",
                shown.display()
            );
        }
    }
    let quiet = console.quiet();
    let show = console.progress() || (args.progress && !quiet);
    let mut out = console.output();
    let mut roots = Vec::new();
    let mut last_root: Option<(String, String, u64)> = None;
    for (path, shown) in paths.iter().zip(&args.paths) {
        let total = if show { Some(total_bytes(path)) } else { None };
        let mut bar = console.bar(show, total, &format!("adding {}", shown.display()));
        let mut lines: Vec<(String, String, u64)> = Vec::new();
        let mut on_event = |ev: ImportEvent| match ev {
            ImportEvent::Progress { bytes } => bar.set_position(bytes),
            ImportEvent::Added { cid, path, size } => lines.push((cid.to_string(), path, size)),
        };
        let imported = match repo {
            Some(repo) => {
                let session = repo.session();
                let imported = import_path(path, &opts, &session as &dyn BlockSink, &mut on_event)
                    .with_context(|| format!("cannot add {}", shown.display()))?;
                if args.pin {
                    // The error names the pin ("cannot pin <cid>: …").
                    session.pin(imported.cid, args.pin_name.as_deref())?;
                } else {
                    session.commit()?;
                }
                imported
            }
            None => import_path(path, &opts, &NullSink, &mut on_event)
                .with_context(|| format!("cannot hash {}", shown.display()))?,
        };
        bar.finish();
        if !quiet {
            for (cid, name, size) in &lines {
                out.item(
                    &Added {
                        cid: cid.clone(),
                        name,
                        size: *size,
                    },
                    || format!("added {cid} {name}"),
                )?;
            }
        }
        let root = imported.cid.to_string();
        last_root = Some(match lines.iter().rev().find(|(cid, _, _)| *cid == root) {
            Some((cid, name, size)) => (cid.clone(), name.clone(), *size),
            None => (root, shown.display().to_string(), 0),
        });
        roots.push(imported.cid);
    }
    if quiet {
        // Only the last root, in the same shape as every `added` line.
        if let Some((cid, name, size)) = last_root {
            out.item(
                &Added {
                    cid: cid.clone(),
                    name: &name,
                    size,
                },
                || cid.clone(),
            )?;
        }
    }
    out.finish()?;
    Ok(roots)
}
