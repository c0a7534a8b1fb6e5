//! The outbound client's policies against raw TCP servers that answer exactly
//! the bytes a test gives them: what it sends, kept-alive connections and
//! stale ones, the answer's size limit, timeouts, no redirects, and its
//! errors. The framing itself is reqwest's (hyper's), tested there.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use weather_core::{
    client::{Client, ClientError, Forwarded, MAX_ANSWER},
    telemetry::{Telemetry, TelemetryArgs},
};

/// What the server does with each request on a connection.
#[derive(Clone)]
enum Reply {
    /// Writes these pieces, flushing after each (so the client sees them in
    /// separate reads), then waits for the next request.
    Pieces(Vec<Vec<u8>>),
    /// Writes these bytes and closes the connection.
    ThenClose(Vec<u8>),
    /// Closes the connection without answering.
    Close,
    /// Never answers.
    Hang,
}

struct Server {
    port: u16,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

/// A server that answers the n-th request of every connection with
/// `script(connection index, request index)`.
async fn server(script: impl Fn(usize, usize) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(script);
    let (acc, reqs) = (accepted.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let conn = acc.fetch_add(1, Ordering::SeqCst);
            let (script, reqs) = (script.clone(), reqs.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for n in 0.. {
                    // Read one request head.
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    };
                    let head: Vec<u8> = buf.drain(..end).collect();
                    reqs.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).into_owned());
                    match script(conn, n) {
                        Reply::Pieces(pieces) => {
                            for p in pieces {
                                if s.write_all(&p).await.is_err() {
                                    return;
                                }
                                let _ = s.flush().await;
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                        Reply::ThenClose(bytes) => {
                            let _ = s.write_all(&bytes).await;
                            return;
                        }
                        Reply::Close => return,
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                    }
                }
            });
        }
    });
    Server {
        port,
        accepted,
        requests,
    }
}

impl Server {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// `n` calls through one client, each of which must be answered `body`;
    /// how many connections the server then had accepted.
    async fn calls(&self, n: usize, body: &[u8]) -> usize {
        let c = client(2000);
        for _ in 0..n {
            let up = c.get(&self.url(), &fwd()).await.unwrap();
            assert_eq!(&up.body[..], body);
        }
        self.accepted()
    }

    /// One call that must fail.
    async fn failure(&self, timeout_ms: u64) -> ClientError {
        client(timeout_ms)
            .get(&self.url(), &fwd())
            .await
            .unwrap_err()
    }
}

fn one(bytes: &str) -> Reply {
    Reply::Pieces(vec![bytes.as_bytes().to_vec()])
}

fn client(timeout_ms: u64) -> Client {
    let telemetry = Telemetry::new("test", "v1", &TelemetryArgs::default(), &[]);
    Client::new(
        Duration::from_millis(500),
        Duration::from_millis(timeout_ms),
        telemetry,
    )
}

fn fwd() -> Forwarded {
    let mut h = HeaderMap::new();
    h.insert("x-request-id", HeaderValue::from_static("rid-1"));
    h.insert("user-agent", HeaderValue::from_static("Mozilla/5.0 test"));
    Forwarded::from_headers(&h)
}

#[tokio::test]
async fn a_length_framed_answer_is_read_and_its_connection_used_again() {
    let s = server(|_, _| {
        one("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-weather-chain: forecast@v1\r\n\r\nhello")
    })
    .await;
    let c = client(2000);
    for _ in 0..3 {
        let up = c
            .get(&format!("http://127.0.0.1:{}/a?b=c", s.port), &fwd())
            .await
            .unwrap();
        assert_eq!(up.status, StatusCode::OK);
        assert_eq!(&up.body[..], b"hello");
        assert_eq!(up.chain.unwrap(), "forecast@v1");
    }
    assert_eq!(s.accepted(), 1, "one kept-alive connection");
    let first = s.requests.lock().unwrap()[0].clone();
    assert!(first.starts_with("GET /a?b=c HTTP/1.1\r\n"), "{first}");
    let lower = first.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("\r\nhost: 127.0.0.1:{}\r\n", s.port)),
        "{first}"
    );
    assert!(lower.contains("\r\nx-request-id: rid-1\r\n"), "{first}");
    assert!(
        lower.contains("\r\nuser-agent: mozilla/5.0 test\r\n"),
        "{first}"
    );
}

