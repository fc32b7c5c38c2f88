//! `cairn mount`/`cairn unmount` glue between the CLI and the FUSE crate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_fs::{CommitPolicy, MountHandle, MountOptions, MountRoot};
use cairn_store::{BlockSource, Repo};

use crate::args::MountArgs;
use crate::mounts::{Mounts, RepoShare};

/// What `cairn mount` mounts.
pub enum Target {
    /// A CID (read-only), or the namespace of all CIDs.
    Root(MountRoot),
    /// A share of this repo: its head, writable when the repo holds its key.
    Share(Box<cairn_store::Share>),
}

/// What to mount and where, from the arguments: a CID, or a share of `repo` by label or share
/// id.
pub fn target(args: &MountArgs, repo: &cairn_store::Repo) -> Result<(Target, PathBuf)> {
    match (&args.namespace, &args.cid, &args.dir) {
        (Some(dir), None, None) => Ok((Target::Root(MountRoot::Namespace), dir.clone())),
        (None, Some(cid), Some(dir)) => {
            // `<share id>` and `/ipns/<share id>` are the share itself (its mount follows the
            // head); a share id also parses as a CID (of a key, which cannot be mounted).
            let key = cid
                .strip_prefix("/ipns/")
                .unwrap_or(cid)
                .trim_end_matches('/');
            let is_name = key.parse::<cairn_store::IpnsName>().is_ok();
            if is_name || cid.parse::<cairn_store::CidPath>().is_err() {
                let found = repo.shares().find(key);
                if let Err(cairn_store::ShareError::NotFound(_)) = &found {
                    if let Err(e) = crate::cmd::parse_path(cid) {
                        crate::fail!(
                            "not_found",
                            "{e:#}; nor is {cid:?} a share of this repo (`cairn share ls` lists \
                             them)"
                        );
                    }
                }
                if let Ok(share) = found {
                    if share.head.is_none() {
                        crate::fail!(
                            "corrupt",
                            "share {} has no valid head record to mount; `cairn share log {}` \
                             and `cairn repo verify` tell more",
                            share.name,
                            share.name
                        );
                    }
                    return Ok((Target::Share(Box::new(share)), dir.clone()));
                }
            }
            let path = crate::cmd::parse_path(cid)?;
            if !path.segments.is_empty() {
                bail!(
                    "mount takes a bare CID, not a path: mount {} and look inside",
                    path.root
                );
            }
            Ok((Target::Root(MountRoot::Cid(path.root)), dir.clone()))
        }
        (None, Some(_), None) => bail!("missing mount point: cairn mount <cid> <dir>"),
        _ => bail!("usage: cairn mount <cid> <dir>, or cairn mount --namespace <dir>"),
    }
}

/// A mount just made.
pub struct Started {
    pub handle: MountHandle,
    /// What `--json` prints.
    pub json: serde_json::Value,
    /// What the text output adds (e.g. why a share is read-only).
    pub note: Option<String>,
}

/// Where a mount runs: the repo, the process's mount table, its runtime and timeout.
pub struct Host<'a> {
    pub repo: &'a Arc<Repo>,
    pub mounts: &'a Arc<Mounts>,
    pub timeout: Duration,
    pub runtime: tokio::runtime::Handle,
    /// "daemon" or "local", for `--json`.
    pub served_by: &'a str,
    /// Resolves IPNS names in a namespace mount's root (`<mnt>/k51…/…`).
    pub names: cairn_fs::NameResolver,
}

/// Names as a process without a network resolves them: the shares of `repo`, by their heads.
pub fn local_names(repo: &Arc<Repo>) -> cairn_fs::NameResolver {
    let repo = repo.clone();
    Arc::new(move |name: String| {
        let repo = repo.clone();
        Box::pin(async move { share_head(&repo, &name) })
    })
}

/// The head root of share `name` (a share id) of `repo`, if it has one.
pub fn share_head(repo: &Repo, name: &str) -> Option<cairn_store::Cid> {
    let parsed: cairn_store::IpnsName = name.parse().ok()?;
    let (head, _) = repo.shares().head_record(&parsed).ok()?;
    Some(head.root)
}

/// How a mount made for `args` on `host` runs: the host's timeout, `statfs` reporting the
/// repo's disk.
fn mount_options(args: &MountArgs, host: &Host<'_>) -> MountOptions {
    MountOptions {
        timeout: host.timeout,
        allow_other: args.allow_other,
        space_of: Some(host.repo.path().to_path_buf()),
        ..MountOptions::default()
    }
}

