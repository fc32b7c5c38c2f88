//! The local API server of the process that owns a repo (`cairn daemon`, or a foreground
//! `cairn mount` without network): the socket, its connections, command slots and the limits of
//! [`api`]. Connections are tasks on the runtime: one costs a descriptor and a little memory,
//! never a thread, until a complete request has a command slot; the command then runs on a
//! blocking thread, so a slow fetch never stalls other clients, and is cancelled when its client
//! goes away (Ctrl-C).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::sync::{oneshot, Semaphore};

use crate::api::{self, Request};
use crate::args::Cli;

/// What runs the commands that arrive on the socket.
pub trait Host: Send + Sync + 'static {
    /// Runs one client's parsed command on a blocking thread, writing its output to `stream`;
    /// `gone` fires when the client goes away (the command should then stop).
    fn run(
        self: Arc<Self>,
        stream: &UnixStream,
        request: &Request,
        cli: Cli,
        gone: oneshot::Receiver<()>,
    ) -> Result<()>;
}

/// Runs a command's `work` on `runtime` (from a blocking thread) until it ends, or until its
/// client goes away (`gone`), which drops the work and so cancels its network wants.
pub fn until_client_gone(
    runtime: &tokio::runtime::Handle,
    gone: oneshot::Receiver<()>,
    work: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    runtime.block_on(async {
        tokio::select! {
            r = work => r,
            _ = gone => bail!("the client went away"),
        }
    })
}

/// The bound API socket of a repo.
pub struct Listener {
    path: PathBuf,
    listener: tokio::net::UnixListener,
}

/// A running API server; [`Serving::close`] stops accepting and removes the socket.
pub struct Serving {
    path: PathBuf,
    accept: tokio::task::JoinHandle<()>,
    api: Arc<Api>,
}

impl Serving {
    /// Stops accepting connections and removes the socket file.
    pub fn close(self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }

    /// [`Serving::close`], then waits up to `grace` for the commands still running to end (and
    /// lets no queued one start).
    pub async fn close_and_wait(self, grace: Duration) {
        let slots = self.api.slots.clone();
        self.close();
        let all = u32::try_from(api::MAX_COMMANDS).unwrap_or(u32::MAX);
        match tokio::time::timeout(grace, slots.acquire_many_owned(all)).await {
            Ok(Ok(permits)) => permits.forget(),
            _ => tracing::warn!("commands of other clients were still running at exit"),
        }
    }
}

impl Listener {
    /// Binds `api/api.sock` in `repo_dir`. The caller holds the repo lock, so a socket file
    /// found there is from a process that died.
    pub fn bind(repo_dir: &Path) -> Result<Listener> {
        let socket = api::socket_path(repo_dir);
        // A private directory first: the socket never exists with looser permissions than 0700
        // allows.
        let socket_dir = repo_dir.join(api::SOCKET_DIR);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&socket_dir)
            .with_context(|| format!("cannot create {}", socket_dir.display()))?;
        std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", socket_dir.display()))?;
        let _ = std::fs::remove_file(&socket);
        // Leftovers of stdin spooled for commands of a process that died.
        let _ = std::fs::remove_dir_all(repo_dir.join("tmp"));
        let listener = std::os::unix::net::UnixListener::bind(&socket)
            .with_context(|| format!("cannot listen on {}", socket.display()))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", socket.display()))?;
        listener
            .set_nonblocking(true)
            .context("cannot set up the API socket")?;
        let listener =
            tokio::net::UnixListener::from_std(listener).context("cannot set up the API socket")?;
        Ok(Listener {
            path: socket,
            listener,
        })
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves commands with `host` on the current runtime until [`Serving::close`].
    pub fn serve(self, host: Arc<dyn Host>) -> Serving {
        let api = Arc::new(Api {
            host,
            slots: Arc::new(Semaphore::new(api::MAX_COMMANDS)),
            conns: Mutex::new(Conns::default()),
            max_connections: connection_limit(),
        });
        Serving {
            path: self.path,
            accept: tokio::spawn(accept_loop(self.listener, api.clone())),
            api,
        }
    }
}

/// The local API server: open connections, command slots and the limits of [`api`].
struct Api {
    host: Arc<dyn Host>,
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
                    "repo_busy",
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
fn reply_now(stream: &tokio::net::UnixStream, code: &str, message: &str) {
    let payload = crate::error::payload(code, message);
    let _ = stream.try_write(&api::frame_bytes(api::tag::ERROR, &payload));
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
            reply_now(&stream, "repo_busy", &evicted_message);
            return;
        }
    };
    let (tag, payload) = match frame {
        // Connected and closed: the client's probe.
        Ok(Ok(None)) => return,
        Ok(Ok(Some(frame))) => frame,
        Ok(Err(e)) => {
            reply_now(&stream, "error", &format!("bad request: {e}"));
            return;
        }
        Err(_) => {
            let secs = api::REQUEST_DEADLINE.as_secs();
            let message = format!("no complete request within {secs} s; connection closed");
            reply_now(&stream, "error", &message);
            return;
        }
    };
    if !ticket.promote() {
        reply_now(&stream, "repo_busy", &evicted_message);
        return;
    }
    let (request, cli) = match parse_request(tag, &payload) {
        Ok(parsed) => parsed,
        Err(e) => {
            reply_now(&stream, "usage", &format!("{e:#}"));
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
        reply_now(&stream, "repo_busy", &message);
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
    let host = api.host.clone();
    let job = tokio::task::spawn_blocking(move || {
        // Held until the command ends (however it ends), not until the client closes.
        let _slot = slot;
        run_command(stream, &request, cli, host, gone_rx);
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
    host: Arc<dyn Host>,
    gone: oneshot::Receiver<()>,
) {
    let result = host.run(&stream, request, cli, gone);
    let (tag, payload) = match result {
        Ok(()) => (api::tag::DONE, Vec::new()),
        Err(e) => (api::tag::ERROR, crate::error::frame_payload(&e)),
    };
    let _ = api::write_frame(&mut stream, tag, &payload);
    // Background work may still hold a clone of the connection (e.g. a progress bar): close it
    // for the client now.
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
