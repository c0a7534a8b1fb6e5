//! The wire side of the services' outbound calls: HTTP/1.1 GETs over a pool of
//! kept-alive connections, answers parsed with `httparse` (the parser hyper
//! uses). The calls are plain GETs to one or two upstreams, so a call is a
//! write and a read on a connection the caller owns for the call: no
//! connection task, no dispatch channel, no pool keyed by URL (hyper's pooled
//! client spent a quarter of a page's instructions there; README,
//! "Benchmarks").
//!
//! Framing follows RFC 9112 section 6.3: no body for 1xx, 204 and 304; chunked
//! when it is the last transfer coding; otherwise `Content-Length`, or the body
//! runs to the connection's close. A connection is used again only when the
//! answer was HTTP/1.1, framed by length or chunks, read exactly, and did not
//! say `Connection: close`.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    http::{HeaderValue, StatusCode},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{ClientError, MAX_ANSWER, Upstream};
use crate::{
    chain::CHAIN_HEADER,
    wire::{chunk_size, parse_length, tokens},
};

/// The most bytes an answer's head may take (status line and headers), as
/// Envoy's default `max_request_headers_kb` of 60 KiB.
pub const MAX_HEAD: usize = 60 * 1024;
/// The most headers an answer may carry (Envoy's default is 100).
pub const MAX_HEADERS: usize = 100;
/// At most this many idle connections are kept per client.
pub const MAX_IDLE: usize = 64;
/// What a read asks for at least.
const READ_SIZE: usize = 4 * 1024;
/// An idle connection's buffer over this size is given back.
const KEEP_BUFFER: usize = 16 * 1024;

/// Kept-alive connections, by authority (`host:port`). A service calls one or
/// two upstreams, so the idle list is searched, not hashed.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    authority: Box<str>,
    conn: Conn,
    since: Instant,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Why one exchange on a connection failed.
enum Failed {
    /// Closed or reset before any byte of an answer: a kept-alive connection
    /// the server had closed meanwhile. The GET is sent again on a new one.
    Stale(String),
    /// Anything else: the call fails.
    Call(ClientError),
}

impl Pool {
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
            connect_timeout,
            idle_timeout,
        }
    }

    /// Sends `request` (a whole GET head) to `host:port` and reads the answer.
    /// A kept-alive connection is used when there is one; if it turns out to
    /// be closed before any answer, the request goes again on a new one.
    pub async fn get(
        &self,
        authority: &str,
        host: &str,
        port: u16,
        request: &[u8],
    ) -> Result<Upstream, ClientError> {
        loop {
            let (mut conn, kept) = match self.checkout(authority) {
                Some(conn) => (conn, true),
                None => (self.connect(host, port).await?, false),
            };
            match conn.exchange(request).await {
                Ok((answer, reusable)) => {
                    if reusable {
                        self.checkin(authority, conn);
                    }
                    return Ok(answer);
                }
                // A kept connection the server closed: the next kept one,
                // or a new one.
                Err(Failed::Stale(_)) if kept => continue,
                Err(Failed::Stale(why)) => return Err(ClientError::Other(why)),
                Err(Failed::Call(e)) => return Err(e),
            }
        }
    }

    fn checkout(&self, authority: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Connections idle too long are dropped: the server may be closing them.
        idle.retain(|i| now.duration_since(i.since) < self.idle_timeout);
        let at = idle.iter().rposition(|i| &*i.authority == authority)?;
        Some(idle.swap_remove(at).conn)
    }

    fn checkin(&self, authority: &str, mut conn: Conn) {
        if conn.buf.capacity() > KEEP_BUFFER {
            conn.buf = Vec::new();
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                authority: authority.into(),
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, host: &str, port: u16) -> Result<Conn, ClientError> {
        // An IPv6 literal comes bracketed from the URL.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((host, port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(ClientError::Connect(e.to_string())),
            Err(_) => {
                return Err(ClientError::Connect(format!(
                    "timed out after {:?}",
                    self.connect_timeout
                )));
            }
        };
        // Small requests and answers: Nagle's delay would only add latency.
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }
}

fn other(why: impl Into<String>) -> Failed {
    Failed::Call(ClientError::Other(why.into()))
}

