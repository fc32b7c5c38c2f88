//! `cairn completions` and `cairn man`: shell completion scripts and man pages generated from
//! the clap definitions, so they always match `--help`.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::args::{Cli, Shell};
use crate::output::Console;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: Shell) -> Result<()> {
    let mut cmd = Cli::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into a buffer first: the generator panics on a write error (a closed pipe).
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cairn", &mut buf);
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, &buf)?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// Writes `cairn.1` and `cairn-<sub>[-<subsub>].1` into `dir`.
pub fn man_pages(dir: &Path, console: &Console) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(Cli::command(), "cairn", dir, &mut written)?;
    let mut out = console.output();
    out.ack(
        &serde_json::json!({ "directory": dir.display().to_string(), "pages": written }),
        || format!("wrote {} man pages to {}", written.len(), dir.display()),
    )?;
    out.finish()
}

fn write_pages(
    cmd: clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<String>,
) -> Result<()> {
    let cmd = cmd
        .display_name(name.to_string())
        .bin_name(name.replace("-", " "));
    let file = format!("{name}.1");
    let path = dir.join(&file);
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .with_context(|| format!("cannot render {file}"))?;
    std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(file);
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub.clone(), &sub_name, dir, written)?;
    }
    Ok(())
}
