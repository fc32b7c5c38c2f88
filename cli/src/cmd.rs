//! Dispatch of the parsed command line to one command module.

mod add;
mod block;
mod dag;
mod pin;
mod read;
mod repo;

use anyhow::{Context, Result};
use cairn_store::{CidPath, Repo};

use crate::args::{Cli, Command};
use crate::repo_path;

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> Result<()> {
    let repo_dir = repo_path::resolve(cli.repo)?;
    let json = cli.json;
    match cli.command {
        Command::Init => repo::init(&repo_dir, json),
        Command::Add(args) => {
            if args.only_hash {
                add::run(None, &args, json)
            } else {
                add::run(Some(&open(&repo_dir)?), &args, json)
            }
        }
        Command::Cat(args) => read::cat(&open(&repo_dir)?, &args).await,
        Command::Get(args) => read::get(&open(&repo_dir)?, &args).await,
        Command::Ls(args) => read::ls(&open(&repo_dir)?, &args, json).await,
        Command::Pin(c) => pin::run(&open(&repo_dir)?, c, json).await,
        Command::Repo(c) => repo::run(&open(&repo_dir)?, c, json),
        Command::Block(c) => block::run(&open(&repo_dir)?, c, json),
        Command::Dag(c) => dag::run(&open(&repo_dir)?, c, json),
    }
}

/// Opens the repository for exclusive use by this process.
fn open(dir: &std::path::Path) -> Result<Repo> {
    Ok(Repo::open(dir)?)
}

/// Parses `<cid>[/path]` or `/ipfs/<cid>[/path]`.
fn parse_path(text: &str) -> Result<CidPath> {
    text.parse::<CidPath>()
        .with_context(|| format!("bad content path {text:?}"))
}

/// Parses a bare CID.
fn parse_cid(text: &str) -> Result<cairn_store::Cid> {
    cairn_store::Cid::try_from(text.trim())
        .map_err(|e| anyhow::anyhow!("invalid CID {text:?}: {e}"))
}
