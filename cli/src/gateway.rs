//! The daemon's HTTP gateway: `GET`/`HEAD /ipfs/<cid>[/path]` and `/ipns/<name>[/path]`, read
//! through the daemon's node (local blocks first, then Bitswap with the daemon's timeout), so a
//! browser, `curl` or another IPFS client reads what cairn holds or can fetch.
//!
//! - Path gateway: a file's bytes with `Content-Type` (from the name, else from the first
//!   bytes), `ETag` (the CID), `Cache-Control` (immutable for `/ipfs/`, a minute for
//!   `/ipns/`), single and multiple `Range`s (206, `multipart/byteranges`, 416); a directory
//!   (with a trailing `/`, else a redirect to it) shows its `index.html` or a listing page;
//!   `?download=true` and `?filename=` set `Content-Disposition`.
//! - Trustless gateway (ipfs/specs `trustless-gateway`): `?format=raw` or `Accept:
//!   application/vnd.ipld.raw` (the block), `?format=car` or `application/vnd.ipld.car` (CAR v1,
//!   depth-first, no duplicates: the blocks that verify the path, then `dag-scope=block`,
//!   `entity` or `all` of its end, `entity-bytes=from:to` for part of a file), and
//!   `?format=ipns-record` on `/ipns/`.
//! - Errors: a bad CID or name 400, a path that names nothing 404, content nobody delivered
//!   within the timeout 504, a DAG that does not decode 502. Every byte sent comes from a block
//!   verified against its CID first; a block that fails mid-stream ends the response short
//!   (the client sees a truncated body, never unverified bytes).
//! - Bounds: at most [`PER_CLIENT`] requests at once per client address (429 beyond),
//!   [`MAX_LISTING`] entries on a listing page, [`MAX_CAR_BLOCKS`] blocks in one CAR, and
//!   [`MAX_RANGES`] ranges in one request. A client that goes away stops its transfer: the
//!   body's task ends when the body is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use cairn_net::NetSource;
use cairn_store::{
    BlockSource, Cid, DagReader, DirEntry, EntryKind, GetError, IpnsName, NodeInfo, PbNode,
    ReadError, UnixFsData,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::daemon::Daemon;

/// Requests one client address may have in flight (bodies included).
pub const PER_CLIENT: usize = 32;
/// Entries a directory listing page shows at most.
pub const MAX_LISTING: usize = 10_000;
/// Blocks one CAR response holds at most (it ends short beyond).
pub const MAX_CAR_BLOCKS: usize = 1 << 20;
/// Ranges one request may ask for (more: the whole file is sent, as RFC 9110 allows).
pub const MAX_RANGES: usize = 16;
/// Chunks buffered between a body's reader task and the connection.
const BODY_BUFFER: usize = 4;
/// How long an `/ipns/` answer may be cached.
const IPNS_TTL_SECS: u64 = 60;

/// A running gateway.
pub struct Gateway {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Stops accepting; transfers in flight end with the process.
    pub fn close(self) {
        self.task.abort();
    }
}

struct Shared {
    daemon: Arc<Daemon>,
    clients: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// Binds `addr` (`IP:PORT`) and serves the gateway of `daemon` there.
pub async fn start(daemon: Arc<Daemon>, addr: &str) -> Result<Gateway> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("invalid gateway address {addr:?} (IP:PORT, or off)"))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        crate::error::coded(
            if e.kind() == std::io::ErrorKind::AddrInUse {
                "repo_busy"
            } else {
                "io"
            },
            format!(
                "cannot serve the gateway on {addr}: {e}; stop what uses it, or serve elsewhere \
                 (`cairn daemon --gateway IP:PORT`, `--gateway off`, or `cairn config set \
                 gateway.listen ...`)"
            ),
        )
    })?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        daemon,
        clients: Mutex::default(),
    });
    let app = axum::Router::new().fallback(handle).with_state(shared);
    let task = tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::warn!(error = %e, "the gateway stopped");
        }
    });
    Ok(Gateway { addr, task })
}

/// An error response: a status and one line saying what was wrong.
struct Failure(StatusCode, String);

impl Failure {
    fn new(status: StatusCode, text: impl Into<String>) -> Failure {
        Failure(status, text.into())
    }

    fn response(self) -> Response {
        let mut r = Response::new(Body::from(format!("{}\n", self.1)));
        *r.status_mut() = self.0;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }
}

