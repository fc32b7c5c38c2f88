//! QUIC connections whose inbound streams survive a peer that stops reading at once.
//!
//! go-libp2p (Kubo) sends every Bitswap message on a fresh stream: it proposes the protocol
//! lazily (the multistream-select header, the protocol line and the message in one write),
//! finishes its send side and closes its receive side right away. Over QUIC closing the receive
//! side sends STOP_SENDING, which normally arrives in the same packet as the data. The listener
//! then has to write its multistream-select confirmation, quinn fails that write ("sending stopped
//! by peer") and the swarm drops the whole inbound stream, along with the message it carried.
//! TCP is not affected: Yamux has no way to stop the other side's sending.
//!
//! STOP_SENDING means the peer will never read anything we write on that stream. So on
//! *inbound* streams, [`Muxer`] treats a write that fails for that reason as written and
//! discarded, as if the peer had read it and thrown it away. Negotiation then completes, and the
//! data the peer sent is read to its end. Outbound streams keep the error: the Bitswap handler
//! relies on it to notice a lane the remote no longer reads, and to reopen it. Any other error
//! (connection lost, stream reset) goes through unchanged.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};

/// Wraps a connection's muxer so that inbound substreams absorb writes the peer stopped.
#[derive(Debug)]
pub(crate) struct Muxer<M> {
    inner: M,
}

impl<M> Muxer<M> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: M) -> Self {
        Muxer { inner }
    }
}

impl<M> StreamMuxer for Muxer<M>
where
    M: StreamMuxer + Unpin,
    M::Substream: Unpin,
{
    type Substream = Substream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let s = ready!(Pin::new(&mut self.get_mut().inner).poll_inbound(cx))?;
        Poll::Ready(Ok(Substream::new(s, true)))
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let s = ready!(Pin::new(&mut self.get_mut().inner).poll_outbound(cx))?;
        Poll::Ready(Ok(Substream::new(s, false)))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

/// A substream of a [`Muxer`].
#[derive(Debug)]
pub(crate) struct Substream<S> {
    inner: S,
    /// The remote opened it: writes the remote stopped are discarded.
    inbound: bool,
    /// The remote sent STOP_SENDING: every later write is discarded.
    stopped: bool,
}

impl<S> Substream<S> {
    fn new(inner: S, inbound: bool) -> Self {
        Substream {
            inner,
            inbound,
            stopped: false,
        }
    }

    /// Whether `r`, the result of a write, means the peer stopped reading and the write is to be
    /// treated as discarded. quinn reports STOP_SENDING as `ConnectionReset` on writes (its only
    /// other source, rejected 0-RTT data, cannot happen: libp2p does not use 0-RTT); a lost
    /// connection is `NotConnected`.
    fn absorbs<T>(&mut self, r: &io::Result<T>) -> bool {
        match r {
            Err(e) if self.inbound && e.kind() == io::ErrorKind::ConnectionReset => {
                if !self.stopped {
                    tracing::trace!("peer stopped reading an inbound stream: discarding writes");
                }
                self.stopped = true;
                true
            }
            _ => false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Substream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read_vectored(cx, bufs)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Substream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stopped {
            return Poll::Ready(Ok(buf.len()));
        }
        let r = ready!(Pin::new(&mut this.inner).poll_write(cx, buf));
        if this.absorbs(&r) {
            return Poll::Ready(Ok(buf.len()));
        }
        Poll::Ready(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let all = bufs.iter().map(|b| b.len()).sum();
        if this.stopped {
            return Poll::Ready(Ok(all));
        }
        let r = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs));
        if this.absorbs(&r) {
            return Poll::Ready(Ok(all));
        }
        Poll::Ready(r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stopped {
            return Poll::Ready(Ok(()));
        }
        let r = ready!(Pin::new(&mut this.inner).poll_flush(cx));
        if this.absorbs(&r) {
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(r)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = ready!(Pin::new(&mut this.inner).poll_close(cx));
        if this.stopped || this.absorbs(&r) {
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::{AsyncReadExt, AsyncWriteExt};

    /// A stream whose reads yield `data` and whose writes fail with `kind` (quinn's STOP_SENDING
    /// is `ConnectionReset`).
    struct Stopped {
        data: io::Cursor<Vec<u8>>,
        kind: io::ErrorKind,
        writes: usize,
    }

    impl AsyncRead for Stopped {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(io::Read::read(&mut self.get_mut().data, buf))
        }
    }

    impl AsyncWrite for Stopped {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes += 1;
            Poll::Ready(Err(io::Error::new(this.kind, "sending stopped by peer")))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn stream(kind: io::ErrorKind, inbound: bool) -> Substream<Stopped> {
        let s = Stopped {
            data: io::Cursor::new(b"hello".to_vec()),
            kind,
            writes: 0,
        };
        Substream::new(s, inbound)
    }

    #[test]
    fn inbound_stream_discards_stopped_writes_and_still_reads() {
        let mut s = stream(io::ErrorKind::ConnectionReset, true);
        block_on(async {
            s.write_all(b"/multistream/1.0.0\n").await.unwrap();
            s.write_all(b"more").await.unwrap();
            s.flush().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hello");
            s.close().await.unwrap();
        });
        // Once stopped, later writes never reach the transport.
        assert_eq!(s.inner.writes, 1);
    }

    #[test]
    fn outbound_stream_keeps_the_stop_error() {
        let mut s = stream(io::ErrorKind::ConnectionReset, false);
        let e = block_on(s.write_all(b"x")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn inbound_stream_keeps_other_errors() {
        let mut s = stream(io::ErrorKind::NotConnected, true);
        let e = block_on(s.write_all(b"x")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    }
}
