//! Reading content: `cairn cat`, `cairn get`, `cairn ls`.
//!
//! `ls` streams a directory's listing as it reads it. `get` first measures what it would write
//! (entries and bytes counted per path, each distinct directory read once), refuses more than
//! [`MAX_GET_ENTRIES`] entries, [`MAX_GET_BYTES`] bytes or [`cairn_store::MAX_DIR_DEPTH`]
//! levels before writing anything, then writes under a temporary name beside the target
//! (`.<name>.cairn-partial-<random>`) and renames it into place only once everything is
//! written; on an error or Ctrl-C the temporary is removed, so a re-run starts clean.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_store::{
    BlockSource, Cid, DagReader, DirEntry, EntryKind, LocalSource, NodeInfo, Repo, MAX_DIR_DEPTH,
    RAW,
};
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

/// The most entries (files, directories and symlinks, counted once per path) one `cairn get`
/// writes. A DAG that links one subtree from many places has many more paths than blocks.
pub const MAX_GET_ENTRIES: u64 = 1 << 24;
/// The most file bytes (counted once per path) one `cairn get` writes: 1 TiB.
pub const MAX_GET_BYTES: u64 = 1 << 40;

/// Steps (entries listed, chunks written) between yields to the runtime. Local reads of small
/// blocks complete without ever waiting, so without this a `get` would never let its Ctrl-C
/// watcher run.
const YIELD_EVERY: u32 = 64;

/// Counts steps and yields to the runtime every [`YIELD_EVERY`].
#[derive(Default)]
struct Yielder(u32);