/// The status a read error gives.
fn read_failure(e: &ReadError, what: &str) -> Failure {
    let status = match e {
        ReadError::NotFound { .. } | ReadError::NotADirectory { .. } => StatusCode::NOT_FOUND,
        ReadError::UnsafeName { .. } => StatusCode::BAD_REQUEST,
        ReadError::Get(g) => match g {
            GetError::Timeout { .. }
            | GetError::NoProviders { .. }
            | GetError::Network { .. }
            | GetError::NotFoundLocally(_) => StatusCode::GATEWAY_TIMEOUT,
            GetError::Corrupt(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        _ => StatusCode::BAD_GATEWAY,
    };
    Failure::new(status, format!("cannot read {what}: {e}"))
}

/// What the request asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Plain,
    Raw,
    Car,
    IpnsRecord,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    Block,
    Entity,
    All,
}

struct Request {
    ns: &'static str,
    /// The CID or name after the namespace.
    first: String,
    segments: Vec<String>,
    trailing_slash: bool,
    query: HashMap<String, String>,
    format: Format,
    head: bool,
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut r = Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "the gateway is read-only: GET or HEAD",
        )
        .response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(permit) = shared.admit(peer.ip()) else {
        return Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("more than {PER_CLIENT} requests at once from {}", peer.ip()),
        )
        .response();
    };
    // A subdomain gateway request (`<cid>.ipfs.<host>`, `<name>.ipns.<host>`) names its root
    // in the host: the path below it is the content path. A path-gateway URL asked of such a
    // host (a listing's `/ipfs/<cid>` links) is sent to that CID's own subdomain.
    let sub = subdomain(&headers);
    let path = match &sub {
        Some((ns, label, base)) => {
            if let Some(to) = subdomain_redirect(uri.path(), base) {
                return redirect(&to);
            }
            format!("/{ns}/{label}{}", uri.path())
        }
        None => uri.path().to_string(),
    };
    let req = match parse(&method, &path, uri.query(), &headers) {
        Ok(Some(r)) => r,
        Ok(None) => return home(),
        Err(f) => return f.response(),
    };
    match serve(&shared.daemon, req, &headers, permit).await {
        Ok(r) => r,
        Err(f) => f.response(),
    }
}

impl Shared {
    /// A slot for one more request of client `ip`, if it has one free.
    fn admit(&self, ip: IpAddr) -> Option<OwnedSemaphorePermit> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.len() > 4096 {
            // Forget clients with nothing in flight.
            clients.retain(|_, s| s.available_permits() < PER_CLIENT);
        }
        let sem = clients
            .entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(PER_CLIENT)))
            .clone();
        sem.try_acquire_owned().ok()
    }
}

fn home() -> Response {
    let mut r = Response::new(Body::from(
        "cairn gateway: GET /ipfs/<cid>[/path] or /ipns/<name>[/path]\n",
    ));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `(namespace, root label, the rest of the host)` when the request's host is a subdomain
/// gateway's: `<label>.ipfs.<rest>` or `<label>.ipns.<rest>`.
fn subdomain(headers: &HeaderMap) -> Option<(&'static str, String, String)> {
    let host = headers
        .get(header::HOST)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    for ns in ["ipfs", "ipns"] {
        if let Some((label, rest)) = host.split_once(&format!(".{ns}.")) {
            if !label.is_empty() && !label.contains('.') && !rest.is_empty() {
                return Some((ns, label.to_string(), rest.to_string()));
            }
        }
    }
    None
}

/// Where a path-gateway `path` asked of a subdomain host under `base` goes: the root's own
/// subdomain (a CID as CIDv1 in base32, which survives a host name's case folding).
fn subdomain_redirect(path: &str, base: &str) -> Option<String> {
    let (ns, rest) = if let Some(r) = path.strip_prefix("/ipfs/") {
        ("ipfs", r)
    } else {
        ("ipns", path.strip_prefix("/ipns/")?)
    };
    let (first, below) = rest.split_once('/').map_or((rest, ""), |(a, b)| (a, b));
    let label = if ns == "ipfs" {
        let cid: Cid = first.parse().ok()?;
        cid.into_v1().ok()?.to_string()
    } else {
        first.to_ascii_lowercase()
    };
    Some(format!("http://{label}.{ns}.{base}/{below}"))
}

fn redirect(to: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn parse(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Option<Request>, Failure> {
    let (ns, rest) = if let Some(r) = path.strip_prefix("/ipfs/") {
        ("ipfs", r)
    } else if let Some(r) = path.strip_prefix("/ipns/") {
        ("ipns", r)
    } else if path == "/" {
        return Ok(None);
    } else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no such page {path:?}: the gateway serves /ipfs/<cid> and /ipns/<name>"),
        ));
    };
    let mut parts = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("path segment {raw:?} is not UTF-8 once decoded"),
                )
            })?;
        parts.push(seg.into_owned());
    }
    let Some(first) = parts.first().cloned() else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "/{ns}/ needs a {} after it",
                if ns == "ipfs" { "CID" } else { "name" }
            ),
        ));
    };
    let query: HashMap<String, String> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = match query.get("format").map(String::as_str) {
        Some("raw") => Format::Raw,
        Some("car") => Format::Car,
        Some("ipns-record") => Format::IpnsRecord,
        Some(other) => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!("unknown format {other:?}: raw, car or ipns-record"),
            ))
        }
        None if accept.contains("application/vnd.ipld.raw") => Format::Raw,
        None if accept.contains("application/vnd.ipld.car") => Format::Car,
        None if accept.contains("application/vnd.ipfs.ipns-record") => Format::IpnsRecord,
        None => Format::Plain,
    };
    Ok(Some(Request {
        ns,
        first,
        segments: parts[1..].to_vec(),
        trailing_slash: rest.ends_with('/'),
        query,
        format,
        head: method == Method::HEAD,
    }))
}

