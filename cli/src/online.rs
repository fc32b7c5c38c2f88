//! Commands as the daemon runs them: reads go through the network node (local store first, then
//! peers), adds are announced, and the network-only commands are available.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_net::{fetch_dag, NetSource, ProvideStrategy};
use cairn_store::{Blockstore, Cid, DagReader, DagWalk, PinKind, WalkMode};
use serde::Serialize;

use crate::args::{Command, MountArgs, PinCommand, RoutingCommand, StatCommand, SwarmCommand};
use crate::cmd::{self, Ctx};
use crate::daemon::Daemon;

/// The daemon's side of a command.
pub struct Online {
    /// Shared daemon state.
    pub daemon: Arc<Daemon>,
    /// Deadline for content from the network.
    pub timeout: Duration,
}

impl Online {
    fn source(&self) -> NetSource {
        NetSource::new(self.daemon.node.clone()).with_timeout(self.timeout)
    }

    fn reader(&self) -> DagReader<NetSource> {
        DagReader::new(self.source())
    }
}

/// Blocks fetched in parallel by `pin add` and `get`.
const FETCH_WINDOW: usize = 64;

/// Runs `command` inside the daemon.
pub async fn run(ctx: &Ctx<'_>, online: &Online, command: Command) -> Result<()> {
    let node = &online.daemon.node;
    match command {
        Command::Init(_) => bail!("the repo is already initialised (a daemon is running on it)"),
        Command::Daemon(_) => bail!("a daemon is already running on this repo"),
        Command::Add(args) => {
            let roots = cmd::add_roots(ctx, &args)?;
            if !args.only_hash {
                announce(online, roots, args.pin);
            }
            Ok(())
        }
        Command::Cat(mut args) => {
            args.path = expand(ctx, online, &args.path).await?;
            args.output = args.output.map(|o| ctx.path(&o));
            // Readahead fetches only the blocks covering the bytes asked for.
            let source = online.source().with_file_range(args.offset, args.length);
            cmd::read::cat_with(&DagReader::new(source), ctx.console, &args).await
        }
        Command::Block(crate::args::BlockCommand::Get { cid, output }) => {
            // From the network if it is not here, then as offline.
            let c = cmd::parse_cid(&cid)?;
            online.source_get(c).await?;
            let get = crate::args::BlockCommand::Get { cid, output };
            cmd::run_offline(ctx, Command::Block(get)).await
        }
        Command::Dag(crate::args::DagCommand::Export { cid, output }) => {
            // The whole DAG first (kept from GC meanwhile), then the export, as offline.
            let c = cmd::parse_cid(&cid)?;
            let _guard = TransientRoot::new(ctx, "export", c);
            prefetch(ctx, online, c).await?;
            let export = crate::args::DagCommand::Export { cid, output };
            cmd::run_offline(ctx, Command::Dag(export)).await
        }
        Command::Get(mut args) => {
            args.path = expand(ctx, online, &args.path).await?;
            // Refuse an occupied output before fetching anything.
            cmd::read::output_path(ctx, &args)?;
            let reader = online.reader();
            let path = cmd::parse_path(&args.path)?;
            let cid = reader
                .resolve(&path.root, &path.segments)
                .await
                .with_context(|| format!("cannot resolve {}", args.path))?;
            // Keep what is fetched safe from a concurrent GC until it is written out.
            let _guard = TransientRoot::new(ctx, "get", cid);
            prefetch(ctx, online, cid).await?;
            cmd::read::get_with(&reader, ctx, &args).await
        }
        Command::Ls(mut args) => {
            args.path = expand(ctx, online, &args.path).await?;
            cmd::read::ls_with(&online.reader(), ctx.console, &args).await
        }
        Command::Pin(PinCommand::Add { path, direct, name }) => {
            // `/ipns/<share id>` alone pins the share: a followed share keeps each version
            // (within retention) offline as it arrives.
            if let Some((n, "")) = cmd::name::ipns_parts(&path) {
                if let (Ok(share_name), false) = (n.parse::<cairn_store::IpnsName>(), direct) {
                    let d = &online.daemon;
                    crate::records::follow_new(
                        &d.repo,
                        &d.node,
                        &d.mounts,
                        share_name,
                        None,
                        online.timeout,
                    )
                    .await?;
                    let share = d.repo.shares().find(&share_name.to_string())?;
                    if !share.writable {
                        let Some(root) = d.repo.shares().set_pinned(&share_name, true)? else {
                            crate::fail!(
                                "corrupt",
                                "share {} has no valid head record",
                                share.label
                            );
                        };
                        prefetch(ctx, online, root).await?;
                        let mut out = ctx.console.output();
                        out.ack(
                            &serde_json::json!({ "cid": root.to_string(), "type": "share", "name": share_name.to_string() }),
                            || format!("pinned share {} (now {root}); each new version is kept as it arrives", share.label),
                        )?;
                        return out.finish();
                    }
                }
            }
            let path = expand(ctx, online, &path).await?;
            let p = cmd::parse_path(&path)?;
            let reader = online.reader();
            let cid = reader
                .resolve(&p.root, &p.segments)
                .await
                .with_context(|| format!("cannot resolve {path}"))?;
            // A full disk is said as such, not as the blocks it could not store.
            // Received blocks are cached in batches of up to `STORE_BATCH_BYTES`: a pin that failed
            // while such a batch no longer fits failed for want of space.
            let no_space = |need: u64| {
                ctx.repo
                    .check_space(need)
                    .with_context(|| format!("cannot pin {cid}"))
            };
            no_space(1 << 20)?;
            // Keep what is fetched safe from a concurrent GC until the pin holds it.
            let _guard = TransientRoot::new(ctx, "pin", cid);
            if direct {
                online.source_get(cid).await?;
            } else {
                prefetch(ctx, online, cid).await?;
            }
            let kind = if direct {
                PinKind::Direct
            } else {
                PinKind::Recursive
            };
            if let Err(e) = ctx.repo.pins().add(cid, kind, name.as_deref()) {
                no_space(cairn_net::STORE_BATCH_BYTES as u64)?;
                return Err(e.into());
            }
            announce(online, vec![cid], true);
            let mut out = ctx.console.output();
            out.ack(&cmd::pin_json(cid, kind.as_str(), name.as_deref()), || {
                format!("pinned {cid} {}", kind.as_str())
            })?;
            out.finish()
        }
        Command::Id => {
            let addrs = node.listen_addrs().await?;
            let id = node.peer_id();
            let mut out = ctx.console.output();
            let json = serde_json::json!({
                "peer_id": id.to_string(),
                "addresses": addrs.iter().map(|a| with_peer_id(a, id)).collect::<Vec<_>>(),
            });
            out.item(&json, || {
                let mut s = format!("peer id: {id}");
                for a in &addrs {
                    s.push('\n');
                    s.push_str(&with_peer_id(a, id));
                }
                s
            })?;
            out.finish()
        }
        Command::Swarm(c) => swarm(ctx, online, c).await,
        Command::Routing(c) => routing(ctx, online, c).await,
        Command::Stat(StatCommand::Bitswap) => {
            let s = node.bitswap_stats().await?;
            let mut out = ctx.console.output();
            let json = serde_json::json!({
                "blocks_received": s.blocks_received,
                "bytes_received": s.bytes_received,
                "blocks_sent": s.blocks_sent,
                "bytes_sent": s.bytes_sent,
                "dup_blocks": s.dup_blocks,
                "dup_bytes": s.dup_bytes,
                "rejected_blocks": s.rejected_blocks,
                "peers_banned": s.peers_banned,
                "peers": s.peers,
                "wants": s.wants,
            });
            out.item(&json, || {
                format!(
                    "bitswap status\n\tblocks received: {}\n\tdata received: {}\n\tblocks sent: {}\n\tdata sent: {}\n\tdup blocks received: {}\n\tdup data received: {}\n\trejected blocks: {}\n\tpeers banned: {}\n\tpeers: {}\n\twantlist: {}",
                    s.blocks_received, s.bytes_received, s.blocks_sent, s.bytes_sent, s.dup_blocks,
                    s.dup_bytes, s.rejected_blocks, s.peers_banned, s.peers, s.wants
                )
            })?;
            out.finish()
        }
        Command::Name(crate::args::NameCommand::Resolve { name }) => {
            let (name_part, rest) = cmd::name::ipns_parts(&name).unwrap_or((name.as_str(), ""));
            let parsed: cairn_store::IpnsName = name_part.parse().map_err(|e| {
                crate::error::coded(
                    "invalid_input",
                    format!(
                        "invalid IPNS name {name_part:?}: {e}; a name looks like k51qzi5uqu5d…"
                    ),
                )
            })?;
            let (root, sequence) = resolve_online(online, parsed).await?;
            let value = format!("/ipfs/{root}{rest}");
            let mut out = ctx.console.output();
            out.item(
                &serde_json::json!({ "name": parsed.to_string(), "value": value, "sequence": sequence }),
                || value.clone(),
            )?;
            out.finish()
        }
        Command::Status { path } => {
            let path = expand(ctx, online, &path).await?;
            status(ctx, online, &path).await
        }
        Command::Mount(args) => mount(ctx, online, &args).await,
        Command::Share(crate::args::ShareCommand::Follow { share, label, pin }) => {
            follow(ctx, online, &share, label.as_deref(), pin).await
        }
        Command::Share(crate::args::ShareCommand::Rm { share }) => {
            let name = ctx.repo.shares().find(&share).map(|s| s.name);
            cmd::run_offline(ctx, Command::Share(crate::args::ShareCommand::Rm { share })).await?;
            // Gone here: its topic, sources and redials go too.
            if let Ok(name) = name {
                node.unsubscribe(name).await?;
            }
            Ok(())
        }
        Command::Share(crate::args::ShareCommand::Log { share }) => {
            // A follower's history arrives with the records it took; the older records come
            // through the chain, from the peers.
            if let Ok(s) = ctx.repo.shares().find(&share) {
                if !s.writable {
                    crate::records::fetch_history(ctx.repo, node, s.name, online.timeout).await;
                }
            }
            cmd::run_offline(
                ctx,
                Command::Share(crate::args::ShareCommand::Log { share }),
            )
            .await
        }
        Command::Share(crate::args::ShareCommand::Status { share }) => {
            let live = Some((node, &*online.daemon.live));
            cmd::share::status(ctx, share.as_deref(), live).await
        }
        Command::Unmount { dir } => {
            let dir = mount_key(&ctx.path(&dir));
            let handle = online.daemon.mounts.take(&dir);
            match handle {
                Some(h) => h
                    .unmount()
                    .with_context(|| format!("cannot unmount {}", dir.display()))?,
                None => crate::mount::unmount_foreign(&dir)?,
            }
            crate::mount::say_unmounted(ctx.console, &dir)
        }
        other => cmd::run_offline(ctx, other).await,
    }
}

