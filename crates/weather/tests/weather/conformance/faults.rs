//! Faults, against a real Envoy: what a client can send wrong and what an
//! upstream can do wrong, answered by Envoy (loaded with istiod's routes for
//! `FAULTS` and Istio's listener settings) and by `weather up`'s ingress hop,
//! each on a real socket, each request written byte by byte as a raw client
//! would. The status must be the same, and the response flags: Envoy's from its
//! access log, the hop's from `x-weather-response-flags`. Where the upstream
//! answered, what it was sent (the request line, after path normalization)
//! must be the same too.

use std::{collections::HashMap, sync::Arc};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use weather::dataplane::{Hop, Plane, Settings, proxy};
use weather_core::telemetry::Telemetry;

use super::*;

/// A gateway route per upstream behaviour; `refused` and `once` lead to a
/// port nothing listens on, the rest to the stand-in.
const FAULTS: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: faults, namespace: faults}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - name: refused
    match: [{uri: {prefix: /refuse}}]
    route: [{destination: {host: closed}}]
  - name: once
    match: [{uri: {prefix: /once}}]
    route: [{destination: {host: closed}}]
    retries: {attempts: 0}
  - name: slow
    match: [{uri: {prefix: /slow}}]
    route: [{destination: {host: probe}}]
    timeout: 1s
  - name: fault-abort
    match: [{uri: {prefix: /abort}}]
    route: [{destination: {host: probe}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
  - name: fault-delay
    match: [{uri: {prefix: /delay}}]
    route: [{destination: {host: probe}}]
    fault: {delay: {fixedDelay: 0.2s, percentage: {value: 100}}}
  - name: fault-delay-then-abort
    match: [{uri: {prefix: /both}}]
    route: [{destination: {host: probe}}]
    fault:
      delay: {fixedDelay: 0.1s, percentage: {value: 100}}
      abort: {httpStatus: 418, percentage: {value: 100}}
  - name: fault-unset-shares
    match: [{uri: {prefix: /never}}]
    route: [{destination: {host: probe}}]
    fault: {delay: {fixedDelay: 5s}, abort: {httpStatus: 500}}
  - name: fault-delay-within-timeout
    match: [{uri: {prefix: /late}}]
    route: [{destination: {host: probe}}]
    timeout: 0.5s
    fault: {delay: {fixedDelay: 0.7s, percentage: {value: 100}}}
  - name: rest
    route: [{destination: {host: probe}}]
"#;

const DEPLOYMENTS: [&str; 2] = ["probe", "closed"];

fn manifests() -> String {
    FAULTS.to_owned() + &stand_in_workloads("faults", &DEPLOYMENTS)
}

/// `weather up`'s ingress hop for the manifests `yaml`, their Deployments'
/// pods at `pods`, served as `weather up` serves it.
pub(super) fn ingress_hop(
    rt: &tokio::runtime::Runtime,
    yaml: &str,
    pods: HashMap<String, SocketAddr>,
) -> weather_core::RunningServer {
    let mut m = mesh::Manifests::default();
    m.add_yaml("test.yaml", yaml).unwrap();
    let model = Mesh::compile(&m);
    assert!(model.errors.is_empty(), "{:?}", model.errors);
    let settings = Settings {
        access_log: false,
        ..Settings::default()
    };
    let plane = Arc::new(Plane::new(Vec::new(), None, model, pods, settings).unwrap());
    let limits = weather_core::server::listen::Limits {
        end_on_hangup: true,
        ..Default::default()
    };
    rt.block_on(async {
        weather_core::server::spawn_with(
            tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            proxy::router(plane, Hop::Ingress, Telemetry::disabled()),
            limits,
        )
    })
    .unwrap()
}

/// A Service (port 8080) and a Deployment for each of `names` in `namespace`:
/// workloads a test's stand-ins answer for.
pub(super) fn stand_in_workloads(namespace: &str, names: &[&str]) -> String {
    let mut y = String::new();
    for name in names {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 8080}}]}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}, version: v1}}}}\n    spec: {{containers: [{{name: c, image: weather/forecast:v1}}]}}\n"
        ));
    }
    y
}

