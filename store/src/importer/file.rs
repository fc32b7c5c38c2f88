//! One file: chunks to leaves to a balanced tree, streaming, with hashing on worker threads.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use bytes::Bytes;
use cid::Cid;

use super::{Batcher, ImportError, ImportOptions, Imported};
use crate::block::Block;
use crate::blockstore::StoreError;
use crate::chunker::Chunker;
use crate::hash::{DAG_PB, RAW};
use crate::pb::{PbLink, PbNode};
use crate::unixfs::{DataType, UnixFsData, UnixTime};

/// Permission bits a file node leaves out (the UnixFS default).
const DEFAULT_FILE_MODE: u32 = 0o644;
/// Chunks per batch handed to a hashing worker (bounded further by [`BATCH_BYTES`]).
const BATCH_CHUNKS: usize = 64;
/// Bytes per batch handed to a hashing worker.
const BATCH_BYTES: usize = 4 << 20;

/// Metadata to record on a file (UnixFS 1.5). `Some` means "provided", even if it is the default.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FileMeta {
    pub mode: Option<u32>,
    pub mtime: Option<UnixTime>,
}

impl FileMeta {
    fn is_set(&self) -> bool {
        self.mode.is_some() || self.mtime.is_some()
    }

    fn apply(&self, d: &mut UnixFsData) {
        d.mode = self.mode.filter(|&m| m != DEFAULT_FILE_MODE);
        d.mtime = self.mtime;
    }
}

/// What a parent needs to know about a child.
#[derive(Debug, Clone, Copy)]
struct LinkInfo {
    cid: Cid,
    /// Cumulative DAG bytes.
    tsize: u64,
    /// File content bytes.
    filesize: u64,
}

/// An encoded leaf, with the chunk it holds.
struct Leaf {
    block: Block,
    info: LinkInfo,
    chunk: Bytes,
}

fn encode_leaf(chunk: Bytes, opts: &ImportOptions) -> Leaf {
    let filesize = chunk.len() as u64;
    let block = if opts.raw_leaves {
        Block::encode(1, RAW, opts.hash, chunk.clone())
    } else {
        let mut d = UnixFsData::new(DataType::File);
        d.data = (!chunk.is_empty()).then(|| chunk.clone());
        d.filesize = Some(filesize);
        let node = PbNode {
            links: Vec::new(),
            data: Some(d.encode().into()),
        };
        Block::encode(opts.cid_version, DAG_PB, opts.hash, node.encode().into())
    };
    let info = LinkInfo {
        cid: *block.cid(),
        tsize: block.data().len() as u64,
        filesize,
    };
    Leaf { block, info, chunk }
}

/// Builds the balanced tree bottom-up as leaves arrive, keeping at most `max_links` pending links
/// per level. Equivalent to the JS importer's "batch 174, reduce, repeat until one root".
struct TreeBuilder<'o> {
    opts: &'o ImportOptions,
    meta: FileMeta,
    levels: Vec<Vec<LinkInfo>>,
    /// The first leaf, held back until we know whether it is the only one.
    first: Option<Leaf>,
    leaves: u64,
}

impl<'o> TreeBuilder<'o> {
    fn new(opts: &'o ImportOptions, meta: FileMeta) -> Self {
        TreeBuilder {
            opts,
            meta,
            levels: Vec::new(),
            first: None,
            leaves: 0,
        }
    }

    fn push(&mut self, leaf: Leaf, out: &mut Batcher) -> Result<(), StoreError> {
        self.leaves += 1;
        if self.leaves == 1 {
            self.first = Some(leaf);
            return Ok(());
        }
        if let Some(first) = self.first.take() {
            out.push(first.block)?;
            self.add(0, first.info, out)?;
        }
        out.push(leaf.block)?;
        self.add(0, leaf.info, out)
    }

    fn add(&mut self, level: usize, info: LinkInfo, out: &mut Batcher) -> Result<(), StoreError> {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(info);
        if self.levels[level].len() >= self.opts.max_links {
            let links = std::mem::take(&mut self.levels[level]);
            let parent = self.parent(&links, out)?;
            self.add(level + 1, parent, out)?;
        }
        Ok(())
    }

    fn parent(&self, links: &[LinkInfo], out: &mut Batcher) -> Result<LinkInfo, StoreError> {
        let mut d = UnixFsData::new(DataType::File);
        d.blocksizes = links.iter().map(|l| l.filesize).collect();
        let filesize: u64 = d.blocksizes.iter().sum();
        d.filesize = Some(filesize);
        self.meta.apply(&mut d);
        let node = PbNode {
            links: links
                .iter()
                .map(|l| PbLink {
                    cid: l.cid,
                    name: Some(String::new()),
                    tsize: Some(l.tsize),
                })
                .collect(),
            data: Some(d.encode().into()),
        };
        let bytes = node.encode();
        let tsize = bytes.len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>();
        let block = Block::encode(self.opts.cid_version, DAG_PB, self.opts.hash, bytes.into());
        let info = LinkInfo {
            cid: *block.cid(),
            tsize,
            filesize,
        };
        out.push(block)?;
        Ok(info)
    }

