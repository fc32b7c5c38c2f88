//! The UnixFS `Data` message carried in dag-pb nodes (UnixFS 1.5, with optional mode and mtime).
//!
//! Fields are written in field-number order, as go-protobuf does, and optional fields only when set,
//! so that encodings are byte-identical to Kubo's.

use bytes::Bytes;

use crate::varint;

/// The UnixFS node types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// Raw bytes (legacy leaves).
    Raw,
    /// A plain directory.
    Directory,
    /// A file or a chunk of one.
    File,
    /// Metadata (unused).
    Metadata,
    /// A symbolic link; `data` is the target.
    Symlink,
    /// A shard of a HAMT-sharded directory.
    HamtShard,
}

impl DataType {
    fn code(self) -> u64 {
        match self {
            DataType::Raw => 0,
            DataType::Directory => 1,
            DataType::File => 2,
            DataType::Metadata => 3,
            DataType::Symlink => 4,
            DataType::HamtShard => 5,
        }
    }

    fn from_code(c: u64) -> Option<Self> {
        Some(match c {
            0 => DataType::Raw,
            1 => DataType::Directory,
            2 => DataType::File,
            3 => DataType::Metadata,
            4 => DataType::Symlink,
            5 => DataType::HamtShard,
            _ => return None,
        })
    }
}

/// A modification time: seconds since the epoch and optional nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixTime {
    /// Seconds since 1970-01-01 (may be negative).
    pub seconds: i64,
    /// Nanoseconds, 1..=999_999_999 when present.
    pub nanos: Option<u32>,
}

/// The UnixFS `Data` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixFsData {
    /// Node type.
    pub kind: DataType,
    /// Inline bytes: file content of a leaf, symlink target, or HAMT bitfield.
    pub data: Option<Bytes>,
    /// Total file size of this sub-DAG (files only).
    pub filesize: Option<u64>,
    /// File sizes of each child, in link order (files only).
    pub blocksizes: Vec<u64>,
    /// Hash function of a HAMT shard (0x22, murmur3-x64-64).
    pub hash_type: Option<u64>,
    /// Fanout of a HAMT shard.
    pub fanout: Option<u64>,
    /// Unix permission bits (UnixFS 1.5).
    pub mode: Option<u32>,
    /// Modification time (UnixFS 1.5).
    pub mtime: Option<UnixTime>,
}

/// Why bytes are not a valid UnixFS message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnixFsError {
    /// Protobuf framing is broken.
    #[error("malformed UnixFS data: {0}")]
    Malformed(&'static str),
    /// The Type field is missing or unknown.
    #[error("UnixFS data has a missing or unknown Type")]
    BadType,
    /// Too many blocksizes.
    #[error("UnixFS data has more than {0} blocksizes")]
    TooManyBlocksizes(usize),
}

