//! `cairn daemon`: owns the repo, runs the libp2p node, serves FUSE mounts, and answers the local
//! API (see `api` for the protocol and its limits). Connections are tasks on the daemon's
//! runtime: one costs a descriptor and a little memory, never a thread, until a complete request
//! has a command slot; the command then runs on a blocking thread, so a slow fetch never stalls
//! other clients, and is cancelled when its client goes away (Ctrl-C).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_fs::MountHandle;
use cairn_net::{DhtMode, NetConfig, Node, ProvideStrategy};
use cairn_store::{Blockstore, Repo};
use clap::Parser;
use tokio::sync::{oneshot, Semaphore};

use crate::api::{self, Request};
use crate::args::Cli;
use crate::cmd::{self, Ctx};
use crate::output::Console;

/// What the daemon's command threads share.
pub struct Daemon {
    /// The repository this process owns.
    pub repo: Arc<Repo>,
    /// The network node.
    pub node: Node,
    /// Mounts served by this process, by mount point.
    pub mounts: Mutex<HashMap<PathBuf, MountHandle>>,
    /// The async runtime.
    pub runtime: tokio::runtime::Handle,
    /// Default network deadline.
    pub timeout: Duration,
    /// What to announce on the DHT.
    pub provide: ProvideStrategy,
}

/// Builds the node's settings from the repo config.
pub fn net_config(repo: &Repo) -> Result<NetConfig> {
    let c = &repo.config().network;
    let mut cfg = NetConfig {
        listen_addrs: c.listen.clone(),
        bootstrap: c.bootstrap.clone(),
        kad_protocol: c.kad_protocol.clone(),
        mdns: c.mdns,
        ..NetConfig::default()
    };
    cfg.dht_mode = match c.dht_mode.as_str() {
        "auto" => DhtMode::Auto,
        "client" => DhtMode::Client,
        "server" => DhtMode::Server,
        other => {
            bail!("bad network.dht_mode {other:?} in the repo config (auto, client or server)")
        }
    };
    cfg.provide_strategy = match c.provide_strategy.as_str() {
        "all" => ProvideStrategy::All,
        "pinned" => ProvideStrategy::Pinned,
        "roots" => ProvideStrategy::Roots,
        other => bail!(
            "bad network.provide_strategy {other:?} in the repo config (all, pinned or roots)"
        ),
    };
    cfg.reprovide_interval =
        (c.reprovide_interval_secs > 0).then(|| Duration::from_secs(c.reprovide_interval_secs));
    cfg.fetch_timeout = Duration::from_secs(c.fetch_timeout_secs.clamp(1, 86_400));
    Ok(cfg)
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(repo_dir: &Path, console: &Console) -> Result<()> {
    let repo = Arc::new(cmd::open(repo_dir)?);
    let mut cfg = net_config(&repo)?;
    let timeout = cfg.fetch_timeout;
    let provide = cfg.provide_strategy;
    // The reprovider below announces (and re-announces) what the strategy selects; the node's
    // own reprovide of every record it ever announced would disagree with it.
    let reprovide_every = cfg.reprovide_interval.take();
    let has_bootstrap = !cfg.bootstrap.is_empty();
    let store: Arc<dyn Blockstore> = repo.store().clone();
    let node = match Node::start(cfg, *repo.identity_seed(), store).await {
        Ok(node) => node,
        Err(e @ cairn_net::NetError::AddrInUse { .. }) => bail!(
            "cannot start the network node: {e}; stop that process, or listen elsewhere (network.listen in the repo config)"
        ),
        Err(e) => return Err(e).context("cannot start the network node"),
    };
    let socket = api::socket_path(repo_dir);
    // A private directory first: the socket never exists with looser permissions than 0700 allows.
    let socket_dir = repo_dir.join(api::SOCKET_DIR);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&socket_dir)
        .with_context(|| format!("cannot create {}", socket_dir.display()))?;
    std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", socket_dir.display()))?;
    // We hold the repo lock, so any socket file left here is from a daemon that died.
    let _ = std::fs::remove_file(&socket);
    // Leftovers of stdin spooled for commands of a daemon that died.
    let _ = std::fs::remove_dir_all(repo_dir.join("tmp"));
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", socket.display()))?;
    listener
        .set_nonblocking(true)
        .context("cannot set up the API socket")?;
    let listener =
        tokio::net::UnixListener::from_std(listener).context("cannot set up the API socket")?;

    let daemon = Arc::new(Daemon {
        repo: repo.clone(),
        node: node.clone(),
        mounts: Mutex::new(HashMap::new()),
        runtime: tokio::runtime::Handle::current(),
        timeout,
        provide,
    });
    let mut out = console.output();
    out.text(&format!("peer id: {}", node.peer_id()))?;
    for addr in node.listen_addrs().await.unwrap_or_default() {
        out.text(&format!(
            "listening on {}",
            crate::online::with_peer_id(&addr, node.peer_id())
        ))?;
    }
    out.text(&format!("API on {}", socket.display()))?;
    out.text("daemon is ready")?;
    out.finish()?;

    let server = Arc::new(Api {
        daemon: daemon.clone(),
        slots: Arc::new(Semaphore::new(api::MAX_COMMANDS)),
        conns: Mutex::new(Conns::default()),
        max_connections: connection_limit(),
    });
    let accept = tokio::spawn(accept_loop(listener, server));

    let auto_gc = tokio::spawn(auto_gc(repo.clone()));
    let reprovider = tokio::spawn(crate::reprovide::run(
        repo.clone(),
        node.clone(),
        provide,
        reprovide_every,
        has_bootstrap,
    ));

    wait_for_signal().await;
    accept.abort();
    auto_gc.abort();
    reprovider.abort();
    tracing::info!("shutting down");
    let mounts: Vec<_> = match daemon.mounts.lock() {
        Ok(mut m) => m.drain().collect(),
        Err(_) => Vec::new(),
    };
    for (dir, handle) in mounts {
        if let Err(e) = handle.unmount() {
            eprintln!("cannot unmount {}: {e}", dir.display());
        }
    }
    let _ = std::fs::remove_file(&socket);
    let _ = node.shutdown().await;
    repo.store().flush()?;
    Ok(())
}