impl Online {
    async fn source_get(&self, cid: Cid) -> Result<()> {
        use cairn_store::BlockSource;
        self.source()
            .get(&cid)
            .await
            .with_context(|| format!("cannot fetch {cid}"))?;
        Ok(())
    }
}

/// Announces new content on the DHT according to the provide strategy, in the background (the
/// DHT can be slow; the command that added the content is done).
fn announce(online: &Online, roots: Vec<Cid>, pinned: bool) {
    let cids = match online.daemon.provide {
        ProvideStrategy::Roots => roots,
        ProvideStrategy::Pinned if pinned => roots,
        ProvideStrategy::Pinned => return,
        ProvideStrategy::All => {
            let store = online.daemon.repo.store();
            let mut all = Vec::new();
            for root in roots {
                let walk = DagWalk::new(store.as_ref(), root, WalkMode::Structure);
                all.extend(walk.filter_map(|v| v.ok()).map(|v| v.cid));
            }
            all
        }
    };
    if cids.is_empty() {
        return;
    }
    let node = online.daemon.node.clone();
    tokio::spawn(async move {
        match node.provide(cids).await {
            Ok(r) if r.failed > 0 => tracing::info!("announced {} CIDs, {} failed", r.ok, r.failed),
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot announce added content: {e}"),
        }
    });
}

