//! Reading content: `cairn cat`, `cairn get`, `cairn ls`.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_store::{BlockSource, Cid, DagReader, EntryKind, LocalSource, Repo};
use serde::Serialize;

use crate::args::{CatArgs, GetArgs, LsArgs};
use crate::output::Console;

use super::{parse_path, Ctx};

/// Resolves `text` (`<cid>[/path]`) to the CID it names.
async fn resolve<S: BlockSource + Clone>(reader: &DagReader<S>, text: &str) -> Result<Cid> {
    let path = parse_path(text)?;
    let cid = reader
        .resolve(&path.root, &path.segments)
        .await
        .with_context(|| format!("cannot resolve {text}"))?;
    Ok(cid)
}

/// Resolves `text` and reads what the CID it names is.
async fn resolve_stat<S: BlockSource + Clone>(
    reader: &DagReader<S>,
    text: &str,
) -> Result<(Cid, cairn_store::NodeInfo)> {
    let cid = resolve(reader, text).await?;
    let info = reader
        .stat(&cid)
        .await
        .with_context(|| format!("cannot read {cid}"))?;
    Ok((cid, info))
}

fn local_reader(repo: &Repo) -> DagReader<LocalSource<cairn_store::SledStore>> {
    DagReader::new(LocalSource::new(repo.store().clone()))
}

/// `cairn cat`.
pub async fn cat(ctx: &Ctx<'_>, args: &CatArgs) -> Result<()> {
    cat_with(&local_reader(ctx.repo), ctx.console, args).await
}

/// `cairn cat` through any block source.
pub async fn cat_with<S: BlockSource + Clone>(
    reader: &DagReader<S>,
    console: &Console,
    args: &CatArgs,
) -> Result<()> {
    let (cid, info) = resolve_stat(reader, &args.path).await?;
    if info.kind != EntryKind::File {
        bail!("{} is a {}, not a file", args.path, kind_name(info.kind));
    }
    let mut left = args.length.unwrap_or(u64::MAX);
    let mut cursor = reader.cursor(&cid, args.offset);
    let mut out = console.stdout();
    while left > 0 {
        let Some(chunk) = cursor
            .next_chunk()
            .await
            .with_context(|| format!("cannot read {cid}"))?
        else {
            break;
        };
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

/// `cairn get`.
pub async fn get(ctx: &Ctx<'_>, args: &GetArgs) -> Result<()> {
    get_with(&local_reader(ctx.repo), ctx, args).await
}

/// `cairn get` through any block source.
pub async fn get_with<S: BlockSource + Clone>(
    reader: &DagReader<S>,
    ctx: &Ctx<'_>,
    args: &GetArgs,
) -> Result<()> {
    let out = output_path(ctx, args)?;
    let (cid, info) = resolve_stat(reader, &args.path).await?;
    let show = ctx.console.progress(args.quiet);
    let total = if info.kind == EntryKind::File {
        Some(info.size)
    } else {
        None
    };
    let mut bar = ctx.console.bar(show, total, &format!("getting {cid}"));
    write_node(reader, cid, &out, &mut bar).await?;
    bar.finish();
    Ok(())
}

/// Where `cairn get` writes: `-o OUT`, else the last path segment or the CID in the working
/// directory. Refused if something is there already (nothing is ever overwritten).
pub fn output_path(ctx: &Ctx<'_>, args: &GetArgs) -> Result<PathBuf> {
    let path = parse_path(&args.path)?;
    let out = ctx.path(&match &args.output {
        Some(o) => o.clone(),
        None => PathBuf::from(
            path.segments
                .last()
                .cloned()
                .unwrap_or_else(|| path.root.to_string()),
        ),
    });
    if std::fs::symlink_metadata(&out).is_ok() {
        bail!(
            "{} already exists: choose another output with -o",
            out.display()
        );
    }
    Ok(out)
}

/// Writes the node `cid` at `dest` (which must not exist), descending into directories.
async fn write_node<S: BlockSource + Clone>(
    reader: &DagReader<S>,
    root: Cid,
    dest: &Path,
    bar: &mut crate::progress::Bar,
) -> Result<()> {
    // Iterative depth-first walk: hostile DAGs cannot blow the stack.
    let mut stack = vec![(root, dest.to_path_buf())];
    while let Some((cid, dest)) = stack.pop() {
        let info = reader
            .stat(&cid)
            .await
            .with_context(|| format!("cannot read {cid}"))?;
        match info.kind {
            EntryKind::File => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .with_context(|| format!("cannot create {}", dest.display()))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
                let mut cursor = reader.cursor(&cid, 0);
                while let Some(chunk) = cursor
                    .next_chunk()
                    .await
                    .with_context(|| format!("cannot read {cid}"))?
                {
                    w.write_all(&chunk)
                        .with_context(|| format!("cannot write {}", dest.display()))?;
                    bar.inc(chunk.len() as u64);
                }
                w.flush()
                    .with_context(|| format!("cannot write {}", dest.display()))?;
                set_mode(&dest, info.mode)?;
            }
            EntryKind::Directory => {
                std::fs::create_dir(&dest)
                    .with_context(|| format!("cannot create {}", dest.display()))?;
                let entries = reader
                    .read_dir(&cid)
                    .await
                    .with_context(|| format!("cannot list {cid}"))?;
                for entry in entries.into_iter().rev() {
                    // The reader already refuses unsafe names; check again where it matters.
                    let mut comps = Path::new(&entry.name).components();
                    if !matches!(
                        (comps.next(), comps.next()),
                        (Some(Component::Normal(_)), None)
                    ) {
                        bail!(
                            "refusing entry {:?} of {cid}: it would escape {}",
                            entry.name,
                            dest.display()
                        );
                    }
                    stack.push((entry.cid, dest.join(&entry.name)));
                }
            }
            EntryKind::Symlink => {
                let target = info.symlink_target.unwrap_or_default();
                std::os::unix::fs::symlink(&target, &dest)
                    .with_context(|| format!("cannot create symlink {}", dest.display()))?;
            }
        }
    }
    Ok(())
}

/// Applies a DAG's permission bits; setuid, setgid and sticky bits from content are never honoured.
fn set_mode(path: &Path, mode: Option<u32>) -> Result<()> {
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777))
            .with_context(|| format!("cannot set mode of {}", path.display()))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct LsEntry {
    name: String,
    cid: String,
    size: u64,
    kind: String,
}

