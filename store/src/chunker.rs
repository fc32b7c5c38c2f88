//! Chunkers: split a byte stream into the leaves of a file DAG.
//!
//! Two strategies, selected by a [`ChunkerSpec`] (text forms as in Kubo's `--chunker`):
//! - `size-N`: fixed-size chunks of N bytes (Kubo's default is `size-262144`). Every chunk but the
//!   last is exactly N bytes, however short the reads of the source are.
//! - `fastcdc-MIN-AVG-MAX`: content-defined chunking (FastCDC 2020, normalization level 1), so that an
//!   edit in the middle of a file only changes the chunks around it.
//!
//! [`Chunker`] reads from any [`std::io::Read`] and holds at most a few maximum-size chunks in memory.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use bytes::{Bytes, BytesMut};
use fastcdc::v2020 as cdc;

/// The fixed chunk size of Kubo's default import (256 KiB).
pub const DEFAULT_CHUNK_SIZE: usize = 262_144;
/// The largest chunk cairn makes (1 MiB), so every block fits Bitswap's message limits.
pub const MAX_CHUNK_SIZE: usize = 1 << 20;

/// How to cut a file into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkerSpec {
    /// Fixed-size chunks of this many bytes (1..=1 MiB).
    Fixed(usize),
    /// FastCDC content-defined chunks with these bounds in bytes.
    FastCdc {
        /// Smallest chunk (except the last), 64..=max.
        min: usize,
        /// Target average chunk size, min..=max and at least 256.
        avg: usize,
        /// Largest chunk, 1024..=1 MiB.
        max: usize,
    },
}

impl Default for ChunkerSpec {
    fn default() -> Self {
        ChunkerSpec::Fixed(DEFAULT_CHUNK_SIZE)
    }
}

/// Why a chunker specification is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkerError {
    /// The text is neither `size-N` nor `fastcdc-MIN-AVG-MAX`.
    #[error("invalid chunker {0:?}: expected size-N (e.g. size-262144) or fastcdc-MIN-AVG-MAX (e.g. fastcdc-65536-262144-1048576)")]
    Syntax(String),
    /// A fixed size outside 1..=1 MiB.
    #[error("invalid chunk size {0}: must be between 1 and 1048576 bytes")]
    FixedSize(usize),
    /// FastCDC bounds out of range or out of order.
    #[error("invalid fastcdc bounds {min}-{avg}-{max}: need 64 <= min <= avg <= max, avg >= 256, 1024 <= max <= 1048576")]
    FastCdcBounds {
        /// Requested minimum.
        min: usize,
        /// Requested average.
        avg: usize,
        /// Requested maximum.
        max: usize,
    },
}

impl ChunkerSpec {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), ChunkerError> {
        match *self {
            ChunkerSpec::Fixed(n) if n == 0 || n > MAX_CHUNK_SIZE => {
                Err(ChunkerError::FixedSize(n))
            }
            ChunkerSpec::Fixed(_) => Ok(()),
            ChunkerSpec::FastCdc { min, avg, max } => {
                let ok = min >= cdc::MINIMUM_MIN as usize
                    && min <= avg
                    && avg <= max
                    && avg >= cdc::AVERAGE_MIN as usize
                    && max >= cdc::MAXIMUM_MIN as usize
                    && max <= MAX_CHUNK_SIZE;
                if ok {
                    Ok(())
                } else {
                    Err(ChunkerError::FastCdcBounds { min, avg, max })
                }
            }
        }
    }

    /// The largest chunk this spec can produce.
    pub fn max_chunk_size(&self) -> usize {
        match *self {
            ChunkerSpec::Fixed(n) => n,
            ChunkerSpec::FastCdc { max, .. } => max,
        }
    }
}

