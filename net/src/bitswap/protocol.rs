//! The Bitswap wire format: the protobuf `Message` of bitswap 1.0.0 / 1.1.0 / 1.2.0,
//! hand-written (no codegen), with unsigned-varint length-prefixed framing.
//!
//! ```text
//! Message { 1: Wantlist { 1: repeated Entry { 1: bytes block (CID), 2: int32 priority, 3: bool cancel,
//!                                            4: WantType wantType (Block=0, Have=1), 5: bool sendDontHave },
//!                         2: bool full },
//!           2: repeated bytes blocks                 (1.0.0 only: raw block data, CIDv0 implied)
//!           3: repeated Block { 1: bytes prefix, 2: bytes data }   (1.1.0+)
//!           4: repeated BlockPresence { 1: bytes cid, 2: type (Have=0, DontHave=1) }   (1.2.0)
//!           5: int32 pendingBytes }
//! prefix = uvarint(cid version) uvarint(codec) uvarint(multihash code) uvarint(digest length)
//! ```
//!
//! Decoding never trusts a peer: every length is bounded, and the CID of every received block is
//! computed here from its prefix and its bytes, so a block's CID always matches its data.

use bytes::Bytes;
use cairn_store::{cid_for, Cid, HashAlg, DAG_PB};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// Largest message we read or write (the Bitswap ecosystem's limit).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Largest block we accept or serve.
pub const MAX_BLOCK_BYTES: usize = 2 << 20;
/// Wantlist entries read from one message; more are ignored.
pub const MAX_WANTLIST_ENTRIES: usize = 1024;
/// Block presences read from one message; more are ignored.
pub const MAX_PRESENCES: usize = 4096;

/// Protocol ids, newest first (the order we offer them in).
pub const PROTOCOLS: [StreamProtocol; 3] = [
    StreamProtocol::new("/ipfs/bitswap/1.2.0"),
    StreamProtocol::new("/ipfs/bitswap/1.1.0"),
    StreamProtocol::new("/ipfs/bitswap/1.0.0"),
];

/// A negotiated Bitswap protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// `/ipfs/bitswap/1.0.0`: raw blocks, no presences, no want-have.
    V100,
    /// `/ipfs/bitswap/1.1.0`: blocks with CID prefixes.
    V110,
    /// `/ipfs/bitswap/1.2.0`: want-have, block presences.
    V120,
}

impl Version {
    /// The version of a negotiated protocol id.
    pub fn of(p: &StreamProtocol) -> Version {
        match p.as_ref() {
            "/ipfs/bitswap/1.0.0" => Version::V100,
            "/ipfs/bitswap/1.1.0" => Version::V110,
            _ => Version::V120,
        }
    }
}

/// Whether a want asks for the block itself or only whether the peer has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WantType {
    /// Send the block.
    Block,
    /// Say HAVE (or DONT_HAVE).
    Have,
}

/// One wantlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantEntry {
    /// The wanted block.
    pub cid: Cid,
    /// Higher first.
    pub priority: i32,
    /// Withdraws an earlier want.
    pub cancel: bool,
    /// Block or presence.
    pub want_type: WantType,
    /// Answer DONT_HAVE rather than staying silent.
    pub send_dont_have: bool,
}

/// A peer's statement about a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The peer has it.
    Have,
    /// The peer does not have it.
    DontHave,
}

/// A Bitswap message, independent of the protocol version it travels over.
///
/// In a decoded message `blocks` hold CIDs computed from the received bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Wants and cancels.
    pub wantlist: Vec<WantEntry>,
    /// The wantlist replaces the previous one.
    pub full: bool,
    /// Blocks with their CIDs.
    pub blocks: Vec<(Cid, Bytes)>,
    /// HAVE / DONT_HAVE answers.
    pub presences: Vec<(Cid, Presence)>,
    /// Bytes the sender still has queued for us.
    pub pending_bytes: i32,
}

impl Message {
    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.wantlist.is_empty() && self.blocks.is_empty() && self.presences.is_empty()
    }

    /// Encoded size of the blocks, a cheap estimate used to split replies.
    pub fn block_bytes(&self) -> usize {
        self.blocks.iter().map(|(_, d)| d.len() + 64).sum()
    }
}

