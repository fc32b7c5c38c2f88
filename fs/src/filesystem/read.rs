//! File reads: leaves from the cache or fetched once however many readers want them, reads
//! answered on the FUSE thread when everything is local, and readahead for sequential readers.

use super::*;

/// Readahead state of one open file.
#[derive(Debug)]
pub(super) struct OpenFile {
    pub(super) cid: Cid,
    pub(super) size: u64,
    /// Where the next sequential read would start.
    pub(super) next: u64,
    /// The current window; 0 until a sequential read is seen.
    pub(super) window: u64,
    /// Everything before this has been prefetched.
    pub(super) prefetched_to: u64,
}

impl OpenFile {
    pub(super) fn new(cid: Cid, size: u64) -> OpenFile {
        OpenFile {
            cid,
            size,
            next: 0,
            window: 0,
            prefetched_to: 0,
        }
    }
}

/// The parts of a read as one buffer (no copy for a read inside one leaf).
pub(super) fn join(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => {
            let mut buf = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            parts.iter().for_each(|p| buf.extend_from_slice(p));
            buf.freeze()
        }
    }
}

impl<S: BlockSource + Clone> Shared<S> {
    /// The data of `leaves` (as returned by `DagReader::leaves`), from the cache or fetched.
    pub(super) async fn leaf_data(
        self: &Arc<Self>,
        leaves: &[(Cid, u64, u64)],
    ) -> Result<Vec<Bytes>, FsError> {
        let mut out: Vec<Option<Bytes>> = leaves.iter().map(|l| self.cache.get(&l.0)).collect();
        let mut todo: Vec<usize> = (0..leaves.len())
            .filter(|&i| out[i].is_none())
            .rev()
            .collect();
        // One missing leaf (the common case of a read inside one leaf): no task needed.
        if let ([i], 1) = (todo.as_slice(), leaves.len()) {
            let (cid, _, len) = leaves[*i];
            return Ok(vec![self.fetch_leaf(cid, len).await?]);
        }
        let mut tasks = JoinSet::new();
        loop {
            while tasks.len() < FETCH_PARALLEL {
                let Some(i) = todo.pop() else { break };
                let this = self.clone();
                let (cid, _, len) = leaves[i];
                tasks.spawn(async move { this.fetch_leaf(cid, len).await.map(|d| (i, d)) });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            match done {
                Ok(Ok((i, data))) => out[i] = Some(data),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(FsError::NotFound),
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One leaf's data, from the cache or fetched and checked against the `len` its parent
    /// gives. A read and a prefetch wanting the same leaf share one fetch (and one hash check).
    pub(super) async fn fetch_leaf(self: &Arc<Self>, cid: Cid, len: u64) -> Result<Bytes, FsError> {
        let cell = {
            let mut inflight = lock(&self.inflight);
            // Looked up under the in-flight lock: a finished fetch is in the cache before it
            // leaves the in-flight map, so no fetch is started twice.
            if let Some(data) = self.cache.get(&cid) {
                return Ok(data);
            }
            inflight.entry(cid).or_default().clone()
        };
        let result = cell
            .get_or_try_init(|| async {
                let data = self.reader.node_data(&cid).await?;
                if data.len() as u64 != len {
                    return Err(FsError::from(ReadError::Malformed {
                        cid,
                        reason: "leaf size disagrees with its parent's blocksizes",
                    }));
                }
                self.cache.insert(cid, data.clone());
                Ok(data)
            })
            .await
            .cloned();
        let mut inflight = lock(&self.inflight);
        if inflight.get(&cid).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(&cid);
        }
        result
    }

    pub(crate) async fn read(
        self: Arc<Self>,
        fh: u64,
        cid: Cid,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, FsError> {
        let end = offset.saturating_add(u64::from(size));
        let leaves = self.reader.leaves(&cid, offset, u64::from(size)).await?;
        let datas = self.leaf_data(&leaves).await?;
        let parts: Vec<Bytes> = leaves
            .iter()
            .zip(datas)
            .filter_map(|(&(_, start, len), data)| {
                let from = offset.max(start) - start;
                let to = end.min(start + len).checked_sub(start)?;
                (from < to).then(|| data.slice(from as usize..to as usize))
            })
            .collect();
        let out = join(parts);
        self.readahead(fh, offset, out.len() as u64, &Handle::current());
        Ok(out)
    }

    /// [`Shared::read`] on the calling (FUSE) thread when everything it needs is local: the
    /// file's inner nodes cached or small and local, its leaves cached or read and verified
    /// here. `None` sends the read to a task instead (anything missing, or any error, which
    /// the task then reports the usual way).
    pub(crate) fn read_now(
        self: &Arc<Self>,
        fh: u64,
        cid: Cid,
        offset: u64,
        size: u32,
        rt: &Handle,
    ) -> Option<Bytes> {
        let end = offset.saturating_add(u64::from(size));
        let leaves = self
            .reader
            .leaves_now(&cid, offset, u64::from(size))?
            .ok()?;
        let mut parts: Vec<Bytes> = Vec::with_capacity(leaves.len());
        for &(leaf, start, len) in &leaves {
            let data = match self.cache.get(&leaf) {
                Some(d) => d,
                None => {
                    // A prefetch is reading it already: join that fetch on the runtime rather
                    // than read the leaf twice.
                    if lock(&self.inflight).contains_key(&leaf) {
                        return None;
                    }
                    let raw = self.reader.source().get_local_blocking(&leaf)?;
                    // The bytes a node holds itself: a raw leaf is all data; anything else goes
                    // the long way (it needs decoding, and is rare as a leaf).
                    if leaf.codec() != cairn_store::RAW || raw.len() as u64 != len {
                        return None;
                    }
                    self.cache.insert(leaf, raw.clone());
                    raw
                }
            };
            let from = offset.max(start) - start;
            let Some(to) = end.min(start + len).checked_sub(start) else {
                continue;
            };
            if from < to {
                parts.push(data.slice(from as usize..to as usize));
            }
        }
        let out = join(parts);
        self.readahead(fh, offset, out.len() as u64, rt);
        Some(out)
    }

    /// Starts (or moves) readahead state for handle `fh` reading committed file `cid` of
    /// `size` bytes: a writable mount's file can change content between reads.
    pub(crate) fn track_open(&self, fh: u64, cid: Cid, size: u64) {
        let mut handles = lock(&self.handles);
        match handles.get_mut(&fh) {
            Some(h) if h.cid == cid && h.size == size => {}
            Some(h) => {
                *h = OpenFile::new(cid, size);
            }
            None => {
                handles.insert(fh, OpenFile::new(cid, size));
            }
        }
    }

    /// Drops the readahead state of handle `fh`.
    pub(crate) fn close_open(&self, fh: u64) {
        lock(&self.handles).remove(&fh);
    }

    /// Notes a read on `fh`; on sequential reads, prefetches the next window in the background.
    pub(super) fn readahead(self: &Arc<Self>, fh: u64, offset: u64, len: u64, rt: &Handle) {
        let plan = {
            let mut handles = lock(&self.handles);
            let Some(h) = handles.get_mut(&fh) else {
                return;
            };
            let slack = h.window.max(self.options.readahead_min);
            // The kernel issues readahead concurrently, so "sequential" tolerates some reordering.
            if offset.abs_diff(h.next) <= slack {
                h.window = if h.window == 0 {
                    self.options.readahead_min
                } else {
                    h.window.saturating_mul(2).min(self.options.readahead_max)
                };
                h.next = h.next.max(offset + len);
            } else {
                h.window = 0;
                h.prefetched_to = 0;
                h.next = offset + len;
            }
            let from = h.prefetched_to.max(offset + len);
            let to = (offset + len).saturating_add(h.window).min(h.size);
            if h.window == 0 || from >= to {
                return;
            }
            let Ok(permit) = self.prefetch.clone().try_acquire_owned() else {
                return;
            };
            h.prefetched_to = to;
            (h.cid, from, to, permit)
        };
        let (cid, from, to, permit) = plan;
        let this = self.clone();
        let timeout = self.options.timeout;
        rt.spawn(async move {
            let work = async {
                let leaves = this.reader.leaves(&cid, from, to - from).await?;
                let missing: Vec<_> = leaves
                    .into_iter()
                    .filter(|l| !this.cache.contains(&l.0))
                    .collect();
                this.leaf_data(&missing).await.map(|_| ())
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%cid, error = %e, "prefetch failed"),
                Err(_) => tracing::debug!(%cid, "prefetch timed out"),
            }
            drop(permit);
        });
    }
}