/// GC by itself while the daemon runs, as `[gc]` in the config asks: every `period_secs`, or
/// once a minute when only `storage_max_bytes` is set; with a size limit, only when the store has
/// grown past it.
async fn auto_gc(repo: Arc<Repo>) {
    let cfg = repo.config().gc.clone();
    let every = match (cfg.period_secs, cfg.storage_max_bytes) {
        (0, 0) => return,
        (0, _) => Duration::from_secs(60),
        (secs, _) => Duration::from_secs(secs),
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if cfg.storage_max_bytes > 0 {
            match repo.store().stats() {
                Ok(s) if s.bytes <= cfg.storage_max_bytes => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("automatic GC: cannot read store size: {e}");
                    continue;
                }
            }
        }
        let r = repo.clone();
        match tokio::task::spawn_blocking(move || r.gc()).await {
            Ok(Ok(report)) => tracing::info!(
                "automatic GC removed {} blocks ({} bytes)",
                report.removed_blocks,
                report.removed_bytes
            ),
            Ok(Err(e)) => tracing::warn!("automatic GC failed: {e}"),
            Err(e) => tracing::warn!("automatic GC task failed: {e}"),
        }
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The local API server: open connections, command slots and the limits of [`api`].
struct Api {
    daemon: Arc<Daemon>,
    /// One permit per command that may run ([`api::MAX_COMMANDS`]); tokio's semaphore is fair,
    /// so waiting requests get slots in arrival order.
    slots: Arc<Semaphore>,
    conns: Mutex<Conns>,
    /// Connections open at once: [`api::MAX_CONNECTIONS`], or fewer (see [`connection_limit`]).
    max_connections: usize,
}

/// The open connections, as counted against [`Api::max_connections`].
#[derive(Default)]
struct Conns {
    open: usize,
    next_id: u64,
    /// Connections still reading their request, oldest first, each with the way to close it.
    pending: BTreeMap<u64, oneshot::Sender<()>>,
}

/// A connection's place among the open ones; given back when dropped.
struct Ticket {
    api: Arc<Api>,
    id: u64,
    /// Its request arrived: it no longer waits in [`Conns::pending`].
    promoted: bool,
}

impl Api {
    fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection. At the bound, the oldest connection that has not sent its
    /// request yet is closed to make room (an idle flood cannot lock real clients out); when
    /// every open connection has a command running or queued, the new one is refused (`None`).
    fn admit(self: &Arc<Self>) -> Option<(Ticket, oneshot::Receiver<()>)> {
        let mut c = self.conns();
        if c.open >= self.max_connections {
            let oldest = c.pending.keys().next().copied()?;
            if let Some(evict) = c.pending.remove(&oldest) {
                let _ = evict.send(());
            }
            c.open -= 1;
        }
        c.open += 1;
        let id = c.next_id;
        c.next_id += 1;
        let (tx, rx) = oneshot::channel();
        c.pending.insert(id, tx);
        Some((
            Ticket {
                api: self.clone(),
                id,
                promoted: false,
            },
            rx,
        ))
    }
}

impl Ticket {
    /// The request arrived: the connection is no longer one to close at the bound. False if it
    /// was closed to make room meanwhile.
    fn promote(&mut self) -> bool {
        self.promoted = self.api.conns().pending.remove(&self.id).is_some();
        self.promoted
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.api.conns();
        // An evicted connection was already uncounted when it was evicted.
        if self.promoted || c.pending.remove(&self.id).is_some() {
            c.open -= 1;
        }
    }
}

/// How many API connections may be open: [`api::MAX_CONNECTIONS`], but at most half the
/// process's descriptor limit (the node, the store and mounts need the rest).
fn connection_limit() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line.trim_start_matches("Max open files")
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        });
    match soft {
        Some(n) => api::MAX_CONNECTIONS.min(n / 2).max(16),
        None => api::MAX_CONNECTIONS,
    }
}