impl Conn {
    /// One request and its answer. The answer, and whether the connection can
    /// carry another request.
    async fn exchange(&mut self, request: &[u8]) -> Result<(Upstream, bool), Failed> {
        self.buf.clear();
        if let Err(e) = self.stream.write_all(request).await {
            return Err(Failed::Stale(e.to_string()));
        }
        let head = self.read_head().await?;
        let (body, exact) = match head.framing {
            Framing::Empty => (Bytes::new(), self.buf.len() == head.len),
            Framing::Length(n) => self.read_length(head.len, n).await?,
            Framing::Chunked => self.read_chunked(head.len).await?,
            Framing::Close => (self.read_to_close(head.len).await?, false),
        };
        // Bytes past the answer were not asked for: the connection is not
        // used again, whatever they are.
        let reusable = head.keep_alive && exact;
        Ok((
            Upstream {
                status: head.status,
                chain: head.chain,
                body,
            },
            reusable,
        ))
    }

    /// Reads more bytes after what the buffer holds; 0 at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        self.stream.read_buf(&mut self.buf).await
    }

    /// Reads until a final (non-1xx) answer's head is whole; its length in the
    /// buffer, which then starts with it.
    async fn read_head(&mut self) -> Result<Head, Failed> {
        loop {
            // Nothing to parse before the first read.
            if !self.buf.is_empty() {
                match parse_head(&self.buf) {
                    Ok(Parsed::Head(head)) => return Ok(head),
                    Ok(Parsed::Interim(len)) => {
                        self.buf.drain(..len);
                        continue;
                    }
                    Ok(Parsed::Partial) if self.buf.len() >= MAX_HEAD => {
                        return Err(other(format!("the answer's head is over {MAX_HEAD} bytes")));
                    }
                    Ok(Parsed::Partial) => {}
                    Err(why) => return Err(other(why)),
                }
            }
            match self.fill().await {
                Ok(0) if self.buf.is_empty() => {
                    return Err(Failed::Stale(
                        "the connection closed before an answer".into(),
                    ));
                }
                Ok(0) => return Err(other("the connection closed in the answer's head")),
                Ok(_) => {}
                Err(e) if self.buf.is_empty() => return Err(Failed::Stale(e.to_string())),
                Err(e) => return Err(other(e.to_string())),
            }
        }
    }

    /// The body, and whether the buffer held exactly the answer.
    async fn read_length(&mut self, start: usize, len: u64) -> Result<(Bytes, bool), Failed> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= MAX_ANSWER)
            .ok_or_else(|| other(format!("the answer is over {MAX_ANSWER} bytes")))?;
        while self.buf.len() < start + len {
            match self.fill().await {
                Ok(0) => return Err(other("the connection closed in the answer's body")),
                Ok(_) => {}
                Err(e) => return Err(other(e.to_string())),
            }
        }
        let exact = self.buf.len() == start + len;
        Ok((Bytes::copy_from_slice(&self.buf[start..start + len]), exact))
    }

    async fn read_to_close(&mut self, start: usize) -> Result<Bytes, Failed> {
        loop {
            if self.buf.len() - start > MAX_ANSWER {
                return Err(other(format!("the answer is over {MAX_ANSWER} bytes")));
            }
            match self.fill().await {
                Ok(0) => return Ok(Bytes::copy_from_slice(&self.buf[start..])),
                Ok(_) => {}
                Err(e) => return Err(other(e.to_string())),
            }
        }
    }

    /// Decodes a chunked body from `pos` on: sizes in hex (extensions
    /// ignored), each chunk followed by CRLF, a zero-size chunk, then trailers
    /// (read and dropped) up to an empty line. The body, and whether the
    /// buffer held exactly the answer.
    async fn read_chunked(&mut self, mut pos: usize) -> Result<(Bytes, bool), Failed> {
        let mut body = Vec::new();
        loop {
            let (size, line_end) = loop {
                match chunk_size(&self.buf[pos..]) {
                    Ok(Some(found)) => break found,
                    Ok(None) => self.more("a chunk's size").await?,
                    Err(why) => return Err(other(why)),
                }
            };
            pos += line_end;
            if size == 0 {
                break;
            }
            if body.len() + size > MAX_ANSWER {
                return Err(other(format!("the answer is over {MAX_ANSWER} bytes")));
            }
            while self.buf.len() < pos + size + 2 {
                self.more("a chunk").await?;
            }
            body.extend_from_slice(&self.buf[pos..pos + size]);
            if &self.buf[pos + size..pos + size + 2] != b"\r\n" {
                return Err(other("a chunk is not followed by CRLF"));
            }
            pos += size + 2;
            // What was decoded is not kept: tiny chunks cannot make the
            // buffer grow past the answer's own size.
            self.buf.drain(..pos);
            pos = 0;
        }
        // Trailers: header lines up to an empty one.
        loop {
            match self.buf[pos..].windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    pos += 2;
                    break;
                }
                Some(n) => pos += n + 2,
                None if self.buf.len() - pos > MAX_HEAD => {
                    return Err(other(format!(
                        "the answer's trailers are over {MAX_HEAD} bytes"
                    )));
                }
                None => self.more("the trailers").await?,
            }
        }
        Ok((Bytes::from(body), self.buf.len() == pos))
    }

    /// Reads more of a body that is not whole yet.
    async fn more(&mut self, what: &str) -> Result<(), Failed> {
        match self.fill().await {
            Ok(0) => Err(other(format!("the connection closed in {what}"))),
            Ok(_) => Ok(()),
            Err(e) => Err(other(e.to_string())),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    Close,
}

#[derive(Debug)]
struct Head {
    len: usize,
    status: StatusCode,
    chain: Option<HeaderValue>,
    framing: Framing,
    keep_alive: bool,
}

#[derive(Debug)]
enum Parsed {
    Partial,
    /// A 1xx answer of this length, to be skipped.
    Interim(usize),
    Head(Head),
}

/// Parses the answer's head at the start of `buf`.
fn parse_head(buf: &[u8]) -> Result<Parsed, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!("the answer has over {MAX_HEADERS} headers"));
        }
        Err(e) => return Err(format!("the answer is not HTTP/1.1: {e}")),
    };
    let code = res.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| format!("the answer's status {code} is invalid"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err("the upstream switched protocols, which a GET did not ask for".into());
    }
    if status.is_informational() {
        return Ok(Parsed::Interim(len));
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = res.version != Some(1);
    let mut chain = None;
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(h.value)
                .ok_or_else(|| "the answer's Content-Length is invalid".to_string())?;
            if length.is_some_and(|l| l != n) {
                return Err("the answer has two different Content-Lengths".into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides; a later header line comes later.
            if let Some(last) = tokens(h.value).last() {
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && res.version == Some(0) {
                    close = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case(CHAIN_HEADER.as_str()) {
            chain = HeaderValue::from_bytes(h.value).ok();
        }
    }
    let framing = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Empty
    } else {
        match (chunked, length) {
            // Transfer-Encoding overrides Content-Length (RFC 9112, 6.3).
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    // A message with both is a smuggling risk: read it, but do not keep the
    // connection (RFC 9112, 6.1).
    let both = chunked.is_some() && length.is_some();
    let keep_alive = !close && !both;
    Ok(Parsed::Head(Head {
        len,
        status,
        chain,
        framing,
        keep_alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        match parse_head(text.as_bytes()) {
            Ok(Parsed::Head(h)) => h,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        // Chunked wins over a length, and the connection is not kept.
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        let h = head("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Empty);
        let h =
            head("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\ncontent-length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n");
        assert!(h.keep_alive);
        let h = head(
            "HTTP/1.1 503 Service Unavailable\r\nX-Weather-Chain: forecast@v2\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(h.chain.unwrap(), "forecast@v2");
    }

    #[test]
    fn bad_heads_are_errors() {
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 1e3\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 99 Odd\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(parse_head(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(parse_head(many.as_bytes()).unwrap_err().contains("headers"));
    }

    #[test]
    fn interim_answers_and_partial_heads() {
        assert!(matches!(
            parse_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"),
            Ok(Parsed::Interim(25))
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le"),
            Ok(Parsed::Partial)
        ));
    }
}
