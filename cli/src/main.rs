//! The `cairn` command-line tool: parses arguments, then runs the command in this process on the
//! repo, or hands it to the daemon that owns the repo. Everything of substance lives in the library
//! crates; this binary only wires them.

mod api;
mod args;
mod client;
mod cmd;
mod config;
mod daemon;
mod docs;
mod error;
mod gateway;
mod heads;
mod local;
mod mount;
mod mounts;
mod online;
mod output;
mod progress;
mod records;
mod repo_path;
mod reprovide;
mod server;

use std::io::ErrorKind;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use crate::args::{Cli, Command};
use crate::output::Console;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, &argv),
    };
    let json = cli.json;
    let given_repo = cli.repo.clone();
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
            error::report(&error::with_repo_hint(err, given_repo.as_deref()), json);
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, argv: Vec<String>) -> Result<()> {
    let repo_dir = repo_path::resolve(cli.repo.clone())?;
    let console = Console::local(cli.json, cli.quiet, progress::terminal());
    let cwd = std::env::current_dir()?;
    match &cli.command {
        Command::Init(args) => return cmd::init(&repo_dir, &console, args.profile),
        // The config file is read and written without the repo lock (atomically), so it works
        // the same whether or not a process owns the repo.
        Command::Config(c) => {
            let owned = client::connect(&repo_dir).is_some();
            return config::run(&repo_dir, &console, c.clone(), owned);
        }
        Command::Add(args) if args.only_hash => return cmd::only_hash(&console, &cwd, args),
        Command::Completions { shell } => return docs::completions(*shell),
        Command::Man { output } => return docs::man_pages(&cwd.join(output), &console),
        _ => {}
    }
    if let Command::Daemon(args) = &cli.command {
        return daemon::run(&repo_dir, &console, args).await;
    }
    if let Command::Repo(args::RepoCommand::Repair) = &cli.command {
        // Repair opens the repo its own way (the normal open refuses an index it cannot trust);
        // a process that owns the repo says why it cannot run.
        return match client::connect(&repo_dir) {
            Some(stream) => forward(&cli.command, argv, &repo_dir, stream),
            None => cmd::repair(&repo_dir, &console),
        };
    }
    let repo: Arc<cairn_store::Repo> = match open_or_forward(&repo_dir).await? {
        Opened::Forward(stream) => return forward(&cli.command, argv, &repo_dir, stream),
        Opened::Repo(repo) => Arc::from(repo),
    };
    let timeout = Duration::from_secs(
        cli.timeout
            .unwrap_or(repo.config().network.fetch_timeout_secs),
    );
    // While this process holds the repo, other commands on it run here (see `local`).
    let role = match &cli.command {
        Command::Mount(_) => "a foreground `cairn mount`".to_string(),
        other => format!("`cairn {}`", command_name(other)),
    };
    let is_mount = matches!(cli.command, Command::Mount(_));
    let owner = local::Owner::start(&repo_dir, repo.clone(), timeout, role, is_mount);
    let result = match cli.command {
        Command::Mount(args) => mount_foreground(&owner, &console, &args, timeout).await,
        Command::Unmount { dir } => {
            let dir = local::canonical(&cwd.join(dir));
            let done = match owner.local().take_mount(&dir) {
                Some(h) => h
                    .unmount()
                    .with_context(|| format!("cannot unmount {}", dir.display())),
                None => mount::unmount_foreign(&dir),
            };
            done.and_then(|()| mount::say_unmounted(&console, &dir))
        }
        Command::Id => {
            // Offline, like `ipfs id` without a daemon: the identity, no addresses.
            let id = cairn_net::peer_id_from_seed(repo.identity_seed())?;
            let mut out = console.output();
            out.item(
                &serde_json::json!({ "peer_id": id.to_string(), "addresses": [] }),
                || format!("peer id: {id}\n(no daemon running: no listen addresses)"),
            )
            .and_then(|()| out.finish())
        }
        Command::Swarm(_) | Command::Routing(_) | Command::Stat(_) | Command::Status { .. } => {
            Err(error::coded(
                "needs_daemon",
                "this command needs the network: start `cairn daemon` first",
            ))
        }
        command => {
            let ctx = cmd::Ctx {
                repo: &repo,
                console: &console,
                cwd: &cwd,
                mounts: owner.local().mounts(),
            };
            cmd::run_offline(&ctx, command).await
        }
    };
    owner.finish(OWNER_GRACE).await;
    result.map_err(error::offline)
}

/// How long a process that owns the repo waits, at its end, for commands it runs for others.
const OWNER_GRACE: Duration = Duration::from_secs(600);

/// How long a command waits for a repo held by a process that does not (yet, or any more) serve
/// its API: one starting up, or finishing.
const OWNER_WAIT: Duration = Duration::from_secs(5);

enum Opened {
    /// Another process owns the repo and serves its API: the command runs there.
    Forward(std::os::unix::net::UnixStream),
    /// This process now owns the repo.
    Repo(Box<cairn_store::Repo>),
}

