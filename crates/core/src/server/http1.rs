//! The services' HTTP/1.1 server: one task per connection, heads parsed with
//! `httparse` (the parser hyper uses), handed to the router as
//! `http::Request`s (docs/architecture.md, "Memory").
//!
//! Why not hyper's server, which the data plane keeps: hyper holds an 8 KiB
//! write buffer for every connection, and an 8 KiB read buffer that it
//! replaces with a second one while a request is in flight (the request's
//! headers still point into the first). At 200 connections that was 4.7 MB of
//! a frontend's 7 MB of heap. Here a connection holds no buffer while it waits:
//! a first read goes to the stack and only the bytes that came are kept; the
//! parsed head's values are slices of them, which go with the request (as in
//! hyper); an answer goes out in vectored writes, its head from a buffer that
//! lives for the write.
//!
//! What a client gets, as hyper gave it and Envoy does:
//! - the head within [`Limits::header_read_timeout`] (also the idle time of a
//!   kept-alive connection), or the connection is closed;
//! - 431 past [`Limits::max_header_bytes`] or [`Limits::max_headers`], 400 for
//!   a malformed head, a `Content-Length` that is not one number, or a
//!   `Transfer-Encoding` whose last coding is not `chunked` (RFC 9112, 6.3);
//!   each answered, then closed;
//! - bodies framed by length or chunks and read only as the handler reads
//!   them (`100 Continue` is sent then, when asked for), so a route's bounds
//!   (413 before reading, 408) apply;
//! - keep-alive for HTTP/1.1 unless `Connection: close`, for HTTP/1.0 only with
//!   `Connection: keep-alive`; pipelined requests answered in order;
//! - answers framed by length when the body's size is known, else chunked (or
//!   to the close, for HTTP/1.0); no body for HEAD, 1xx, 204 and 304; `Date`
//!   added when the handler did not set it.
//!
//! On shutdown a connection waiting for a head (idle or half-read) closes at
//! once, and one with a request in flight closes after its answer.

use std::{
    io::IoSlice,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, ready},
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
    http::{
        HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
        header, request,
    },
};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::{net::TcpStream, sync::watch};
use tower::ServiceExt;

use super::listen::Limits;
use crate::wire::{chunk_size, parse_length, tokens};

/// What a connection's first read of a head takes, on the stack: most heads
/// fit.
const FIRST_READ: usize = 2048;
/// What a later read asks for at least.
const READ_SIZE: usize = 4 * 1024;
/// A connection's read buffer over this size is given back between requests.
const KEEP_BUFFER: usize = 16 * 1024;
/// The most headers parsed at all; [`Limits::max_headers`] may allow fewer.
const HEADER_SLOTS: usize = 128;
/// After a last answer, how long the rest of what the client sent is read and
/// dropped before closing, so the close is not a reset that loses the answer.
const LINGER: Duration = Duration::from_millis(500);

/// A connection's socket and what has been read from it; the request body
/// being read holds it too.
struct Shared {
    stream: TcpStream,
    read: Mutex<ReadState>,
}

