//! Repeated headers, as a real Envoy's header map merges them before routes
//! match: for each header name, routes that match `exact` on every value the
//! merge could give, each answering with that value, and the same name sent
//! twice or more (with empty values among them). What Envoy answers must be
//! what `mesh::routing::join_values` says a match reads.

use std::{
    io::{Read, Write},
    net::TcpStream,
};

use mesh::routing::{ENVOY_INLINE_REQUEST_HEADERS, join_values};

use super::*;

/// Headers Envoy acts on itself before routing (connection framing, its own
/// `x-envoy-*` controls, Host): what a route sees of them is not what was
/// sent, so their merging cannot be observed by a route.
const ENVOY_OWN: &[&str] = &[
    ":authority",
    ":method",
    ":path",
    ":protocol",
    ":scheme",
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-client-cert",
];

/// Names Envoy keeps one entry per value for: a sample, browsers' and the
/// lanes' headers among them.
const KEPT_APART: &[&str] = &[
    "cookie",
    "accept-language",
    "baggage",
    "traceparent",
    "x-b3-sampled",
    "end-user",
    "x-canary",
    "sec-fetch-site",
    "x-ot-span-context",
    "priority",
];

/// The values each name is sent with, in order.
const SEQUENCES: &[&[&str]] = &[&["", "b"], &["b", ""], &["a", "b"], &["", "", "b", ""]];

/// Every value the sequences can be read as, inline or not.
const READINGS: &[&str] = &["b", ",b", "b,", "a,b", ",,b,"];

#[test]
#[ignore = "needs Envoy (scripts/setup): ./scripts/test runs it"]
fn repeated_headers_merge_as_envoys_header_map_merges_them() {
    let names: Vec<&str> = ENVOY_INLINE_REQUEST_HEADERS
        .iter()
        .copied()
        .filter(|n| !ENVOY_OWN.contains(n) && !n.starts_with("x-envoy-"))
        .chain(KEPT_APART.iter().copied())
        .collect();
    let mut routes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for value in READINGS {
            routes.push(json!({
                "match": {"prefix": format!("/h{i}/"), "headers": [{"name": name, "string_match": {"exact": value}}]},
                "direct_response": {"status": 200, "body": {"inline_string": value}},
            }));
        }
    }
    routes.push(json!({"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "no route"}}}));
    let mut held = Vec::new();
    let ip = own_loopback();
    let port = free_port(ip, &mut held);
    let bootstrap = json!({
        "static_resources": {"listeners": [{
            "name": "headers",
            "address": {"socket_address": {"address": std::net::Ipv4Addr::from(ip).to_string(), "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "headers",
                    // Closed at once after each answer, not a second later.
                    "delayed_close_timeout": "0s",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                },
            }]}],
        }]},
        "layered_runtime": {"layers": [{"name": "pinned", "static_layer": pinned_runtime()}]},
    });
    let dir = root().join("target/conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("headers-envoy.json");
    std::fs::write(&config, bootstrap.to_string()).unwrap();
    drop(held);
    let log = std::fs::File::create(dir.join("headers-envoy.log")).unwrap();
    let child = Command::new(envoy_binary())
        .arg("-c")
        .arg(&config)
        .args([
            "--concurrency",
            "1",
            "-l",
            "warning",
            "--disable-hot-restart",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("envoy starts");
    let _envoy = Killed(child);
    let addr = SocketAddr::from((ip, port));
    eventually_blocking("Envoy listening", Duration::from_secs(30), || {
        TcpStream::connect(addr).is_ok()
    });

    let mut wrong = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for values in SEQUENCES {
            let envoy = ask(addr, &format!("/h{i}/"), name, values);
            let model = join_values(name, values.iter().map(|v| std::borrow::Cow::Borrowed(*v)))
                .map(|v| v.into_owned());
            if model.as_deref() != Some(envoy.as_str()) {
                wrong.push(format!(
                    "{name} sent as {values:?}: Envoy reads {envoy:?}, the model {model:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Sends `name` once per value and returns the body: the value a route
/// matched, or "no route".
fn ask(addr: SocketAddr, path: &str, name: &str, values: &[&str]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: headers.test\r\n");
    for v in values {
        req.push_str(&format!("{name}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(answer)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