    fn finish(mut self, out: &mut Batcher) -> Result<LinkInfo, StoreError> {
        if let Some(only) = self.first.take() {
            if !self.meta.is_set() {
                out.push(only.block)?;
                return Ok(only.info);
            }
            // One chunk with metadata: a File node holding the chunk (there is nowhere else for it).
            let mut d = UnixFsData::new(DataType::File);
            d.data = (!only.chunk.is_empty()).then(|| only.chunk.clone());
            d.filesize = Some(only.info.filesize);
            self.meta.apply(&mut d);
            let node = PbNode {
                links: Vec::new(),
                data: Some(d.encode().into()),
            };
            let block = Block::encode(
                self.opts.cid_version,
                DAG_PB,
                self.opts.hash,
                node.encode().into(),
            );
            let info = LinkInfo {
                cid: *block.cid(),
                tsize: block.data().len() as u64,
                filesize: only.info.filesize,
            };
            out.push(block)?;
            return Ok(info);
        }
        let mut level = 0;
        loop {
            let Some(current) = self.levels.get(level) else {
                // Unreachable: the chunker yields at least one chunk, so some level holds the root.
                return Err(StoreError::Internal("importer produced no root"));
            };
            let above_empty = self.levels[level + 1..].iter().all(Vec::is_empty);
            if above_empty && current.len() == 1 && level > 0 {
                return Ok(current[0]);
            }
            if !current.is_empty() {
                let links = std::mem::take(&mut self.levels[level]);
                let parent = self.parent(&links, out)?;
                self.add(level + 1, parent, out)?;
            }
            level += 1;
        }
    }
}

fn imported(root: LinkInfo) -> Imported {
    Imported {
        cid: root.cid,
        size: root.filesize,
        tsize: root.tsize,
    }
}

/// Imports a stream on the calling thread only (for small files).
pub(super) fn import_serial<R: Read>(
    r: R,
    opts: &ImportOptions,
    meta: &FileMeta,
    out: &mut Batcher,
    progress: &mut dyn FnMut(u64),
    read_err: &dyn Fn(io::Error) -> ImportError,
) -> Result<Imported, ImportError> {
    let mut tree = TreeBuilder::new(opts, *meta);
    let mut done = 0u64;
    for chunk in Chunker::new(r, &opts.chunker).map_err(super::OptionsError::from)? {
        let chunk = chunk.map_err(read_err)?;
        done += chunk.len() as u64;
        tree.push(encode_leaf(chunk, opts), out)?;
    }
    progress(done);
    Ok(imported(tree.finish(out)?))
}

/// Imports a stream with a reader thread and hashing workers; the calling thread assembles the
/// tree in chunk order and writes blocks.
pub(super) fn import_parallel<R: Read + Send>(
    r: R,
    opts: &ImportOptions,
    meta: &FileMeta,
    out: &mut Batcher,
    progress: &mut dyn FnMut(u64),
    read_err: &dyn Fn(io::Error) -> ImportError,
) -> Result<Imported, ImportError> {
    let chunker = Chunker::new(r, &opts.chunker).map_err(super::OptionsError::from)?;
    let workers = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    thread::scope(|s| {
        let mut to_workers: Vec<SyncSender<Vec<Bytes>>> = Vec::with_capacity(workers);
        let mut from_workers: Vec<Receiver<Vec<Leaf>>> = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (in_tx, in_rx) = sync_channel::<Vec<Bytes>>(1);
            let (out_tx, out_rx) = sync_channel::<Vec<Leaf>>(1);
            s.spawn(move || {
                for batch in in_rx {
                    let leaves: Vec<Leaf> =
                        batch.into_iter().map(|c| encode_leaf(c, opts)).collect();
                    if out_tx.send(leaves).is_err() {
                        break;
                    }
                }
            });
            to_workers.push(in_tx);
            from_workers.push(out_rx);
        }
        // Batch i goes to worker i % workers and is collected in the same order.
        let reader = s.spawn(move || -> io::Result<()> {
            let mut batch = Vec::new();
            let mut bytes = 0usize;
            let mut next = 0usize;
            for chunk in chunker {
                let chunk = chunk?;
                bytes += chunk.len();
                batch.push(chunk);
                if batch.len() >= BATCH_CHUNKS || bytes >= BATCH_BYTES {
                    if to_workers[next % workers]
                        .send(std::mem::take(&mut batch))
                        .is_err()
                    {
                        return Ok(()); // the assembler stopped; it reports why
                    }
                    next += 1;
                    bytes = 0;
                }
            }
            if !batch.is_empty() {
                let _ = to_workers[next % workers].send(batch);
            }
            Ok(())
        });

        let assembled = assemble(from_workers, opts, meta, out, progress);
        let read = match reader.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // A read error explains a short stream, so it wins over what the assembler saw.
        read.map_err(read_err)?;
        Ok(imported(assembled?))
    })
}

/// Receives encoded leaves in order and builds the tree; dropping `from_workers` on return stops
/// the pipeline if it ends early.
fn assemble(
    from_workers: Vec<Receiver<Vec<Leaf>>>,
    opts: &ImportOptions,
    meta: &FileMeta,
    out: &mut Batcher,
    progress: &mut dyn FnMut(u64),
) -> Result<LinkInfo, StoreError> {
    let mut tree = TreeBuilder::new(opts, *meta);
    let mut done = 0u64;
    let mut next = 0usize;
    while let Ok(leaves) = from_workers[next % from_workers.len()].recv() {
        next += 1;
        for leaf in leaves {
            done += leaf.info.filesize;
            tree.push(leaf, out)?;
        }
        progress(done);
    }
    tree.finish(out)
}
