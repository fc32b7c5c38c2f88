//! CAR v1 (content-addressed archive) export and import.
//!
//! A CAR v1 is `varint(len) header` then sections `varint(len) cid-bytes block-bytes`. The
//! header is the dag-cbor map `{"roots": [cid...], "version": 1}`; a CID in dag-cbor is tag 42
//! over a byte string holding `0x00` (identity multibase) and the binary CID. We write that map
//! by hand (keys in dag-cbor's canonical length-then-bytes order) and read it with a small,
//! bounded cbor reader that accepts any well-formed header map.
//!
//! Import limits: header ≤ 1 MiB, each section ≤ 2 MiB of block plus its CID. Every block is
//! verified against its CID before it is stored.

use std::io::{self, Read, Write};

use cid::Cid;

use crate::block::Block;
use crate::blockstore::{Blockstore, StoreError};
use crate::sink::BlockSink;
use crate::varint;
use crate::walk::{DagWalk, WalkError, WalkMode};

/// Largest header accepted.
pub const MAX_HEADER: u64 = 1 << 20;
/// Largest block accepted in a section.
pub const MAX_BLOCK: u64 = 2 << 20;
/// Room for the CID in front of a section's block.
const MAX_CID: u64 = 128;
/// Blocks handed to the sink per batch.
const BATCH_BLOCKS: usize = 256;
const BATCH_BYTES: usize = 32 << 20;
const IDENTITY: u64 = 0x00;