impl FromStr for ChunkerSpec {
    type Err = ChunkerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || ChunkerError::Syntax(s.to_string());
        let num = |t: &str| t.parse::<usize>().map_err(|_| syntax());
        let spec = if let Some(rest) = s.strip_prefix("size-") {
            ChunkerSpec::Fixed(num(rest)?)
        } else if let Some(rest) = s.strip_prefix("fastcdc-") {
            let parts: Vec<&str> = rest.split('-').collect();
            match parts.as_slice() {
                [min, avg, max] => ChunkerSpec::FastCdc {
                    min: num(min)?,
                    avg: num(avg)?,
                    max: num(max)?,
                },
                _ => return Err(syntax()),
            }
        } else {
            return Err(syntax());
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl fmt::Display for ChunkerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkerSpec::Fixed(n) => write!(f, "size-{n}"),
            ChunkerSpec::FastCdc { min, avg, max } => write!(f, "fastcdc-{min}-{avg}-{max}"),
        }
    }
}

/// A streaming chunker over a reader: an iterator of chunks.
///
/// Like Kubo and the JS importer, an empty input yields exactly one empty chunk, so that an empty
/// file still has a leaf. No other chunk is ever empty.
pub struct Chunker<R> {
    inner: Inner<R>,
    emitted: bool,
    done: bool,
}

enum Inner<R> {
    Fixed { reader: R, size: usize, eof: bool },
    Cdc(CdcState<R>),
}

struct CdcState<R> {
    reader: R,
    buf: BytesMut,
    eof: bool,
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

impl<R: Read> Chunker<R> {
    /// A chunker reading `reader` according to `spec`.
    pub fn new(reader: R, spec: &ChunkerSpec) -> Result<Self, ChunkerError> {
        spec.validate()?;
        let inner = match *spec {
            ChunkerSpec::Fixed(size) => Inner::Fixed {
                reader,
                size,
                eof: false,
            },
            ChunkerSpec::FastCdc { min, avg, max } => {
                // Normalization level 1, as `fastcdc::v2020::StreamCDC::new`.
                let bits = cdc::logarithm2(avg as u32) as usize;
                Inner::Cdc(CdcState {
                    reader,
                    buf: BytesMut::new(),
                    eof: false,
                    min,
                    avg,
                    max,
                    mask_s: cdc::MASKS[bits + 1],
                    mask_l: cdc::MASKS[bits - 1],
                })
            }
        };
        Ok(Chunker {
            inner,
            emitted: false,
            done: false,
        })
    }

    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        match &mut self.inner {
            Inner::Fixed { reader, size, eof } => {
                if *eof {
                    return Ok(None);
                }
                let mut buf = BytesMut::zeroed(*size);
                let n = read_full(reader, &mut buf)?;
                if n < *size {
                    *eof = true;
                    if n == 0 {
                        return Ok(None);
                    }
                    buf.truncate(n);
                }
                Ok(Some(buf.freeze()))
            }
            Inner::Cdc(st) => st.next_chunk(),
        }
    }
}

