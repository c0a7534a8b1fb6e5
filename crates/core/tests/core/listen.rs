//! The bounds every listener keeps, through real sockets with a raw TCP client:
//! a client that sends half a request head is cut off, oversized or too many
//! headers get 431, connections past the limit are told so while the probes
//! still answer, and shutdown ends within the drain window whatever clients
//! do.

use std::time::Duration;

use axum::{Router, routing::get};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};
use weather_core::server::listen::{Limits, OVERFLOW, serve_bounded};

use crate::common::until_closed;

/// A test's server: its address, and what stops it.
pub struct Served {
    pub addr: std::net::SocketAddr,
    pub stop: oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves a small router within `limits`: `/` says hello, `/healthz` ok,
/// `/big` answers 64 KiB.
pub async fn serve(limits: Limits) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/big", get(|| async { "x".repeat(64 * 1024) }));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_bounded(listener, router, limits, async move {
        let _ = stopped.await;
    }));
    Served { addr, stop, task }
}

/// One request on a new connection that asks to close; the whole answer.
pub async fn get_once(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(request.as_bytes()).await;
    until_closed(&mut s).await
}

#[tokio::test]
async fn a_client_that_sends_half_a_head_and_waits_is_cut_off() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = serve(limits).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = until_closed(&mut s).await;
    assert!(!answer.contains("hello"), "{answer}");
    // The listener still answers others.
    assert!(get_once(server.addr, "/").await.ends_with("hello"));
}

#[tokio::test]
async fn headers_past_envoys_limits_are_a_431() {
    let server = serve(Limits::default()).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(61 * 1024)
    );
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    let under = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(50 * 1024)
    );
    for (request, status) in [(big, "431"), (many, "431"), (under, "200")] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        // The server may answer and close before the whole request is written.
        let _ = s.write_all(request.as_bytes()).await;
        let answer = until_closed(&mut s).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "expected {status}: {}",
            answer.lines().next().unwrap_or("")
        );
    }
}

/// Past the connection limit a new connection is told so (503), not left
/// waiting, while the probes still answer; past the overflow too, it is
/// closed at once; once a connection closes, the next is served.
#[tokio::test]
async fn connections_past_the_limit_are_refused_clearly_and_probes_still_answer() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let server = serve(limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("hello"));
        held.push(s);
    }
    let answer = get_once(server.addr, "/").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
    let probe = get_once(server.addr, "/healthz").await;
    assert!(
        probe.starts_with("HTTP/1.1 200") && probe.ends_with("ok"),
        "{probe}"
    );

    // The overflow full of half-sent heads: the next connection is closed
    // without an answer.
    let mut overflow = Vec::new();
    for _ in 0..OVERFLOW {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        overflow.push(s);
    }
    weather_core::testing::eventually("a connection past the overflow to be closed", async || {
        get_once(server.addr, "/healthz").await.is_empty()
    })
    .await;

    drop(overflow);
    drop(held.pop());
    // The freed slot serves the next one (its connection task ends first).
    weather_core::testing::eventually("a freed slot to serve again", async || {
        get_once(server.addr, "/").await.ends_with("hello")
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_idle_and_unstarted_connections_at_once_and_ends_within_the_drain() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(3600),
        drain: Duration::from_secs(3600),
        ..Limits::default()
    };
    let server = serve(limits).await;
    // Half a first head, never finished; and an idle kept-alive connection.
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("hello"));
    // Half of a second head on a kept-alive connection.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = second.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("hello"));
    second.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let _ = server.stop.send(());
    // With an hour's drain window, the server stops only if every one of
    // them was closed at once.
    let ended = tokio::time::timeout(Duration::from_secs(20), server.task).await;
    assert!(ended.is_ok(), "the server did not stop");
    until_closed(&mut idle).await;
    until_closed(&mut half).await;
    until_closed(&mut second).await;
}

#[tokio::test]
async fn shutdown_ends_within_the_drain_window_whatever_clients_do() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(3600),
        drain: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = serve(limits).await;
    // A client that asks for 64 KiB answers and never reads them: its
    // request is in flight when shutdown begins.
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    let requests = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50);
    stuck.write_all(requests.as_bytes()).await.unwrap();
    let _ = server.stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(20), server.task).await;
    assert!(ended.is_ok(), "the server did not stop");
}