type Reader = DagReader<NetSource>;

async fn serve(
    daemon: &Arc<Daemon>,
    req: Request,
    headers: &HeaderMap,
    permit: OwnedSemaphorePermit,
) -> Result<Response, Failure> {
    let timeout = daemon.timeout;
    let reader = DagReader::new(NetSource::new(daemon.node.clone()).with_timeout(timeout));
    // The root, and the path below it.
    let (root, mut segments, record) = match req.ns {
        "ipfs" => {
            let cid: Cid = req.first.parse().map_err(|e| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid CID {:?}: {e}", req.first),
                )
            })?;
            (cid, Vec::new(), None)
        }
        _ => {
            let name: IpnsName = req.first.parse().map_err(|e| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "invalid IPNS name {:?}: {e} (a name is a libp2p-key CID such as \
                         k51qzi5uqu5d…; DNSLink names are not served)",
                        req.first
                    ),
                )
            })?;
            let (root, segs, bytes) = resolve_name(daemon, name, timeout).await?;
            (root, segs, Some(bytes))
        }
    };
    segments.extend(req.segments.iter().cloned());
    if req.format == Format::IpnsRecord {
        let Some(bytes) = record else {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "format=ipns-record is for /ipns/<name>",
            ));
        };
        let mut r = whole(
            req.head,
            Bytes::from(bytes),
            "application/vnd.ipfs.ipns-record",
        );
        let h = r.headers_mut();
        attachment(h, &format!("{}.ipns-record", req.first));
        h.insert(header::CACHE_CONTROL, cache_ttl(IPNS_TTL_SECS));
        return Ok(r);
    }
    let immutable = req.ns == "ipfs";
    let path_text = format!(
        "/{}/{}{}",
        req.ns,
        req.first,
        req.segments
            .iter()
            .map(|s| format!("/{s}"))
            .collect::<String>()
    );
    match req.format {
        Format::Car => {
            return car(&reader, root, &segments, &req, immutable, timeout, permit).await
        }
        Format::Raw => {
            let cid = within(timeout, reader.resolve(&root, &segments))
                .await
                .map_err(|e| read_failure(&e, &path_text))?;
            return raw(&reader, cid, &req, immutable, timeout).await;
        }
        _ => {}
    }
    let cid = within(timeout, reader.resolve(&root, &segments))
        .await
        .map_err(|e| read_failure(&e, &path_text))?;
    let info = within(timeout, reader.stat(&cid))
        .await
        .map_err(|e| read_failure(&e, &path_text))?;
    let etag = format!("\"{cid}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r.headers_mut().insert(
            header::ETAG,
            HeaderValue::from_str(&etag).map_err(internal)?,
        );
        return Ok(r);
    }
    let mut resp = match info.kind {
        EntryKind::Directory => {
            if !req.trailing_slash {
                // Relative links on the page need the slash.
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
                let to = format!("{}/", encode_path(&path_text));
                r.headers_mut().insert(
                    header::LOCATION,
                    HeaderValue::from_str(&to).map_err(internal)?,
                );
                return Ok(r);
            }
            let index = within(timeout, reader.lookup_entry(&cid, "index.html"))
                .await
                .map_err(|e| read_failure(&e, &path_text))?;
            match index {
                Some(e) => {
                    let info = within(timeout, reader.stat(&e.cid))
                        .await
                        .map_err(|e| read_failure(&e, &path_text))?;
                    if info.kind == EntryKind::File {
                        file(&reader, &info, "index.html", &req, headers, permit).await?
                    } else {
                        listing(&reader, cid, &path_text, &req, timeout).await?
                    }
                }
                None => listing(&reader, cid, &path_text, &req, timeout).await?,
            }
        }
        EntryKind::File => {
            let name = req
                .segments
                .last()
                .cloned()
                .unwrap_or_else(|| cid.to_string());
            file(&reader, &info, &name, &req, headers, permit).await?
        }
        EntryKind::Symlink => {
            // The target as text: a gateway cannot follow a link out of the DAG.
            let target = info.symlink_target.clone().unwrap_or_default();
            let mut r = Response::new(if req.head {
                Body::empty()
            } else {
                Body::from(target.clone())
            });
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("inode/symlink"),
            );
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(target.len()));
            r
        }
    };
    let h = resp.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(internal)?,
    );
    h.insert(
        header::CACHE_CONTROL,
        if immutable {
            HeaderValue::from_static("public, max-age=29030400, immutable")
        } else {
            cache_ttl(IPNS_TTL_SECS)
        },
    );
    h.insert(
        "x-ipfs-path",
        HeaderValue::from_str(&encode_path(&path_text)).map_err(internal)?,
    );
    h.insert(
        "x-ipfs-roots",
        HeaderValue::from_str(&root.to_string()).map_err(internal)?,
    );
    Ok(resp)
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn cache_ttl(secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={secs}"))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

/// Runs a read with the daemon's timeout over all of it.
async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, ReadError>>,
) -> Result<T, ReadError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(ReadError::Get(GetError::Timeout {
            cid: Cid::default(),
            secs: timeout.as_secs(),
        })),
    }
}

