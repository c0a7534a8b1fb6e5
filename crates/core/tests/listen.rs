//! The bounds every listener keeps, through real sockets with a raw TCP client:
//! a client that sends half a request head is cut off, oversized or too many
//! headers get 431, and shutdown ends within the drain window whatever clients
//! do. Each with both engines: the services' own and the data plane's hyper.

mod common;
use common::until_closed;

use std::time::Duration;

use axum::{Router, routing::get};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};
use weather_core::server::listen::{Engine, Limits, serve_bounded};

const ENGINES: [Engine; 2] = [Engine::Lean, Engine::Hyper];

/// Serves a hello router within `limits`; the sender stops it.
async fn serve(
    limits: Limits,
    engine: Engine,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits { engine, ..limits };
    let router = Router::new().route("/", get(|| async { "hello" }));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_bounded(listener, router, limits, async move {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

#[tokio::test]
async fn a_client_that_sends_half_a_head_and_waits_is_cut_off() {
    for engine in ENGINES {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _stop, _task) = serve(limits, engine).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let answer = until_closed(&mut s).await;
        assert!(!answer.contains("hello"), "{answer}");
        // The listener still answers others.
        let mut ok = TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(until_closed(&mut ok).await.ends_with("hello"));
    }
}

#[tokio::test]
async fn headers_past_envoys_limits_are_a_431() {
    for engine in ENGINES {
        let (addr, _stop, _task) = serve(Limits::default(), engine).await;
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
            let mut s = TcpStream::connect(addr).await.unwrap();
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
}

/// Past the connection limit a new connection is told so (503) and closed,
/// not left waiting; once one closes, the next is served.
#[tokio::test]
async fn a_connection_past_the_limit_is_refused_clearly() {
    for engine in ENGINES {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let (addr, _stop, _task) = serve(limits, engine).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).contains("hello"));
            held.push(s);
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let answer = until_closed(&mut third).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("too many connections"), "{answer}");
        drop(held.pop());
        // The freed slot serves the next one (its connection task ends first).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let answer = until_closed(&mut s).await;
            if answer.ends_with("hello") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{answer}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn shutdown_ends_within_the_drain_window_whatever_clients_do() {
    for engine in ENGINES {
        let limits = Limits {
            header_read_timeout: Duration::from_secs(3600),
            drain: Duration::from_millis(500),
            ..Limits::default()
        };
        let (addr, stop, task) = serve(limits, engine).await;
        // Half a head, never finished; and an idle kept-alive connection.
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("hello"));
        let _ = stop.send(());
        let ended = tokio::time::timeout(Duration::from_secs(20), task).await;
        assert!(ended.is_ok(), "the server did not stop");
        until_closed(&mut idle).await;
        until_closed(&mut half).await;
    }
}
