//! Pack files: where small blocks live, append-only, so that every block can be recovered
//! without the index.
//!
//! A pack is `blocks/packs/<seq, 8 hex digits>.pack`: the 8-byte magic [`PACK_MAGIC`], then
//! records, each
//!
//! ```text
//! RECORD_MAGIC (u32 LE) | kind (u8: 1 block, 2 tombstone) | cid_len (u8) | data_len (u32 LE)
//! | crc32 of the 10 bytes before and of the CID (u32 LE) | CID bytes | data bytes
//! ```
//!
//! The CRC covers the header and the CID, so lengths read from a damaged header are never
//! trusted; the data is covered by the CID itself (it is hashed when read back). A scan that
//! meets a damaged header looks for the next record magic with a valid CRC, so one bad record
//! does not hide the rest of the pack. A torn tail (a crash mid-append) ends the scan.
//!
//! A tombstone records that a block was deleted (GC, `block rm`): replaying the packs in order
//! (pack sequence, then offset) gives exactly the set of live small blocks, which is how
//! `repo repair` rebuilds the index and how `repo verify` and GC check it.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cid::Cid;

use crate::blockstore::StoreError;

/// First bytes of every pack file.
pub(crate) const PACK_MAGIC: &[u8; 8] = b"CAIRNPK1";
/// First bytes of every record.
const RECORD_MAGIC: u32 = 0xC41B_B10C;
/// Header bytes before the CID.
pub(crate) const HEADER: usize = 14;
/// A block record.
pub(crate) const KIND_BLOCK: u8 = 1;
/// A tombstone record (no data).
pub(crate) const KIND_TOMBSTONE: u8 = 2;
/// A pack is closed and a new one started once it holds this many bytes.
pub(crate) const PACK_TARGET: u64 = 64 << 20;
/// Largest data a record may claim (blocks in packs are small; this bounds what a damaged
/// header could make a scan allocate).
pub(crate) const MAX_RECORD_DATA: u32 = 4 << 20;

/// The file name of pack `seq`.
pub(crate) fn pack_name(seq: u32) -> String {
    format!("{seq:08x}.pack")
}

