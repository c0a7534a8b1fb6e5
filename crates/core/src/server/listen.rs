//! Accepting connections with bounds every listener keeps, whatever a client
//! does (docs/architecture.md, "Failure behaviour"): the time to send a request
//! head (which is also how long a kept-alive connection may sit idle), the
//! size and count of its headers (Envoy's limits: 60 KiB, 100 headers;
//! past them a 431), and how many connections are open at once. On shutdown
//! the listener closes, idle connections close, in-flight requests get up to
//! a drain window, and whatever is left after it is cut.
//!
//! Two engines speak HTTP/1.1 on the connections ([`Engine`]): the services'
//! own lean one ([`super::http1`]) and hyper's, which the data plane keeps.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo, http::Request};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tower::ServiceExt;

/// What one listener allows a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// To send a request's head, counted from when the connection is ready for
    /// one: a client that sends half a head, or sits idle between requests,
    /// is cut off after it.
    pub header_read_timeout: Duration,
    /// The bytes of a request's head (431 past it).
    pub max_header_bytes: usize,
    /// The headers of a request (431 past it).
    pub max_headers: usize,
    /// Connections open at once; past it, a new one is answered 503 and closed.
    pub max_connections: usize,
    /// After shutdown begins, how long in-flight requests may take.
    pub drain: Duration,
    /// What speaks HTTP/1.1 on the connections.
    pub engine: Engine,
}

/// What serves a listener's connections. Both keep the same [`Limits`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// [`super::http1`], the services': an idle connection holds no buffer
    /// (docs/architecture.md, "Memory").
    #[default]
    Lean,
    /// hyper's, the data plane's: it relays bodies as they stream, and
    /// HTTP/2 and upgrades are there when the proxy needs them.
    Hyper,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_header_bytes: 60 * 1024,
            max_headers: 100,
            max_connections: 4096,
            drain: Duration::from_secs(20),
            engine: Engine::Lean,
        }
    }
}

/// The head timeout, which is also the idle timeout of a kept-alive
/// connection. Every client of the project keeps its pooled connections for
/// less ([`POOL_IDLE`]), so it never sends on one the server is closing.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the project's HTTP clients keep an idle pooled connection.
pub const POOL_IDLE: Duration = Duration::from_secs(20);

/// The answer to a connection past [`Limits::max_connections`]: 503, then
/// closed, without reading what it sent (bounded: 1 s to write it).
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = "too many connections: try again shortly\n";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{BODY}",
        BODY.len()
    );
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves,
/// then drains. Handlers can read the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve_bounded(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    let graceful = GracefulShutdown::new();
    // The lean engine's connections close when this turns true.
    let (closing, closed) = tokio::sync::watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Full: a clear answer instead of a connection left waiting.
            connections.spawn(refuse(stream));
            continue;
        };
        if limits.engine == Engine::Lean {
            let conn = super::http1::serve_connection(
                stream,
                peer,
                router.clone(),
                limits,
                closed.clone(),
            );
            connections.spawn(async move {
                conn.await;
                drop(permit);
            });
            continue;
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let router = router.clone();
            async move {
                let res = router.oneshot(req.map(Body::new)).await;
                Ok::<_, Infallible>(res.unwrap_or_else(|e| match e {}))
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
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
