//! The hop's connections to the workloads: hyper's HTTP/1.1 client
//! connections, kept alive and shared by address. Endpoints are socket
//! addresses fixed when `weather up` starts, so a short list searched by
//! address takes the place of hyper_util's pool, which hashed the URL's
//! authority byte by byte (SipHash) several times a request. Why the hop
//! keeps its connections itself: docs/architecture.md, "The data plane's own
//! connections".

use std::{
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{HeaderValue, Request, Response, header::HOST},
};
use hyper::{body::Incoming, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// At most this many connections are kept, busy or idle, across endpoints;
/// past it a request goes on a connection of its own, closed after it. Every
/// workload handles at most 32 requests at once (`MAX_IN_FLIGHT`), so more
/// kept connections to one only queue there, each holding its buffers on both
/// ends: with 256, `weather up` under 200 connections kept some 300 of them
/// and its memory rose round after round (docs/benchmarks.md).
const MAX_KEPT: usize = 64;

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made: the reason, as the OS gave it.
    Connect(String),
    /// hyper's: the connection broke, or the answer was not HTTP.
    Http(hyper::Error),
}

#[derive(Debug)]
pub struct Upstreams {
    kept: Mutex<Vec<Kept>>,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Kept {
    addr: SocketAddr,
    sender: SendRequest<Body>,
    since: Instant,
}

impl Upstreams {
    pub fn new(idle_timeout: Duration) -> Self {
        Upstreams {
            kept: Mutex::new(Vec::new()),
            idle_timeout,
        }
    }

    /// Sends `req` (its URI the path and query) to `addr` on a kept
    /// connection that is free, else on a new one. A request a kept
    /// connection closed under before sending it goes on a new one.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        if !req.headers().contains_key(HOST) {
            // As hyper_util's client sets it: an HTTP/1.0 client may not have.
            if let Ok(v) = HeaderValue::from_str(&addr.to_string()) {
                req.headers_mut().insert(HOST, v);
            }
        }
        while let Some(mut sender) = self.checkout(addr) {
            match sender.try_send_request(req).await {
                Ok(res) => {
                    self.keep(addr, sender);
                    return Ok(res);
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the connection was closing. Try another.
                    Some(back) => req = back,
                    None => return Err(SendError::Http(e.into_error())),
                },
            }
        }
        let mut sender = connect(addr).await?;
        sender.ready().await.map_err(SendError::Http)?;
        let res = sender.send_request(req).await.map_err(SendError::Http)?;
        self.keep(addr, sender);
        Ok(res)
    }

    /// A connection to `addr` free for a request; closed ones and ones idle
    /// too long are dropped on the way.
    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<Body>> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        kept.retain(|k| !k.sender.is_closed() && now.duration_since(k.since) < self.idle_timeout);
        let at = kept
            .iter()
            .rposition(|k| k.addr == addr && k.sender.is_ready())?;
        Some(kept.swap_remove(at).sender)
    }

    /// Keeps a connection whose answer is on its way: once its body is read,
    /// it is free for the next request ([`SendRequest::is_ready`]).
    fn keep(&self, addr: SocketAddr, sender: SendRequest<Body>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < MAX_KEPT {
            kept.push(Kept {
                addr,
                sender,
                since: Instant::now(),
            });
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Body>, SendError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| SendError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    // A read buffer of a fixed 8 KiB rather than hyper's adaptive one, which
    // grows with the answers read (a page is some 20 KB) and keeps its size
    // while the connection is kept (docs/benchmarks.md, "weather up under
    // mixed load").
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .read_buf_exact_size(Some(8192))
        .handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}