/// `cairn ls`.
pub async fn ls(ctx: &Ctx<'_>, args: &LsArgs) -> Result<()> {
    ls_with(&local_reader(ctx.repo), ctx.console, args).await
}

/// `cairn ls` through any block source.
pub async fn ls_with<S: BlockSource + Clone>(
    reader: &DagReader<S>,
    console: &Console,
    args: &LsArgs,
) -> Result<()> {
    let (cid, info) = resolve_stat(reader, &args.path).await?;
    let mut out = console.output();
    if info.kind != EntryKind::Directory {
        let e = LsEntry {
            name: args.path.clone(),
            cid: cid.to_string(),
            size: info.size,
            kind: kind_name(info.kind).to_string(),
        };
        out.item(&e, || format!("{} {} {}", e.cid, e.size, e.name))?;
        return out.finish();
    }
    let entries = reader
        .read_dir(&cid)
        .await
        .with_context(|| format!("cannot list {cid}"))?;
    for entry in entries {
        let child = reader
            .stat(&entry.cid)
            .await
            .with_context(|| format!("cannot read {}", entry.cid))?;
        let suffix = if child.kind == EntryKind::Directory {
            "/"
        } else {
            ""
        };
        let e = LsEntry {
            name: entry.name,
            cid: entry.cid.to_string(),
            size: child.size,
            kind: kind_name(child.kind).to_string(),
        };
        out.item(&e, || format!("{} {} {}{}", e.cid, e.size, e.name, suffix))?;
    }
    out.finish()
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Directory => "directory",
        EntryKind::Symlink => "symlink",
    }
}