impl<R: Read> CdcState<R> {
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.eof && self.buf.len() < self.max {
            // Read in large steps so the remainder copied on reallocation stays small relative to it.
            let target = self.max * 4;
            let start = self.buf.len();
            self.buf.resize(target, 0);
            let n = read_full(&mut self.reader, &mut self.buf[start..])?;
            self.buf.truncate(start + n);
            if start + n < target {
                self.eof = true;
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (_, count) = cdc::cut(
            &self.buf,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        // `cut` never returns 0 for non-empty input; guard anyway so the iterator always advances.
        let count = count.clamp(1, self.buf.len());
        Ok(Some(self.buf.split_to(count).freeze()))
    }
}

/// Reads until `buf` is full or the source ends; returns the bytes read. Retries interrupted reads.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_chunk() {
            Ok(Some(c)) => {
                self.emitted = true;
                Some(Ok(c))
            }
            Ok(None) => {
                self.done = true;
                (!self.emitted).then(|| Ok(Bytes::new()))
            }
            Err(e) => {
                // Stop after an error.
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A reader that returns at most 7 bytes per call, and sometimes `Interrupted`.
    struct Trickle<'a> {
        data: &'a [u8],
        calls: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(5) {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let n = buf.len().min(self.data.len()).min(1 + self.calls % 7);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "size-262144",
            "size-1",
            "size-1048576",
            "fastcdc-64-256-1024",
            "fastcdc-65536-262144-1048576",
        ] {
            let spec: ChunkerSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            "size-1000".parse::<ChunkerSpec>().unwrap(),
            ChunkerSpec::Fixed(1000)
        );
        assert_eq!(ChunkerSpec::default().to_string(), "size-262144");
    }

    #[test]
    fn rejects_bad_specs_with_clear_errors() {
        assert_eq!(
            "size-0".parse::<ChunkerSpec>(),
            Err(ChunkerError::FixedSize(0))
        );
        assert_eq!(
            "size-1048577".parse::<ChunkerSpec>(),
            Err(ChunkerError::FixedSize(1_048_577))
        );
        assert!(matches!(
            "rabin-1-2-3".parse::<ChunkerSpec>(),
            Err(ChunkerError::Syntax(_))
        ));
        assert!(matches!(
            "size-".parse::<ChunkerSpec>(),
            Err(ChunkerError::Syntax(_))
        ));
        assert!(matches!(
            "fastcdc-1-2".parse::<ChunkerSpec>(),
            Err(ChunkerError::Syntax(_))
        ));
        assert!(matches!(
            "fastcdc-4096-1024-65536".parse::<ChunkerSpec>(),
            Err(ChunkerError::FastCdcBounds { .. })
        ));
        assert!(matches!(
            "fastcdc-4096-16384-2097152".parse::<ChunkerSpec>(),
            Err(ChunkerError::FastCdcBounds { .. })
        ));
        let msg = "size-x".parse::<ChunkerSpec>().unwrap_err().to_string();
        assert!(msg.contains("size-N"), "{msg}");
    }

    #[test]
    fn fixed_chunks_are_full_despite_short_reads() {
        let d = data(10_000);
        let chunks: Vec<Bytes> =
            Chunker::new(Trickle { data: &d, calls: 0 }, &ChunkerSpec::Fixed(1024))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        assert_eq!(chunks.len(), 10);
        assert!(chunks[..9].iter().all(|c| c.len() == 1024));
        assert_eq!(chunks[9].len(), 10_000 - 9 * 1024);
        assert_eq!(chunks.concat(), d);
    }

    #[test]
    fn empty_input_is_one_empty_chunk() {
        for spec in [
            ChunkerSpec::Fixed(4),
            ChunkerSpec::FastCdc {
                min: 64,
                avg: 256,
                max: 1024,
            },
        ] {
            let chunks: Vec<Bytes> = Chunker::new(&b""[..], &spec)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            assert_eq!(chunks, vec![Bytes::new()]);
        }
        let exact: Vec<Bytes> = Chunker::new(&[1u8, 2, 3, 4][..], &ChunkerSpec::Fixed(4))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        assert_eq!(exact.len(), 1);
    }

    #[test]
    fn fastcdc_matches_the_crates_stream_chunker_and_respects_bounds() {
        let d: Vec<u8> = {
            let mut x = 0x1234_5678_9abc_def0u64;
            (0..300_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let spec = ChunkerSpec::FastCdc {
            min: 2048,
            avg: 8192,
            max: 32768,
        };
        let ours: Vec<Bytes> = Chunker::new(Trickle { data: &d, calls: 0 }, &spec)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let theirs: Vec<Vec<u8>> = cdc::StreamCDC::new(&d[..], 2048, 8192, 32768)
            .map(|c| c.unwrap().data)
            .collect();
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(&a[..], &b[..]);
        }
        assert!(ours[..ours.len() - 1]
            .iter()
            .all(|c| c.len() >= 2048 && c.len() <= 32768));
    }

    #[test]
    fn read_errors_are_reported_once() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let mut c = Chunker::new(Broken, &ChunkerSpec::Fixed(16)).unwrap();
        assert!(c.next().unwrap().is_err());
        assert!(c.next().is_none());
    }
}
