//! The `cairn` command-line tool: parses arguments, then runs the command in this process on the
//! repo, or hands it to the daemon that owns the repo. Everything of substance lives in the library
//! crates; this binary only wires them.

mod api;
mod args;
mod client;
mod cmd;
mod daemon;
mod mount;
mod online;
mod output;
mod progress;
mod repo_path;
mod reprovide;

use std::io::ErrorKind;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::args::{Cli, Command};
use crate::output::Console;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| {
                // libp2p warns about routine things (e.g. bootstrapping with no peers yet).
                tracing_subscriber::EnvFilter::new("warn,libp2p_kad=error,libp2p_swarm=error")
            }),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-rt")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, argv));
    // Do not wait for stray blocking tasks (e.g. a stalled read) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                // `cairn cat x | head` is not an error.
                return ExitCode::SUCCESS;
            }
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, argv: Vec<String>) -> Result<()> {
    let repo_dir = repo_path::resolve(cli.repo.clone())?;
    let console = Console::local(cli.json, progress::terminal());
    let cwd = std::env::current_dir()?;
    match &cli.command {
        Command::Init => return cmd::init(&repo_dir, &console),
        Command::Add(args) if args.only_hash => return cmd::only_hash(&console, &cwd, args),
        _ => {}
    }
    if let Some(probe) = (!matches!(cli.command, Command::Daemon))
        .then(|| client::connect(&repo_dir))
        .flatten()
    {
        // A daemon owns the repo: it runs the command for us, on the connection that found it.
        // Stdin is saved first, so that no daemon connection waits while the user types or a
        // pipe fills (the daemon gives a request 10 s to arrive); then we connect again.
        let argv = spool_stdin_if_needed(&cli.command, argv, &repo_dir, probe)?;
        let result = match argv.stream.or_else(|| client::connect(&repo_dir)) {
            Some(stream) => {
                tokio::task::block_in_place(|| client::run(stream, argv.argv, progress::terminal()))
            }
            None => Err(anyhow::anyhow!(
                "the daemon of {} went away",
                repo_dir.display()
            )),
        };
        if let Some(tmp) = argv.spooled {
            let _ = std::fs::remove_file(tmp);
        }
        return result;
    }
    match cli.command {
        Command::Daemon => daemon::run(&repo_dir, &console).await,
        Command::Mount(args) => mount_foreground(&repo_dir, &console, &args, cli.timeout).await,
        Command::Unmount { dir } => mount::unmount_foreign(&cwd.join(dir)),
        Command::Id => {
            // Offline, like `ipfs id` without a daemon: the identity, no addresses.
            let repo = cmd::open(&repo_dir)?;
            let id = cairn_net::peer_id_from_seed(repo.identity_seed())?;
            let mut out = console.output();
            out.item(
                &serde_json::json!({ "id": id.to_string(), "addresses": [] }),
                || format!("peer id: {id}\n(no daemon running: no listen addresses)"),
            )?;
            out.finish()
        }
        Command::Swarm(_) | Command::Routing(_) | Command::Stat(_) | Command::Status { .. } => {
            // Without a daemon there is no network node (but a missing repo is said first).
            cmd::open(&repo_dir)?;
            anyhow::bail!("this command needs the network: start `cairn daemon` first")
        }
        Command::Repo(args::RepoCommand::Repair) => cmd::repair(&repo_dir, &console),
        command => {
            let repo = cmd::open(&repo_dir)?;
            let ctx = cmd::Ctx {
                repo: &repo,
                console: &console,
                cwd: &cwd,
            };
            cmd::run_offline(&ctx, command).await
        }
    }
}

/// The argv to send to the daemon, the file stdin was saved to, if any, and the connection to
/// send it on (none if it was closed while stdin was read).
struct Forwarded {
    argv: Vec<String>,
    spooled: Option<std::path::PathBuf>,
    stream: Option<std::os::unix::net::UnixStream>,
}

/// Commands that read stdin get it as a file when the daemon runs them.
fn spool_stdin_if_needed(
    command: &Command,
    mut argv: Vec<String>,
    repo_dir: &std::path::Path,
    stream: std::os::unix::net::UnixStream,
) -> Result<Forwarded> {
    use crate::args::{BlockCommand, DagCommand};
    // How much of stdin the command can use (a block is at most 2 MiB; one byte more is an error).
    let limit = match command {
        Command::Block(BlockCommand::Put { file: None, .. }) => (2 << 20) + 1,
        Command::Dag(DagCommand::Import { files, .. }) if files.is_empty() => u64::MAX,
        _ => {
            return Ok(Forwarded {
                argv,
                spooled: None,
                stream: Some(stream),
            })
        }
    };
    drop(stream);
    let path = client::spool_stdin(&repo_dir.join("tmp"), limit)?;
    argv.push(path.display().to_string());
    Ok(Forwarded {
        argv,
        spooled: Some(path),
        stream: None,
    })
}

/// `cairn mount` without a daemon: serves the mount from the local repo until Ctrl-C, SIGTERM,
/// or an external unmount.
async fn mount_foreground(
    repo_dir: &std::path::Path,
    console: &Console,
    args: &args::MountArgs,
    timeout: Option<u64>,
) -> Result<()> {
    let repo = cmd::open(repo_dir)?;
    let (root, dir) = mount::target(args)?;
    let dir = std::env::current_dir()?.join(dir);
    // /proc/mounts lists canonical paths.
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let source = cairn_store::LocalSource::new(repo.store().clone());
    let timeout = std::time::Duration::from_secs(timeout.unwrap_or(30));
    let handle = mount::start(
        source,
        root,
        &dir,
        args.allow_other,
        timeout,
        tokio::runtime::Handle::current(),
    )?;
    // Known while mounted: how to tell, after a lazy detach, when the kernel ends the session.
    let device = mount::device_of(&dir).filter(|d| mount::has_connection_info(d));
    let mut out = console.output();
    out.text(&format!(
        "mounted at {} from the local repo; Ctrl-C or `cairn unmount {}` to unmount",
        dir.display(),
        dir.display()
    ))?;
    out.finish()?;
    let by_signal = tokio::select! {
        _ = daemon::wait_for_signal() => true,
        _ = mount::wait_unmounted(&dir) => false,
    };
    if by_signal {
        // As `cairn unmount` does: unmount, or detach lazily while a file is open.
        match mount::unmount_outside(&dir) {
            Ok(true) => eprintln!(
                "{} is detached; serving the files still open on it until they are closed \
                 (Ctrl-C again to stop now)",
                dir.display()
            ),
            Ok(false) => {}
            // E.g. no fusermount3: the mount's own unmount below.
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
    if mount::is_mounted(&dir) {
        // Still mounted (e.g. fusermount3 is missing): the mount's own unmount.
        return handle
            .unmount()
            .with_context(|| format!("cannot unmount {}", dir.display()));
    }
    // Unmounted, or detached with files open: the session ends when the kernel drops the
    // connection, after the last open file is closed. Serve those files until then (a second
    // signal stops at once; without sysfs there is no telling, so stop now).
    if let Some(device) = device {
        tokio::select! {
            _ = mount::wait_connection_gone(&device) => {}
            _ = daemon::wait_for_signal() => {}
        }
    }
    // Not `handle.unmount()`: the mount point is no longer ours, and fuser would try to unmount
    // it again (it cannot tell a destroyed session from a live one), failing, or, if someone
    // has mounted something new there meanwhile, unmounting that. The session's threads have
    // ended with the connection; the process exits now.
    std::mem::forget(handle);
    Ok(())
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
    })
}
