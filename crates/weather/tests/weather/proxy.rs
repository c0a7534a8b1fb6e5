//! One proxy hop, called in-process (`oneshot`) on a small mesh whose pods are
//! stand-ins: an echo that reports what it received, a closed port, a slow
//! server. Every answer Envoy gives when it cannot route or reach (404 `NR`, 503
//! `NC`/`UH`/`UF`, 504 `UT`), and what a hop does to headers.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::{Body, to_bytes},
    extract::{ConnectInfo, Request},
    http::StatusCode,
    response::Response,
};
use mesh::{Manifests, Mesh, model::Labels};
use tower::ServiceExt;
use weather::dataplane::{Hop, Plane, Settings, proxy};
use weather_core::{server::spawn_local, telemetry::Telemetry};

const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {selector: {app: web}, ports: [{name: http, port: 8000}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: demo}
spec: {selector: {app: api}, ports: [{name: http, port: 9000}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: demo}
spec:
  host: web
  subsets:
  - {name: live, labels: {version: live}}
  - {name: dead, labels: {version: dead}}
  - {name: slow, labels: {version: slow}}
  - {name: pair, labels: {version: pair}}
  - {name: closer, labels: {version: closer}}
  - {name: empty, labels: {version: none}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-route, namespace: demo}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - match: [{headers: {x-case: {exact: nc}}}]
    route: [{destination: {host: web, subset: missing}}]
  - match: [{headers: {x-case: {exact: zero}}}]
    route:
    - {destination: {host: web, subset: live}, weight: 0}
    - {destination: {host: web, subset: dead}, weight: 0}
  - match: [{headers: {x-case: {exact: uh}}}]
    route: [{destination: {host: web, subset: empty}}]
  - match: [{headers: {x-case: {exact: uf}}}]
    route: [{destination: {host: web, subset: dead}}]
  - match: [{headers: {x-case: {exact: uf-no-retry}}}]
    route: [{destination: {host: web, subset: dead}}]
    retries: {attempts: 0}
  - match: [{headers: {x-case: {exact: ut}}}]
    route: [{destination: {host: web, subset: slow}}]
    timeout: 0.2s
  - match: [{headers: {x-case: {exact: reset}}}]
    route: [{destination: {host: web, subset: closer}}]
    retries: {attempts: 2, retryOn: reset}
  - match: [{headers: {x-case: {exact: slow-default}}}]
    route: [{destination: {host: web, subset: slow}}]
  - match: [{headers: {x-case: {exact: pair}}}]
    route: [{destination: {host: web, subset: pair}}]
  - match: [{headers: {x-case: {exact: abort}}}]
    route: [{destination: {host: web, subset: live}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
  - match: [{headers: {x-case: {exact: delay}}}]
    route: [{destination: {host: web, subset: live}}]
    timeout: 0.2s
    fault: {delay: {fixedDelay: 0.3s, percentage: {value: 100}}}
  - match: [{uri: {prefix: /app}}]
    route: [{destination: {host: web, subset: live}}]
  - match: [{headers: {user-agent: {regex: ".*Android.*"}}}]
    route: [{destination: {host: web, subset: live}}]
"#;

/// The Deployments of the mesh: name, app and version labels, and which
/// stand-in answers for the pod.
const PODS: [(&str, &str, &str, Pod); 7] = [
    ("web-closer", "web", "closer", Pod::Closer),
    ("web-live", "web", "live", Pod::Echo),
    ("web-dead", "web", "dead", Pod::Closed),
    ("web-slow", "web", "slow", Pod::Slow),
    ("web-pair-a", "web", "pair", Pod::Echo),
    ("web-pair-b", "web", "pair", Pod::Closed),
    ("api-v1", "api", "v1", Pod::Echo),
];

#[derive(Clone, Copy)]
enum Pod {
    Echo,
    /// Reads a whole request, then closes without an answer; counts them.
    Closer,
    Closed,
    Slow,
}

/// What the echo received, as JSON: headers (lowercase names, values joined
/// by ", ") and the body.
async fn echo(req: Request) -> Json<serde_json::Value> {
    let mut headers = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<&str> = req
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        headers.insert(name.to_string(), values.join(", ").into());
    }
    let body = to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    Json(serde_json::json!({
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

struct Fixture {
    plane: Arc<Plane>,
    /// Requests the closer read.
    closer_reads: Arc<std::sync::atomic::AtomicUsize>,
    /// Keeps the stand-in servers up.
    _servers: Vec<weather_core::RunningServer>,
}

/// A server that reads each request whole (head, and a body of the length
/// it declares), counts it, and closes the connection without answering.
async fn closer(reads: Arc<std::sync::atomic::AtomicUsize>) -> SocketAddr {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let reads = reads.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let text = String::from_utf8_lossy(&data).to_lowercase();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    addr
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

async fn fixture(default_timeout: Option<Duration>) -> Fixture {
    fixture_with(Settings {
        access_log: false,
        default_timeout,
        ..Settings::default()
    })
    .await
}

async fn fixture_with(settings: Settings) -> Fixture {
    let live = spawn_local(Router::new().fallback(echo)).await.unwrap();
    let slow = spawn_local(Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "too late"
    }))
    .await
    .unwrap();
    let dead = closed_port().await;
    let closer_reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let closer = closer(closer_reads.clone()).await;
    let mut text = MESH.to_owned();
    let mut pods = HashMap::new();
    for (name, app, version, pod) in PODS {
        text.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  selector: {{matchLabels: {{app: {app}, version: {version}}}}}\n  template:\n    metadata: {{labels: {{app: {app}, version: {version}}}}}\n    spec: {{containers: [{{name: c, image: weather/{app}:v1}}]}}\n"
        ));
        let addr = match pod {
            Pod::Closed => dead,
            Pod::Slow => slow.addr,
            Pod::Closer => closer,
            Pod::Echo => live.addr,
        };
        pods.insert(name.to_owned(), addr);
    }
    let mut m = Manifests::default();
    m.add_yaml("proxy.yaml", &text).unwrap();
    let mesh = Mesh::compile(&m);
    assert!(mesh.errors.is_empty(), "{:?}", mesh.errors);
    let plane = Plane::new(Vec::new(), None, mesh, pods, settings).unwrap();
    Fixture {
        plane: Arc::new(plane),
        closer_reads,
        _servers: vec![live, slow],
    }
}

impl Fixture {
    fn router(&self, hop: Hop) -> Router {
        proxy::router(self.plane.clone(), hop, Telemetry::disabled())
    }

    /// Sends `req` through the ingress hop, from 192.0.2.7.
    async fn ingress(&self, mut req: Request) -> Response {
        let peer = SocketAddr::from(([192, 0, 2, 7], 40000));
        req.extensions_mut().insert(ConnectInfo(peer));
        self.router(Hop::Ingress).oneshot(req).await.unwrap()
    }
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request {
    let mut b = Request::get(path).header("host", "weather.example");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

fn case(c: &str) -> Request {
    get("/", &[("x-case", c)])
}

fn flag(res: &Response) -> &str {
    res.headers()
        .get("x-weather-response-flags")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn json(res: Response) -> serde_json::Value {
    let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

async fn text(res: Response) -> String {
    let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn no_rule_that_matches_is_404_nr() {
    let f = fixture(None).await;
    let res = f.ingress(get("/elsewhere", &[])).await;
    assert_eq!((res.status(), flag(&res)), (StatusCode::NOT_FOUND, "NR"));
    assert!(text(res).await.starts_with("no route"));
}

/// A route's fault, as the calling proxy's fault filter applies it: an abort
/// answers at once, never reaching the pod; a delay comes before the router,
/// so the route's timeout counts from after it.
#[tokio::test]
async fn a_routes_fault_aborts_before_the_pod_and_delays_before_the_timeout_starts() {
    let f = fixture(None).await;
    let res = f.ingress(case("abort")).await;
    assert_eq!(
        (res.status(), flag(&res)),
        (StatusCode::SERVICE_UNAVAILABLE, "FI")
    );
    assert_eq!(text(res).await.trim(), "fault filter abort");
    // Delayed 0.3 s on a route whose timeout is 0.2 s: answered, since the
    // timeout starts after the delay (a timeout counted from the start would
    // be 504 UT).
    let res = f.ingress(case("delay")).await;
    assert_eq!((res.status(), flag(&res)), (StatusCode::OK, "DI"));
}

#[tokio::test]
async fn an_undefined_subset_or_only_weight_zero_is_503_nc() {
    let f = fixture(None).await;
    for c in ["nc", "zero"] {
        let res = f.ingress(case(c)).await;
        assert_eq!(
            (res.status(), flag(&res)),
            (StatusCode::SERVICE_UNAVAILABLE, "NC"),
            "{c}"
        );
    }
}

#[tokio::test]
async fn a_subset_without_pods_is_503_uh() {
    let f = fixture(None).await;
    let res = f.ingress(case("uh")).await;
    assert_eq!(
        (res.status(), flag(&res)),
        (StatusCode::SERVICE_UNAVAILABLE, "UH")
    );
}

/// Istio's default retries (2, on connect failures) run out: 503 `URX,UF`;
/// a route that turns retries off (`attempts: 0`) answers `UF` alone.
#[tokio::test]
async fn a_refused_connection_is_retried_twice_then_503_urx_uf() {
    let f = fixture(None).await;
    let res = f.ingress(case("uf")).await;
    assert_eq!(
        (res.status(), flag(&res)),
        (StatusCode::SERVICE_UNAVAILABLE, "URX,UF")
    );
    assert!(text(res).await.starts_with(
        "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure"
    ));
    let res = f.ingress(case("uf-no-retry")).await;
    assert_eq!(
        (res.status(), flag(&res)),
        (StatusCode::SERVICE_UNAVAILABLE, "UF")
    );
}

/// `retryOn: reset`: a bodiless request is retried twice (three reads, then
/// 503 `URX,UC`); a request whose body the upstream read is never sent again
/// (one read, 503 `UC`).
#[tokio::test]
async fn a_reset_is_retried_only_while_the_body_is_unsent() {
    use std::sync::atomic::Ordering::SeqCst;
    let f = fixture(None).await;
    let res = f.ingress(case("reset")).await;
    assert_eq!(
        (res.status(), flag(&res)),
        (StatusCode::SERVICE_UNAVAILABLE, "URX,UC")
    );
    assert_eq!(f.closer_reads.swap(0, SeqCst), 3);
    let req = Request::post("/")
        .header("host", "weather.example")
        .header("x-case", "reset")
        .header("content-length", "9")
        .body(Body::from("city=oslo"))
        .unwrap();
    let res = f.ingress(req).await;
    assert_eq!(
        (res.status(), flag(&res)),
        (StatusCode::SERVICE_UNAVAILABLE, "UC")
    );
    assert_eq!(f.closer_reads.load(SeqCst), 1, "the body was sent once");
}

/// A body that sends its first bytes and then nothing, never ending.
struct Stalled(bool);

impl http_body::Body for Stalled {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if std::mem::replace(&mut self.0, true) {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data("city=".into()))))
        }
    }
}

/// A client that stops sending its body: 408 `SI` after the stream idle
/// timeout (Envoy's 5 minutes; 300 ms here).
#[tokio::test]
async fn a_stalled_request_body_is_408_si() {
    let f = fixture_with(Settings {
        access_log: false,
        stream_idle_timeout: Duration::from_millis(300),
        ..Settings::default()
    })
    .await;
    let req = Request::post("/app")
        .header("host", "weather.example")
        .header("content-length", "100")
        .body(Body::new(Stalled(false)))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), f.ingress(req))
        .await
        .expect("the hop gives up on the body");
    assert_eq!(
        (res.status(), flag(&res)),
        (StatusCode::REQUEST_TIMEOUT, "SI")
    );
}

#[tokio::test]
async fn an_upstream_slower_than_the_routes_timeout_is_504_ut() {
    let f = fixture(None).await;
    // The stand-in answers after 30 s; the route's `timeout: 0.2s` ends it.
    let res = tokio::time::timeout(Duration::from_secs(10), f.ingress(case("ut")))
        .await
        .expect("the hop honours the route's timeout");
    assert_eq!(
        (res.status(), flag(&res)),
        (StatusCode::GATEWAY_TIMEOUT, "UT")
    );
    assert_eq!(text(res).await, "upstream request timeout\n");
}

/// A route without `timeout` has none, as in Istio, unless `weather up` is
/// given one (`--upstream-timeout-ms`).
#[tokio::test]
async fn a_route_without_timeout_waits_unless_a_default_is_given() {
    let f = fixture(None).await;
    let waited =
        tokio::time::timeout(Duration::from_secs(1), f.ingress(case("slow-default"))).await;
    assert!(waited.is_err(), "no timeout: still waiting after 1 s");
    let f = fixture(Some(Duration::from_millis(200))).await;
    let res = tokio::time::timeout(Duration::from_secs(10), f.ingress(case("slow-default")))
        .await
        .expect("the default timeout applies");
    assert_eq!(
        (res.status(), flag(&res)),
        (StatusCode::GATEWAY_TIMEOUT, "UT")
    );
}

/// The pair subset has two endpoints, one refusing connections; endpoints are
/// taken in turn, so of two requests in a row one is sent to the closed one
/// first. A refused connection read nothing of the body: it is sent to the
/// next endpoint whole, as Envoy does.
#[tokio::test]
async fn a_refused_connection_is_retried_on_the_next_endpoint_with_its_body() {
    let f = fixture(None).await;
    for _ in 0..4 {
        let res = f.ingress(case("pair")).await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "the retry reaches the live one"
        );
    }
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let req = Request::post("/")
            .header("host", "weather.example")
            .header("x-case", "pair")
            .header("content-length", "9")
            .body(Body::from("city=oslo"))
            .unwrap();
        let res = f.ingress(req).await;
        let status = res.status();
        let flags = flag(&res).to_owned();
        let body = match status {
            StatusCode::OK => json(res).await["body"].as_str().unwrap().to_owned(),
            _ => String::new(),
        };
        outcomes.push((status, flags, body));
    }
    let ok = (StatusCode::OK, "".to_owned(), "city=oslo".to_owned());
    assert_eq!(outcomes, [ok.clone(), ok]);
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let f = fixture(None).await;
    let req = get(
        "/app",
        &[
            ("connection", "x-private, keep-alive"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "websocket"),
            ("trailer", "x-sum"),
            ("x-kept", "yes"),
        ],
    );
    let res = f.ingress(req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let seen = json(res).await;
    let headers = seen["headers"].as_object().unwrap();
    for gone in [
        "connection",
        "x-private",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
        "trailer",
    ] {
        assert!(
            !headers.contains_key(gone),
            "{gone} was forwarded: {headers:?}"
        );
    }
    assert_eq!(headers["x-kept"], "yes");
}

#[tokio::test]
async fn the_ingress_adds_who_called_and_a_request_id_and_keeps_one_sent() {
    let f = fixture(None).await;
    let seen = json(f.ingress(get("/app", &[])).await).await;
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-for"], "192.0.2.7");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["host"], "weather.example");
    let id = h["x-request-id"].as_str().unwrap();
    assert!(uuid_like(id), "{id}");

    let sent = [
        ("x-request-id", "abc-123"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    let seen = json(f.ingress(get("/app", &sent)).await).await;
    assert_eq!(seen["headers"]["x-request-id"], "abc-123");
    assert_eq!(seen["headers"]["x-forwarded-for"], "203.0.113.9, 192.0.2.7");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn a_sidecar_sends_the_apps_authority_and_adds_no_edge_headers() {
    let f = fixture(None).await;
    let hop = Hop::Sidecar {
        workload: "web-live".into(),
        namespace: "demo".into(),
        labels: Labels::from([("app".to_owned(), "web".to_owned())]),
        authority: "api:9000".into(),
    };
    let res = f.router(hop).oneshot(get("/v1/things", &[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = json(res).await;
    assert_eq!(seen["headers"]["host"], "api:9000");
    for edge in ["x-forwarded-for", "x-request-id", "x-forwarded-proto"] {
        assert!(seen["headers"].get(edge).is_none(), "{edge}: {seen}");
    }
}

/// A header value that is not ASCII (a no-break space, as some browsers send)
/// is matched as Envoy matches it, not dropped.
#[tokio::test]
async fn a_header_value_that_is_not_ascii_is_still_matched() {
    let f = fixture(None).await;
    let mut req = get("/", &[]);
    req.headers_mut().insert(
        "user-agent",
        axum::http::HeaderValue::from_bytes("Mozilla/5.0 (Linux; Android\u{a0}14)".as_bytes())
            .unwrap(),
    );
    let res = f.ingress(req).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", text(res).await);
}