/// Why bytes from a peer are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Truncated or malformed protobuf.
    #[error("malformed bitswap message: {0}")]
    Malformed(&'static str),
    /// A field is larger than allowed.
    #[error("bitswap message field too large: {what} ({len} bytes)")]
    TooLarge {
        /// The field.
        what: &'static str,
        /// Its size.
        len: usize,
    },
    /// A block uses a CID prefix cairn cannot verify.
    #[error("bitswap block with unsupported CID prefix (version {version}, hash 0x{hash:x})")]
    UnsupportedPrefix {
        /// CID version.
        version: u64,
        /// Multihash code.
        hash: u64,
    },
}

// ---------- protobuf primitives ----------

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_uvarint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_len(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, 0);
    put_uvarint(out, v);
}

/// Reads a uvarint from the front of `buf`: (value, bytes used).
pub(crate) fn read_uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A cursor over protobuf fields.
struct Fields<'a> {
    buf: &'a [u8],
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let (v, n) = read_uvarint(self.buf).ok_or(DecodeError::Malformed("bad varint"))?;
        self.buf = &self.buf[n..];
        Ok(v)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Malformed("length past end"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// The next (field number, value), skipping unknown wire types 1 and 5.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        loop {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let key = self.varint()?;
            let field = key >> 3;
            match key & 7 {
                0 => return Ok(Some((field, Value::Varint(self.varint()?)))),
                2 => {
                    let len = usize::try_from(self.varint()?)
                        .map_err(|_| DecodeError::Malformed("length overflow"))?;
                    return Ok(Some((field, Value::Bytes(self.take(len)?))));
                }
                1 => {
                    self.take(8)?;
                }
                5 => {
                    self.take(4)?;
                }
                _ => return Err(DecodeError::Malformed("unsupported wire type")),
            }
        }
    }
}

// ---------- CID prefixes ----------

/// The prefix of a CID: version, codec, multihash code, digest length.
pub fn cid_prefix(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    put_uvarint(&mut out, cid.version() as u64);
    put_uvarint(&mut out, cid.codec());
    put_uvarint(&mut out, cid.hash().code());
    put_uvarint(&mut out, u64::from(cid.hash().size()));
    out
}

/// Computes the CID of `data` under a received prefix.
pub fn cid_from_prefix(prefix: &[u8], data: &[u8]) -> Result<Cid, DecodeError> {
    let mut f = Fields::new(prefix);
    let version = f.varint()?;
    let codec = f.varint()?;
    let hash = f.varint()?;
    let len = f.varint()?;
    let bad = DecodeError::UnsupportedPrefix { version, hash };
    let alg = HashAlg::from_code(hash).ok_or(bad.clone())?;
    if version > 1 || (version == 0 && codec != DAG_PB) {
        return Err(bad);
    }
    let cid = cid_for(version as u8, codec, alg, data);
    // Truncated digests are not supported: the digest length must be the full one.
    if u64::from(cid.hash().size()) != len || (version == 0 && cid.version() as u64 != 0) {
        return Err(bad);
    }
    Ok(cid)
}

// ---------- encoding ----------

/// Encodes `msg` for a peer speaking `version`. Features the version lacks are downgraded:
/// want-have becomes want-block and presences are dropped before 1.2.0.
pub fn encode(msg: &Message, version: Version) -> Vec<u8> {
    let parts = encode_parts(msg, version);
    let mut out = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
    for p in &parts {
        out.extend_from_slice(p);
    }
    out
}

/// Block data at least this large is not copied while encoding: it travels as its own part.
const ZERO_COPY_MIN: usize = 1024;

/// An encoded message as a list of byte strings to be written one after the other: protobuf
/// headers are built in small buffers and large block data is referenced, not copied.
struct Parts {
    parts: Vec<Bytes>,
    cur: Vec<u8>,
}

impl Parts {
    fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.parts.push(Bytes::from(std::mem::take(&mut self.cur)));
        }
    }

    /// Appends `data` (copied when small, referenced when large).
    fn data(&mut self, data: &Bytes) {
        if data.len() < ZERO_COPY_MIN {
            self.cur.extend_from_slice(data);
        } else {
            self.flush();
            self.parts.push(data.clone());
        }
    }
}

