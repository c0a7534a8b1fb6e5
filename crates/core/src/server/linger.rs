//! A lingering close. A server that answers before it has read the request's
//! body (413 on a declared length, say) and then closes the socket with the
//! body's bytes still arriving makes its TCP stack send a reset, and a reset
//! can erase the answer from the client's receive buffer before the client
//! reads it (RFC 9112, 9.6): a proxy in front then reports an upstream reset
//! (503 `UC`) instead of passing the 413 on. So when hyper closes a
//! connection, the write side is shut first (the client sees the end of the
//! answer), and what the client still sends is read and dropped until it
//! closes its side or [`LINGER`] passes, as Envoy's delayed close and nginx's
//! `lingering_close` do.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

/// How long a closing connection still reads what the client sends (Envoy's
/// `delayed_close_timeout` default).
pub const LINGER: Duration = Duration::from_secs(1);

/// `io` whose shutdown lingers; reads and writes pass through.
pub struct Lingering<T> {
    io: T,
    /// Set once the write side is shut: until when to keep reading.
    until: Option<Pin<Box<Sleep>>>,
}

impl<T> Lingering<T> {
    pub fn new(io: T) -> Self {
        Lingering { io, until: None }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Lingering<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.until.is_none() {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.until = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 2048];
        loop {
            if let Some(until) = this.until.as_mut()
                && until.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                // The client closed its side, or the socket broke: done.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_closing_side_reads_what_still_comes_until_the_peer_closes() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = Lingering::new(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        server.write_all(b"413").await.unwrap();
        let shutdown = tokio::spawn(async move { server.shutdown().await });
        // The client sees the answer and the end of it, while it still sends.
        let mut answer = Vec::new();
        client_read.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"413");
        // Far more than the pipe holds: written only because the closing
        // side reads it.
        client_write.write_all(&[b'a'; 10_000]).await.unwrap();
        drop(client_write);
        drop(client_read);
        shutdown.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_closes_is_left_after_the_linger() {
        let (_client, server) = tokio::io::duplex(64);
        let mut server = Lingering::new(server);
        let started = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        assert_eq!(started.elapsed(), LINGER);
    }
}