/// Fetches the whole DAG below `cid` with a window of parallel wants, showing progress.
async fn prefetch(ctx: &Ctx<'_>, online: &Online, cid: Cid) -> Result<()> {
    let show = ctx.console.progress();
    let mut bar = ctx.console.bar(show, None, &format!("fetching {cid}"));
    let source = online.source();
    let done = fetch_dag(&source, cid, FETCH_WINDOW, |p| bar.set_position(p.bytes))
        .await
        .with_context(|| format!("cannot fetch {cid}"))?;
    bar.finish();
    tracing::info!(
        "fetched {} blocks ({} bytes) of {cid}",
        done.blocks,
        done.bytes
    );
    Ok(())
}

async fn swarm(ctx: &Ctx<'_>, online: &Online, c: SwarmCommand) -> Result<()> {
    let node = &online.daemon.node;
    let mut out = ctx.console.output();
    match c {
        SwarmCommand::Peers => {
            for p in node.peer_infos().await? {
                let latency_ms = p.latency.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3);
                let json = serde_json::json!({
                    "peer": p.peer.to_string(),
                    "address": p.address.to_string(),
                    "direction": p.direction.as_str(),
                    "latency_ms": latency_ms,
                    "transport": p.transport,
                    "protocols": p.protocols,
                });
                out.item(&json, || {
                    let latency =
                        latency_ms.map_or_else(|| "-".to_string(), |ms| format!("{ms} ms"));
                    let protocols = p
                        .protocols
                        .as_ref()
                        .map_or_else(|| "-".to_string(), |ps| ps.join(","));
                    format!(
                        "{} {} {} {} {} {}",
                        p.peer,
                        p.address,
                        p.direction.as_str(),
                        latency,
                        p.transport,
                        protocols
                    )
                })?;
            }
        }
        SwarmCommand::Connect { addr } => {
            let peer = node.connect(&addr).await?;
            // Followed shares catch up with what the new peer (or the DHT it joins us to) has.
            let d = &online.daemon;
            crate::records::catch_up(&d.repo, &d.node, &d.mounts);
            out.ack(
                &serde_json::json!({ "connected": peer.to_string() }),
                || format!("connected to {peer}"),
            )?;
        }
        SwarmCommand::Disconnect { peer } => {
            let gone = node.disconnect(&peer).await?;
            out.ack(
                &serde_json::json!({ "disconnected": gone.to_string() }),
                || format!("disconnected from {gone}"),
            )?;
        }
        SwarmCommand::Addrs => {
            let id = node.peer_id();
            for a in node.listen_addrs().await? {
                let a = with_peer_id(&a, id);
                out.item(&serde_json::json!({ "address": a }), || a.clone())?;
            }
        }
    }
    out.finish()
}