/// What IPNS name `name` points at: root, path below it, and the record's bytes.
async fn resolve_name(
    daemon: &Arc<Daemon>,
    name: IpnsName,
    timeout: Duration,
) -> Result<(Cid, Vec<String>, Vec<u8>), Failure> {
    let found = crate::records::resolve(&daemon.repo, &daemon.node, &daemon.mounts, name, timeout)
        .await
        .map_err(|e| Failure::new(StatusCode::BAD_GATEWAY, format!("/ipns/{name}: {e}")))?;
    let Some(bytes) = found else {
        return Err(Failure::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no record of /ipns/{name} found within {} s",
                timeout.as_secs()
            ),
        ));
    };
    let record = cairn_store::IpnsRecord::verify(&bytes, &name).map_err(|e| {
        Failure::new(
            StatusCode::BAD_GATEWAY,
            format!("the record of /ipns/{name} does not verify: {e}"),
        )
    })?;
    match record.value() {
        cairn_store::RecordValue::Ipfs(p) => Ok((p.root, p.segments.clone(), bytes)),
        other => Err(Failure::new(
            StatusCode::BAD_GATEWAY,
            format!("/ipns/{name} points at {other:?}, not at /ipfs/ content"),
        )),
    }
}

/// Percent-encodes a path for a header or a link (keeps `/`).
fn encode_path(path: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    percent_encoding::utf8_percent_encode(path, SET).to_string()
}

fn attachment(h: &mut HeaderMap, filename: &str) {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded =
        percent_encoding::utf8_percent_encode(filename, percent_encoding::NON_ALPHANUMERIC);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
}

/// `?format=raw`: block `cid` as it is.
async fn raw(
    reader: &Reader,
    cid: Cid,
    req: &Request,
    immutable: bool,
    timeout: Duration,
) -> Result<Response, Failure> {
    let bytes = match tokio::time::timeout(timeout, reader.source().get(&cid)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(read_failure(&ReadError::Get(e), &cid.to_string())),
        Err(_) => {
            return Err(Failure::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("block {cid} not found within {} s", timeout.as_secs()),
            ))
        }
    };
    let mut r = whole(req.head, bytes, "application/vnd.ipld.raw");
    let h = r.headers_mut();
    verifiable_headers(
        h,
        &format!("\"{cid}.raw\""),
        req,
        &format!("{cid}.bin"),
        immutable,
    )?;
    Ok(r)
}

/// A 200 of `bytes` (none for HEAD) with their type and length.
fn whole(head: bool, bytes: Bytes, ctype: &'static str) -> Response {
    let len = bytes.len();
    let mut r = Response::new(if head {
        Body::empty()
    } else {
        Body::from(bytes)
    });
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// The headers of a raw block or a CAR: its ETag, no sniffing, an attachment named
/// `?filename=` or `default_name`, and immutable caching for `/ipfs/`.
fn verifiable_headers(
    h: &mut HeaderMap,
    etag: &str,
    req: &Request,
    default_name: &str,
    immutable: bool,
) -> Result<(), Failure> {
    h.insert(header::ETAG, HeaderValue::from_str(etag).map_err(internal)?);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let name = req
        .query
        .get("filename")
        .map_or(default_name, String::as_str);
    attachment(h, name);
    if immutable {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=29030400, immutable"),
        );
    }
    Ok(())
}

/// The content type of a file named `name` whose first bytes are `head`.
fn content_type(name: &str, head: &[u8]) -> String {
    if let Some(m) = mime_guess::from_path(name).first() {
        let m = m.essence_str().to_string();
        return if m.starts_with("text/") || m == "application/javascript" || m == "application/json"
        {
            format!("{m}; charset=utf-8")
        } else {
            m
        };
    }
    let lower: Vec<u8> = head.iter().take(64).map(u8::to_ascii_lowercase).collect();
    let trimmed: &[u8] = {
        let start = lower
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(lower.len());
        &lower[start..]
    };
    let magic: &[(&[u8], &str)] = &[
        (b"\x89png\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"gif8", "image/gif"),
        (b"%pdf-", "application/pdf"),
        (b"<!doctype html", "text/html; charset=utf-8"),
        (b"<html", "text/html; charset=utf-8"),
        (b"<svg", "image/svg+xml"),
    ];
    for (m, t) in magic {
        if trimmed.starts_with(m) || lower.starts_with(m) {
            return (*t).to_string();
        }
    }
    if head.is_empty() || std::str::from_utf8(head).is_ok() || utf8_prefix(head) {
        "text/plain; charset=utf-8".into()
    } else {
        "application/octet-stream".into()
    }
}

/// Whether `b` is UTF-8 but for a character cut at its end.
fn utf8_prefix(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && b.len() - e.valid_up_to() < 4,
    }
}