/// Mounts `target` at `dir` (canonical), reading through `source`.
pub fn start_target<S: BlockSource + Clone>(
    source: S,
    target: Target,
    dir: &Path,
    args: &MountArgs,
    host: &Host<'_>,
) -> Result<Started> {
    let share = match target {
        Target::Root(root) => {
            let json = mounted_json(dir, &root, host.served_by);
            let handle = cairn_fs::mount_with_names(
                source,
                root,
                dir,
                mount_options(args, host),
                host.runtime.clone(),
                host.names.clone(),
            )
            .with_context(|| format!("cannot mount at {}", dir.display()))?;
            return Ok(Started {
                handle,
                json,
                note: None,
            });
        }
        Target::Share(share) => *share,
    };
    let Some(head) = share.head.clone() else {
        crate::fail!("corrupt", "share {} has no valid head record", share.name);
    };
    // A member (granted by the owner) writes too, from its own tip.
    let member = if share.writable || args.read_only {
        None
    } else {
        member_head(host.repo, &share, &head)
    };
    let head = member.clone().unwrap_or(head);
    if !(share.writable || member.is_some()) || args.read_only {
        let root = MountRoot::Cid(head.root);
        let mut json = mounted_json(dir, &root, host.served_by);
        json["share"] = serde_json::json!(share.name.to_string());
        json["writable"] = serde_json::json!(false);
        json["version"] = serde_json::json!(head.sequence);
        // It follows the share: each new head (a commit of its writable mount, a restore)
        // becomes what it shows.
        let options = mount_options(args, host);
        let heads = host.mounts.follow(
            &share.name,
            cairn_fs::FollowHead {
                root: head.root,
                sequence: head.sequence,
                // A foreground mount has no network: a followed share cannot be confirmed.
                stale: !share.writable
                    && (host.served_by != "daemon" || host.mounts.is_stale(&share.name)),
            },
        );
        let handle = cairn_fs::mount_follow(source, heads, dir, options, host.runtime.clone())
            .with_context(|| format!("cannot mount at {}", dir.display()))?;
        let note = if args.read_only {
            format!(
                "share {} version {}, read-only, following its new versions",
                share.label, head.sequence
            )
        } else {
            format!(
                "share {} version {}, read-only (this repo does not hold the share's key), \
                 following its new versions",
                share.label, head.sequence
            )
        };
        return Ok(Started {
            handle,
            json,
            note: Some(note),
        });
    }
    if let Some((at, _)) = host.mounts.share(&share.name) {
        crate::fail!(
            "exists",
            "share {} is already mounted writable at {}; use that mount, or `cairn unmount {}` \
             first (`--read-only` mounts it again read-only)",
            share.label,
            at.display(),
            at.display()
        );
    }
    let cfg = &host.repo.config().shares;
    let spec = share_spec(host.repo, host.mounts, &share, &head)?;
    let options = mount_options(args, host);
    let handle = cairn_fs::mount_share(source, spec, dir, options, host.runtime.clone())
        .with_context(|| format!("cannot mount share {} at {}", share.label, dir.display()))?;
    let json = serde_json::json!({
        "mountpoint": dir.display().to_string(),
        "root": head.root.to_string(),
        "served_by": host.served_by,
        "share": share.name.to_string(),
        "writable": true,
        "version": head.sequence,
    });
    Ok(Started {
        handle,
        json,
        note: Some(format!(
            "share {} version {}, writable: changes are committed after {} ms without writes, \
             on fsync and on `cairn share commit`",
            share.label, head.sequence, cfg.commit_quiet_ms
        )),
    })
}

/// The version a member of `share` writes on (its tip), if this node's key may write the share
/// under the newest member list here.
fn member_head(
    repo: &Repo,
    share: &cairn_store::Share,
    head: &cairn_store::Version,
) -> Option<cairn_store::Version> {
    let me = repo.identity_key();
    repo.shares().writer_key(&share.name, &me).ok()??;
    let tip = match repo.shares().own_tip(&share.name, &me) {
        Ok(t) => t?,
        Err(e) => {
            tracing::warn!(share = %share.name, error = %e, "cannot keep this member's tip; mounting read-only");
            return None;
        }
    };
    Some(cairn_store::Version {
        root: tip.root,
        ids: Some(tip.ids),
        commit: Some(*tip.block().cid()),
        ..head.clone()
    })
}

/// What a writable mount of `share` (at version `head`), or a commit of its staged changes,
/// needs.
pub fn share_spec(
    repo: &Arc<Repo>,
    mounts: &Arc<Mounts>,
    share: &cairn_store::Share,
    head: &cairn_store::Version,
) -> Result<cairn_fs::ShareMount> {
    let cfg = &repo.config().shares;
    Ok(cairn_fs::ShareMount {
        id: share.name.to_string(),
        label: share.label.clone(),
        stage: repo.shares().stage_dir(&share.name),
        head: head.root,
        head_size: head.size,
        sequence: head.sequence,
        ids: head.ids,
        store: Arc::new(RepoShare {
            repo: repo.clone(),
            name: share.name,
            mounts: Arc::downgrade(mounts),
        }),
        import: crate::cmd::share::import_options(repo)?,
        policy: CommitPolicy {
            quiet: Duration::from_millis(cfg.commit_quiet_ms.max(10)),
            max_interval: Duration::from_secs(cfg.commit_max_secs.max(1)),
        },
    })
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
        "share": null,
        "writable": false,
        "version": null,
    })
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