/// Why a CAR could not be written or read. On import, nothing is pinned after an error.
#[derive(Debug, thiserror::Error)]
pub enum CarError {
    /// Reading or writing the stream failed.
    #[error("CAR i/o error")]
    Io(#[from] io::Error),
    /// The stream ended inside the header or a section.
    #[error("truncated CAR: stream ends inside the {what} at byte {offset}")]
    Truncated {
        /// `header` or `section`.
        what: &'static str,
        /// Where the incomplete item starts.
        offset: u64,
    },
    /// The header length is over [`MAX_HEADER`].
    #[error("CAR header of {len} bytes is larger than the {MAX_HEADER}-byte limit")]
    HeaderTooLarge {
        /// The declared length.
        len: u64,
    },
    /// The header is not the expected cbor map.
    #[error("invalid CAR header: {reason}")]
    BadHeader {
        /// What is wrong.
        reason: &'static str,
    },
    /// Not a CAR v1.
    #[error("unsupported CAR version {version} (only version 1)")]
    UnsupportedVersion {
        /// The version in the header.
        version: u64,
    },
    /// A section is over the size limit.
    #[error("CAR section at byte {offset} is {len} bytes, over the {MAX_BLOCK}-byte block limit")]
    SectionTooLarge {
        /// Where it starts.
        offset: u64,
        /// Its declared length.
        len: u64,
    },
    /// A section does not start with a valid CID.
    #[error("CAR section at byte {offset} does not start with a valid CID")]
    BadCid {
        /// Where it starts.
        offset: u64,
    },
    /// A block does not match its CID.
    #[error("CAR block {cid} does not match its CID (section at byte {offset})")]
    Mismatch {
        /// The CID the section claims.
        cid: Cid,
        /// Where the section starts.
        offset: u64,
    },
    /// The DAG to export is incomplete or unreadable.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Pinning the roots failed.
    #[error(transparent)]
    Pin(#[from] crate::pins::PinError),
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarStats {
    /// Blocks written.
    pub blocks: u64,
    /// Bytes written (the whole stream).
    pub bytes: u64,
}

fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The dag-cbor header `{"roots": [...], "version": 1}`.
pub fn encode_header(roots: &[Cid]) -> Vec<u8> {
    let mut h = Vec::with_capacity(16 + roots.len() * 42);
    cbor_head(&mut h, 5, 2);
    cbor_head(&mut h, 3, 5);
    h.extend_from_slice(b"roots");
    cbor_head(&mut h, 4, roots.len() as u64);
    for r in roots {
        let bytes = r.to_bytes();
        cbor_head(&mut h, 6, 42);
        cbor_head(&mut h, 2, bytes.len() as u64 + 1);
        h.push(0);
        h.extend_from_slice(&bytes);
    }
    cbor_head(&mut h, 3, 7);
    h.extend_from_slice(b"version");
    cbor_head(&mut h, 0, 1);
    h
}

/// Writes the DAGs under `roots` as CAR v1: depth-first, each block once, every block read
/// and verified on the way (a missing or corrupt block aborts the export, naming it).
pub fn export<B: Blockstore + ?Sized, W: Write>(
    store: &B,
    roots: &[Cid],
    mut out: W,
) -> Result<CarStats, CarError> {
    // Every block must be here before the header is written: a DAG that cannot be exported
    // whole leaves no partial CAR behind (leaves are looked up, not read; the export reads and
    // verifies everything below).
    for root in roots {
        for visit in DagWalk::new(store, *root, WalkMode::Present) {
            visit?;
        }
    }
    let mut stats = CarStats::default();
    let mut prefix = Vec::with_capacity(10);
    let header = encode_header(roots);
    varint::put_uvarint(&mut prefix, header.len() as u64);
    out.write_all(&prefix)?;
    out.write_all(&header)?;
    stats.bytes += (prefix.len() + header.len()) as u64;
    let Some((first, rest)) = roots.split_first() else {
        return Ok(stats);
    };
    let mut walk = DagWalk::new(store, *first, WalkMode::Verify);
    for r in rest.iter().rev() {
        walk.push_root(*r);
    }
    for visit in walk {
        let visit = visit?;
        if visit.cid.hash().code() == IDENTITY {
            continue;
        }
        let data = visit.data.unwrap_or_default();
        let cid = visit.cid.to_bytes();
        prefix.clear();
        varint::put_uvarint(&mut prefix, (cid.len() + data.len()) as u64);
        out.write_all(&prefix)?;
        out.write_all(&cid)?;
        out.write_all(&data)?;
        stats.blocks += 1;
        stats.bytes += (prefix.len() + cid.len() + data.len()) as u64;
    }
    Ok(stats)
}

/// Reads a varint; `Ok(None)` at a clean end of stream.
fn read_varint<R: Read>(
    r: &mut R,
    what: &'static str,
    offset: u64,
) -> Result<Option<(u64, u64)>, CarError> {
    let mut buf = [0u8; 10];
    for i in 0..10 {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(CarError::Truncated { what, offset }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        buf[i] = b[0];
        if b[0] & 0x80 == 0 {
            return match varint::read_uvarint(&buf[..=i]) {
                Some((v, n)) => Ok(Some((v, n as u64))),
                None => Err(CarError::BadHeader {
                    reason: "malformed length varint",
                }),
            };
        }
    }
    Err(CarError::BadHeader {
        reason: "length varint longer than 10 bytes",
    })
}

fn read_exact<R: Read>(
    r: &mut R,
    len: u64,
    what: &'static str,
    offset: u64,
) -> Result<Vec<u8>, CarError> {
    let mut buf = Vec::new();
    r.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(CarError::Truncated { what, offset });
    }
    Ok(buf)
}

/// A bounded reader of the cbor subset a CAR header may contain.
struct Cbor<'a> {
    buf: &'a [u8],
    pos: usize,
}

const BAD: CarError = CarError::BadHeader {
    reason: "malformed cbor",
};

impl Cbor<'_> {
    fn byte(&mut self) -> Result<u8, CarError> {
        let b = *self.buf.get(self.pos).ok_or(BAD)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&[u8], CarError> {
        let n = usize::try_from(n).map_err(|_| BAD)?;
        let end = self.pos.checked_add(n).ok_or(BAD)?;
        let s = self.buf.get(self.pos..end).ok_or(BAD)?;
        self.pos = end;
        Ok(s)
    }

    /// Reads a head: (major type, argument).
    fn head(&mut self) -> Result<(u8, u64), CarError> {
        let b = self.byte()?;
        let (major, info) = (b >> 5, b & 0x1f);
        let n = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.byte()?),
            25 => u64::from(u16::from_be_bytes(
                self.take(2)?.try_into().map_err(|_| BAD)?,
            )),
            26 => u64::from(u32::from_be_bytes(
                self.take(4)?.try_into().map_err(|_| BAD)?,
            )),
            27 => u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| BAD)?),
            _ => {
                return Err(CarError::BadHeader {
                    reason: "indefinite-length cbor is not dag-cbor",
                })
            }
        };
        Ok((major, n))
    }

    fn skip(&mut self, depth: u32) -> Result<(), CarError> {
        if depth > 16 {
            return Err(CarError::BadHeader {
                reason: "cbor nested too deeply",
            });
        }
        let (major, n) = self.head()?;
        match major {
            0 | 1 | 7 => {}
            2 | 3 => {
                self.take(n)?;
            }
            4 => {
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
            }
            5 => {
                for _ in 0..n.saturating_mul(2) {
                    self.skip(depth + 1)?;
                }
            }
            6 => self.skip(depth + 1)?,
            _ => return Err(BAD),
        }
        Ok(())
    }

    fn cid(&mut self) -> Result<Cid, CarError> {
        let bad = CarError::BadHeader {
            reason: "a root is not a CID (tag 42)",
        };
        if self.head()? != (6, 42) {
            return Err(bad);
        }
        let (major, n) = self.head()?;
        if major != 2 {
            return Err(bad);
        }
        match self.take(n)? {
            [0, rest @ ..] => Cid::try_from(rest).map_err(|_| bad),
            _ => Err(bad),
        }
    }
}

