//! Where the repository lives: `--repo`, else `$CAIRN_REPO` (both via clap), else `~/.cairn`.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The repository directory to use.
pub fn resolve(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".cairn")),
        _ => bail!("cannot find the repository: set --repo PATH or $CAIRN_REPO (HOME is not set)"),
    }
}