/// Accepts API connections on the runtime: a connection is a task, not a thread, until its
/// command runs.
async fn accept_loop(listener: tokio::net::UnixListener, api: Arc<Api>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match api.admit() {
                Some((ticket, evicted)) => {
                    tokio::spawn(serve_connection(api.clone(), stream, ticket, evicted));
                }
                None => reply_now(
                    &stream,
                    api::tag::ERROR,
                    &format!(
                        "the daemon is busy ({} API connections open, all with commands \
                         running or waiting); try again",
                        api.max_connections
                    ),
                ),
            },
            Err(e) => {
                // E.g. out of descriptors: back off rather than spin on a listener that stays
                // readable.
                tracing::warn!("cannot accept an API connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Sends a short frame without waiting: a fresh connection's send buffer has room for it, and
/// a client that is gone or not reading must not hold up the daemon.
fn reply_now(stream: &tokio::net::UnixStream, tag: u8, message: &str) {
    let _ = stream.try_write(&api::frame_bytes(tag, message.as_bytes()));
}

/// One connection: its request (within [`api::REQUEST_DEADLINE`] in total), a slot (waiting at
/// most [`api::SLOT_WAIT`]), then the command on a blocking thread until it ends.
async fn serve_connection(
    api: Arc<Api>,
    mut stream: tokio::net::UnixStream,
    mut ticket: Ticket,
    evicted: oneshot::Receiver<()>,
) {
    let evicted_message = format!(
        "the daemon closed this connection: {} API connections are open and this one had not \
         sent its request",
        api.max_connections
    );
    let read = tokio::time::timeout(api::REQUEST_DEADLINE, api::read_request(&mut stream));
    let frame = tokio::select! {
        r = read => r,
        _ = evicted => {
            reply_now(&stream, api::tag::ERROR, &evicted_message);
            return;
        }
    };
    let (tag, payload) = match frame {
        // Connected and closed: the client's probe.
        Ok(Ok(None)) => return,
        Ok(Ok(Some(frame))) => frame,
        Ok(Err(e)) => {
            reply_now(&stream, api::tag::ERROR, &format!("bad request: {e}"));
            return;
        }
        Err(_) => {
            let secs = api::REQUEST_DEADLINE.as_secs();
            let message = format!("no complete request within {secs} s; connection closed");
            reply_now(&stream, api::tag::ERROR, &message);
            return;
        }
    };
    if !ticket.promote() {
        reply_now(&stream, api::tag::ERROR, &evicted_message);
        return;
    }
    let (request, cli) = match parse_request(tag, &payload) {
        Ok(parsed) => parsed,
        Err(e) => {
            reply_now(&stream, api::tag::ERROR, &format!("{e:#}"));
            return;
        }
    };
    // Queue (fairly) for a slot, unless the client leaves first.
    let waited = tokio::select! {
        slot = tokio::time::timeout(api::SLOT_WAIT, api.slots.clone().acquire_owned()) => slot,
        () = left_while_queued(&stream) => return,
    };
    let Ok(Ok(slot)) = waited else {
        let message = format!(
            "the daemon is busy ({} commands running); try again",
            api::MAX_COMMANDS
        );
        reply_now(&stream, api::tag::ERROR, &message);
        return;
    };
    // The command's writers block (on its own thread); the client's leaving is watched here.
    let (stream, watch) = match command_stream(stream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!("cannot set up an API connection: {e}");
            return;
        }
    };
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let daemon = api.daemon.clone();
    let job = tokio::task::spawn_blocking(move || {
        // Held until the command ends (however it ends), not until the client closes.
        let _slot = slot;
        run_command(stream, &request, cli, &daemon, gone_rx);
    });
    // Ends with the command at the latest: `run_command` shuts the connection down.
    let left = tokio::task::spawn_blocking(move || wait_client_left(watch));
    tokio::pin!(job);
    tokio::select! {
        _ = &mut job => {}
        _ = left => {
            let _ = gone_tx.send(());
            let _ = job.await;
        }
    }
    drop(ticket);
}

fn parse_request(tag: u8, payload: &[u8]) -> Result<(Request, Cli)> {
    if tag != api::tag::REQUEST {
        bail!("expected a request frame");
    }
    let request: Request = serde_json::from_slice(payload).context("malformed request")?;
    let cli = Cli::try_parse_from(&request.argv).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((request, cli))
}

/// Resolves when a client whose request is queued closes its connection (it sends nothing
/// else, so anything readable means it left or broke the protocol).
async fn left_while_queued(stream: &tokio::net::UnixStream) {
    let mut byte = [0u8; 1];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            _ => return,
        }
    }
}

