//! `cairn daemon`: owns the repo, runs the libp2p node, serves FUSE mounts, and answers the local
//! API (see `api`). Each API connection runs one command on its own thread, so a slow fetch never
//! stalls other clients; the command is cancelled when its client goes away (Ctrl-C).

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_fs::MountHandle;
use cairn_net::{DhtMode, NetConfig, Node, ProvideStrategy};
use cairn_store::{Blockstore, Repo};
use clap::Parser;

use crate::api::{self, Request};
use crate::args::Cli;
use crate::cmd::{self, Ctx};
use crate::output::Console;

/// Most API commands running at once.
const MAX_CONNECTIONS: usize = 64;

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
    let cfg = net_config(&repo)?;
    let timeout = cfg.fetch_timeout;
    let provide = cfg.provide_strategy;
    let store: Arc<dyn Blockstore> = repo.store().clone();
    let node = Node::start(cfg, *repo.identity_seed(), store)
        .await
        .context("cannot start the network node")?;
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

    let accept_daemon = daemon.clone();
    std::thread::Builder::new()
        .name("cairn-api".into())
        .spawn(move || accept_loop(listener, accept_daemon))
        .context("cannot start the API thread")?;

    let auto_gc = tokio::spawn(auto_gc(repo.clone()));

    wait_for_signal().await;
    auto_gc.abort();
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

fn accept_loop(listener: UnixListener, daemon: Arc<Daemon>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = api::write_frame(
                &mut stream,
                api::tag::ERROR,
                b"the daemon is busy: too many commands running",
            );
            continue;
        }
        let daemon = daemon.clone();
        let active = active.clone();
        let spawned = std::thread::Builder::new()
            .name("cairn-api-conn".into())
            .spawn(move || {
                // Give the slot back however the command ends (even by a panic).
                let _slot = Slot(active);
                serve(stream, &daemon);
            });
        if spawned.is_err() {
            tracing::warn!("cannot start a thread for an API connection");
        }
    }
}

/// One of the [`MAX_CONNECTIONS`] command slots, released on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one client's command and reports how it ended.
fn serve(mut stream: UnixStream, daemon: &Arc<Daemon>) {
    let result = serve_inner(&mut stream, daemon);
    let (tag, msg) = match result {
        Ok(()) => (api::tag::DONE, String::new()),
        Err(e) => (api::tag::ERROR, format!("{e:#}")),
    };
    let _ = api::write_frame(&mut stream, tag, msg.as_bytes());
}

fn serve_inner(stream: &mut UnixStream, daemon: &Arc<Daemon>) -> Result<()> {
    // A client gets a few seconds to send its request; an idle connection cannot hold a slot.
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let Some((tag, payload)) = api::read_frame(stream)? else {
        bail!("empty request");
    };
    stream.set_read_timeout(None)?;
    if tag != api::tag::REQUEST {
        bail!("expected a request frame");
    }
    let request: Request = serde_json::from_slice(&payload).context("malformed request")?;
    let cli = Cli::try_parse_from(&request.argv).map_err(|e| anyhow::anyhow!("{e}"))?;
    let console = Console::remote(cli.json, request.progress, stream.try_clone()?);
    let timeout = cli
        .timeout
        .map(Duration::from_secs)
        .unwrap_or(daemon.timeout);

    // Cancel the command when the client hangs up (e.g. Ctrl-C): a thread waits for EOF.
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel::<()>();
    let mut watch = stream.try_clone()?;
    std::thread::Builder::new()
        .name("cairn-api-watch".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            while matches!(watch.read(&mut buf), Ok(n) if n > 0) {}
            let _ = gone_tx.send(());
        })?;

    let ctx = Ctx {
        repo: &daemon.repo,
        console: &console,
        cwd: &request.cwd,
    };
    let online = crate::online::Online {
        daemon: daemon.clone(),
        timeout,
    };
    daemon.runtime.block_on(async {
        tokio::select! {
            r = crate::online::run(&ctx, &online, cli.command) => r,
            _ = gone_rx => bail!("the client went away"),
        }
    })
}
