//! Running one parsed command, either in this process (offline, owning the repo) or inside the
//! daemon on behalf of a client (see `api` and `daemon`).

mod add;
mod block;
mod dag;
pub mod name;
mod pin;
pub mod read;
mod repo;
pub mod share;

use std::path::{Path, PathBuf};

use anyhow::Result;
use cairn_store::{CidPath, Repo};

use crate::args::Command;
use crate::output::Console;

/// What a command runs with.
pub struct Ctx<'a> {
    /// The open repository.
    pub repo: &'a std::sync::Arc<Repo>,
    /// The user's terminal.
    pub console: &'a Console,
    /// The user's working directory.
    pub cwd: &'a Path,
    /// The mounts this process serves.
    pub mounts: &'a std::sync::Arc<crate::mounts::Mounts>,
}

impl Ctx<'_> {
    /// `p` resolved against the user's working directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        // `-` is stdout (or stdin) wherever a file is asked for, never a file named `-`.
        if p.is_absolute() || p == Path::new("-") {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        }
    }
}

/// Runs a command that needs an open repo (every command but `init`, `daemon` and `add --only-hash`).
pub async fn run_offline(ctx: &Ctx<'_>, command: Command) -> Result<()> {
    match command {
        Command::Init(_) => anyhow::bail!("the repo is already initialised"),
        Command::Config(_) => anyhow::bail!("config commands do not run through a daemon"),
        Command::Add(args) => add::run(ctx, &args).map(|_| ()),
        Command::Cat(mut args) => {
            args.path = name::expand(ctx, &args.path)?;
            read::cat(ctx, &args).await
        }
        Command::Get(mut args) => {
            args.path = name::expand(ctx, &args.path)?;
            read::get(ctx, &args).await
        }
        Command::Ls(mut args) => {
            args.path = name::expand(ctx, &args.path)?;
            read::ls(ctx, &args).await
        }
        Command::Pin(crate::args::PinCommand::Add { path, direct, name }) => {
            let path = name::expand(ctx, &path)?;
            pin::run(ctx, crate::args::PinCommand::Add { path, direct, name }).await
        }
        Command::Pin(c) => pin::run(ctx, c).await,
        Command::Name(c) => name::run(ctx, c).await,
        Command::Repo(c) => repo::run(ctx, c),
        Command::Block(c) => block::run(ctx, c),
        Command::Share(c) => share::run(ctx, c).await,
        Command::Dag(c) => dag::run(ctx, c),
        Command::Daemon(_)
        | Command::Id
        | Command::Swarm(_)
        | Command::Routing(_)
        | Command::Stat(_)
        | Command::Status { .. }
        | Command::Mount(_)
        | Command::Unmount { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => {
            crate::fail!(
                "needs_daemon",
                "this command needs the network: start `cairn daemon` first"
            )
        }
    }
}

pub use add::{only_hash, run as add_roots};
pub use pin::pin_json;
pub use repo::{init, repair};

/// Opens the repository for exclusive use by this process.
pub fn open(dir: &Path) -> Result<Repo> {
    Ok(Repo::open(dir)?)
}

/// Parses `<cid>[/path]` or `/ipfs/<cid>[/path]`.
pub fn parse_path(text: &str) -> Result<CidPath> {
    text.parse::<CidPath>().map_err(|e| match e {
        // Already names the text and says what a CID looks like.
        cairn_store::PathError::InvalidCid { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("bad content path {text:?}")),
    })
}

/// Parses a bare CID.
pub fn parse_cid(text: &str) -> Result<cairn_store::Cid> {
    cairn_store::Cid::try_from(text.trim()).map_err(|e| {
        crate::error::coded(
            "invalid_input",
            format!(
                "invalid CID {text:?}: {}; {}",
                cairn_store::cid_parse_reason(&e),
                cairn_store::CID_HINT
            ),
        )
    })
}