/// Parses a CAR v1 header, returning its roots.
pub fn decode_header(buf: &[u8]) -> Result<Vec<Cid>, CarError> {
    let mut c = Cbor { buf, pos: 0 };
    let (major, entries) = c.head()?;
    if major != 5 {
        return Err(CarError::BadHeader {
            reason: "header is not a cbor map",
        });
    }
    let mut roots = None;
    let mut version = None;
    for _ in 0..entries {
        let (major, n) = c.head()?;
        if major != 3 {
            return Err(CarError::BadHeader {
                reason: "header key is not a string",
            });
        }
        match c.take(n)? {
            b"version" => match c.head()? {
                (0, v) => version = Some(v),
                _ => {
                    return Err(CarError::BadHeader {
                        reason: "version is not an integer",
                    })
                }
            },
            b"roots" => {
                let (major, n) = c.head()?;
                if major != 4 {
                    return Err(CarError::BadHeader {
                        reason: "roots is not an array",
                    });
                }
                let mut list = Vec::new();
                for _ in 0..n {
                    list.push(c.cid()?);
                }
                roots = Some(list);
            }
            _ => c.skip(0)?,
        }
    }
    if c.pos != buf.len() {
        return Err(CarError::BadHeader {
            reason: "trailing bytes after the header map",
        });
    }
    match version {
        Some(1) => {}
        Some(v) => return Err(CarError::UnsupportedVersion { version: v }),
        None => {
            return Err(CarError::BadHeader {
                reason: "no version",
            })
        }
    }
    roots.ok_or(CarError::BadHeader { reason: "no roots" })
}

/// Reads a CAR v1 stream into `sink`, verifying each block against its CID first. Returns the
/// header's roots. Blocks before an error may have been stored (unpinned; GC removes them).
pub fn import<R: Read, S: BlockSink + ?Sized>(input: R, sink: &S) -> Result<Vec<Cid>, CarError> {
    import_counted(input, sink).map(|(roots, _)| roots)
}

/// [`import`], also saying how many blocks (and bytes of the stream) it read.
pub fn import_counted<R: Read, S: BlockSink + ?Sized>(
    mut input: R,
    sink: &S,
) -> Result<(Vec<Cid>, CarStats), CarError> {
    let mut stats = CarStats::default();
    let (len, n) = read_varint(&mut input, "header", 0)?.ok_or(CarError::Truncated {
        what: "header",
        offset: 0,
    })?;
    if len > MAX_HEADER {
        return Err(CarError::HeaderTooLarge { len });
    }
    let header = read_exact(&mut input, len, "header", 0)?;
    let roots = decode_header(&header)?;
    let mut offset = n + len;
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    while let Some((len, n)) = read_varint(&mut input, "section", offset)? {
        if len > MAX_BLOCK + MAX_CID {
            return Err(CarError::SectionTooLarge { offset, len });
        }
        let section = read_exact(&mut input, len, "section", offset)?;
        let mut cursor = io::Cursor::new(&section[..]);
        let cid = Cid::read_bytes(&mut cursor).map_err(|_| CarError::BadCid { offset })?;
        let start = usize::try_from(cursor.position()).map_err(|_| CarError::BadCid { offset })?;
        let data = bytes::Bytes::from(section).slice(start..);
        if data.len() as u64 > MAX_BLOCK {
            return Err(CarError::SectionTooLarge { offset, len });
        }
        let ok = if cid.hash().code() == IDENTITY {
            cid.hash().digest() == &data[..]
        } else {
            crate::hash::verify(&cid, &data).is_ok()
        };
        if !ok {
            return Err(CarError::Mismatch { cid, offset });
        }
        batch_bytes += data.len();
        stats.blocks += 1;
        batch.push(Block::trusted(cid, data));
        if batch.len() >= BATCH_BLOCKS || batch_bytes >= BATCH_BYTES {
            sink.put_blocks(std::mem::take(&mut batch))?;
            batch_bytes = 0;
        }
        offset += n + len;
    }
    if !batch.is_empty() {
        sink.put_blocks(batch)?;
    }
    stats.bytes = offset;
    Ok((roots, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{cid_for, HashAlg, DAG_PB, RAW};

    #[test]
    fn header_matches_go_car() {
        // go-car's header for a single CIDv0 root, as produced by `ipfs dag export`.
        let root: Cid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
            .parse()
            .unwrap();
        let h = encode_header(&[root]);
        assert_eq!(
            &h[..9],
            &[0xa2, 0x65, b'r', b'o', b'o', b't', b's', 0x81, 0xd8]
        );
        assert_eq!(h[9], 0x2a);
        assert_eq!(&h[10..12], &[0x58, 0x23]);
        assert_eq!(h[12], 0x00);
        assert!(h.ends_with(&[0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x01]));
        assert_eq!(decode_header(&h).unwrap(), vec![root]);
        let v1 = cid_for(1, DAG_PB, HashAlg::Sha2_256, b"x");
        let raw = cid_for(1, RAW, HashAlg::Blake3, b"y");
        assert_eq!(
            decode_header(&encode_header(&[v1, raw])).unwrap(),
            vec![v1, raw]
        );
    }

    #[test]
    fn bad_headers_are_rejected() {
        assert!(matches!(
            decode_header(&[0xa0]),
            Err(CarError::BadHeader { .. })
        ));
        let mut v2 = encode_header(&[]);
        let last = v2.len() - 1;
        v2[last] = 2;
        assert!(matches!(
            decode_header(&v2),
            Err(CarError::UnsupportedVersion { version: 2 })
        ));
        for n in 0..v2.len() {
            let _ = decode_header(&v2[..n]);
        }
    }
}
