//! `/cairn/ipns/pull/1.0.0`: asks a peer for the newest record it holds of one IPNS name.
//!
//! Pushes (IPNS over PubSub) reach only the peers connected when a record is published; a
//! follower that connects later asks each peer that turns out to follow or publish the same
//! name (it subscribes to the name's topic) with this request, and so catches up at once.
//!
//! On the wire, one stream per request: the request is the name's routing key
//! (`/ipns/<multihash>`, at most [`MAX_REQUEST`] bytes) and the requester closes its side; the
//! answer is the record's bytes (at most [`cairn_store::IPNS_MAX_RECORD_SIZE`]), or nothing if
//! the peer holds none, and the answerer closes its side. Both sides read to the end of the
//! stream and refuse more than the limit.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// The protocol id.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/ipns/pull/1.0.0");
/// The longest request: `/ipns/` and a multihash of an inlined Ed25519 key (44 bytes today).
pub(crate) const MAX_REQUEST: usize = 128;

/// The codec: raw bytes each way, bounded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Codec;

async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message over {max} bytes"),
        ));
    }
    Ok(buf)
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    /// A routing key.
    type Request = Vec<u8>;
    /// A record, or empty.
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_bounded(io, MAX_REQUEST).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_bounded(io, cairn_store::IPNS_MAX_RECORD_SIZE).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&res).await
    }
}