impl UnixFsData {
    /// A message of `kind` with every optional field unset.
    pub fn new(kind: DataType) -> Self {
        UnixFsData {
            kind,
            data: None,
            filesize: None,
            blocksizes: Vec::new(),
            hash_type: None,
            fanout: None,
            mode: None,
            mtime: None,
        }
    }

    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self.data.as_ref().map_or(0, |d| d.len()) + self.blocksizes.len() * 4,
        );
        varint::put_tag(&mut out, 1, 0);
        varint::put_uvarint(&mut out, self.kind.code());
        if let Some(d) = &self.data {
            varint::put_tag(&mut out, 2, 2);
            varint::put_bytes(&mut out, d);
        }
        if let Some(s) = self.filesize {
            varint::put_tag(&mut out, 3, 0);
            varint::put_uvarint(&mut out, s);
        }
        for b in &self.blocksizes {
            varint::put_tag(&mut out, 4, 0);
            varint::put_uvarint(&mut out, *b);
        }
        if let Some(h) = self.hash_type {
            varint::put_tag(&mut out, 5, 0);
            varint::put_uvarint(&mut out, h);
        }
        if let Some(f) = self.fanout {
            varint::put_tag(&mut out, 6, 0);
            varint::put_uvarint(&mut out, f);
        }
        if let Some(m) = self.mode {
            varint::put_tag(&mut out, 7, 0);
            varint::put_uvarint(&mut out, u64::from(m));
        }
        if let Some(t) = self.mtime {
            let mut m = Vec::with_capacity(16);
            varint::put_tag(&mut m, 1, 0);
            // int64 is encoded as a two's-complement varint.
            varint::put_uvarint(&mut m, t.seconds as u64);
            if let Some(n) = t.nanos {
                varint::put_tag(&mut m, 2, 5);
                m.extend_from_slice(&n.to_le_bytes());
            }
            varint::put_tag(&mut out, 8, 2);
            varint::put_bytes(&mut out, &m);
        }
        out
    }

    /// Decodes a message; `data` shares memory with `bytes`.
    pub fn decode(bytes: &Bytes) -> Result<Self, UnixFsError> {
        const MAX_BLOCKSIZES: usize = 1 << 16;
        let mut r = varint::Reader::new(bytes);
        let mut kind = None;
        let mut msg = UnixFsData::new(DataType::Raw);
        while !r.is_empty() {
            let (field, wire) = r.tag().ok_or(UnixFsError::Malformed("bad field tag"))?;
            let bad = UnixFsError::Malformed("bad field value");
            match (field, wire) {
                (1, 0) => {
                    kind = Some(
                        DataType::from_code(r.uvarint().ok_or(bad)?).ok_or(UnixFsError::BadType)?,
                    )
                }
                (2, 2) => {
                    let (s, e) = r.len_delimited().ok_or(bad)?;
                    msg.data = Some(bytes.slice(s..e));
                }
                (3, 0) => msg.filesize = Some(r.uvarint().ok_or(bad)?),
                (4, 0) => {
                    if msg.blocksizes.len() >= MAX_BLOCKSIZES {
                        return Err(UnixFsError::TooManyBlocksizes(MAX_BLOCKSIZES));
                    }
                    msg.blocksizes.push(r.uvarint().ok_or(bad)?);
                }
                (4, 2) => {
                    // Accept the packed form too.
                    let (s, e) = r.len_delimited().ok_or(bad)?;
                    let mut inner = varint::Reader::new(&bytes[s..e]);
                    while !inner.is_empty() {
                        if msg.blocksizes.len() >= MAX_BLOCKSIZES {
                            return Err(UnixFsError::TooManyBlocksizes(MAX_BLOCKSIZES));
                        }
                        msg.blocksizes.push(
                            inner
                                .uvarint()
                                .ok_or(UnixFsError::Malformed("bad packed blocksizes"))?,
                        );
                    }
                }
                (5, 0) => msg.hash_type = Some(r.uvarint().ok_or(bad)?),
                (6, 0) => msg.fanout = Some(r.uvarint().ok_or(bad)?),
                (7, 0) => msg.mode = Some((r.uvarint().ok_or(bad)? & 0xffff_ffff) as u32),
                (8, 2) => {
                    let (s, e) = r.len_delimited().ok_or(bad)?;
                    msg.mtime = Some(decode_time(&bytes[s..e])?);
                }
                (_, w) => r
                    .skip(w)
                    .ok_or(UnixFsError::Malformed("bad unknown field"))?,
            }
        }
        msg.kind = kind.ok_or(UnixFsError::BadType)?;
        Ok(msg)
    }
}

fn decode_time(buf: &[u8]) -> Result<UnixTime, UnixFsError> {
    let mut r = varint::Reader::new(buf);
    let mut t = UnixTime {
        seconds: 0,
        nanos: None,
    };
    while !r.is_empty() {
        let (field, wire) = r.tag().ok_or(UnixFsError::Malformed("bad mtime tag"))?;
        match (field, wire) {
            (1, 0) => {
                t.seconds = r
                    .uvarint()
                    .ok_or(UnixFsError::Malformed("bad mtime seconds"))?
                    as i64
            }
            (2, 5) => {
                t.nanos = Some(
                    r.fixed32()
                        .ok_or(UnixFsError::Malformed("bad mtime nanos"))?,
                )
            }
            (_, w) => r.skip(w).ok_or(UnixFsError::Malformed("bad mtime field"))?,
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kubo_empty_file_encoding() {
        let mut d = UnixFsData::new(DataType::File);
        d.filesize = Some(0);
        assert_eq!(d.encode(), vec![0x08, 0x02, 0x18, 0x00]);
    }

    proptest! {
        #[test]
        fn round_trip(
            kind in 0u64..6,
            data in proptest::option::of(any::<Vec<u8>>()),
            filesize in proptest::option::of(any::<u64>()),
            blocksizes in proptest::collection::vec(any::<u64>(), 0..10),
            mode in proptest::option::of(any::<u32>()),
            secs in proptest::option::of(any::<i64>()),
            nanos in proptest::option::of(1u32..1_000_000_000),
        ) {
            let mut d = UnixFsData::new(DataType::from_code(kind).unwrap());
            d.data = data.map(Bytes::from);
            d.filesize = filesize;
            d.blocksizes = blocksizes;
            d.mode = mode;
            d.mtime = secs.map(|seconds| UnixTime { seconds, nanos });
            let enc = Bytes::from(d.encode());
            prop_assert_eq!(UnixFsData::decode(&enc).unwrap(), d);
        }

        #[test]
        fn garbage_never_panics(bytes in any::<Vec<u8>>()) {
            let _ = UnixFsData::decode(&Bytes::from(bytes));
        }
    }
}