async fn routing(ctx: &Ctx<'_>, online: &Online, c: RoutingCommand) -> Result<()> {
    let node = &online.daemon.node;
    let mut out = ctx.console.output();
    match c {
        RoutingCommand::Provide { cid } => {
            let cid = cmd::parse_cid(&cid)?;
            if !ctx.repo.store().has(&cid)? {
                bail!("{cid} is not in the local repo: only local content can be provided");
            }
            let report = node.provide(vec![cid]).await?;
            if report.ok == 0 {
                bail!("could not announce {cid}: no DHT peer accepted the record");
            }
            out.ack(&serde_json::json!({ "provided": cid.to_string() }), || {
                format!("provided {cid}")
            })?;
        }
        RoutingCommand::Findprovs { cid } => {
            let cid = cmd::parse_cid(&cid)?;
            let search = node.search_providers(cid, online.timeout).await?;
            if search.providers.is_empty() {
                if search.timed_out {
                    bail!(
                        "no providers of {cid} found within {} s (raise --timeout to search longer)",
                        online.timeout.as_secs()
                    );
                }
                let n = search.peers_queried;
                bail!(
                    "{cid}: no providers found (the DHT query ended after {n} peer{}); \
                     connect to more peers (`cairn swarm connect`) or check that the content is provided",
                    if n == 1 { "" } else { "s" }
                );
            }
            for p in &search.providers {
                let addresses: Vec<String> = search
                    .addresses
                    .get(p)
                    .into_iter()
                    .flatten()
                    .map(|a| a.to_string())
                    .collect();
                let json = serde_json::json!({ "provider": p.to_string(), "addresses": addresses });
                out.item(&json, || p.to_string())?;
            }
        }
    }
    out.finish()
}

#[derive(Serialize)]
struct Status {
    cid: String,
    blocks_local: u64,
    blocks_known: u64,
    complete: bool,
    providers: usize,
}