/// One byte range, inclusive.
type Span = (u64, u64);

/// The ranges of a `Range` header for a file of `size` bytes: `Ok(None)` to send the whole
/// file (no header, or one this gateway does not take), `Err` for 416.
fn ranges(headers: &HeaderMap, size: u64) -> Result<Option<Vec<Span>>, ()> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
    if parts.len() > MAX_RANGES {
        return Ok(None);
    }
    let mut out = Vec::new();
    for p in parts {
        let Some((a, b)) = p.split_once('-') else {
            return Ok(None);
        };
        let span = if a.is_empty() {
            let Ok(n) = b.parse::<u64>() else {
                return Ok(None);
            };
            if n == 0 || size == 0 {
                continue;
            }
            (size.saturating_sub(n), size - 1)
        } else {
            let Ok(start) = a.parse::<u64>() else {
                return Ok(None);
            };
            let end = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => e.min(size.saturating_sub(1)),
                    _ => return Ok(None),
                }
            };
            if start >= size {
                continue;
            }
            (start, end)
        };
        out.push(span);
    }
    if out.is_empty() {
        return Err(());
    }
    Ok(Some(out))
}

/// Streams `len` bytes of file `cid` from `offset` into a body; `prefix`/`suffix` around them
/// (multipart framing). The permit is held until the body ends.
fn stream_parts(
    reader: &Reader,
    cid: Cid,
    parts: Vec<(Bytes, u64, u64)>,
    suffix: Bytes,
    permit: OwnedSemaphorePermit,
) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(BODY_BUFFER);
    let reader = reader.clone();
    tokio::spawn(async move {
        let _permit = permit;
        for (prefix, offset, len) in parts {
            if !prefix.is_empty() && tx.send(Ok(prefix)).await.is_err() {
                return;
            }
            let mut cursor = reader.cursor(&cid, offset);
            let mut left = len;
            while left > 0 {
                match cursor.next_chunk().await {
                    Ok(Some(chunk)) => {
                        let take = (chunk.len() as u64).min(left) as usize;
                        left -= take as u64;
                        if tx.send(Ok(chunk.slice(..take))).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(%cid, error = %e, "gateway: a file's block could not be had; the response ends short");
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                }
            }
        }
        if !suffix.is_empty() {
            let _ = tx.send(Ok(suffix)).await;
        }
    });
    channel_body(rx)
}

