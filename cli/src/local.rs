//! A process that owns a repo without a network node: a foreground `cairn mount`, or any other
//! command run with no daemon. While it holds the repo it serves the local API (see `server`),
//! so other `cairn` commands on the same repo run in it instead of failing on the repo lock; the
//! network commands say they need `cairn daemon`.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_fs::MountHandle;
use cairn_store::{Blockstore, LocalSource, Repo};
use tokio::sync::oneshot;

use crate::api::Request;
use crate::args::{Cli, Command, MountArgs};
use crate::cmd::{self, Ctx};
use crate::mounts::Mounts;
use crate::output::Console;
use crate::server::{self, Host, Serving};

/// What a repo-owning process without a network shares with the commands it serves.
pub struct Local {
    repo: Arc<Repo>,
    /// Mounts served by this process, by (canonical) mount point.
    mounts: Arc<Mounts>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
    /// What this process is, for messages ("`cairn mount` at /mnt", "`cairn add`").
    role: String,
    /// Whether it lives as long as a mount (a foreground `cairn mount`): only then does it take
    /// more mounts; a command that ends on its own would take them down with it.
    serves_mounts: bool,
}

/// A running owner: the API it serves, until [`Owner::finish`].
pub struct Owner {
    local: Arc<Local>,
    serving: Option<Serving>,
}

impl Owner {
    /// Serves the API of the repo at `dir` (which this process has open) for as long as it lives.
    /// Serving is a convenience: if the socket cannot be made (e.g. a read-only repo directory),
    /// the command still runs, and others wait for the lock as before.
    pub fn start(
        dir: &Path,
        repo: Arc<Repo>,
        timeout: Duration,
        role: String,
        serves_mounts: bool,
    ) -> Owner {
        let local = Arc::new(Local {
            repo,
            mounts: Arc::new(Mounts::default()),
            runtime: tokio::runtime::Handle::current(),
            timeout,
            role,
            serves_mounts,
        });
        let serving = match server::Listener::bind(dir) {
            Ok(listener) => Some(listener.serve(local.clone())),
            Err(e) => {
                tracing::debug!("not serving the local API: {e:#}");
                None
            }
        };
        Owner { local, serving }
    }

    /// The state commands share.
    pub fn local(&self) -> &Arc<Local> {
        &self.local
    }

    /// Stops accepting commands, waits (up to `grace`) for those still running for other
    /// clients, unmounts what they mounted, and flushes the store.
    pub async fn finish(mut self, grace: Duration) {
        if let Some(s) = self.serving.take() {
            s.close_and_wait(grace).await;
        }
        for (dir, handle) in self.local.mounts.drain() {
            if let Err(e) = handle.unmount() {
                eprintln!("cannot unmount {}: {e}", dir.display());
            }
        }
        if let Err(e) = self.local.repo.store().flush() {
            tracing::warn!("cannot flush the store: {e}");
        }
    }
}

impl Local {
    /// The repo.
    pub fn repo(&self) -> &Arc<Repo> {
        &self.repo
    }

    /// The mounts this process serves.
    pub fn mounts(&self) -> &Arc<Mounts> {
        &self.mounts
    }

    /// Adds a mount this process serves.
    pub fn add_mount(&self, dir: PathBuf, handle: MountHandle) -> Result<()> {
        self.mounts.insert(dir, handle);
        Ok(())
    }

    /// Takes a mount out of the table (to unmount or forget it).
    pub fn take_mount(&self, dir: &Path) -> Option<MountHandle> {
        self.mounts.take(dir)
    }

    async fn command(&self, ctx: &Ctx<'_>, command: Command) -> Result<()> {
        match command {
            Command::Mount(_) if !self.serves_mounts => crate::fail!(
                "repo_busy",
                "the repo is held by {} (pid {}), which ends soon and would take a mount with it: \
                 mount when it is done, or start `cairn daemon` (it serves mounts)",
                self.role,
                std::process::id()
            ),
            Command::Mount(args) => self.mount(ctx, &args),
            Command::Unmount { dir } => {
                let dir = canonical(&ctx.path(&dir));
                match self.take_mount(&dir) {
                    Some(h) => h
                        .unmount()
                        .with_context(|| format!("cannot unmount {}", dir.display()))?,
                    None => crate::mount::unmount_foreign(&dir)?,
                }
                crate::mount::say_unmounted(ctx.console, &dir)
            }
            Command::Id => {
                // As without a daemon: the identity, no addresses.
                let id = cairn_net::peer_id_from_seed(self.repo.identity_seed())?;
                let mut out = ctx.console.output();
                out.item(
                    &serde_json::json!({ "peer_id": id.to_string(), "addresses": [] }),
                    || format!("peer id: {id}\n(no daemon running: no listen addresses)"),
                )?;
                out.finish()
            }
            Command::Swarm(_) | Command::Routing(_) | Command::Stat(_) | Command::Status { .. } => {
                bail!(
                "this command needs the network, and the repo is held by {} (pid {}), which has \
                 none: stop it and start `cairn daemon` (it serves mounts too)",
                self.role,
                std::process::id()
            )
            }
            Command::Daemon(_) => crate::fail!(
                "repo_busy",
                "the repo is held by {} (pid {}): stop it before starting the daemon",
                self.role,
                std::process::id()
            ),
            Command::Repo(crate::args::RepoCommand::Repair) => bail!(
                "`cairn repo repair` needs the repo to itself, and {} (pid {}) holds it: stop it, \
                 then run the repair again",
                self.role,
                std::process::id()
            ),
            other => cmd::run_offline(ctx, other).await,
        }
    }

    fn mount(&self, ctx: &Ctx<'_>, args: &MountArgs) -> Result<()> {
        let (target, dir) = crate::mount::target(args, &self.repo)?;
        let dir = canonical(&ctx.path(&dir));
        let host = crate::mount::Host {
            repo: &self.repo,
            mounts: &self.mounts,
            timeout: self.timeout,
            runtime: self.runtime.clone(),
            served_by: "local",
            names: crate::mount::local_names(&self.repo),
        };
        let started = crate::mount::start_target(
            LocalSource::new(self.repo.store().clone()),
            target,
            &dir,
            args,
            &host,
        )?;
        self.add_mount(dir.clone(), started.handle)?;
        let mut out = ctx.console.output();
        out.ack(&started.json, || {
            let note = started.note.map(|n| format!(" ({n})")).unwrap_or_default();
            format!(
                "mounted at {}{note} from the local repo, served by {} (pid {}) until it ends; \
                     `cairn unmount {}` to remove",
                dir.display(),
                self.role,
                std::process::id(),
                dir.display()
            )
        })?;
        out.finish()
    }
}

impl Host for Local {
    fn run(
        self: Arc<Self>,
        stream: &UnixStream,
        request: &Request,
        cli: Cli,
        gone: oneshot::Receiver<()>,
    ) -> Result<()> {
        let console = Console::remote(cli.json, cli.quiet, request, stream.try_clone()?);
        let ctx = Ctx {
            repo: &self.repo,
            console: &console,
            cwd: &request.cwd,
            mounts: &self.mounts,
        };
        let work = async {
            self.command(&ctx, cli.command)
                .await
                .map_err(crate::error::offline)
        };
        crate::server::until_client_gone(&self.runtime, gone, work)
    }
}

/// The canonical spelling of a mount point (as /proc/mounts lists it).
pub fn canonical(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}