async fn status(ctx: &Ctx<'_>, online: &Online, path: &str) -> Result<()> {
    let p = cmd::parse_path(path)?;
    let cid = if p.segments.is_empty() {
        p.root
    } else {
        online
            .reader()
            .resolve(&p.root, &p.segments)
            .await
            .with_context(|| format!("cannot resolve {path}"))?
    };
    let local = coverage(ctx.repo.store().as_ref(), cid)?;
    let wait = online.timeout.min(Duration::from_secs(10));
    let providers = online
        .daemon
        .node
        .find_providers(cid, wait)
        .await
        .map(|v| v.len())
        .unwrap_or(0);
    let s = Status {
        cid: cid.to_string(),
        blocks_local: local.present,
        blocks_known: local.known,
        complete: local.complete,
        providers,
    };
    let mut out = ctx.console.output();
    out.item(&s, || {
        format!(
            "{}: {} of {}{} blocks local{}; {} provider(s) found",
            s.cid,
            s.blocks_local,
            if s.complete { "" } else { "at least " },
            s.blocks_known,
            if s.complete { " (complete)" } else { "" },
            s.providers
        )
    })?;
    out.finish()
}

/// `text` with an IPNS name at its start resolved: a share of this repo by its head, any other
/// name through the DHT.
async fn expand(ctx: &Ctx<'_>, online: &Online, text: &str) -> Result<String> {
    let Some((name, rest)) = cmd::name::ipns_parts(text) else {
        return Ok(text.to_string());
    };
    let Ok(parsed) = name.parse::<cairn_store::IpnsName>() else {
        // The offline path says what is wrong with it.
        return cmd::name::expand(ctx, text);
    };
    let (root, _) = resolve_online(online, parsed).await?;
    Ok(format!("{root}{rest}"))
}

/// What `name` points at now, as this daemon can tell: its root and sequence.
async fn resolve_online(online: &Online, name: cairn_store::IpnsName) -> Result<(Cid, u64)> {
    let d = &online.daemon;
    let Some(bytes) =
        crate::records::resolve(&d.repo, &d.node, &d.mounts, name, online.timeout).await?
    else {
        crate::fail!(
            "unreachable",
            "no record of /ipns/{name} found on the network within {} s",
            online.timeout.as_secs()
        );
    };
    let record = cairn_store::IpnsRecord::verify(&bytes, &name)?;
    match record.value() {
        cairn_store::RecordValue::Ipfs(p) if p.segments.is_empty() => {
            Ok((p.root, record.sequence()))
        }
        other => crate::fail!(
            "invalid_input",
            "/ipns/{name} points at {other:?}, not at an /ipfs/ directory or file"
        ),
    }
}

/// `cairn share follow ID [--label L] [--pin]`.
async fn follow(
    ctx: &Ctx<'_>,
    online: &Online,
    id: &str,
    label: Option<&str>,
    pin: bool,
) -> Result<()> {
    let bare = id
        .strip_prefix("/ipns/")
        .unwrap_or(id)
        .trim_end_matches('/');
    let name: cairn_store::IpnsName = bare.parse().map_err(|e| {
        crate::error::coded(
            "invalid_input",
            format!("invalid share id {bare:?}: {e}; a share id looks like k51qzi5uqu5d…"),
        )
    })?;
    if let Some(l) = label {
        cairn_store::check_label(l)?;
        if ctx.repo.shares().find(l).is_ok_and(|s| s.name != name) {
            return Err(cairn_store::ShareError::LabelTaken(l.to_string()).into());
        }
    }
    let d = &online.daemon;
    crate::records::follow_new(&d.repo, &d.node, &d.mounts, name, label, online.timeout).await?;
    let share = d.repo.shares().find(&name.to_string())?;
    if share.writable {
        crate::fail!(
            "invalid_input",
            "share {} is this repo's own (it holds the key): there is nothing to follow",
            share.label
        );
    }
    if pin {
        if let Some(root) = d.repo.shares().set_pinned(&name, true)? {
            prefetch(ctx, online, root).await?;
        }
    }
    let share = d.repo.shares().find(&name.to_string())?;
    let mut out = ctx.console.output();
    let j = serde_json::json!({
        "label": share.label,
        "name": name.to_string(),
        "sequence": share.head.as_ref().map(|v| v.sequence),
        "root": share.head.as_ref().map(|v| v.root.to_string()),
        "pinned": share.pinned,
    });
    out.ack(&j, || {
        format!(
            "following {} as {} (version {}){}",
            name,
            share.label,
            share.head.as_ref().map_or(0, |v| v.sequence),
            if share.pinned { ", pinned" } else { "" }
        )
    })?;
    out.finish()
}