/// The raw requests: client faults first, then upstream faults, then paths.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
    let mut cases: Vec<(&'static str, Vec<u8>)> = vec![
        ("GET *", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("malformed chunk", b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("Content-Length and chunked", b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("two Content-Lengths", b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec()),
        ("Content-Length not a number", b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nhello".to_vec()),
        ("no Host", b"GET /a HTTP/1.1\r\n\r\n".to_vec()),
        ("HTTP/1.0 without Host", b"GET /a HTTP/1.0\r\n\r\n".to_vec()),
        ("space in a header name", b"GET /a HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n".to_vec()),
        ("control byte in a value", b"GET /a HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n".to_vec()),
        ("space before a colon", b"GET /a HTTP/1.1\r\nHost: x\r\nX : a\r\n\r\n".to_vec()),
        ("underscore in a header name", b"GET /a HTTP/1.1\r\nHost: x\r\nx_y: 1\r\n\r\n".to_vec()),
        ("lowercase method", b"get /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("unknown method", b"BREW /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("WebDAV method", b"PROPFIND /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("M-SEARCH", b"M-SEARCH /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("CONNECT host:port", b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n".to_vec()),
        ("CONNECT with a path", b"CONNECT /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("absolute form", b"GET http://other/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("LF line ends", b"GET /a HTTP/1.1\nHost: x\n\n".to_vec()),
        ("fragment", get("/a#frag")),
        ("%00 in the path", get("/a%00b")),
        ("relative path", get("a/b")),
        ("body past what the upstream takes", b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nhello".to_vec()),
        ("refused connection", get("/refuse")),
        ("refused connection, with a body", b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec()),
        ("refused connection, retries off", get("/once")),
        ("upstream closes", get("/close")),
        ("upstream speaks no HTTP", get("/garbage")),
        ("upstream slower than the route's timeout", get("/slow")),
        ("fault: abort 503 at 100%", get("/abort")),
        ("fault: abort with a body", b"POST /abort HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec()),
        ("fault: delay 0.2s at 100%", get("/delay")),
        ("fault: delay, then abort 418", get("/both")),
        ("fault: no share set, so never", get("/never")),
        ("fault: a delay past the route's timeout, which starts after it", get("/late")),
    ];
    // An app that answers before it reads the body (a declared length over
    // its limit, a head it refuses), then closes as a server should, reading
    // what still comes: the answer is passed on, not taken for a reset.
    for code in ["413", "400", "431"] {
        let mut raw = format!(
            "POST /early/{code} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {EARLY_BODY}\r\n\r\n"
        )
        .into_bytes();
        raw.resize(raw.len() + EARLY_BODY, b'a');
        cases.push(("upstream answers before reading the body", raw));
    }
    for path in [
        "/a/./b",
        "/a/%2e%2e/b",
        "/a/%2E./b",
        "/a//b",
        "/a\\b",
        "/%41%7e",
        "/a/..",
        "/..",
        "/../a",
        "/a%2Fb",
        "/a?x=/../y",
        "/a/...",
        "/a%c3%a4",
        "/a;b/../c",
        "/a/b%2f..%2fc",
        "/a|b",
        "/a{b}",
        "/a^b",
        "/a'b",
        "/a[b]",
        "/a/b/..",
        "/a/%2e",
        "/a%2e/b",
        "/%7E%2d%5F%2E%30",
        "/%3f%2F%25",
        "/a%",
        "/a%G1",
        "/a\"b",
        "/a`b",
        "/a%20b",
    ] {
        cases.push(("path", get(path)));
    }
    cases
}

/// The body sent to an upstream that answers before it reads it: more than
/// a socket takes in one write.
const EARLY_BODY: usize = 300_000;

/// The upstream: answers by path, as an app can behave.
async fn stand_in(l: TcpListener) {
    loop {
        let Ok((mut c, _)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            while !data.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&data).into_owned();
            let line = head.lines().next().unwrap_or("").to_owned();
            let path = line.split(' ').nth(1).unwrap_or("");
            let length: u64 = head
                .lines()
                .filter_map(|h| h.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let answer = if path.starts_with("/close") {
                return;
            } else if path.starts_with("/garbage") {
                b"HELLO THERE\r\n\r\n".to_vec()
            } else if let Some(code) = path.strip_prefix("/early/") {
                let answer = format!(
                    "HTTP/1.1 {code} Refused\r\ncontent-length: 7\r\nconnection: close\r\n\r\nrefused"
                );
                let _ = c.write_all(answer.as_bytes()).await;
                // A lingering close: the write side shut, the rest read.
                let _ = c.shutdown().await;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while c.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                })
                .await;
                return;
            } else if path.starts_with("/big") && length > 4096 {
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbig".to_vec()
            } else {
                if path.starts_with("/slow") {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let body = format!("seen {line}");
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            };
            let _ = c.write_all(&answer).await;
        });
    }
}

/// Writes `raw` on a new connection and reads the answer: status, flags
/// header, body.
async fn send(addr: SocketAddr, raw: &[u8]) -> (u16, Option<String>, String) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), async {
        let mut buf = [0u8; 8192];
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            // One response is all a case needs.
            let text = String::from_utf8_lossy(&out);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .filter_map(|h| h.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok());
                if length.is_some_and(|n| body.len() >= n) {
                    break;
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let flags = head
        .lines()
        .filter_map(|h| h.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("x-weather-response-flags"))
        .map(|(_, v)| v.trim().to_owned());
    (status, flags, body.to_owned())
}

/// Where hyper's HTTP/1 codec, which parses the request before the hop sees
/// it, decides otherwise and cannot be told to: the case, Envoy's status and
/// the hop's. Asserted as they are, so this list stays true.
/// - hyper drops `Content-Length` when `Transfer-Encoding: chunked` is sent too
///   (RFC 9112 6.3 lets a server do either) and forwards the body chunked;
/// - hyper drops a fragment from the path before the hop can see it;
/// - hyper refuses a backtick in a path, which Envoy escapes.
const KNOWN: [(&str, &str, u16, u16); 3] = [
    ("Content-Length and chunked", "", 400, 200),
    ("fragment", "", 400, 200),
    ("path", "GET /a`b", 200, 400),
];

#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn client_and_upstream_faults_are_answered_as_envoy_answers_them() {
    let dir = super::oracle_dir();
    let file = dir.join("faults.yaml");
    std::fs::write(&file, manifests()).unwrap();
    let export = istiod_export(std::slice::from_ref(&file), "faults");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (upstream, closed) = rt.block_on(async {
        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let addr = up.local_addr().unwrap();
        tokio::spawn(stand_in(up));
        (addr, closed)
    });
    let log = envoy::access_log("faults");
    let _ = std::fs::remove_file(&log);
    let envoy = envoy::start_envoy_with(
        &export,
        &|cluster| {
            if cluster.contains("|closed.") {
                closed
            } else {
                upstream
            }
        },
        "faults",
    );
    let envoy_addr = envoy.listeners[&("ingress".to_owned(), "http.80".to_owned())];

    let pods = HashMap::from([
        ("probe".to_owned(), upstream),
        ("closed".to_owned(), closed),
    ]);
    let hop = ingress_hop(&rt, &manifests(), pods);

    let cases = cases();
    let mut answers = Vec::new();
    for (name, raw) in &cases {
        let envoy = rt.block_on(send(envoy_addr, raw));
        let ours = rt.block_on(send(hop.addr, raw));
        answers.push((name, raw, envoy, ours));
    }
    // Envoy writes its access log in the background: a line per request.
    let read = || -> Vec<String> {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().map(str::to_owned).collect()
    };
    eventually_blocking(
        "Envoy's access log of every case",
        Duration::from_secs(15),
        || read().len() >= cases.len(),
    );
    let lines = read();
    assert_eq!(
        lines.len(),
        cases.len(),
        "Envoy logs a line per request: {lines:#?}"
    );
    let mut wrong = Vec::new();
    for ((name, raw, envoy, ours), line) in answers.iter().zip(&lines) {
        if let Some(k) = KNOWN
            .iter()
            .find(|k| k.0 == **name && raw.starts_with(k.1.as_bytes()))
        {
            assert_eq!(
                (envoy.0, ours.0),
                (k.2, k.3),
                "a known difference changed: {name}"
            );
            continue;
        }
        let envoy_flags = line.split(' ').nth(1).unwrap_or("").to_owned();
        // The hop flags what it answers itself; what it forwards carries the
        // upstream's answer, unflagged. hyper's codec answers a malformed head
        // itself, before the hop sees it: an empty 400 without flags (nor
        // metrics), where Envoy logs DPE.
        let our_flags = match &ours.1 {
            Some(f) => f.clone(),
            None if ours.0 == 400 && ours.2.is_empty() => "codec".into(),
            None => "-".into(),
        };
        let flags_agree =
            our_flags == envoy_flags || (our_flags == "codec" && envoy_flags == "DPE");
        let seen_agree = envoy.0 != 200 || envoy.2 == ours.2;
        if envoy.0 != ours.0 || !flags_agree || !seen_agree {
            wrong.push(format!(
                "{name} {:?}:\n  Envoy {} {envoy_flags} {:?}\n  hop   {} {our_flags} {:?}",
                String::from_utf8_lossy(raw),
                envoy.0,
                envoy.2,
                ours.0,
                ours.2
            ));
        }
    }
    eprintln!(
        "{} fault cases sent to Envoy and the hop, {} differ",
        cases.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "the hop answers differently from Envoy:\n{}",
        wrong.join("\n")
    );
}
