//! The services' HTTP/1.1 as hyper serves it with the listener's settings,
//! through real sockets with a raw TCP client: keep-alive and pipelining,
//! bodies by length and by chunks, `100 Continue`, HTTP/1.0, HEAD, answers of
//! unknown length, and the requests it refuses (RFC 9112).

use crate::common::until_closed;

use std::time::Duration;

use axum::{
    Router,
    body::{Body, Bytes},
    routing::{get, post},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use weather_core::server::{RunningServer, spawn_local};

async fn echo(body: Bytes) -> Bytes {
    body
}

/// A body whose size is not known before it is sent: three frames.
struct Streamed(Vec<&'static str>);

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let next = (!self.0.is_empty()).then(|| self.0.remove(0));
        std::task::Poll::Ready(next.map(|s| Ok(http_body::Frame::data(Bytes::from(s)))))
    }
}

async fn streamed() -> Body {
    Body::new(Streamed(vec!["one ", "two ", "three"]))
}

async fn server() -> RunningServer {
    let router = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/echo", post(echo))
        .route("/ignore", post(|| async { "not read" }))
        .route("/stream", get(streamed));
    spawn_local(router).await.unwrap()
}

async fn connect(s: &RunningServer) -> TcpStream {
    TcpStream::connect(s.addr).await.unwrap()
}

/// Reads until `n` answers framed by Content-Length have come (bounded: 20 s).
async fn answers(s: &mut TcpStream, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let done = split_answers(&buf);
            if done.len() >= n {
                return done;
            }
            let got = s.read(&mut chunk).await.unwrap();
            assert!(got > 0, "closed after {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..got]);
        }
    })
    .await;
    read.expect("answers did not come")
}

/// The whole answers at the start of `buf`, each framed by Content-Length.
fn split_answers(mut buf: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        if buf.len() < end + 4 + len {
            break;
        }
        out.push(String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned());
        buf = &buf[end + 4 + len..];
    }
    out
}

#[tokio::test]
async fn a_connection_carries_requests_one_after_another_and_pipelined() {
    let server = server().await;
    let mut s = connect(&server).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = answers(&mut s, 1).await;
    assert!(first[0].starts_with("HTTP/1.1 200 OK\r\n"), "{first:?}");
    assert!(first[0].ends_with("\r\n\r\nhello"), "{first:?}");
    assert!(first[0].to_lowercase().contains("\r\ndate: "), "{first:?}");
    // Two requests in one write: two answers, in order.
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let two = answers(&mut s, 2).await;
    assert!(two[0].ends_with("\r\n\r\nabc"), "{two:?}");
    assert!(two[1].ends_with("\r\n\r\nhello"), "{two:?}");
    // `Connection: close` is honoured.
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let last = until_closed(&mut s).await;
    assert!(last.contains("connection: close"), "{last}");
    assert!(last.ends_with("hello"), "{last}");
}

#[tokio::test]
async fn bodies_come_by_length_or_in_chunks_and_100_continue_is_sent_when_read() {
    let server = server().await;
    let mut s = connect(&server).await;
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await
    .unwrap();
    let a = answers(&mut s, 1).await;
    assert!(a[0].ends_with("\r\n\r\nabcde"), "{a:?}");
    // Expect: the server says to go on before the body is sent.
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("no 100 Continue")
        .unwrap();
    assert_eq!(&buf[..n], b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"wxyz").await.unwrap();
    let a = answers(&mut s, 1).await;
    assert!(a[0].starts_with("HTTP/1.1 200"), "{a:?}");
    assert!(a[0].ends_with("\r\n\r\nwxyz"), "{a:?}");
    // A malformed chunk breaks the body: the route never sees it whole, and
    // the connection is not used again.
    let mut bad = connect(&server).await;
    bad.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = until_closed(&mut bad).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn a_body_the_route_does_not_read_closes_the_connection_after_a_whole_answer() {
    let server = server().await;
    let mut s = connect(&server).await;
    let body = "x".repeat(100_000);
    let request =
        format!("POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{body}");
    let _ = s.write_all(request.as_bytes()).await;
    let answer = until_closed(&mut s).await;
    // The whole answer came, and then the close (`until_closed`).
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("not read"), "{answer}");
}

#[tokio::test]
async fn http_1_0_head_and_answers_of_unknown_length() {
    let server = server().await;
    // HTTP/1.0: answered in HTTP/1.0 and closed after the answer, unless the
    // client asks to keep it.
    let mut s = connect(&server).await;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let a = until_closed(&mut s).await;
    assert!(a.starts_with("HTTP/1.0 200") && a.ends_with("hello"), "{a}");
    let mut s = connect(&server).await;
    s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let a = until_closed(&mut s).await;
    assert_eq!(a.matches("hello").count(), 2, "{a}");
    assert!(a.contains("connection: keep-alive"), "{a}");
    // HEAD: the head of a GET, its length, no body.
    let mut s = connect(&server).await;
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let a = until_closed(&mut s).await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert!(a.contains("content-length: 5\r\n"), "{a}");
    assert!(a.ends_with("\r\n\r\n"), "{a}");
    // A streamed body: chunked to HTTP/1.1, to the close for HTTP/1.0.
    let mut s = connect(&server).await;
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let a = until_closed(&mut s).await;
    assert!(a.contains("transfer-encoding: chunked\r\n"), "{a}");
    assert!(
        a.ends_with("\r\n\r\n4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"),
        "{a}"
    );
    let mut s = connect(&server).await;
    s.write_all(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let a = until_closed(&mut s).await;
    assert!(!a.contains("transfer-encoding"), "{a}");
    assert!(a.ends_with("\r\n\r\none two three"), "{a}");
}

/// Both a length and chunks: the chunks frame the body, the length is
/// ignored, and the connection closes after the answer, so nothing a
/// front proxy framed differently can be read as a next request (RFC 9112,
/// 6.1).
#[tokio::test]
async fn a_length_beside_chunks_is_ignored_and_the_connection_closes() {
    let server = server().await;
    let mut s = connect(&server).await;
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let a = until_closed(&mut s).await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert!(a.contains("connection: close\r\n"), "{a}");
    assert!(a.ends_with("\r\n\r\nok"), "{a}");
    assert!(
        !a.contains("hello"),
        "the smuggled request was answered: {a}"
    );
}

#[tokio::test]
async fn requests_that_cannot_be_framed_are_400_and_the_connection_closes() {
    let server = server().await;
    for raw in [
        &b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc"[..],
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    ] {
        let mut s = connect(&server).await;
        let _ = s.write_all(raw).await;
        let a = until_closed(&mut s).await;
        assert!(
            a.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{:?}: {a}",
            String::from_utf8_lossy(raw)
        );
        assert!(a.contains("connection: close"), "{a}");
    }
}