fn uvarint_len(v: u64) -> usize {
    // One byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Size of a length-delimited field (key < 128, as every field here is) holding `n` bytes.
fn len_field_size(n: usize) -> usize {
    1 + uvarint_len(n as u64) + n
}

/// [`encode`] without copying block data: the frame body is the concatenation of the parts.
pub fn encode_parts(msg: &Message, version: Version) -> Vec<Bytes> {
    let mut out = Parts {
        parts: Vec::with_capacity(2 * msg.blocks.len() + 2),
        cur: Vec::with_capacity(64 * msg.wantlist.len() + 64),
    };
    if !msg.wantlist.is_empty() || msg.full {
        let mut wl = Vec::with_capacity(48 * msg.wantlist.len());
        for e in &msg.wantlist {
            let mut en = Vec::with_capacity(48);
            put_len(&mut en, 1, &e.cid.to_bytes());
            if e.priority != 0 {
                // int32 on the wire is sign-extended to 64 bits.
                put_varint_field(&mut en, 2, i64::from(e.priority) as u64);
            }
            if e.cancel {
                put_varint_field(&mut en, 3, 1);
            }
            if version == Version::V120 {
                if e.want_type == WantType::Have {
                    put_varint_field(&mut en, 4, 1);
                }
                if e.send_dont_have {
                    put_varint_field(&mut en, 5, 1);
                }
            }
            put_len(&mut wl, 1, &en);
        }
        if msg.full {
            put_varint_field(&mut wl, 2, 1);
        }
        put_len(&mut out.cur, 1, &wl);
    }
    for (cid, data) in &msg.blocks {
        if version == Version::V100 {
            put_key(&mut out.cur, 2, 2);
            put_uvarint(&mut out.cur, data.len() as u64);
        } else {
            // Block { 1: prefix, 2: data }, with the data written after this header.
            let prefix = cid_prefix(cid);
            let inner = len_field_size(prefix.len()) + len_field_size(data.len());
            put_key(&mut out.cur, 3, 2);
            put_uvarint(&mut out.cur, inner as u64);
            put_len(&mut out.cur, 1, &prefix);
            put_key(&mut out.cur, 2, 2);
            put_uvarint(&mut out.cur, data.len() as u64);
        }
        out.data(data);
    }
    if version == Version::V120 {
        for (cid, p) in &msg.presences {
            let mut b = Vec::with_capacity(48);
            put_len(&mut b, 1, &cid.to_bytes());
            if *p == Presence::DontHave {
                put_varint_field(&mut b, 2, 1);
            }
            put_len(&mut out.cur, 4, &b);
        }
    }
    if msg.pending_bytes != 0 {
        put_varint_field(&mut out.cur, 5, i64::from(msg.pending_bytes) as u64);
    }
    out.flush();
    out.parts
}

// ---------- decoding ----------

fn decode_entry(buf: &[u8]) -> Result<Option<WantEntry>, DecodeError> {
    let mut f = Fields::new(buf);
    let (mut cid, mut priority, mut cancel, mut want_type, mut sdh) =
        (None, 0i32, false, WantType::Block, false);
    while let Some((field, v)) = f.next_field()? {
        match (field, v) {
            (1, Value::Bytes(b)) => {
                cid = Some(Cid::try_from(b).map_err(|_| DecodeError::Malformed("bad CID"))?)
            }
            (2, Value::Varint(p)) => priority = p as i64 as i32,
            (3, Value::Varint(c)) => cancel = c != 0,
            (4, Value::Varint(t)) => {
                want_type = if t == 1 {
                    WantType::Have
                } else {
                    WantType::Block
                }
            }
            (5, Value::Varint(s)) => sdh = s != 0,
            _ => {}
        }
    }
    Ok(cid.map(|cid| WantEntry {
        cid,
        priority,
        cancel,
        want_type,
        send_dont_have: sdh,
    }))
}

/// Decodes one message body. CIDs of received blocks are computed from their bytes here.
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    decode_shared(&Bytes::copy_from_slice(buf))
}