impl Yielder {
    async fn step(&mut self) {
        self.0 += 1;
        if self.0 >= YIELD_EVERY {
            self.0 = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// An entry's metadata; a raw block with a size-carrying link needs no fetch.
async fn entry_info<S: BlockSource + Clone>(
    reader: &DagReader<S>,
    entry: &DirEntry,
) -> Result<NodeInfo> {
    if let (RAW, Some(size)) = (entry.cid.codec(), entry.tsize) {
        return Ok(NodeInfo::raw_file(entry.cid, size));
    }
    reader
        .stat(&entry.cid)
        .await
        .with_context(|| format!("cannot read {}", entry.cid))
}

/// `cairn cat`.
pub async fn cat(ctx: &Ctx<'_>, args: &CatArgs) -> Result<()> {
    let mut args = args.clone();
    args.output = args.output.map(|o| ctx.path(&o));
    cat_with(&local_reader(ctx.repo), ctx.console, &args).await
}

/// `cairn cat` through any block source (`args.output` already resolved against the user's
/// working directory).
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
    let mut out: Option<crate::output::BinaryOut> = None;
    while left > 0 {
        let Some(chunk) = cursor
            .next_chunk()
            .await
            .with_context(|| format!("cannot read {cid}"))?
        else {
            break;
        };
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let w = match &mut out {
            Some(w) => w,
            // Text or binary is told by the first bytes (as curl does).
            None => out.insert(console.binary_out(
                args.output.as_deref(),
                &args.path,
                Some(&chunk[..n.min(4096)]),
            )?),
        };
        w.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    match out {
        Some(w) => w.finish(),
        // Nothing to print (an empty file, or an offset at its end); `-o` still makes the file.
        None => match args.output.as_deref() {
            Some(p) => console.binary_out(Some(p), &args.path, Some(b""))?.finish(),
            None => Ok(()),
        },
    }
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
    let size = measure(reader, &info).await?;
    let show = ctx.console.progress();
    let mut bar = ctx
        .console
        .bar(show, Some(size.bytes), &format!("getting {cid}"));
    let mut printer = ctx.console.output();
    printer.text(&format!("saving {cid} to {}", out.display()))?;
    printer.finish()?;
    // Listening for Ctrl-C before the partial output exists: a signal that comes as soon as it
    // appears still removes it (a lazily registered handler could miss it).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot watch for Ctrl-C")?;
    let mut partial = Partial::beside(&out)?;
    let work = write_node(reader, info, partial.path(), &mut bar);
    let written = tokio::select! {
        r = work => r?,
        _ = interrupt.recv() => bail!("interrupted; nothing was left at {}", out.display()),
    };
    partial.commit(&out)?;
    bar.finish();
    let mut printer = ctx.console.output();
    let path = out.display().to_string();
    printer.ack(
        &serde_json::json!({
            "cid": cid.to_string(),
            "path": path,
            "files": written.files,
            "directories": written.directories,
            "symlinks": written.symlinks,
            "bytes": written.bytes,
        }),
        || {
            format!(
                "saved {path}: {} file{}, {} director{}, {} symlink{}, {} bytes",
                written.files,
                if written.files == 1 { "" } else { "s" },
                written.directories,
                if written.directories == 1 { "y" } else { "ies" },
                written.symlinks,
                if written.symlinks == 1 { "" } else { "s" },
                written.bytes
            )
        },
    )?;
    printer.finish()
}

/// What a `get` wrote.
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    files: u64,
    directories: u64,
    symlinks: u64,
    bytes: u64,
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

/// What a `get` would write, counted per path.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    entries: u64,
    bytes: u64,
    /// Directory levels below this one (0: no subdirectories).
    height: usize,
}

impl Size {
    fn add(&mut self, other: &Size) {
        self.entries = self.entries.saturating_add(other.entries);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// Counts what writing `root` would write, reading each distinct directory once, and fails
/// as soon as a limit is passed (so before anything is written).
async fn measure<S: BlockSource + Clone>(reader: &DagReader<S>, root: &NodeInfo) -> Result<Size> {
    struct Frame<S> {
        cid: Cid,
        cursor: cairn_store::DirCursor<S>,
        size: Size,
        depth: usize,
    }
    let leaf = |info: &NodeInfo| Size {
        entries: 1,
        bytes: if info.kind == EntryKind::File {
            info.size
        } else {
            0
        },
        height: 0,
    };
    if root.kind != EntryKind::Directory {
        let size = leaf(root);
        check_size(&root.cid, &size)?;
        return Ok(size);
    }
    let mut done: HashMap<Cid, Size> = HashMap::new();
    // Everything counted so far, in all frames (a frame's size joins its parent's when done).
    let mut total = Size {
        entries: 1,
        ..Size::default()
    };
    let mut yielder = Yielder::default();
    let mut stack = vec![Frame {
        cid: root.cid,
        cursor: reader.dir_cursor(&root.cid),
        size: Size {
            entries: 1,
            ..Size::default()
        },
        depth: 0,
    }];
    loop {
        let Some(top) = stack.last_mut() else {
            bail!("internal error: empty measuring stack");
        };
        let cid = top.cid;
        let Some(entry) = top
            .cursor
            .next_entry()
            .await
            .with_context(|| format!("cannot list {cid}"))?
        else {
            let Some(finished) = stack.pop() else {
                bail!("internal error: empty measuring stack");
            };
            done.insert(finished.cid, finished.size);
            match stack.last_mut() {
                Some(parent) => {
                    parent.size.add(&finished.size);
                    parent.size.height = parent.size.height.max(finished.size.height + 1);
                }
                None => return Ok(finished.size),
            }
            continue;
        };
        let info = entry_info(reader, &entry).await?;
        yielder.step().await;
        let depth = top.depth + 1;
        let add = match (info.kind, done.get(&info.cid)) {
            (EntryKind::Directory, Some(known)) => {
                check_depth(&info.cid, depth + known.height)?;
                top.size.height = top.size.height.max(known.height + 1);
                *known
            }
            (EntryKind::Directory, None) => {
                check_depth(&info.cid, depth)?;
                let child = Frame {
                    cid: info.cid,
                    cursor: reader.dir_cursor(&info.cid),
                    size: Size {
                        entries: 1,
                        ..Size::default()
                    },
                    depth,
                };
                total.add(&child.size);
                check_size(&root.cid, &total)?;
                stack.push(child);
                continue;
            }
            _ => leaf(&info),
        };
        top.size.add(&add);
        total.add(&add);
        check_size(&root.cid, &total)?;
    }
}

fn check_size(root: &Cid, size: &Size) -> Result<()> {
    if size.entries > MAX_GET_ENTRIES {
        bail!(
            "{root} has more than {MAX_GET_ENTRIES} entries counted per path (a DAG that links \
             the same subtree from many places?); refusing to get it, nothing was written"
        );
    }
    if size.bytes > MAX_GET_BYTES {
        bail!(
            "{root} holds more than {MAX_GET_BYTES} bytes counted per path; refusing to get \
             it, nothing was written"
        );
    }
    Ok(())
}

fn check_depth(dir: &Cid, depth: usize) -> Result<()> {
    if depth > MAX_DIR_DEPTH {
        bail!(
            "directories nest more than {MAX_DIR_DEPTH} levels deep below {dir}; refusing to \
             get it, nothing was written"
        );
    }
    Ok(())
}

/// The temporary output of a `get`, removed unless committed (also when the `get` future is
/// dropped half-way).
struct Partial {
    path: PathBuf,
    committed: bool,
}

impl Partial {
    /// A fresh temporary name in the directory of `out`.
    fn beside(out: &Path) -> Result<Partial> {
        use std::hash::{BuildHasher, Hasher};
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Leave room for the decoration within the 255-byte name limit.
        let mut cut = name.len().min(200);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let temp = format!(".{}.cairn-partial-{random:016x}", &name[..cut]);
        let parent = out.parent().unwrap_or(Path::new("."));
        Ok(Partial {
            path: parent.join(temp),
            committed: false,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the finished output to `out` (refusing if something appeared there meanwhile).
    fn commit(&mut self, out: &Path) -> Result<()> {
        if std::fs::symlink_metadata(out).is_ok() {
            bail!(
                "{} appeared while getting; choose another output with -o",
                out.display()
            );
        }
        std::fs::rename(&self.path, out)
            .with_context(|| format!("cannot move the finished output to {}", out.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let removed = match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&self.path),
            Ok(_) => std::fs::remove_file(&self.path),
            Err(_) => Ok(()),
        };
        if let Err(e) = removed {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove partial output");
        }
    }
}

/// Writes the node `root` at `dest` (which must not exist), descending into directories.
async fn write_node<S: BlockSource + Clone>(
    reader: &DagReader<S>,
    root: NodeInfo,
    dest: &Path,
    bar: &mut crate::progress::Bar,
) -> Result<Written> {
    // Depth-first with one listing cursor per open directory (at most MAX_DIR_DEPTH, as
    // `measure` checked): hostile DAGs cannot blow the stack, and no listing is held whole.
    let mut w = Writer {
        reader,
        bar,
        written: 0,
        counts: Written::default(),
        yielder: Yielder::default(),
    };
    let mut stack = Vec::new();
    if let Some(dir) = w.write(root, dest.to_path_buf()).await? {
        stack.push(dir);
    }
    while let Some((cursor, dir)) = stack.last_mut() {
        let cid = *cursor.dir();
        let Some(entry) = cursor
            .next_entry()
            .await
            .with_context(|| format!("cannot list {cid}"))?
        else {
            stack.pop();
            continue;
        };
        // The reader already refuses unsafe names; check again where it matters.
        let mut comps = Path::new(&entry.name).components();
        if !matches!(
            (comps.next(), comps.next()),
            (Some(Component::Normal(_)), None)
        ) {
            bail!(
                "refusing entry {:?} of {cid}: it would escape {}",
                entry.name,
                dir.display()
            );
        }
        let dest = dir.join(&entry.name);
        let info = entry_info(reader, &entry).await?;
        if let Some(sub) = w.write(info, dest).await? {
            stack.push(sub);
        }
    }
    w.counts.bytes = w.written;
    Ok(w.counts)
}

/// Writes single nodes for [`write_node`].
struct Writer<'a, S> {
    reader: &'a DagReader<S>,
    bar: &'a mut crate::progress::Bar,
    /// File bytes written so far (`measure` bounded them; a raw leaf's size came from its
    /// link, so they are counted again here).
    written: u64,
    counts: Written,
    yielder: Yielder,
}

impl<S: BlockSource + Clone> Writer<'_, S> {
    /// Writes a file or symlink at `dest`, or creates the directory and returns its cursor.
    async fn write(
        &mut self,
        info: NodeInfo,
        dest: PathBuf,
    ) -> Result<Option<(cairn_store::DirCursor<S>, PathBuf)>> {
        let cid = info.cid;
        match info.kind {
            EntryKind::File => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .with_context(|| format!("cannot create {}", dest.display()))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
                let mut cursor = self.reader.cursor(&cid, 0);
                while let Some(chunk) = cursor
                    .next_chunk()
                    .await
                    .with_context(|| format!("cannot read {cid}"))?
                {
                    self.written = self.written.saturating_add(chunk.len() as u64);
                    if self.written > MAX_GET_BYTES {
                        bail!("{cid} holds more than {MAX_GET_BYTES} bytes; stopped");
                    }
                    w.write_all(&chunk)
                        .with_context(|| format!("cannot write {}", dest.display()))?;
                    self.bar.inc(chunk.len() as u64);
                    self.yielder.step().await;
                }
                w.flush()
                    .with_context(|| format!("cannot write {}", dest.display()))?;
                set_mode(&dest, info.mode)?;
                self.counts.files += 1;
                self.yielder.step().await;
                Ok(None)
            }
            EntryKind::Directory => {
                std::fs::create_dir(&dest)
                    .with_context(|| format!("cannot create {}", dest.display()))?;
                self.counts.directories += 1;
                self.yielder.step().await;
                Ok(Some((self.reader.dir_cursor(&cid), dest)))
            }
            EntryKind::Symlink => {
                let target = info.symlink_target.unwrap_or_default();
                std::os::unix::fs::symlink(&target, &dest)
                    .with_context(|| format!("cannot create symlink {}", dest.display()))?;
                self.counts.symlinks += 1;
                self.yielder.step().await;
                Ok(None)
            }
        }
    }
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
    #[serde(rename = "type")]
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
    // Streamed: each entry is printed as it is read, whatever the size of the directory.
    let mut cursor = reader.dir_cursor(&cid);
    while let Some(entry) = cursor
        .next_entry()
        .await
        .with_context(|| format!("cannot list {cid}"))?
    {
        let child = entry_info(reader, &entry).await?;
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