/// Connects to the process that owns the repo, or opens the repo if none does.
async fn open_or_forward(repo_dir: &std::path::Path) -> Result<Opened> {
    let started = std::time::Instant::now();
    loop {
        if let Some(stream) = client::connect(repo_dir) {
            return Ok(Opened::Forward(stream));
        }
        match cairn_store::Repo::open(repo_dir) {
            Ok(repo) => return Ok(Opened::Repo(Box::new(repo))),
            Err(cairn_store::RepoError::InUse { .. }) if started.elapsed() < OWNER_WAIT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs the command in the process behind `probe` (the connection that found it).
fn forward(
    command: &Command,
    argv: Vec<String>,
    repo_dir: &std::path::Path,
    probe: std::os::unix::net::UnixStream,
) -> Result<()> {
    // Stdin is saved first, so that no daemon connection waits while the user types or a pipe
    // fills (the daemon gives a request 10 s to arrive); then we connect again.
    let argv = spool_stdin_if_needed(command, argv, repo_dir, probe)?;
    let result = match argv.stream.or_else(|| client::connect(repo_dir)) {
        Some(stream) => {
            tokio::task::block_in_place(|| client::run(stream, argv.argv, progress::terminal()))
        }
        None => Err(anyhow::anyhow!(
            "the cairn process serving {} went away",
            repo_dir.display()
        )),
    };
    if let Some(tmp) = argv.spooled {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// The subcommand's name, for messages.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Init(_) => "init",
        Command::Config(_) => "config",
        Command::Add(_) => "add",
        Command::Cat(_) => "cat",
        Command::Get(_) => "get",
        Command::Ls(_) => "ls",
        Command::Pin(_) => "pin",
        Command::Repo(_) => "repo",
        Command::Block(_) => "block",
        Command::Share(_) => "share",
        Command::Name(_) => "name",
        Command::Dag(_) => "dag",
        Command::Daemon(_) => "daemon",
        Command::Id => "id",
        Command::Swarm(_) => "swarm",
        Command::Routing(_) => "routing",
        Command::Stat(_) => "stat",
        Command::Status { .. } => "status",
        Command::Mount(_) => "mount",
        Command::Unmount { .. } => "unmount",
        Command::Completions { .. } => "completions",
        Command::Man { .. } => "man",
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
/// `cairn unmount` (which this process runs, see `local`) or an external unmount.
async fn mount_foreground(
    owner: &local::Owner,
    console: &Console,
    args: &args::MountArgs,
    timeout: Duration,
) -> Result<()> {
    let (target, dir) = mount::target(args, owner.local().repo())?;
    let dir = local::canonical(&std::env::current_dir()?.join(dir));
    let source = cairn_store::LocalSource::new(owner.local().repo().store().clone());
    let host = mount::Host {
        repo: owner.local().repo(),
        mounts: owner.local().mounts(),
        timeout,
        runtime: tokio::runtime::Handle::current(),
        served_by: "local",
        names: mount::local_names(owner.local().repo()),
    };
    let started = mount::start_target(source, target, &dir, args, &host)?;
    // Known while mounted: how to tell, after a lazy detach, when the kernel ends the session.
    let device = mount::device_of(&dir).filter(|d| mount::has_connection_info(d));
    owner.local().add_mount(dir.clone(), started.handle)?;
    let mut out = console.output();
    out.ack(&started.json, || {
        let note = started.note.map(|n| format!(" ({n})")).unwrap_or_default();
        format!(
            "mounted at {}{note} from the local repo; Ctrl-C or `cairn unmount {}` to unmount \
                 (other cairn commands on this repo run in this process meanwhile)",
            dir.display(),
            dir.display()
        )
    })?;
    out.finish()?;
    let by_signal = tokio::select! {
        _ = daemon::wait_for_signal() => true,
        _ = mount::wait_unmounted(&dir) => false,
    };
    // Gone from the table if `cairn unmount` unmounted it (through this process).
    let handle = owner.local().take_mount(&dir);
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
        if let Some(handle) = handle {
            return handle
                .unmount()
                .with_context(|| format!("cannot unmount {}", dir.display()));
        }
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
    if let Some(handle) = handle {
        std::mem::forget(handle);
    }
    Ok(())
}

/// A command line clap refused: its own report (help and version go to stdout, exit 0), or
/// under `--json` a JSON error with code `usage` (exit 2).
fn usage_error(e: clap::Error, argv: &[String]) -> ExitCode {
    use clap::error::ErrorKind as K;
    let informational = matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if informational || !argv.iter().skip(1).any(|a| a == "--json") {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    // clap's message, without its "error: " prefix and usage block: the first line.
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line")
        .trim_start_matches("error: ");
    let line = serde_json::json!({ "error": { "code": "usage", "message": first } });
    eprintln!("{line}");
    ExitCode::from(2)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
    })
}