/// The sequence number of a pack file name, if it is one.
pub(crate) fn parse_pack_name(name: &str) -> Option<u32> {
    let hex = name.strip_suffix(".pack")?;
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Every pack in `dir`, sorted by sequence number.
pub(crate) fn list_packs(dir: &Path) -> Result<Vec<(u32, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(StoreError::Io {
                op: "list",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Io {
            op: "list",
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_pack_name) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Appends one record to `out`; returns the offset of its data relative to the record start.
pub(crate) fn encode_record(out: &mut Vec<u8>, kind: u8, cid: &[u8], data: &[u8]) -> usize {
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.push(kind);
    // CIDs of supported hashes are at most 4 + 2 + 64 bytes; callers never pass more.
    out.push(u8::try_from(cid.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start..start + 10]);
    crc.update(cid);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(cid);
    out.extend_from_slice(data);
    HEADER + cid.len()
}

/// One record found by a scan.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// [`KIND_BLOCK`] or [`KIND_TOMBSTONE`].
    pub kind: u8,
    /// The CID the record is about.
    pub cid: Cid,
    /// Offset of the data in the pack.
    pub data_offset: u64,
    /// Data length.
    pub data_len: u32,
}

/// What a scan of one pack met besides good records.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ScanDamage {
    /// Stretches of bytes skipped because no valid record started there.
    pub damaged: u64,
    /// Whether the pack ended inside a record (a torn append).
    pub torn_tail: bool,
}

fn parse_header(buf: &[u8]) -> Option<(u8, usize, u32)> {
    let magic = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
    if magic != RECORD_MAGIC {
        return None;
    }
    let kind = *buf.get(4)?;
    let cid_len = usize::from(*buf.get(5)?);
    let data_len = u32::from_le_bytes(buf.get(6..10)?.try_into().ok()?);
    let crc = u32::from_le_bytes(buf.get(10..14)?.try_into().ok()?);
    let cid = buf.get(HEADER..HEADER + cid_len)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[..10]);
    h.update(cid);
    if h.finalize() != crc
        || !(kind == KIND_BLOCK || kind == KIND_TOMBSTONE)
        || data_len > MAX_RECORD_DATA
        || (kind == KIND_TOMBSTONE && data_len != 0)
    {
        return None;
    }
    Some((kind, cid_len, data_len))
}

/// Reads every record header of the pack at `path`, in order, calling `f` for each; returns
/// what was damaged. With `with_data`, `f` also gets the record's data (for verification).
pub(crate) fn scan(
    path: &Path,
    mut f: impl FnMut(Record, Option<&[u8]>) -> Result<(), StoreError>,
    with_data: bool,
) -> Result<ScanDamage, StoreError> {
    let io = |op, source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    // Packs are bounded (`PACK_TARGET` plus one batch), so reading one whole is bounded too.
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|e| io("read", e))?;
    let mut damage = ScanDamage::default();
    if bytes.get(..8) != Some(&PACK_MAGIC[..]) {
        damage.damaged += 1;
    }
    let mut pos = PACK_MAGIC.len().min(bytes.len());
    let mut in_damage = false;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let parsed = parse_header(rest).and_then(|(kind, cid_len, data_len)| {
            let cid = Cid::try_from(&rest[HEADER..HEADER + cid_len]).ok()?;
            Some((kind, cid_len, data_len, cid))
        });
        let Some((kind, cid_len, data_len, cid)) = parsed else {
            let claimed = rest.get(5).map_or(0, |&n| HEADER + usize::from(n));
            let starts_record = rest.get(..4) == Some(&RECORD_MAGIC.to_le_bytes()[..]);
            if !in_damage && (rest.len() < HEADER || (starts_record && rest.len() < claimed)) {
                damage.torn_tail = true;
                break;
            }
            if !in_damage {
                damage.damaged += 1;
                in_damage = true;
            }
            pos += 1;
            continue;
        };
        in_damage = false;
        let data_start = pos + HEADER + cid_len;
        let data_end = data_start + data_len as usize;
        if data_end > bytes.len() {
            damage.torn_tail = true;
            break;
        }
        let record = Record {
            kind,
            cid,
            data_offset: data_start as u64,
            data_len,
        };
        let data = with_data.then(|| &bytes[data_start..data_end]);
        f(record, data)?;
        pos = data_end;
    }
    Ok(damage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{cid_for, HashAlg, RAW};

    #[test]
    fn records_survive_damage_and_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(pack_name(1));
        let cids: Vec<Cid> = (0..4u8)
            .map(|i| cid_for(1, RAW, HashAlg::Sha2_256, &[i; 10]))
            .collect();
        let mut buf = PACK_MAGIC.to_vec();
        let mut starts = Vec::new();
        for (i, c) in cids.iter().enumerate() {
            starts.push(buf.len());
            encode_record(&mut buf, KIND_BLOCK, &c.to_bytes(), &[i as u8; 10]);
        }
        encode_record(&mut buf, KIND_TOMBSTONE, &cids[0].to_bytes(), &[]);
        // Damage the header of record 1 and tear the last record.
        buf[starts[1] + 7] ^= 0xff;
        buf.truncate(buf.len() - 3);
        fs::write(&path, &buf).unwrap();
        let mut seen = Vec::new();
        let damage = scan(
            &path,
            |r, d| {
                seen.push((r.kind, r.cid, d.map(<[u8]>::to_vec)));
                Ok(())
            },
            true,
        )
        .unwrap();
        assert_eq!(damage.damaged, 1);
        assert!(damage.torn_tail);
        let kinds: Vec<(u8, Cid)> = seen.iter().map(|(k, c, _)| (*k, *c)).collect();
        assert_eq!(
            kinds,
            vec![
                (KIND_BLOCK, cids[0]),
                (KIND_BLOCK, cids[2]),
                (KIND_BLOCK, cids[3])
            ]
        );
        assert_eq!(seen[1].2.as_deref(), Some(&[2u8; 10][..]));
        assert_eq!(parse_pack_name(&pack_name(0xabc)), Some(0xabc));
        assert_eq!(parse_pack_name("x.pack"), None);
    }

    #[test]
    fn mutated_packs_never_panic_and_yield_only_valid_headers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(pack_name(2));
        let mut good = PACK_MAGIC.to_vec();
        for i in 0..20u8 {
            let c = cid_for(1, RAW, HashAlg::Sha2_256, &[i; 33]);
            encode_record(&mut good, KIND_BLOCK, &c.to_bytes(), &[i; 33]);
            if i % 5 == 0 {
                encode_record(&mut good, KIND_TOMBSTONE, &c.to_bytes(), &[]);
            }
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut b = good.clone();
            for _ in 0..(1 + next() % 8) {
                let at = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[at] ^= 1 << (next() % 8),
                    1 => b.truncate(at),
                    _ => b.insert(at, next() as u8),
                }
                if b.is_empty() {
                    break;
                }
            }
            fs::write(&path, &b).unwrap();
            let mut records = 0;
            let result = scan(
                &path,
                |r, d| {
                    assert!(r.data_len <= MAX_RECORD_DATA);
                    assert_eq!(d.map(<[u8]>::len), Some(r.data_len as usize));
                    records += 1;
                    Ok(())
                },
                true,
            );
            assert!(result.is_ok(), "round {round}: {result:?}");
            assert!(records <= 24);
        }
    }
}
