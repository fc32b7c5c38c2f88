//! `cairn mount`/`cairn unmount` glue between the CLI and the FUSE crate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_fs::{MountHandle, MountOptions, MountRoot};
use cairn_store::BlockSource;

use crate::args::MountArgs;

/// What to mount and where, from the arguments: a CID, or a share of `repo` by label or share
/// id (its head, read-only).
pub fn target(args: &MountArgs, repo: &cairn_store::Repo) -> Result<(MountRoot, PathBuf)> {
    match (&args.namespace, &args.cid, &args.dir) {
        (Some(dir), None, None) => Ok((MountRoot::Namespace, dir.clone())),
        (None, Some(cid), Some(dir)) => {
            if cid.parse::<cairn_store::CidPath>().is_err() {
                if let Ok(share) = repo.shares().find(cid) {
                    let Some(head) = share.head else {
                        crate::fail!(
                            "corrupt",
                            "share {} has no valid head record to mount",
                            share.name
                        );
                    };
                    return Ok((MountRoot::Cid(head.root), dir.clone()));
                }
            }
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

/// What `cairn unmount` prints once the mount is gone.
pub fn say_unmounted(console: &crate::output::Console, dir: &Path) -> Result<()> {
    let mut out = console.output();
    out.ack(
        &serde_json::json!({ "unmounted": dir.display().to_string() }),
        || format!("unmounted {}", dir.display()),
    )?;
    out.finish()
}

/// What `cairn mount` prints under `--json`, wherever the mount is served.
pub fn mounted_json(dir: &Path, root: &MountRoot, served_by: &str) -> serde_json::Value {
    let root = match root {
        MountRoot::Cid(c) => Some(c.to_string()),
        _ => None,
    };
    serde_json::json!({
        "mountpoint": dir.display().to_string(),
        "root": root,
        "served_by": served_by,
    })
}

/// Mounts `root` at `dir`, reading through `source`; `statfs` on the mount reports the disk
/// of `repo` (the repo's own directory).
pub fn start<S: BlockSource + Clone>(
    source: S,
    root: MountRoot,
    dir: &Path,
    (allow_other, repo): (bool, &Path),
    timeout: Duration,
    runtime: tokio::runtime::Handle,
) -> Result<MountHandle> {
    let options = MountOptions {
        timeout,
        allow_other,
        space_of: Some(repo.to_path_buf()),
        ..MountOptions::default()
    };
    cairn_fs::mount(source, root, dir, options, runtime)
        .with_context(|| format!("cannot mount at {}", dir.display()))
}

/// Unmounts a FUSE mount this process does not serve: a foreground `cairn mount`, or one left by
/// a killed process. As the daemon does with its own mounts, a mount with a file still open on it
/// (`EBUSY`) is detached lazily (`fusermount3 -u -z`): it leaves the mount table now, and open
/// files keep working until they are closed.
pub fn unmount_foreign(dir: &Path) -> Result<()> {
    unmount_outside(dir).map(|_| ())
}

/// [`unmount_foreign`], saying whether the mount was detached lazily.
pub fn unmount_outside(dir: &Path) -> Result<bool> {
    // /proc/mounts lists canonical paths; a dead mount (ENOTCONN) cannot be resolved, and is
    // listed under the path as given.
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Some(fstype) = mount_type(&dir) else {
        bail!("{} is not a mount point", dir.display());
    };
    if !fstype.starts_with("fuse") {
        bail!(
            "{} is not a FUSE mount (it is {fstype}); cairn unmounts only its own mounts",
            dir.display()
        );
    }
    if fusermount(&dir, false)?.status.success() || !is_mounted(&dir) {
        return Ok(false);
    }
    // Most likely busy: detach it, as the daemon does.
    let lazy = fusermount(&dir, true)?;
    if lazy.status.success() || !is_mounted(&dir) {
        tracing::info!(mountpoint = %dir.display(), "busy: detached lazily");
        return Ok(true);
    }
    let why = String::from_utf8_lossy(&lazy.stderr);
    bail!(
        "cannot unmount {}: {}",
        dir.display(),
        why.trim().trim_start_matches("fusermount3: ")
    );
}

/// Whether `dir` is a mount point now.
pub fn is_mounted(dir: &Path) -> bool {
    mount_type(dir).is_some()
}

/// Runs `fusermount3 -u [-z] dir`.
fn fusermount(dir: &Path, lazy: bool) -> Result<std::process::Output> {
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    cmd.arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run fusermount3 (install the fuse3 package)")
}

/// The filesystem type of the newest mount on `dir`, if it is a mount point.
fn mount_type(dir: &Path) -> Option<String> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .rev()
        .find_map(|l| {
            let mut fields = l.split(' ');
            let point = fields.nth(1)?;
            let fstype = fields.next()?;
            (Path::new(&unescape(point)) == dir).then(|| fstype.to_string())
        })
}

/// The kernel's device number (`major:minor`) of the newest mount on `dir`, from
/// `/proc/self/mountinfo`.
pub fn device_of(dir: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    mountinfo().lines().rev().find_map(|l| {
        let mut fields = l.split(' ');
        let device = fields.nth(2)?;
        let point = fields.nth(1)?;
        (Path::new(&unescape(point)) == dir).then(|| device.to_string())
    })
}

fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// Whether the kernel shows the backing device info of device `device` (sysfs is mounted), so
/// that [`connection_alive`] can tell when its FUSE connection ends.
pub fn has_connection_info(device: &str) -> bool {
    Path::new("/sys/class/bdi").join(device).exists()
}

/// Whether the FUSE connection of device `device` still exists: a mount detached lazily keeps
/// it until its last open file is closed. Its backing device info (`/sys/class/bdi/<device>`)
/// goes away with it. A mount listed under that number again is someone else's new mount.
pub fn connection_alive(device: &str) -> bool {
    let listed = mountinfo()
        .lines()
        .any(|l| l.split(' ').nth(2) == Some(device));
    !listed && Path::new("/sys/class/bdi").join(device).exists()
}

/// Resolves when the FUSE connection of `device` has ended (see [`connection_alive`]).
pub async fn wait_connection_gone(device: &str) {
    while connection_alive(device) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
