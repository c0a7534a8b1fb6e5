//! Accepting connections and serving them with hyper, within the bounds every
//! listener keeps whatever a client does (docs/architecture.md, "Failure
//! behaviour"):
//!
//! - the time to send a request head, which is also how long a kept-alive
//!   connection may sit idle (hyper's `header_read_timeout`);
//! - the size and count of a head's headers (Envoy's limits: 60 KiB and 100
//!   headers; past them hyper answers 431);
//! - the time a write may wait on a client that does not read its answers
//!   (`tokio-io-timeout` around the socket; past it the connection is closed;
//!   a client that stops sending mid-body meets the body's own timeout, in
//!   the service's layers or the proxy's);
//! - how many connections are open at once. The limit is sized so that every
//!   connection holding the largest head the limits allow still fits the pod's
//!   memory limit (docs/architecture.md, "Memory"). Past it, a few more are
//!   served with hyper's smallest buffer and no keep-alive, only to answer the
//!   probes (`/healthz`, `/readyz`) and tell everyone else 503; past those, a
//!   connection is closed at once.
//!
//! A connection hyper closes lingers: its write side is shut and what the
//! client still sends is read and dropped for a moment, so that an early
//! answer is not erased by a reset ([`super::linger`]).
//!
//! On shutdown the listener closes; connections that are idle or have not
//! finished their first head close at once; requests in flight get up to a
//! drain window; whatever is left after it is cut.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderValue, Request, Response, StatusCode, header},
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
    task::JoinSet,
};
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

use super::linger::Lingering;

/// What one listener allows a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// To send a request's head, counted from when the connection is ready for
    /// one: a client that sends half a head, or sits idle between requests,
    /// is cut off after it.
    pub header_read_timeout: Duration,
    /// How long one write may wait on the client: a client that never reads
    /// its answers is cut off after it.
    pub write_timeout: Duration,
    /// The bytes of a request's head (431 past it).
    pub max_header_bytes: usize,
    /// The headers of a request (431 past it).
    pub max_headers: usize,
    /// Connections served at once. Past it, [`OVERFLOW`] more are answered
    /// 503 (the probes excepted), and the rest closed.
    pub max_connections: usize,
    /// After shutdown begins, how long in-flight requests may take.
    pub drain: Duration,
    /// Whether a request in flight ends when its client hangs up (hyper
    /// then keeps reading the connection, with a second buffer): a proxy
    /// hop's, as Envoy stops a request whose client is gone. Off for the
    /// services, whose requests the request timeout bounds.
    pub end_on_hangup: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            write_timeout: Duration::from_secs(10),
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: 100,
            max_connections: MAX_CONNECTIONS as usize,
            drain: Duration::from_secs(20),
            end_on_hangup: false,
        }
    }
}

/// The head timeout, which is also the idle timeout of a kept-alive
/// connection. Every client of the project keeps its pooled connections for
/// less ([`POOL_IDLE`]), so it never sends on one the server is closing.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the project's HTTP clients keep an idle pooled connection.
pub const POOL_IDLE: Duration = Duration::from_secs(20);

/// Envoy's `max_request_headers_kb` default.
pub const MAX_HEADER_BYTES: usize = 60 * 1024;

pub use crate::config::MAX_CONNECTIONS;

/// Connections past the limit that are still read, with hyper's smallest
/// buffer, so that a probe gets its answer while the limit is full.
pub const OVERFLOW: usize = 64;

/// What a listener serves: its router, and whether this connection is one
/// past the limit.
#[derive(Clone)]
struct Conn {
    router: Router,
    peer: SocketAddr,
    overflow: bool,
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves,
/// then drains. Handlers can read the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve_bounded(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    // Connections that never finished a first head close when this turns true.
    let (closing, closed) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait, do not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (permit, past_limit) = match permits.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match overflow.clone().try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => {
                    tracing::debug!("connection from {peer} closed: past the limit and overflow");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            router: router.clone(),
            peer,
            overflow: past_limit,
        };
        let started = Arc::new(AtomicBool::new(false));
        let served = graceful.watch(serve_connection(stream, conn, &limits, started.clone()));
        let closed = closed.clone();
        connections.spawn(async move {
            tokio::select! {
                result = served => {
                    if let Err(e) = result {
                        tracing::debug!("connection from {peer}: {e}");
                    }
                }
                () = close_if_never_started(closed, started) => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    };
    tokio::select! {
        () = drained => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!(
                drain_ms = limits.drain.as_millis() as u64,
                "drain window over: closing the connections still open"
            );
        }
    }
    connections.abort_all();
    Ok(())
}

/// A connection's socket: with its write deadline, lingering when closed.
type Socket = Lingering<Pin<Box<TimeoutStream<TcpStream>>>>;

/// hyper's HTTP/1.1 connection over the socket with its write deadline.
fn serve_connection(
    stream: TcpStream,
    conn: Conn,
    limits: &Limits,
    started: Arc<AtomicBool>,
) -> http1::Connection<TokioIo<Socket>, ConnService> {
    // Writes only: reads are bounded by hyper's head timeout and the body's
    // own, and a read deadline would re-arm a timer on every idle wait.
    let mut io = TimeoutStream::new(stream);
    io.set_write_timeout(Some(limits.write_timeout));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // While a request is in flight hyper would otherwise keep reading, to
        // see a client hang up early, and hold a second read buffer for it:
        // 8 KiB a connection for nothing the request timeout does not bound.
        // A proxy hop wants to see it (`end_on_hangup`).
        .half_close(!limits.end_on_hangup);
    if conn.overflow {
        // hyper's smallest buffer: enough for a probe's head.
        http.keep_alive(false).max_buf_size(8192);
    } else {
        http.max_header_size(limits.max_header_bytes)
            // The head's limit and a little: a body is read as the handler
            // asks for it, never buffered ahead past this.
            .max_buf_size((limits.max_header_bytes + 4096).max(8192));
    }
    if limits.max_headers != 100 {
        // 100 is hyper's default, kept on the stack; any other is on the heap.
        http.max_headers(limits.max_headers);
    }
    // A close reads what the client still sends for a while ([`Lingering`]).
    let io = Lingering::new(Box::pin(io));
    http.serve_connection(TokioIo::new(io), ConnService { conn, started })
}

/// Resolves when shutdown begins on a connection that has not yet sent a
/// whole first head (hyper's graceful shutdown waits for those): nothing is
/// in flight on it, so it closes at once.
async fn close_if_never_started(mut closed: watch::Receiver<bool>, started: Arc<AtomicBool>) {
    let _ = closed.wait_for(|c| *c).await;
    if started.load(Ordering::Acquire) {
        std::future::pending::<()>().await;
    }
}

/// One connection's service: the router, with the peer's address; past the
/// limit, only the probes.
#[derive(Clone)]
struct ConnService {
    conn: Conn,
    started: Arc<AtomicBool>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.started.store(true, Ordering::Release);
        let conn = self.conn.clone();
        Box::pin(async move {
            if conn.overflow && !matches!(req.uri().path(), "/healthz" | "/readyz") {
                return Ok(too_many_connections());
            }
            req.extensions_mut().insert(ConnectInfo(conn.peer));
            let res = conn.router.oneshot(req.map(Body::new)).await;
            Ok(res.unwrap_or_else(|e| match e {}))
        })
    }
}

/// The answer to a request on a connection past the limit.
fn too_many_connections() -> Response<Body> {
    let mut res = Response::new(Body::from("too many connections: try again shortly\n"));
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}