async fn file(
    reader: &Reader,
    info: &NodeInfo,
    name: &str,
    req: &Request,
    headers: &HeaderMap,
    permit: OwnedSemaphorePermit,
) -> Result<Response, Failure> {
    let size = info.size;
    let cid = info.cid;
    let head = if size == 0 {
        Bytes::new()
    } else {
        reader
            .read(&cid, 0, size.min(512) as usize)
            .await
            .map_err(|e| read_failure(&e, &cid.to_string()))?
    };
    let ctype = content_type(name, &head);
    let spans = match ranges(headers, size) {
        Ok(s) => s,
        Err(()) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).map_err(internal)?,
            );
            return Ok(r);
        }
    };
    let mut r;
    match spans.as_deref() {
        None => {
            r = Response::new(if req.head || size == 0 {
                Body::empty()
            } else {
                stream_parts(
                    reader,
                    cid,
                    vec![(Bytes::new(), 0, size)],
                    Bytes::new(),
                    permit,
                )
            });
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&ctype).map_err(internal)?,
            );
        }
        Some([(start, end)]) => {
            let len = end - start + 1;
            r = Response::new(if req.head {
                Body::empty()
            } else {
                stream_parts(
                    reader,
                    cid,
                    vec![(Bytes::new(), *start, len)],
                    Bytes::new(),
                    permit,
                )
            });
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")).map_err(internal)?,
            );
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&ctype).map_err(internal)?,
            );
        }
        Some(spans) => {
            let boundary = format!(
                "cairn-{}",
                &cid.to_string()[..16.min(cid.to_string().len())]
            );
            let mut parts = Vec::new();
            let mut total = 0u64;
            for (i, (start, end)) in spans.iter().enumerate() {
                let prefix = format!(
                    "{}--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {start}-{end}/{size}\r\n\r\n",
                    if i == 0 { "" } else { "\r\n" }
                );
                total += prefix.len() as u64 + (end - start + 1);
                parts.push((Bytes::from(prefix), *start, end - start + 1));
            }
            let suffix = Bytes::from(format!("\r\n--{boundary}--\r\n"));
            total += suffix.len() as u64;
            r = Response::new(if req.head {
                Body::empty()
            } else {
                stream_parts(reader, cid, parts, suffix, permit)
            });
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
                    .map_err(internal)?,
            );
        }
    }
    let h = r.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let download = req.query.get("download").is_some_and(|v| v == "true");
    if let Some(f) = req.query.get("filename") {
        if download {
            attachment(h, f);
        } else if let Ok(v) = HeaderValue::from_str(&format!(
            "inline; filename*=UTF-8''{}",
            percent_encoding::utf8_percent_encode(f, percent_encoding::NON_ALPHANUMERIC)
        )) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    } else if download {
        attachment(h, name);
    }
    Ok(r)
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The listing page of directory `cid` at `path`.
async fn listing(
    reader: &Reader,
    cid: Cid,
    path: &str,
    req: &Request,
    timeout: Duration,
) -> Result<Response, Failure> {
    let mut cursor = reader.dir_cursor(&cid);
    let mut entries: Vec<DirEntry> = Vec::new();
    let mut more = false;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, cursor.next_entry()).await;
        match next {
            Ok(Ok(Some(e))) => {
                if entries.len() == MAX_LISTING {
                    more = true;
                    break;
                }
                entries.push(e);
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(read_failure(&e, path)),
            Err(_) => {
                return Err(Failure::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "the listing of {path} did not arrive within {} s",
                        timeout.as_secs()
                    ),
                ))
            }
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    html.push_str(&format!("<title>{}</title>", esc(path)));
    html.push_str(
        "<style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;\
         padding:0 1rem;color:#222}h1{font-size:1.2rem;word-break:break-all}\
         nav a{text-decoration:none}table{border-collapse:collapse;width:100%}\
         th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #eee}\
         td.size{text-align:right;white-space:nowrap}td.cid{font-family:monospace;\
         font-size:.8rem;color:#666;word-break:break-all}tr:hover{background:#f6f8fa}\
         .note{color:#666;font-size:.9rem}</style></head><body>",
    );
    // Breadcrumbs: /ipfs/<root>/a/b → each a link.
    html.push_str("<nav><h1>");
    let mut acc = String::new();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        acc.push('/');
        acc.push_str(p);
        if i == 0 {
            html.push_str(&format!("/{}", esc(p)));
        } else {
            html.push_str(&format!(
                "/<a href=\"{}/\">{}</a>",
                esc(&encode_path(&acc)),
                esc(p)
            ));
        }
    }
    html.push_str("</h1></nav>");
    html.push_str(&format!(
        "<p class=\"note\">{} entr{} · <span class=\"cid\">{cid}</span></p>",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" }
    ));
    html.push_str("<table><thead><tr><th>Name</th><th>Size</th><th>CID</th></tr></thead><tbody>");
    if parts.len() > 2 {
        html.push_str("<tr><td><a href=\"../\">..</a></td><td></td><td></td></tr>");
    }
    for e in &entries {
        let href =
            percent_encoding::utf8_percent_encode(&e.name, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        html.push_str(&format!(
            "<tr><td><a href=\"./{}\">{}</a></td><td class=\"size\">{}</td><td class=\"cid\"><a href=\"/ipfs/{}\">{}</a></td></tr>",
            esc(&href),
            esc(&e.name),
            e.tsize.map(human).unwrap_or_default(),
            e.cid,
            e.cid
        ));
    }
    html.push_str("</tbody></table>");
    if more {
        html.push_str(&format!(
            "<p class=\"note\">Only the first {MAX_LISTING} entries are shown.</p>"
        ));
    }
    html.push_str("</body></html>\n");
    let len = html.len();
    let mut r = Response::new(if req.head {
        Body::empty()
    } else {
        Body::from(html)
    });
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(r)
}

/// `entity-bytes=from:to` resolved against a file of `size` bytes: the inclusive range, `None`
/// when it is empty or outside the file.
fn entity_range(spec: &str, size: u64) -> Result<Option<Span>, Failure> {
    let bad = || {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("invalid entity-bytes {spec:?}: from:to, with integers (negative from the end) or * for the end"),
        )
    };
    let (a, b) = spec.split_once(':').ok_or_else(bad)?;
    let at = |s: &str| -> Result<i128, Failure> {
        let v: i64 = s.parse().map_err(|_| bad())?;
        Ok(if v < 0 {
            i128::from(size) + i128::from(v)
        } else {
            i128::from(v)
        })
    };
    let from = at(a)?.max(0);
    let to = if b == "*" {
        i128::from(size) - 1
    } else {
        at(b)?.min(i128::from(size) - 1)
    };
    if size == 0 || from > to || from >= i128::from(size) {
        return Ok(None);
    }
    Ok(Some((from as u64, to as u64)))
}

