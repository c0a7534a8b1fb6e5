//! Helpers for the services' black-box tests (feature `testing`): a scripted
//! downstream that records what it was sent and can be slow or fail, and a spawned
//! service binary whose address is read from its own log.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::Response,
};

use crate::server::lifecycle::{RunningServer, spawn_local};

/// How a [`Downstream`] answers every request.
#[derive(Clone, Debug)]
pub struct Script {
    pub status: StatusCode,
    pub body: String,
    pub delay: Duration,
    pub chain: Option<&'static str>,
}

impl Script {
    pub fn ok_json(body: impl Into<String>) -> Self {
        Script {
            status: StatusCode::OK,
            body: body.into(),
            delay: Duration::ZERO,
            chain: None,
        }
    }

    pub fn status(status: StatusCode) -> Self {
        Script {
            status,
            body: r#"{"error":"scripted failure"}"#.into(),
            delay: Duration::ZERO,
            chain: None,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn with_chain(mut self, chain: &'static str) -> Self {
        self.chain = Some(chain);
        self
    }
}

/// A fake downstream service on loopback that records each request's headers,
/// URI and body.
pub struct FakeService {
    pub server: RunningServer,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl FakeService {
    pub async fn start(script: Script) -> FakeService {
        let seen: Arc<Mutex<Vec<(String, HeaderMap)>>> = Arc::default();
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let (log, body_log) = (seen.clone(), bodies.clone());
        let router = Router::new().fallback(move |req: Request| {
            let script = script.clone();
            let (log, body_log) = (log.clone(), body_log.clone());
            async move {
                log.lock()
                    .unwrap()
                    .push((req.uri().to_string(), req.headers().clone()));
                let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                body_log
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                tokio::time::sleep(script.delay).await;
                let mut res = Response::new(Body::from(script.body));
                *res.status_mut() = script.status;
                res.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                if let Some(c) = script.chain {
                    res.headers_mut()
                        .insert("x-weather-chain", HeaderValue::from_static(c));
                }
                res
            }
        });
        let server = spawn_local(router).await.expect("bind loopback");
        FakeService {
            server,
            seen,
            bodies,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The requests received so far: (path and query, headers).
    pub fn requests(&self) -> Vec<(String, HeaderMap)> {
        self.seen.lock().unwrap().clone()
    }

    /// The bodies of the requests received so far, in order.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

/// An address on loopback where nothing listens: connections are refused.
pub async fn closed_port_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A service binary started on a free port, killed when dropped.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Process {
    /// Starts `exe` with `env` (plus `PORT=0`, `HOST=127.0.0.1`) and waits for it
    /// to log the address it listens on.
    pub fn start(exe: &str, env: &[(&str, &str)]) -> Process {
        let mut cmd = Command::new(exe);
        cmd.env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("RUST_LOG", "info")
            .env_remove("LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(addr) = line.split("bound=").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or("").to_owned();
                    sent = tx.send(addr).is_ok();
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{exe} did not report its address"));
        Process {
            child,
            addr: addr.parse().expect("a socket address in the log"),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM, as Kubernetes does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit` (killed past it).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_for_exit(&mut self.child, limit)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One span as an OTLP receiver got it.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub service: String,
    pub version: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// 2 server, 3 client (OTLP's SpanKind).
    pub kind: i32,
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A real OTLP/HTTP receiver on loopback: it decodes each
/// `ExportTraceServiceRequest` (protobuf) posted to /v1/traces.
pub struct OtlpReceiver {
    pub server: RunningServer,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl OtlpReceiver {
    /// Also installs the process's subscriber (quietly, if none is yet):
    /// the services' spans reach an exporter through it.
    pub async fn start() -> OtlpReceiver {
        crate::telemetry::init_quiet();
        use opentelemetry_proto::tonic::{
            collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value as Any,
        };
        use prost::Message;
        let spans: Arc<Mutex<Vec<ReceivedSpan>>> = Arc::default();
        let store = spans.clone();
        let router = Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                    let text =
                        |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                        {
                            Some(Any::StringValue(s)) => s.clone(),
                            Some(Any::IntValue(i)) => i.to_string(),
                            Some(Any::BoolValue(b)) => b.to_string(),
                            Some(Any::DoubleValue(d)) => d.to_string(),
                            _ => String::new(),
                        };
                    let mut out = store.lock().unwrap();
                    for rs in req.resource_spans {
                        let attrs: Vec<(String, String)> = rs
                            .resource
                            .map(|r| {
                                r.attributes
                                    .iter()
                                    .map(|kv| (kv.key.clone(), text(&kv.value)))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let get = |k: &str| {
                            attrs
                                .iter()
                                .find(|(key, _)| key == k)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default()
                        };
                        for ss in rs.scope_spans {
                            for s in ss.spans {
                                out.push(ReceivedSpan {
                                    service: get("service.name"),
                                    version: get("service.version"),
                                    trace_id: hex(&s.trace_id),
                                    span_id: hex(&s.span_id),
                                    parent_span_id: hex(&s.parent_span_id),
                                    name: s.name.clone(),
                                    kind: s.kind,
                                    attributes: s
                                        .attributes
                                        .iter()
                                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                                        .collect(),
                                });
                            }
                        }
                    }
                    StatusCode::OK
                }
            }),
        );
        let server = spawn_local(router).await.expect("bind loopback");
        OtlpReceiver { server, spans }
    }

    /// The base URL to give as OTEL_EXPORTER_OTLP_ENDPOINT.
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// The spans of one trace, once at least `count` have come: every
    /// exporter of this process is flushed until they have (a span ends
    /// when its response's body is done, which may be just after the
    /// client has read it), for up to 10 s.
    pub async fn trace(&self, trace_id: &str, count: usize) -> Vec<ReceivedSpan> {
        let of_trace = || -> Vec<ReceivedSpan> {
            self.spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect()
        };
        eventually(&format!("{count} spans of trace {trace_id}"), async || {
            tokio::task::spawn_blocking(crate::telemetry::flush_all)
                .await
                .expect("flush");
            of_trace().len() >= count
        })
        .await;
        of_trace()
    }

    pub fn all(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

/// Polls `done` every 10 ms until it holds; fails after 10 s, naming `what`.
/// Tests wait on an event this way, never with a bare sleep.
pub async fn eventually(what: &str, done: impl AsyncFnMut() -> bool) {
    eventually_within(what, Duration::from_secs(10), done).await;
}

/// [`eventually`] with its own bound, for what takes longer to happen (a
/// browser's page, a Prometheus scrape, a process starting).
pub async fn eventually_within(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually_within`] for a test outside any async runtime.
pub fn eventually_blocking(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime for waiting")
        .block_on(eventually_within(what, limit, async || done()));
}

/// Waits for `child` to exit, up to `limit`; past it, kills it and says
/// `None`. The wait is the child's own (`wait` on a thread of its own), not a
/// poll.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let pid = child.id().to_string();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        scope.spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(limit) {
            Ok(status) => status.ok(),
            Err(_) => {
                // Unblocks the waiting thread.
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                None
            }
        }
    })
}

/// A request with oversized headers must be refused: answered `status`, or the
/// connection closed before an answer (hyper may stop reading and close while
/// the client still writes). A timeout or any other answer fails.
pub fn assert_refused(res: Result<reqwest::Response, reqwest::Error>, status: StatusCode) {
    match res {
        Ok(res) => assert_eq!(res.status(), status),
        Err(e) => assert!(
            !e.is_timeout() && (e.is_request() || e.is_body()),
            "neither {status} nor a closed connection: {e:?}"
        ),
    }
}
