//! What a hop checks of the client's request before it routes, and watches of
//! its body while it is sent on, so that a client's fault is answered as one
//! (400/408, flag `DPE`/`SI`) and never as an upstream's (503). The rules are
//! Envoy's, as Istio configures it (docs/architecture.md, "Failure
//! behaviour"); the fault conformance test sends each case to a real Envoy and
//! to the hop and compares (crates/weather/tests/weather/conformance/faults.rs).

use std::{
    borrow::Cow,
    pin::Pin,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    http::{Method, Request, StatusCode, header},
};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;

use super::refusal::Refusal;

/// The methods Envoy's HTTP/1 parser accepts (any other, lowercase included,
/// is a codec error: 400 `DPE`). Measured with Envoy 1.40, method by method.
const ENVOY_METHODS: [&str; 34] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "COPY",
    "LOCK",
    "MKCOL",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "SEARCH",
    "UNLOCK",
    "BIND",
    "REBIND",
    "UNBIND",
    "ACL",
    "REPORT",
    "MKACTIVITY",
    "CHECKOUT",
    "MERGE",
    "MSEARCH",
    "NOTIFY",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "PURGE",
    "MKCALENDAR",
    "LINK",
    "UNLINK",
    "SOURCE",
];

fn protocol_error(detail: &str) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, "DPE", detail)
}

/// The request's path as the hop routes and forwards it, or Envoy's answer
/// when the request is one Envoy does not route.
pub(super) fn admit(req: &Request<Body>) -> Result<String, Refusal> {
    let method = req.method();
    if !ENVOY_METHODS.contains(&method.as_str()) {
        return Err(protocol_error("Bad Request: unknown method"));
    }
    let headers = req.headers();
    if headers.contains_key(header::CONTENT_LENGTH)
        && headers.contains_key(header::TRANSFER_ENCODING)
    {
        return Err(protocol_error(
            "Bad Request: both Content-Length and Transfer-Encoding",
        ));
    }
    let uri = req.uri();
    if method == Method::CONNECT {
        // No route Istio builds matches CONNECT.
        return if uri.authority().is_some() && uri.path_and_query().is_none() {
            Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "NR",
                "no route: CONNECT",
            ))
        } else {
            Err(protocol_error("Bad Request: CONNECT needs host:port"))
        };
    }
    if uri.path() == "*" && uri.authority().is_none() {
        return if method == Method::OPTIONS {
            Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "-",
                "OPTIONS *: no route for a request without a path",
            ))
        } else {
            Err(protocol_error("Bad Request: * is a path for OPTIONS only"))
        };
    }
    if !headers.contains_key(header::HOST) && uri.authority().is_none() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "-",
            "Bad Request: missing Host header",
        ));
    }
    let raw = uri.path_and_query().map_or("/", |p| p.as_str());
    match mesh::path::normalize(raw) {
        Ok(Cow::Borrowed(p)) => Ok(p.to_owned()),
        Ok(Cow::Owned(p)) => Ok(p),
        Err(e) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "-",
            format!("Bad Request: path normalization failed ({e:?})"),
        )),
    }
}

/// How long a hop waits for a chunked body's first chunk before it sends the
/// request on regardless (a client that sends the head first loses no more).
const READ_AHEAD: Duration = Duration::from_millis(10);

/// What went wrong on the client's side while its body was being sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ClientFault {
    /// The body could not be read (a malformed chunk, a connection closed
    /// early): 400 `DPE` if the response has not begun.
    Protocol,
    /// Nothing arrived for the stream idle timeout: 408 `SI`.
    Idle,
}

impl ClientFault {
    pub(super) fn refusal(self) -> Refusal {
        match self {
            ClientFault::Protocol => {
                protocol_error("Bad Request: the request body is malformed or was cut off")
            }
            ClientFault::Idle => Refusal::new(StatusCode::REQUEST_TIMEOUT, "SI", "stream timeout"),
        }
    }
}

/// The client's body, watched: each frame must come within `idle` of the
/// last, and a fault is kept for the hop to answer with.
struct Watched {
    /// A frame read ahead, sent first.
    first: Option<Frame<Bytes>>,
    inner: Body,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    fault: Arc<OnceLock<ClientFault>>,
    /// Set once the body's end was read.
    ended: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Some(frame) = this.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                let _ = this.fault.set(ClientFault::Protocol);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(other) => {
                if other.is_none() || this.inner.is_end_stream() {
                    this.ended.store(true, Ordering::Release);
                }
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(other)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    let _ = this.fault.set(ClientFault::Idle);
                    return Poll::Ready(Some(Err(axum::Error::new("request body idle timeout"))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = self
            .first
            .as_ref()
            .and_then(|f| f.data_ref())
            .map_or(0, |d| d.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + ahead);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + ahead);
        }
        hint
    }
}

/// The client's body, sendable again until an attempt starts reading it:
/// a retry never re-sends a body that was consumed (docs/architecture.md,
/// "Timeouts and retries").
pub(super) struct Outgoing {
    slot: Arc<Mutex<Option<Watched>>>,
    pub(super) fault: Arc<OnceLock<ClientFault>>,
    ended: Arc<AtomicBool>,
}

impl Outgoing {
    /// Watches `body`. A chunked body's first chunk is decoded before the
    /// request goes on, if it comes within [`READ_AHEAD`], as Envoy's codec
    /// decodes what has arrived: a malformed start is then a client fault
    /// before any upstream sees the request.
    pub(super) async fn new(
        mut body: Body,
        chunked: bool,
        idle: Duration,
    ) -> Result<Outgoing, Refusal> {
        let mut first = None;
        if chunked {
            let read = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
            match tokio::time::timeout(READ_AHEAD, read).await {
                Ok(Some(Err(_))) => return Err(ClientFault::Protocol.refusal()),
                Ok(Some(Ok(frame))) => first = Some(frame),
                Ok(None) | Err(_) => {}
            }
        }
        let fault = Arc::new(OnceLock::new());
        let ended = Arc::new(AtomicBool::new(false));
        let watched = Watched {
            first,
            inner: body,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            fault: fault.clone(),
            ended: ended.clone(),
        };
        Ok(Outgoing {
            slot: Arc::new(Mutex::new(Some(watched))),
            fault,
            ended,
        })
    }

    /// The client's body was read to its end.
    pub(super) fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// No attempt has begun to read the body: it can be sent (again).
    pub(super) fn unsent(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// A body for one attempt, or `None` when an earlier attempt began to
    /// send it.
    pub(super) fn attempt(&self) -> Option<Body> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.is_some().then(|| {
            Body::new(Attempt {
                slot: self.slot.clone(),
                taken: None,
            })
        })
    }
}

/// One attempt's body: takes the client's body from the slot at its first
/// read; dropped unread, it leaves it there for the next attempt.
struct Attempt {
    slot: Arc<Mutex<Option<Watched>>>,
    taken: Option<Watched>,
}

impl Attempt {
    fn peek<T>(&self, f: impl FnOnce(&Watched) -> T, none: T) -> T {
        match &self.taken {
            Some(b) => f(b),
            None => match self.slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                Some(b) => f(b),
                None => none,
            },
        }
    }
}

impl HttpBody for Attempt {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.taken.is_none() {
            this.taken = this.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        match this.taken.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(Some(Err(axum::Error::new("request body already sent")))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.peek(HttpBody::is_end_stream, false)
    }

    fn size_hint(&self) -> SizeHint {
        self.peek(HttpBody::size_hint, SizeHint::default())
    }
}