/// `?format=car`: CAR v1 of the blocks that verify the path from `root`, then the scope asked
/// for at its end, depth-first, each block once. The CAR's root is the path's end (the spec
/// leaves it open; a client knows the path's root from its URL), so `cairn dag import` or
/// `ipfs dag import` of a CAR of a whole DAG pins what was asked for.
async fn car(
    reader: &Reader,
    root: Cid,
    segments: &[String],
    req: &Request,
    immutable: bool,
    timeout: Duration,
    permit: OwnedSemaphorePermit,
) -> Result<Response, Failure> {
    let scope = match req.query.get("dag-scope").map(String::as_str) {
        None | Some("all") => Scope::All,
        Some("entity") => Scope::Entity,
        Some("block") => Scope::Block,
        Some(other) => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!("invalid dag-scope {other:?}: block, entity or all"),
            ))
        }
    };
    let bytes_spec = req.query.get("entity-bytes").cloned();
    let scope = if bytes_spec.is_some() {
        Scope::Entity
    } else {
        scope
    };
    // The path's blocks first: each directory on the way (with a HAMT's shards), so a client
    // can check every step. The first block is fetched before the status is sent.
    let mut path_blocks = Vec::new();
    let mut cur = root;
    for seg in segments {
        path_blocks.push(cur);
        let next = within(timeout, reader.lookup_entry(&cur, seg))
            .await
            .map_err(|e| read_failure(&e, seg))?
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::NOT_FOUND,
                    format!("no entry {seg:?} in directory {cur}"),
                )
            })?;
        cur = next.cid;
    }
    let end = cur;
    within(timeout, async {
        reader.source().get(&end).await.map_err(ReadError::Get)
    })
    .await
    .map_err(|e| read_failure(&e, &end.to_string()))?;
    let range = match (&bytes_spec, scope) {
        (Some(spec), _) => {
            let info = within(timeout, reader.stat(&end))
                .await
                .map_err(|e| read_failure(&e, &end.to_string()))?;
            if info.kind == EntryKind::File {
                Some(entity_range(spec, info.size)?)
            } else {
                None
            }
        }
        _ => None,
    };
    let etag = format!(
        "\"{end}.car.{}{}\"",
        match scope {
            Scope::Block => "block",
            Scope::Entity => "entity",
            Scope::All => "all",
        },
        bytes_spec
            .as_deref()
            .map(|b| format!(".{}", b.replace(':', "-")))
            .unwrap_or_default()
    );
    let mut r = Response::new(if req.head {
        drop(permit);
        Body::empty()
    } else {
        car_body(reader.clone(), root, path_blocks, end, scope, range, permit)
    });
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.ipld.car; version=1; order=dfs; dups=n"),
    );
    verifiable_headers(h, &etag, req, &format!("{end}.car"), immutable)?;
    Ok(r)
}

/// What a CAR walk does below a block.
#[derive(Clone, Copy)]
enum Walk {
    /// The block alone.
    Block,
    /// A directory's own blocks (HAMT shards), a file's blocks (within a byte range, if any).
    Entity(Option<Span>),
    /// Everything below.
    All,
}

