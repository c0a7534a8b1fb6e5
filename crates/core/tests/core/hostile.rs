//! What a hostile client gets from a service's server: requests that a
//! lenient parser would take are refused as hyper refuses them (400, then
//! closed), and a client that never reads its answers is cut off, its
//! connection freed for others.

use std::time::Duration;

use axum::{
    Router,
    body::Bytes,
    routing::{get, post},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use weather_core::{
    AppArgs, AppVersion, Health,
    server::{self, listen::Limits},
    telemetry::Telemetry,
};

use crate::{common::until_closed, listen::get_once};

/// A service as every Weather service is layered: an echo and a 64 KiB answer.
fn app() -> Router {
    let routes = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/big", get(|| async { "x".repeat(64 * 1024) }));
    server::service(
        "test",
        &AppArgs::new(AppVersion::V1),
        Health::default(),
        Telemetry::disabled(),
        routes,
    )
}

async fn serve(limits: Limits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::listen::serve_bounded(
        listener,
        app(),
        limits,
        std::future::pending(),
    ));
    addr
}

#[tokio::test]
async fn framing_a_lenient_parser_would_take_is_a_400_and_the_connection_closes() {
    let addr = serve(Limits::default()).await;
    for raw in [
        // A bare LF ending a chunk-size line.
        &b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"[..],
        // A bare LF ending a chunk extension.
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\nabc\r\n0\r\n\r\n",
        // An empty Transfer-Encoding beside a Content-Length.
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\nabc",
        // A trailer line that is not a header.
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nnot a header\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(raw).await;
        let a = until_closed(&mut s).await;
        assert!(
            a.starts_with("HTTP/1.1 400 "),
            "{:?}: {a}",
            String::from_utf8_lossy(raw)
        );
        assert!(!a.contains("abc"), "the body reached the route: {a}");
    }
}

/// 400 pipelined requests for 64 KiB answers, and not a byte read: once the
/// socket's buffers are full the server's write waits, and past the I/O
/// timeout the connection is closed and its slot given to the next client.
#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_cut_off() {
    let limits = Limits {
        write_timeout: Duration::from_millis(500),
        max_connections: 1,
        ..Limits::default()
    };
    let addr = serve(limits).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let requests = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
    s.write_all(requests.as_bytes()).await.unwrap();
    // The one slot is freed: a new client is served, not told 503.
    weather_core::testing::eventually("the non-reader's slot to be freed", async || {
        get_once(addr, "/healthz").await.starts_with("HTTP/1.1 200")
            && get_once(addr, "/big").await.starts_with("HTTP/1.1 200")
    })
    .await;
    // What the non-reader gets, when at last it reads, ends well short of
    // its 400 answers.
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the connection was not closed");
    let answers = got.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    assert!(answers < 400, "{answers} answers");
}