struct ReadState {
    /// Bytes read and not yet used: the start of a head, of a body, or of a
    /// pipelined request.
    buf: Vec<u8>,
    body: BodyState,
    /// `100 Continue` is owed once the body is first read; how much of it is
    /// written.
    continue_owed: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
enum BodyState {
    /// No body, or all of it read.
    Done,
    /// This many bytes left.
    Length(u64),
    Chunked(Chunk),
    /// The body broke off or was malformed: the connection is not used again.
    Broken(String),
    /// The request is answered; a body still held elsewhere reads nothing more.
    Detached,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Chunk {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of a chunk's data left.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines up to an empty one.
    Trailers,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Shared {
    fn read(&self) -> MutexGuard<'_, ReadState> {
        self.read.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReadState {
    /// Reads more after what the buffer holds; 0 at the end of the stream.
    /// The buffer grows only when bytes are there to read.
    fn poll_fill(
        &mut self,
        stream: &TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(stream.poll_read_ready(cx))?;
            if self.buf.capacity() == 0 {
                // A waiting connection holds no buffer, even when the socket
                // only looks readable: the first read goes to the stack, and
                // just what came is kept.
                let mut first = [0u8; FIRST_READ];
                match stream.try_read(&mut first) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                    Ok(n) => {
                        self.buf.extend_from_slice(&first[..n]);
                        return Poll::Ready(Ok(n));
                    }
                }
            }
            self.buf.reserve(READ_SIZE);
            match stream.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    /// The body's next piece of data.
    fn poll_data(
        &mut self,
        stream: &TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        while let Some(written) = self.continue_owed {
            match stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            }
            match stream.try_write(&CONTINUE[written..]) {
                Ok(n) if written + n == CONTINUE.len() => self.continue_owed = None,
                Ok(n) => self.continue_owed = Some(written + n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
        loop {
            let need_more = match self.body.clone() {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Broken(why) => return Poll::Ready(Some(Err(broken(why)))),
                BodyState::Detached => {
                    return Poll::Ready(Some(Err(broken("the request was already answered"))));
                }
                BodyState::Length(left) => {
                    if self.buf.is_empty() {
                        true
                    } else {
                        let n = self
                            .buf
                            .len()
                            .min(usize::try_from(left).unwrap_or(usize::MAX));
                        let data = self.take(n);
                        let left = left - n as u64;
                        self.body = if left == 0 {
                            BodyState::Done
                        } else {
                            BodyState::Length(left)
                        };
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                BodyState::Chunked(chunk) => match self.step_chunked(chunk) {
                    Step::Data(data) => return Poll::Ready(Some(Ok(data))),
                    Step::Again => false,
                    Step::More => true,
                },
            };
            if need_more {
                match ready!(self.poll_fill(stream, cx)) {
                    Ok(0) => {
                        self.body = BodyState::Broken("the connection closed in the body".into());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.body = BodyState::Broken(e.to_string());
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }

    /// One step of decoding a chunked body from the buffer.
    fn step_chunked(&mut self, chunk: Chunk) -> Step {
        match chunk {
            Chunk::Size => match chunk_size(&self.buf) {
                Ok(Some((0, line))) => {
                    self.buf.drain(..line);
                    self.body = BodyState::Chunked(Chunk::Trailers);
                    Step::Again
                }
                Ok(Some((size, line))) => {
                    self.buf.drain(..line);
                    self.body = BodyState::Chunked(Chunk::Data(size));
                    Step::Again
                }
                Ok(None) => Step::More,
                Err(why) => {
                    self.body = BodyState::Broken(why);
                    Step::Again
                }
            },
            Chunk::Data(_) if self.buf.is_empty() => Step::More,
            Chunk::Data(left) => {
                let n = self.buf.len().min(left);
                let data = self.take(n);
                self.body = BodyState::Chunked(if n == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n)
                });
                Step::Data(data)
            }
            Chunk::DataEnd if self.buf.len() < 2 => Step::More,
            Chunk::DataEnd => {
                if self.buf.starts_with(b"\r\n") {
                    self.buf.drain(..2);
                    self.body = BodyState::Chunked(Chunk::Size);
                } else {
                    self.body = BodyState::Broken("a chunk is not followed by CRLF".into());
                }
                Step::Again
            }
            Chunk::Trailers => match self.buf.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.buf.drain(..2);
                    self.body = BodyState::Done;
                    Step::Again
                }
                Some(n) => {
                    self.buf.drain(..n + 2);
                    Step::Again
                }
                None if self.buf.len() > crate::wire::MAX_LINE => {
                    self.body = BodyState::Broken("a trailer line is too long".into());
                    Step::Again
                }
                None => Step::More,
            },
        }
    }

    /// The first `n` bytes of the buffer, taken out of it.
    fn take(&mut self, n: usize) -> Bytes {
        let data = Bytes::copy_from_slice(&self.buf[..n]);
        self.buf.drain(..n);
        data
    }
}

enum Step {
    Data(Bytes),
    /// The state changed: look again.
    Again,
    /// More bytes are needed.
    More,
}

fn broken(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why.into())
}

/// A request's body, read from the connection as the handler asks for it.
struct RequestBody {
    shared: Arc<Shared>,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let shared = &self.shared;
        shared
            .read()
            .poll_data(&shared.stream, cx)
            .map(|d| d.map(|d| d.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.shared.read().body == BodyState::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.shared.read().body {
            BodyState::Length(n) => SizeHint::with_exact(n),
            BodyState::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// A parsed request head.
struct Head {
    parts: request::Parts,
    body: BodyState,
    keep_alive: bool,
    expect_continue: bool,
}

/// Why a head is refused: its status and what to tell the client.
struct Refused(StatusCode, String);

fn bad(why: impl Into<String>) -> Refused {
    Refused(StatusCode::BAD_REQUEST, why.into())
}

/// Parses a head at the start of `buf`: `Ok(None)` while it is not whole,
/// else the head and its length. The target and header values are slices of
/// `buf`, not copies.
fn parse_head(buf: &Bytes, limits: &Limits) -> Result<Option<(Head, usize)>, Refused> {
    let too_large = || {
        Refused(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request head is over {} bytes or {} headers",
                limits.max_header_bytes, limits.max_headers
            ),
        )
    };
    // Slots left uninitialised: setting 128 of them per request showed in
    // the profile.
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_SLOTS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
            return Err(too_large());
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(e) => return Err(bad(format!("the request head is malformed: {e}"))),
    };
    if len > limits.max_header_bytes || req.headers.len() > limits.max_headers {
        return Err(too_large());
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| bad("the request method is invalid"))?;
    let uri = Uri::from_maybe_shared(buf.slice_ref(req.path.unwrap_or_default().as_bytes()))
        .map_err(|_| bad("the request target is invalid"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    let mut close = version == Version::HTTP_10;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| bad("a header name is invalid"))?;
        let value = HeaderValue::from_maybe_shared(buf.slice_ref(h.value))
            .map_err(|_| bad("a header value is invalid"))?;
        if name == header::CONTENT_LENGTH {
            let n = parse_length(h.value).ok_or_else(|| bad("the Content-Length is invalid"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("the request has two different Content-Lengths"));
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            // The last coding decides; a later header line comes later.
            if let Some(last) = tokens(h.value).last() {
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if name == header::CONNECTION {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && version == Version::HTTP_10 {
                    close = false;
                }
            }
        } else if name == header::EXPECT {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        headers.append(name, value);
    }
    // RFC 9112, 6.1 and 6.3: both framings at once is how requests are
    // smuggled past a proxy; a coding that does not end in chunked cannot be
    // framed at all.
    let body = match (chunked, length) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "the request has both Transfer-Encoding and Content-Length",
            ));
        }
        (Some(false), None) => {
            return Err(bad(
                "the request's Transfer-Encoding does not end in chunked",
            ));
        }
        (Some(true), None) if version == Version::HTTP_10 => {
            return Err(bad("an HTTP/1.0 request cannot be chunked"));
        }
        (Some(true), None) => BodyState::Chunked(Chunk::Size),
        (None, Some(n)) if n > 0 => BodyState::Length(n),
        (None, _) => BodyState::Done,
    };
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    let expect_continue = expect_continue && version == Version::HTTP_11 && body != BodyState::Done;
    Ok(Some((
        Head {
            parts,
            body,
            keep_alive: !close,
            expect_continue,
        },
        len,
    )))
}

/// Serves one connection until the client closes it, a bound cuts it off, or
/// `closing` turns true while it waits for a request.
pub(super) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) {
    // Small requests and answers: Nagle's delay would only add latency.
    let _ = stream.set_nodelay(true);
    let shared = Arc::new(Shared {
        stream,
        read: Mutex::new(ReadState {
            buf: Vec::new(),
            body: BodyState::Done,
            continue_owed: None,
        }),
    });
    loop {
        let head = tokio::select! {
            head = tokio::time::timeout(limits.header_read_timeout, read_head(&shared, &limits)) => head,
            _ = closing.wait_for(|c| *c) => return,
        };
        let head = match head {
            // Too slow: cut off, as hyper and Envoy do, without an answer.
            Err(_) | Ok(Ok(None)) => return,
            Ok(Err(Refused(status, why))) => {
                let res = plain(status, why);
                let _ = write_answer(&shared.stream, res, Version::HTTP_11, false, false).await;
                return linger(&shared).await;
            }
            Ok(Ok(Some(head))) => head,
        };
        let keep_alive = head.keep_alive;
        let version = head.parts.version;
        let is_head = head.parts.method == Method::HEAD;
        let body = {
            let mut r = shared.read();
            r.body = head.body;
            r.continue_owed = head.expect_continue.then_some(0);
            match r.body {
                BodyState::Done => Body::empty(),
                _ => Body::new(RequestBody {
                    shared: shared.clone(),
                }),
            }
        };
        let mut req = Request::from_parts(head.parts, body);
        req.extensions_mut().insert(ConnectInfo(peer));
        let res = match router.clone().oneshot(req).await {
            Ok(res) => res,
            Err(e) => match e {},
        };
        // The body is over for this request, read or not.
        let body_read = {
            let mut r = shared.read();
            let read = r.body == BodyState::Done;
            r.body = BodyState::Detached;
            r.continue_owed = None;
            if r.buf.is_empty() || r.buf.capacity() > KEEP_BUFFER {
                r.buf.shrink_to_fit();
            }
            read
        };
        let keep = keep_alive && body_read && !*closing.borrow();
        match write_answer(&shared.stream, res, version, is_head, keep).await {
            Ok(true) if keep => {}
            Ok(_) => return linger(&shared).await,
            Err(e) => {
                tracing::debug!("connection from {peer}: {e}");
                return;
            }
        }
    }
}

/// Reads until a request head is whole and parses it; `None` when the client
/// closed the connection between requests.
async fn read_head(shared: &Shared, limits: &Limits) -> Result<Option<Head>, Refused> {
    loop {
        {
            let mut r = shared.read();
            // Nothing to parse before the first read.
            if !r.buf.is_empty() {
                // The head's values stay slices of what was read (hyper's way);
                // the buffer goes with the request, whose head it holds.
                let read = Bytes::from(std::mem::take(&mut r.buf));
                match parse_head(&read, limits)? {
                    Some((head, len)) => {
                        if read.len() > len {
                            r.buf = read[len..].to_vec();
                        }
                        return Ok(Some(head));
                    }
                    None => r.buf = Vec::from(read),
                }
            }
        }
        let read = std::future::poll_fn(|cx| shared.read().poll_fill(&shared.stream, cx)).await;
        match read {
            Ok(0) if shared.read().buf.is_empty() => return Ok(None),
            Ok(0) => return Err(bad("the connection closed in the request head")),
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
    }
}

/// A short plain-text answer of the server's own.
fn plain(status: StatusCode, why: String) -> Response<Body> {
    let mut res = Response::new(Body::from(format!("{why}\n")));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// Writes `res`; whether the connection can carry another request (the
/// handler may have said `Connection: close`, and a body of unknown length to
/// an HTTP/1.0 client runs to the close).
async fn write_answer(
    stream: &TcpStream,
    res: Response<Body>,
    version: Version,
    is_head: bool,
    keep_alive: bool,
) -> std::io::Result<bool> {
    let (parts, mut body) = res.into_parts();
    let status = parts.status;
    let bodiless = is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let no_length = status.is_informational() || status == StatusCode::NO_CONTENT;
    let exact = body.size_hint().exact();
    let handler_closes = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close")));
    let mut keep_alive = keep_alive && !handler_closes;
    let chunked = !bodiless && exact.is_none() && version == Version::HTTP_11;
    if !bodiless && exact.is_none() && !chunked {
        keep_alive = false;
    }

    let head_size = 64
        + parts
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    let mut out = Vec::with_capacity(head_size + 64);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // Framing is the server's to say. HEAD and 304 keep the length the
    // handler gave (that of the body a GET would get); 1xx and 204 have none.
    let length_kept = bodiless && !no_length;
    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING || (name == header::CONTENT_LENGTH && !length_kept) {
            continue;
        }
        if name == header::CONNECTION {
            continue; // said below, from what was decided
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date(&mut out);
        out.extend_from_slice(b"\r\n");
    }
    if !bodiless {
        if let Some(n) = exact {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        } else if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if bodiless {
        write_all(stream, &out).await?;
        return Ok(keep_alive);
    }
    // Each piece of the body goes out with what precedes it (the head, a
    // chunk's size) in one vectored write: the usual answer, one frame, is
    // one write and no copy.
    let mut sent = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(std::io::Error::other)?.into_data() else {
            continue; // trailers are not sent
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if exact.is_some_and(|n| sent > n) {
            return Err(std::io::Error::other("the body is longer than it said"));
        }
        if chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        write_all_vectored(stream, &mut [IoSlice::new(&out), IoSlice::new(&data)]).await?;
        out.clear();
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if exact.is_some_and(|n| sent != n) {
        return Err(std::io::Error::other("the body is shorter than it said"));
    }
    if !out.is_empty() {
        write_all(stream, &out).await?;
    }
    Ok(keep_alive)
}

async fn write_all_vectored(
    stream: &TcpStream,
    mut bufs: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    // Written at once, as the socket usually takes it; waited for when not.
    while !bufs.is_empty() {
        match stream.try_write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn write_all(stream: &TcpStream, buf: &[u8]) -> std::io::Result<()> {
    write_all_vectored(stream, &mut [IoSlice::new(buf)]).await
}

/// Closes after a last answer: the write side first, then what the client
/// still sends is read and dropped for a moment, so that the close is not a
/// reset that makes the client lose the answer (a refused request whose body
/// is still coming, say).
async fn linger(shared: &Shared) {
    let _ = socket2::SockRef::from(&shared.stream).shutdown(std::net::Shutdown::Write);
    let drain = async {
        let mut scratch = [0u8; 4096];
        loop {
            if shared.stream.readable().await.is_err() {
                return;
            }
            match shared.stream.try_read(&mut scratch) {
                Ok(0) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// The `Date` header's value (RFC 9110, 5.6.7), formatted once a second.
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(at, text)| {
        if *at != secs || text.is_empty() {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Head>, StatusCode> {
        parse_head(&Bytes::copy_from_slice(text.as_bytes()), &Limits::default())
            .map(|h| h.map(|(h, _)| h))
            .map_err(|Refused(s, _)| s)
    }

    #[test]
    fn framing_and_keep_alive_follow_rfc_9112() {
        let h = parse("POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyState::Length(5), true));
        let h = parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyState::Chunked(Chunk::Size));
        let h = parse("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
        // Nothing to continue to without a body.
        let h = parse("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.expect_continue);
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn bad_heads_are_400_and_large_ones_431() {
        for bad in [
            "GET / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03\r\n\r\n",
        ] {
            assert_eq!(parse(bad).err(), Some(StatusCode::BAD_REQUEST), "{bad:?}");
        }
        let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(61 * 1024));
        for large in [format!("GET / HTTP/1.1\r\n{many}\r\n"), big] {
            assert_eq!(
                parse(&large).err(),
                Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            );
        }
    }

    /// Decodes a chunked body from what `buf` holds: the data, and the state
    /// it ends in.
    fn decode(buf: &[u8]) -> (Vec<u8>, BodyState, usize) {
        let mut r = ReadState {
            buf: buf.to_vec(),
            body: BodyState::Chunked(Chunk::Size),
            continue_owed: None,
        };
        let mut out = Vec::new();
        while let BodyState::Chunked(c) = r.body.clone() {
            match r.step_chunked(c) {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::Again => {}
                Step::More => break,
            }
        }
        (out, r.body, r.buf.len())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any bytes at all parse to a head, a refusal or "not yet", without
        /// a panic; a head never claims more than was read.
        #[test]
        fn any_bytes_parse_without_panic(
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            line in "(GET|POST|HEAD|get|P) (/[a-z?=%&]{0,12}|\\*|http://h/x) HTTP/1\\.[01]\r\n",
            headers in proptest::collection::vec("[A-Za-z-]{1,16}: [ -~]{0,20}\r\n", 0..6),
        ) {
            let _ = parse_head(&Bytes::from(junk), &Limits::default());
            let text = format!("{line}{}\r\n", headers.concat());
            if let Ok(Some((_, len))) = parse_head(&Bytes::from(text.clone()), &Limits::default()) {
                proptest::prop_assert_eq!(len, text.len());
            }
        }

        /// A body cut into chunks of any sizes, with extensions and a trailer,
        /// decodes to itself and stops at its end; any bytes at all decode
        /// without a panic to data no longer than themselves.
        #[test]
        fn chunked_bodies_decode_to_what_was_sent(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            cuts in proptest::collection::vec(1usize..64, 1..20),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        ) {
            let mut wire = Vec::new();
            let mut rest = &data[..];
            for (i, cut) in cuts.iter().cycle().enumerate() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
                let ext = if i % 3 == 0 { ";name=v" } else { "" };
                wire.extend_from_slice(format!("{:X}{ext}\r\n", chunk.len()).as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
                rest = tail;
            }
            wire.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\nGET / HTTP/1.1");
            let (out, state, left) = decode(&wire);
            proptest::prop_assert_eq!(out, data);
            proptest::prop_assert_eq!(state, BodyState::Done);
            // What follows the body (a pipelined request) is left unread.
            proptest::prop_assert_eq!(left, b"GET / HTTP/1.1".len());
            let (out, _, _) = decode(&junk);
            proptest::prop_assert!(out.len() <= junk.len());
        }
    }
}