fn car_body(
    reader: Reader,
    root: Cid,
    path_blocks: Vec<Cid>,
    end: Cid,
    scope: Scope,
    range: Option<Option<Span>>,
    permit: OwnedSemaphorePermit,
) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(BODY_BUFFER);
    tokio::spawn(async move {
        let _permit = permit;
        let header = cairn_store::car_header(&[end]);
        let mut first = Vec::with_capacity(header.len() + 10);
        put_uvarint(&mut first, header.len() as u64);
        first.extend_from_slice(&header);
        if tx.send(Ok(Bytes::from(first))).await.is_err() {
            return;
        }
        let mut seen = std::collections::HashSet::new();
        let mut sent = 0usize;
        // The path's directories: each directory block, and a HAMT's shard blocks.
        let mut stack: Vec<(Cid, Walk, Option<u64>)> = Vec::new();
        let walk_end = match (scope, range) {
            (Scope::Block, _) | (_, Some(None)) => Walk::Block,
            (Scope::Entity, Some(Some(r))) => Walk::Entity(Some(r)),
            (Scope::Entity, _) => Walk::Entity(None),
            (Scope::All, _) => Walk::All,
        };
        stack.push((end, walk_end, Some(0)));
        for dir in path_blocks.into_iter().rev() {
            stack.push((dir, Walk::Entity(None), None));
        }
        while let Some((cid, walk, offset)) = stack.pop() {
            if cid.hash().code() == 0 || !seen.insert(cid) {
                continue;
            }
            if sent >= MAX_CAR_BLOCKS {
                tracing::info!(%root, "gateway: a CAR response reached {MAX_CAR_BLOCKS} blocks; it ends short");
                let _ = tx.send(Err(std::io::Error::other("too many blocks"))).await;
                return;
            }
            let data = match reader.source().get(&cid).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::info!(%cid, error = %e, "gateway: a block of a CAR could not be had; the response ends short");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            let mut frame = Vec::with_capacity(data.len() + 48);
            let cid_bytes = cid.to_bytes();
            put_uvarint(&mut frame, (cid_bytes.len() + data.len()) as u64);
            frame.extend_from_slice(&cid_bytes);
            frame.extend_from_slice(&data);
            if tx.send(Ok(Bytes::from(frame))).await.is_err() {
                return;
            }
            sent += 1;
            if matches!(walk, Walk::Block) || cid.codec() != cairn_store::DAG_PB {
                continue;
            }
            let Ok(node) = PbNode::decode(&data) else {
                continue;
            };
            let fs = node.data.as_ref().and_then(|d| UnixFsData::decode(d).ok());
            let kind = fs.as_ref().map(|f| f.kind);
            let children: Vec<(Cid, Walk, Option<u64>)> = match (walk, kind) {
                (Walk::All, _) => node
                    .links
                    .iter()
                    .map(|l| (l.cid, Walk::All, None))
                    .collect(),
                (Walk::Entity(_), Some(cairn_store::DataType::Directory)) => Vec::new(),
                (Walk::Entity(_), Some(cairn_store::DataType::HamtShard)) => node
                    .links
                    .iter()
                    .filter(|l| l.name.as_deref().is_some_and(|n| n.len() == 2))
                    .map(|l| (l.cid, Walk::Entity(None), None))
                    .collect(),
                (
                    Walk::Entity(r),
                    Some(cairn_store::DataType::File | cairn_store::DataType::Raw),
                ) => {
                    // The children whose bytes overlap the range.
                    let sizes = fs
                        .as_ref()
                        .map(|f| f.blocksizes.clone())
                        .unwrap_or_default();
                    let mut at = offset.unwrap_or(0);
                    let mut out = Vec::new();
                    for (i, l) in node.links.iter().enumerate() {
                        let len = sizes.get(i).copied().unwrap_or(0);
                        let keep = match r {
                            None => true,
                            Some((from, to)) => at <= to && at + len > from,
                        };
                        if keep {
                            out.push((l.cid, Walk::Entity(r), Some(at)));
                        }
                        at += len;
                    }
                    out
                }
                _ => Vec::new(),
            };
            // Depth-first in link order: push in reverse.
            for c in children.into_iter().rev() {
                stack.push(c);
            }
        }
    });
    channel_body(rx)
}

/// A body fed by a task through `rx`: it ends when the task drops its sender, and dropping it
/// (the client went away) makes the task's next send fail, so the task ends too.
fn channel_body(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Body {
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::RANGE,
            HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(ranges(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(ranges(&with_range("bytes=0-3"), 10), Ok(Some(vec![(0, 3)])));
        assert_eq!(ranges(&with_range("bytes=5-"), 10), Ok(Some(vec![(5, 9)])));
        assert_eq!(ranges(&with_range("bytes=-3"), 10), Ok(Some(vec![(7, 9)])));
        assert_eq!(
            ranges(&with_range("bytes=8-100"), 10),
            Ok(Some(vec![(8, 9)]))
        );
        assert_eq!(
            ranges(&with_range("bytes=0-1, 4-5"), 10),
            Ok(Some(vec![(0, 1), (4, 5)]))
        );
        assert_eq!(ranges(&with_range("bytes=10-"), 10), Err(()));
        assert_eq!(ranges(&with_range("bytes=0-0"), 0), Err(()));
        assert_eq!(ranges(&with_range("bytes=3-1"), 10), Ok(None));
        assert_eq!(ranges(&with_range("items=0-1"), 10), Ok(None));
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(ranges(&with_range(&many), 10), Ok(None));
    }

    #[test]
    fn entity_bytes_take_negative_offsets_and_star() {
        let r = |s: &str, n: u64| entity_range(s, n).ok().flatten();
        assert_eq!(r("0:*", 100), Some((0, 99)));
        assert_eq!(r("-10:*", 100), Some((90, 99)));
        assert_eq!(r("10:19", 100), Some((10, 19)));
        assert_eq!(r("499:-1000", 2000), Some((499, 1000)));
        assert_eq!(r("200:300", 100), None);
        assert!(entity_range("x:1", 100).is_err());
    }

    #[test]
    fn content_types_come_from_the_name_then_the_bytes() {
        assert_eq!(content_type("a.txt", b"hi"), "text/plain; charset=utf-8");
        assert_eq!(content_type("a.png", b""), "image/png");
        assert_eq!(content_type("noext", b"\x89PNG\r\n\x1a\nxx"), "image/png");
        assert_eq!(
            content_type("noext", b"  <!DOCTYPE html><p>"),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type("noext", b"\x00\x01\xfe"),
            "application/octet-stream"
        );
        assert_eq!(
            content_type("noext", "héllo".as_bytes()),
            "text/plain; charset=utf-8"
        );
    }
}