/// The connection in blocking mode for the command, and a second descriptor of it to watch.
fn command_stream(stream: tokio::net::UnixStream) -> std::io::Result<(UnixStream, UnixStream)> {
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    let watch = stream.try_clone()?;
    Ok((stream, watch))
}

/// Waits (on a blocking thread) until the client of a running command goes away: it sends
/// nothing after its request, so a read ends only at its end of stream, or at the daemon's own
/// shutdown of the connection when the command has ended.
fn wait_client_left(mut watch: UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        match watch.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Runs one client's command (on a blocking thread) and reports how it ended; the client sees
/// the end of the connection right after the final frame.
fn run_command(
    mut stream: UnixStream,
    request: &Request,
    cli: Cli,
    daemon: &Arc<Daemon>,
    gone: oneshot::Receiver<()>,
) {
    let result = run_command_inner(&stream, request, cli, daemon, gone);
    let (tag, msg) = match result {
        Ok(()) => (api::tag::DONE, String::new()),
        Err(e) => (api::tag::ERROR, format!("{e:#}")),
    };
    let _ = api::write_frame(&mut stream, tag, msg.as_bytes());
    // Background work may still hold a clone of the connection (e.g. a progress bar): close it
    // for the client now.
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn run_command_inner(
    stream: &UnixStream,
    request: &Request,
    cli: Cli,
    daemon: &Arc<Daemon>,
    gone: oneshot::Receiver<()>,
) -> Result<()> {
    let console = Console::remote(cli.json, request.progress, stream.try_clone()?);
    let timeout = cli
        .timeout
        .map(Duration::from_secs)
        .unwrap_or(daemon.timeout);
    let ctx = Ctx {
        repo: &daemon.repo,
        console: &console,
        cwd: &request.cwd,
    };
    let online = crate::online::Online {
        daemon: daemon.clone(),
        timeout,
    };
    // Dropping the command's future (the client went away, e.g. Ctrl-C) cancels its network
    // wants.
    daemon.runtime.block_on(async {
        tokio::select! {
            r = crate::online::run(&ctx, &online, cli.command) => r,
            _ = gone => bail!("the client went away"),
        }
    })
}