/// [`decode`] without copying: received blocks are slices of `body` (they keep it alive).
pub fn decode_shared(body: &Bytes) -> Result<Message, DecodeError> {
    let buf: &[u8] = body;
    if buf.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            what: "message",
            len: buf.len(),
        });
    }
    let mut msg = Message::default();
    let mut f = Fields::new(buf);
    while let Some((field, v)) = f.next_field()? {
        match (field, v) {
            (1, Value::Bytes(wl)) => {
                let mut w = Fields::new(wl);
                while let Some((field, v)) = w.next_field()? {
                    match (field, v) {
                        // Entries past the limit are ignored.
                        (1, Value::Bytes(e)) if msg.wantlist.len() < MAX_WANTLIST_ENTRIES => {
                            if let Some(e) = decode_entry(e)? {
                                msg.wantlist.push(e);
                            }
                        }
                        (2, Value::Varint(full)) => msg.full = full != 0,
                        _ => {}
                    }
                }
            }
            (2, Value::Bytes(data)) => {
                check_block(data.len())?;
                let cid = cid_from_prefix(&[0, 0x70, 0x12, 32], data)?;
                msg.blocks.push((cid, body.slice_ref(data)));
            }
            (3, Value::Bytes(b)) => {
                let mut p = Fields::new(b);
                let (mut prefix, mut data) = (None, None);
                while let Some((field, v)) = p.next_field()? {
                    match (field, v) {
                        (1, Value::Bytes(x)) => prefix = Some(x),
                        (2, Value::Bytes(x)) => data = Some(x),
                        _ => {}
                    }
                }
                let prefix = prefix.ok_or(DecodeError::Malformed("block without prefix"))?;
                let data = data.unwrap_or_default();
                check_block(data.len())?;
                let cid = cid_from_prefix(prefix, data)?;
                msg.blocks.push((cid, body.slice_ref(data)));
            }
            (4, Value::Bytes(b)) => {
                if msg.presences.len() >= MAX_PRESENCES {
                    continue;
                }
                let mut p = Fields::new(b);
                let (mut cid, mut kind) = (None, Presence::Have);
                while let Some((field, v)) = p.next_field()? {
                    match (field, v) {
                        (1, Value::Bytes(x)) => {
                            cid = Some(
                                Cid::try_from(x).map_err(|_| DecodeError::Malformed("bad CID"))?,
                            )
                        }
                        (2, Value::Varint(t)) => {
                            kind = if t == 1 {
                                Presence::DontHave
                            } else {
                                Presence::Have
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(cid) = cid {
                    msg.presences.push((cid, kind));
                }
            }
            (5, Value::Varint(p)) => msg.pending_bytes = p as i64 as i32,
            _ => {}
        }
    }
    Ok(msg)
}

fn check_block(len: usize) -> Result<(), DecodeError> {
    if len > MAX_BLOCK_BYTES {
        return Err(DecodeError::TooLarge { what: "block", len });
    }
    Ok(())
}

// ---------- framing ----------

/// Writes one length-prefixed frame and flushes.
pub async fn write_frame<S: AsyncWrite + Unpin>(s: &mut S, body: &[u8]) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(10);
    put_uvarint(&mut head, body.len() as u64);
    s.write_all(&head).await?;
    s.write_all(body).await?;
    s.flush().await
}

/// Writes one length-prefixed frame whose body is the concatenation of `parts`, and flushes.
/// Nothing is gathered into one buffer: the muxer copies each part into its own frames.
pub async fn write_frame_parts<S: AsyncWrite + Unpin>(
    s: &mut S,
    parts: &[Bytes],
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(10);
    put_uvarint(
        &mut head,
        parts.iter().map(Bytes::len).sum::<usize>() as u64,
    );
    s.write_all(&head).await?;
    for p in parts {
        s.write_all(p).await?;
    }
    s.flush().await
}

/// Reads one length-prefixed frame; `None` on a clean end of stream between frames.
pub async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    max: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        let n = s.read(&mut b).await?;
        if n == 0 {
            if i == 0 {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        len |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > max {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "bitswap frame too large",
                ));
            }
            let mut body = vec![0u8; len];
            s.read_exact(&mut body).await?;
            return Ok(Some(body));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "bad frame length",
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use cairn_store::{Block, RAW};
    use proptest::prelude::*;

    fn block(data: &[u8], v0: bool) -> (Cid, Bytes) {
        let b = if v0 {
            Block::encode(0, DAG_PB, HashAlg::Sha2_256, Bytes::copy_from_slice(data))
        } else {
            Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::copy_from_slice(data))
        };
        b.into_parts()
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let entry = (
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<i32>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(d, priority, cancel, have, sdh)| WantEntry {
                cid: block(&d, false).0,
                priority,
                cancel,
                want_type: if have {
                    WantType::Have
                } else {
                    WantType::Block
                },
                send_dont_have: sdh,
            });
        (
            proptest::collection::vec(entry, 0..8),
            any::<bool>(),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..300),
                    any::<bool>(),
                ),
                0..4,
            ),
            proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..8), any::<bool>()),
                0..4,
            ),
            any::<i32>(),
        )
            .prop_map(|(wantlist, full, blocks, pres, pending_bytes)| Message {
                wantlist,
                full,
                blocks: blocks.iter().map(|(d, v0)| block(d, *v0)).collect(),
                presences: pres
                    .iter()
                    .map(|(d, h)| {
                        (
                            block(d, false).0,
                            if *h {
                                Presence::Have
                            } else {
                                Presence::DontHave
                            },
                        )
                    })
                    .collect(),
                pending_bytes,
            })
    }

    proptest! {
        #[test]
        fn round_trip_v120(msg in arb_message()) {
            let bytes = encode(&msg, Version::V120);
            prop_assert_eq!(decode(&bytes).unwrap(), msg);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(msg in arb_message(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = encode(&msg, Version::V120);
            if !bytes.is_empty() {
                for (i, x) in flips {
                    let n = bytes.len();
                    bytes[i % n] ^= x;
                }
            }
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn large_blocks_are_neither_copied_on_encode_nor_on_decode() {
        let (cid, data) = block(&[7u8; 4096], false);
        let (small, tiny) = block(b"tiny", false);
        let msg = Message {
            blocks: vec![(cid, data.clone()), (small, tiny)],
            ..Message::default()
        };
        let parts = encode_parts(&msg, Version::V120);
        assert!(parts.iter().any(|p| p.as_ptr() == data.as_ptr()));
        let body = Bytes::from(encode(&msg, Version::V120));
        let got = decode_shared(&body).unwrap();
        assert_eq!(got, msg);
        let inside = body.as_ptr_range();
        assert!(inside.contains(&got.blocks[0].1.as_ptr()));
    }

    #[tokio::test]
    async fn frame_parts_equal_one_frame() {
        let (cid, data) = block(&[3u8; 5000], true);
        let msg = Message {
            blocks: vec![(cid, data)],
            pending_bytes: 9,
            ..Message::default()
        };
        let mut a = Vec::new();
        write_frame(
            &mut futures::io::Cursor::new(&mut a),
            &encode(&msg, Version::V110),
        )
        .await
        .unwrap();
        let mut b = Vec::new();
        write_frame_parts(
            &mut futures::io::Cursor::new(&mut b),
            &encode_parts(&msg, Version::V110),
        )
        .await
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn v100_sends_raw_blocks_and_drops_presences() {
        let (cid, data) = block(b"legacy", true);
        let msg = Message {
            blocks: vec![(cid, data.clone())],
            presences: vec![(cid, Presence::Have)],
            wantlist: vec![WantEntry {
                cid,
                priority: 1,
                cancel: false,
                want_type: WantType::Have,
                send_dont_have: true,
            }],
            ..Message::default()
        };
        let got = decode(&encode(&msg, Version::V100)).unwrap();
        assert_eq!(got.blocks, vec![(cid, data)]);
        assert!(got.presences.is_empty());
        assert_eq!(got.wantlist[0].want_type, WantType::Block);
        assert!(!got.wantlist[0].send_dont_have);
    }

    #[test]
    fn wrong_bytes_get_a_different_cid() {
        let (cid, _) = block(b"the real thing", false);
        let mut b = Vec::new();
        put_len(&mut b, 1, &cid_prefix(&cid));
        put_len(&mut b, 2, b"forgery");
        let mut out = Vec::new();
        put_len(&mut out, 3, &b);
        let got = decode(&out).unwrap();
        assert_ne!(got.blocks[0].0, cid);
        assert_eq!(got.blocks[0].0, block(b"forgery", false).0);
    }

    #[test]
    fn oversized_blocks_are_refused() {
        let big = vec![0u8; MAX_BLOCK_BYTES + 1];
        let mut b = Vec::new();
        put_len(&mut b, 1, &[1, 0x55, 0x12, 32]);
        put_len(&mut b, 2, &big);
        let mut out = Vec::new();
        put_len(&mut out, 3, &b);
        assert!(matches!(decode(&out), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn unsupported_hash_prefix_is_an_error() {
        let mut b = Vec::new();
        put_len(&mut b, 1, &[1, 0x55, 0xb2, 0x40, 0x01, 32]);
        put_len(&mut b, 2, b"x");
        let mut out = Vec::new();
        put_len(&mut out, 3, &b);
        assert!(decode(&out).is_err());
    }

    #[tokio::test]
    async fn frames_round_trip_and_refuse_oversize() {
        let mut buf = Vec::new();
        let mut w = futures::io::Cursor::new(&mut buf);
        write_frame(&mut w, b"abc").await.unwrap();
        write_frame(&mut w, b"").await.unwrap();
        let mut r = futures::io::Cursor::new(buf.clone());
        assert_eq!(read_frame(&mut r, 10).await.unwrap(), Some(b"abc".to_vec()));
        assert_eq!(read_frame(&mut r, 10).await.unwrap(), Some(vec![]));
        assert_eq!(read_frame(&mut r, 10).await.unwrap(), None);
        let mut r = futures::io::Cursor::new(buf);
        assert!(read_frame(&mut r, 2).await.is_err());
    }
}