async fn mount(ctx: &Ctx<'_>, online: &Online, args: &MountArgs) -> Result<()> {
    // A share id this repo does not know: follow it from the network.
    if let Some(arg) = &args.cid {
        let bare = arg
            .strip_prefix("/ipns/")
            .unwrap_or(arg)
            .trim_end_matches('/');
        if let Ok(name) = bare.parse::<cairn_store::IpnsName>() {
            let d = &online.daemon;
            crate::records::follow_new(&d.repo, &d.node, &d.mounts, name, None, online.timeout)
                .await?;
        }
    }
    let (target, dir) = crate::mount::target(args, ctx.repo)?;
    let dir = mount_key(&ctx.path(&dir));
    let host = crate::mount::Host {
        repo: &online.daemon.repo,
        mounts: &online.daemon.mounts,
        timeout: online.timeout,
        runtime: online.daemon.runtime.clone(),
        served_by: "daemon",
        names: crate::records::daemon_names(&online.daemon, online.timeout),
    };
    // The mount runs its own readahead, sized by what the kernel reads: no DAG-order prefetch
    // below it, so a small read moves only the blocks that cover it.
    let started =
        crate::mount::start_target(online.source().with_readahead(0), target, &dir, args, &host)?;
    online.daemon.mounts.insert(dir.clone(), started.handle);
    let mut out = ctx.console.output();
    out.ack(&started.json, || {
        let note = started.note.map(|n| format!(" ({n})")).unwrap_or_default();
        format!(
            "mounted at {}{note} (served by the daemon; `cairn unmount {}` to remove)",
            dir.display(),
            dir.display()
        )
    })?;
    out.finish()
}

/// How much of a DAG is in the local store.
struct Coverage {
    /// Blocks present locally.
    present: u64,
    /// Blocks known to belong to the DAG (children of missing nodes are unknown).
    known: u64,
    /// Whether every block is present.
    complete: bool,
}

fn coverage(store: &dyn Blockstore, root: Cid) -> Result<Coverage> {
    let mut c = Coverage {
        present: 0,
        known: 0,
        complete: true,
    };
    let mut stack = vec![root];
    let mut seen = std::collections::HashSet::from([root]);
    while let Some(cid) = stack.pop() {
        c.known += 1;
        if !cairn_store::codec_has_links(cid.codec()) {
            c.present += u64::from(store.has(&cid)?);
            c.complete &= store.has(&cid)?;
            continue;
        }
        match store.get(&cid)? {
            Some(data) => {
                c.present += 1;
                for child in cairn_store::links(&cid, &data).unwrap_or_default() {
                    if seen.insert(child) {
                        stack.push(child);
                    }
                }
            }
            None => c.complete = false,
        }
    }
    Ok(c)
}

/// `addr` with a trailing `/p2p/<id>`, added only if it is not there yet.
pub fn with_peer_id(addr: &cairn_net::Multiaddr, id: cairn_net::PeerId) -> String {
    let text = addr.to_string();
    if text.contains("/p2p/") {
        text
    } else {
        format!("{text}/p2p/{id}")
    }
}

/// A GC root held while a command fetches a DAG, released on drop.
struct TransientRoot<'a> {
    repo: &'a cairn_store::Repo,
    name: String,
}

impl<'a> TransientRoot<'a> {
    fn new(ctx: &Ctx<'a>, what: &str, cid: Cid) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{what}-in-progress-{n}");
        ctx.repo.roots().set_transient(&name, cid);
        TransientRoot {
            repo: ctx.repo,
            name,
        }
    }
}

impl Drop for TransientRoot<'_> {
    fn drop(&mut self) {
        let _ = self.repo.roots().remove(&self.name);
    }
}

/// The daemon's mount-table key for a mount point: canonical, so that every spelling of the same
/// directory (through a symlink, with `..`) finds the same mount.
fn mount_key(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}
