//! `cairn daemon`: owns the repo, runs the libp2p node, serves FUSE mounts, and answers the local
//! API (`server`; see `api` for the protocol and its limits).

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_net::{DhtMode, NetConfig, Node, ProvideStrategy};
use cairn_store::{Blockstore, Repo};
use tokio::sync::oneshot;

use crate::api::Request;
use crate::args::Cli;
use crate::cmd::{self, Ctx};
use crate::output::Console;
use crate::server;

/// What the daemon's command threads share.
pub struct Daemon {
    /// The repository this process owns.
    pub repo: Arc<Repo>,
    /// The network node.
    pub node: Node,
    /// Mounts served by this process, by mount point.
    pub mounts: Arc<crate::mounts::Mounts>,
    /// How current each followed share is.
    pub live: Arc<crate::records::Liveness>,
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
pub async fn run(repo_dir: &Path, console: &Console, args: &crate::args::DaemonArgs) -> Result<()> {
    let repo = Arc::new(cmd::open(repo_dir)?);
    crate::config::validate(repo.config())?;
    let mut cfg = net_config(&repo)?;
    if !args.listen.is_empty() {
        for addr in &args.listen {
            addr.parse::<cairn_net::Multiaddr>().map_err(|e| {
                anyhow::anyhow!("invalid --listen {addr:?}: {e} (e.g. /ip4/127.0.0.1/tcp/4001)")
            })?;
        }
        cfg.listen_addrs = args.listen.clone();
    }
    let timeout = cfg.fetch_timeout;
    let provide = cfg.provide_strategy;
    // The reprovider below announces (and re-announces) what the strategy selects; the node's
    // own reprovide of every record it ever announced would disagree with it.
    let reprovide_every = cfg.reprovide_interval.take();
    let has_bootstrap = !cfg.bootstrap.is_empty();
    let store: Arc<dyn Blockstore> = repo.store().clone();
    let node = match Node::start(cfg, *repo.identity_seed(), store).await {
        Ok(node) => node,
        Err(e @ cairn_net::NetError::AddrInUse { .. }) => crate::fail!(
            "repo_busy",
            "cannot start the network node: {e}; stop that process, or listen elsewhere \
             (`cairn daemon --listen ADDR`, or `cairn config set network.listen ADDR...`)"
        ),
        Err(e) => return Err(e).context("cannot start the network node"),
    };
    let gateway_at = args
        .gateway
        .clone()
        .unwrap_or_else(|| repo.config().gateway.listen.clone());
    crate::config::check_gateway_listen(&gateway_at).map_err(|e| {
        crate::error::coded("invalid_input", format!("invalid gateway address: {e}"))
    })?;
    let listener = server::Listener::bind(repo_dir)?;

    let daemon = Arc::new(Daemon {
        repo: repo.clone(),
        node: node.clone(),
        mounts: Arc::new(crate::mounts::Mounts::default()),
        live: Arc::new(crate::records::Liveness::default()),
        runtime: tokio::runtime::Handle::current(),
        timeout,
        provide,
    });
    let gateway = if gateway_at == "off" {
        None
    } else {
        Some(crate::gateway::start(daemon.clone(), &gateway_at).await?)
    };
    let gateway_addr = gateway.as_ref().map(|g| g.addr.to_string());
    let mut out = console.output();
    let addrs: Vec<String> = node
        .listen_addrs()
        .await
        .unwrap_or_default()
        .iter()
        .map(|a| crate::online::with_peer_id(a, node.peer_id()))
        .collect();
    let api_path = listener.path().display().to_string();
    out.ack(
        &serde_json::json!({
            "peer_id": node.peer_id().to_string(),
            "addresses": addrs,
            "api": api_path,
            "gateway": gateway_addr.as_ref().map(|a| format!("http://{a}")),
        }),
        || {
            let mut text = format!("peer id: {}", node.peer_id());
            for a in &addrs {
                text.push_str(&format!("\nlistening on {a}"));
            }
            text.push_str(&format!("\nAPI on {api_path}"));
            if let Some(a) = &gateway_addr {
                text.push_str(&format!("\ngateway on http://{a}"));
            }
            text.push_str("\ndaemon is ready");
            text
        },
    )?;
    out.finish()?;

    crate::records::start(
        repo.clone(),
        node.clone(),
        daemon.mounts.clone(),
        daemon.live.clone(),
    );
    crate::heads::start(repo.clone(), node.clone(), daemon.mounts.clone());
    let accept = listener.serve(daemon.clone());

    let auto_gc = tokio::spawn(auto_gc(repo.clone()));
    let reprovider = tokio::spawn(crate::reprovide::run(
        repo.clone(),
        node.clone(),
        provide,
        reprovide_every,
        has_bootstrap,
    ));

    wait_for_signal().await;
    auto_gc.abort();
    accept.close();
    if let Some(g) = gateway {
        g.close();
    }
    reprovider.abort();
    tracing::info!("shutting down");
    for (dir, handle) in daemon.mounts.drain() {
        if let Err(e) = handle.unmount() {
            eprintln!("cannot unmount {}: {e}", dir.display());
        }
    }
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

impl server::Host for Daemon {
    fn run(
        self: Arc<Self>,
        stream: &UnixStream,
        request: &Request,
        cli: Cli,
        gone: oneshot::Receiver<()>,
    ) -> Result<()> {
        let console = Console::remote(cli.json, cli.quiet, request, stream.try_clone()?);
        let timeout = cli.timeout.map(Duration::from_secs).unwrap_or(self.timeout);
        let ctx = Ctx {
            repo: &self.repo,
            console: &console,
            cwd: &request.cwd,
            mounts: &self.mounts,
        };
        let online = crate::online::Online {
            daemon: self.clone(),
            timeout,
        };
        let work = crate::online::run(&ctx, &online, cli.command);
        server::until_client_gone(&self.runtime, gone, work)
    }
}