#[tokio::test]
async fn an_answer_that_runs_to_the_close_is_read_whole_and_not_kept() {
    let s = server(|_, _| Reply::ThenClose(b"HTTP/1.1 200 OK\r\n\r\nall of it".to_vec())).await;
    assert_eq!(s.calls(2, b"all of it").await, 2);
}

/// A redirect is an answer like any other: the services never follow one.
#[tokio::test]
async fn redirects_are_not_followed() {
    let s = server(|_, _| {
        one("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\n\r\n")
    })
    .await;
    let up = client(2000).get(&s.url(), &fwd()).await.unwrap();
    assert_eq!(up.status, StatusCode::FOUND);
    assert_eq!(s.accepted(), 1);
}

#[tokio::test]
async fn connection_close_is_obeyed() {
    let s = server(|_, _| {
        one("HTTP/1.1 404 Not Found\r\nConnection: close\r\ncontent-length: 2\r\n\r\nno")
    })
    .await;
    let c = client(2000);
    for _ in 0..2 {
        let up = c.get(&s.url(), &fwd()).await.unwrap();
        assert_eq!(
            (up.status, &up.body[..]),
            (StatusCode::NOT_FOUND, &b"no"[..])
        );
    }
    assert_eq!(s.accepted(), 2);
}

#[tokio::test]
async fn a_connection_closed_before_an_answer_or_a_broken_answer_fails_the_call() {
    let s = server(|_, _| Reply::Close).await;
    assert!(matches!(s.failure(2000).await, ClientError::Other(_)));
    for answer in [
        "SSH-2.0-OpenSSH_9\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
    ] {
        let bytes = answer.as_bytes().to_vec();
        let s = server(move |_, _| Reply::ThenClose(bytes.clone())).await;
        let e = s.failure(2000).await;
        assert!(matches!(e, ClientError::Other(_)), "{answer:?}: {e}");
    }
}

#[tokio::test]
async fn answers_over_the_limit_are_refused() {
    let declared = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
        MAX_ANSWER + 1
    );
    let s = server(move |_, _| one(&declared)).await;
    let e = s.failure(2000).await;
    assert!(matches!(e, ClientError::TooLarge), "{e}");

    // Chunks that add up to more than the limit.
    let chunk = vec![b'a'; 1024 * 1024];
    let s = server(move |_, _| {
        let mut pieces = vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()];
        for _ in 0..5 {
            let mut p = format!("{:x}\r\n", chunk.len()).into_bytes();
            p.extend_from_slice(&chunk);
            p.extend_from_slice(b"\r\n");
            pieces.push(p);
        }
        Reply::Pieces(pieces)
    })
    .await;
    let e = s.failure(5000).await;
    assert!(matches!(e, ClientError::TooLarge), "{e}");
}

#[tokio::test]
async fn a_silent_upstream_times_out_and_a_closed_port_is_a_connect_error() {
    let s = server(|_, _| Reply::Hang).await;
    let e = s.failure(200).await;
    assert!(
        matches!(e, ClientError::Timeout(d) if d == Duration::from_millis(200)),
        "{e}"
    );

    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let e = client(2000)
        .get(&format!("http://127.0.0.1:{port}/"), &fwd())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect(_)), "{e}");
    assert!(e.to_string().starts_with("could not connect"), "{e}");
}

#[tokio::test]
async fn only_http_urls_are_called() {
    for url in [
        "https://127.0.0.1:1/",
        "/relative",
        "not a url",
        "file:///etc/passwd",
    ] {
        let e = client(200).get(url, &fwd()).await.unwrap_err();
        assert!(matches!(e, ClientError::Other(_)), "{url}: {e}");
    }
}

/// The real thing: an axum server answering many concurrent calls through
/// one client.
#[tokio::test]
async fn many_concurrent_calls_to_a_hyper_server() {
    let app = axum::Router::new().route(
        "/n",
        axum::routing::get(|q: axum::extract::RawQuery| async move { q.0.unwrap_or_default() }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let c = client(5000);
    let calls = (0..200).map(|i| {
        let c = c.clone();
        tokio::spawn(async move {
            let up = c
                .get(&format!("http://127.0.0.1:{port}/n?{i}"), &fwd())
                .await
                .unwrap();
            assert_eq!(up.body, i.to_string());
        })
    });
    for call in calls {
        call.await.unwrap();
    }
    // And the kept-alive connections still work after the burst.
    let up = c
        .get(&format!("http://127.0.0.1:{port}/n?x"), &fwd())
        .await
        .unwrap();
    assert_eq!(&up.body[..], b"x");
    let _ = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
}
