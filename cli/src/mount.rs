//! `cairn mount`/`cairn unmount` glue between the CLI and the FUSE crate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_fs::{MountHandle, MountOptions, MountRoot};
use cairn_store::BlockSource;

use crate::args::MountArgs;

/// What to mount and where, from the arguments.
pub fn target(args: &MountArgs) -> Result<(MountRoot, PathBuf)> {
    match (&args.namespace, &args.cid, &args.dir) {
        (Some(dir), None, None) => Ok((MountRoot::Namespace, dir.clone())),
        (None, Some(cid), Some(dir)) => {
            let path = crate::cmd::parse_path(cid)?;
            if !path.segments.is_empty() {
                bail!(
                    "mount takes a bare CID, not a path: mount {} and look inside",
                    path.root
                );
            }
            Ok((MountRoot::Cid(path.root), dir.clone()))
        }
        (None, Some(_), None) => bail!("missing mount point: cairn mount <cid> <dir>"),
        _ => bail!("usage: cairn mount <cid> <dir>, or cairn mount --namespace <dir>"),
    }
}

/// Mounts `root` at `dir`, reading through `source`.
pub fn start<S: BlockSource + Clone>(
    source: S,
    root: MountRoot,
    dir: &Path,
    allow_other: bool,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
) -> Result<MountHandle> {
    let options = MountOptions {
        timeout,
        allow_other,
        ..MountOptions::default()
    };
    cairn_fs::mount(source, root, dir, options, runtime)
        .with_context(|| format!("cannot mount at {}", dir.display()))
}

/// Unmounts a cairn mount this process does not serve (e.g. one left by a killed process).
pub fn unmount_foreign(dir: &Path) -> Result<()> {
    if !is_mounted(dir) {
        bail!("{} is not a mount point", dir.display());
    }
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(dir)
        .status()
        .context("cannot run fusermount3 (install the fuse3 package)")?;
    if !status.success() {
        bail!("fusermount3 -u {} failed", dir.display());
    }
    Ok(())
}

/// Whether `dir` is a mount point now.
pub fn is_mounted(dir: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.split(' ')
                .nth(1)
                .is_some_and(|m| Path::new(&unescape(m)) == dir)
        })
}

/// Resolves when `dir` stops being a mount point (e.g. `fusermount3 -u` by someone else).
pub async fn wait_unmounted(dir: &Path) {
    while is_mounted(dir) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// /proc/mounts escapes spaces and a few other bytes as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
