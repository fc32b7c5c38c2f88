//! The dag-pb codec (PBNode / PBLink), encoded canonically: Links (field 2) before Data (field 1),
//! link fields in the order Hash, Name, Tsize.

use bytes::Bytes;
use cid::Cid;

use crate::varint;

/// A link of a dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    /// The child.
    pub cid: Cid,
    /// The link name (an entry name in a directory, `""` for file chunks).
    pub name: Option<String>,
    /// The cumulative size of the child's DAG (its blocks' bytes).
    pub tsize: Option<u64>,
}

/// A dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PbNode {
    /// Links, in order.
    pub links: Vec<PbLink>,
    /// The opaque data (UnixFS `Data` message for UnixFS nodes).
    pub data: Option<Bytes>,
}

/// Why bytes are not a valid dag-pb node.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PbError {
    /// The protobuf framing is broken.
    #[error("malformed dag-pb: {0}")]
    Malformed(&'static str),
    /// A link's Hash is not a CID.
    #[error("malformed dag-pb: link {index} has an invalid CID")]
    BadCid {
        /// Index of the link.
        index: usize,
    },
    /// A link name is not UTF-8.
    #[error("malformed dag-pb: link {index} has a name that is not UTF-8")]
    BadName {
        /// Index of the link.
        index: usize,
    },
    /// More links than cairn accepts in one node.
    #[error("dag-pb node has more than {max} links")]
    TooManyLinks {
        /// The limit.
        max: usize,
    },
}

/// Upper bound of links accepted in one decoded node (a 2 MiB block cannot hold more than this).
pub const MAX_LINKS: usize = 1 << 16;

impl PbNode {
    /// Encodes the node canonically.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.data.as_ref().map_or(0, |d| d.len() + 8) + self.links.len() * 48,
        );
        let mut link_buf = Vec::with_capacity(64);
        for link in &self.links {
            link_buf.clear();
            let cid_bytes = link.cid.to_bytes();
            varint::put_tag(&mut link_buf, 1, 2);
            varint::put_bytes(&mut link_buf, &cid_bytes);
            if let Some(name) = &link.name {
                varint::put_tag(&mut link_buf, 2, 2);
                varint::put_bytes(&mut link_buf, name.as_bytes());
            }
            if let Some(t) = link.tsize {
                varint::put_tag(&mut link_buf, 3, 0);
                varint::put_uvarint(&mut link_buf, t);
            }
            varint::put_tag(&mut out, 2, 2);
            varint::put_bytes(&mut out, &link_buf);
        }
        if let Some(d) = &self.data {
            varint::put_tag(&mut out, 1, 2);
            varint::put_bytes(&mut out, d);
        }
        out
    }

    /// Decodes a node. `Data` shares memory with `bytes`.
    pub fn decode(bytes: &Bytes) -> Result<Self, PbError> {
        let mut node = PbNode::default();
        let mut r = varint::Reader::new(bytes);
        while !r.is_empty() {
            let (field, wire) = r.tag().ok_or(PbError::Malformed("bad field tag"))?;
            match (field, wire) {
                (1, 2) => {
                    let (start, end) = r.len_delimited().ok_or(PbError::Malformed("bad Data"))?;
                    node.data = Some(bytes.slice(start..end));
                }
                (2, 2) => {
                    let (start, end) = r.len_delimited().ok_or(PbError::Malformed("bad Link"))?;
                    if node.links.len() >= MAX_LINKS {
                        return Err(PbError::TooManyLinks { max: MAX_LINKS });
                    }
                    let index = node.links.len();
                    node.links.push(decode_link(&bytes[start..end], index)?);
                }
                _ => return Err(PbError::Malformed("unknown field in PBNode")),
            }
        }
        Ok(node)
    }
}

fn decode_link(buf: &[u8], index: usize) -> Result<PbLink, PbError> {
    let mut r = varint::Reader::new(buf);
    let mut cid = None;
    let mut name = None;
    let mut tsize = None;
    while !r.is_empty() {
        let (field, wire) = r.tag().ok_or(PbError::Malformed("bad link field tag"))?;
        match (field, wire) {
            (1, 2) => {
                let (s, e) = r
                    .len_delimited()
                    .ok_or(PbError::Malformed("bad link Hash"))?;
                cid = Some(Cid::try_from(&buf[s..e]).map_err(|_| PbError::BadCid { index })?);
            }
            (2, 2) => {
                let (s, e) = r
                    .len_delimited()
                    .ok_or(PbError::Malformed("bad link Name"))?;
                name = Some(
                    std::str::from_utf8(&buf[s..e])
                        .map_err(|_| PbError::BadName { index })?
                        .to_string(),
                );
            }
            (3, 0) => tsize = Some(r.uvarint().ok_or(PbError::Malformed("bad link Tsize"))?),
            _ => return Err(PbError::Malformed("unknown field in PBLink")),
        }
    }
    Ok(PbLink {
        cid: cid.ok_or(PbError::Malformed("link without Hash"))?,
        name,
        tsize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{cid_for, HashAlg, RAW};
    use proptest::prelude::*;

    fn arb_node() -> impl Strategy<Value = PbNode> {
        let link = (
            any::<Vec<u8>>(),
            proptest::option::of(".{0,20}"),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(seed, name, tsize)| PbLink {
                cid: cid_for(1, RAW, HashAlg::Sha2_256, &seed),
                name,
                tsize,
            });
        (
            proptest::collection::vec(link, 0..8),
            proptest::option::of(any::<Vec<u8>>()),
        )
            .prop_map(|(links, data)| PbNode {
                links,
                data: data.map(Bytes::from),
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(node in arb_node()) {
            let bytes = Bytes::from(node.encode());
            prop_assert_eq!(PbNode::decode(&bytes).unwrap(), node);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in any::<Vec<u8>>()) {
            let _ = PbNode::decode(&Bytes::from(bytes));
        }
    }

    #[test]
    fn empty_directory_is_kubos() {
        // UnixFS Data { Type: Directory }.
        let node = PbNode {
            links: vec![],
            data: Some(Bytes::from_static(&[8, 1])),
        };
        let cid = cid_for(0, crate::hash::DAG_PB, HashAlg::Sha2_256, &node.encode());
        assert_eq!(
            cid.to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
    }
}
