//! A seeded random mesh written in Gateway API: ten Services, each with a
//! Service per version (`svc-N-a`, `svc-N-b`), two clients, a Gateway of class
//! istio, and random HTTPRoutes: one or two GAMMA routes per Service (some
//! with a port), and edge routes, some naming hostnames and some not (those
//! merge into one `*` host, across HTTPRoutes). Rules have zero to two
//! matches (path exact, prefix or regex; headers, query parameters, method),
//! weighted backendRefs (weight 0 included) and now and then a backend that is
//! no Service. The requests are those of the VirtualService batch
//! ([`super::random::corpus`]): the same Services, hosts and headers.

use std::fmt::Write;

use super::random::{HEADERS, SERVICES, VALUES, deployment};

fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a str]) -> &'a str {
    from[rng.usize(..from.len())]
}

const PATHS: &[&str] = &["/", "/api", "/api/", "/api/v1", "/static", "/Api"];
const REGEXES: &[&str] = &[
    ".*",
    "/api.*",
    "/[a-z]+",
    "v[0-9]+",
    ".*canary.*",
    "(?i)chrome.*",
    "a|b",
];

fn value_match(rng: &mut fastrand::Rng, name: &str, values: &[&str]) -> String {
    if rng.u8(..3) == 0 {
        format!(
            "{{name: {name}, type: RegularExpression, value: '{}'}}",
            pick(rng, REGEXES)
        )
    } else if rng.bool() {
        format!(
            "{{name: {name}, type: Exact, value: '{}'}}",
            pick(rng, values)
        )
    } else {
        // The type left to the CRD's default, Exact.
        format!("{{name: {name}, value: '{}'}}", pick(rng, values))
    }
}

fn route_match(rng: &mut fastrand::Rng) -> String {
    let mut fields = Vec::new();
    for _ in 0..rng.usize(1..4) {
        match rng.u8(..6) {
            0 | 1 => {
                let path = match rng.u8(..4) {
                    0 => format!("{{type: Exact, value: '{}'}}", pick(rng, PATHS)),
                    1 => format!(
                        "{{type: RegularExpression, value: '{}'}}",
                        pick(rng, REGEXES)
                    ),
                    2 => format!("{{value: '{}'}}", pick(rng, PATHS)),
                    _ => format!("{{type: PathPrefix, value: '{}'}}", pick(rng, PATHS)),
                };
                fields.push(format!("path: {path}"));
            }
            2 | 3 => {
                let n = rng.usize(1..3);
                let mut names: Vec<&str> = (0..n).map(|_| pick(rng, HEADERS)).collect();
                names.sort();
                names.dedup();
                let ms: Vec<String> = names.iter().map(|h| value_match(rng, h, VALUES)).collect();
                fields.push(format!("headers: [{}]", ms.join(", ")));
            }
            4 => {
                let name = pick(rng, &["v", "debug"]);
                let q = value_match(rng, name, &["1", "0", "canary", "v1"]);
                fields.push(format!("queryParams: [{q}]"));
            }
            _ => fields.push(format!("method: {}", pick(rng, &["GET", "POST"]))),
        }
    }
    fields.sort_by_key(|f| f.split(':').next().unwrap_or("").to_owned());
    fields.dedup_by_key(|f| f.split(':').next().unwrap_or("").to_owned());
    format!("{{{}}}", fields.join(", "))
}

fn backends(rng: &mut fastrand::Rng, own: usize) -> String {
    let n = rng.usize(1..4);
    let mut out = String::new();
    let mut any = false;
    for k in 0..n {
        let svc = if rng.bool() {
            own
        } else {
            rng.usize(..SERVICES)
        };
        let name = match rng.u8(..10) {
            0 => "svc-none".to_owned(),
            1 => format!("svc-{svc}"),
            2..=5 => format!("svc-{svc}-a"),
            _ => format!("svc-{svc}-b"),
        };
        // At least one backend takes traffic (all at 0 is a direct 500).
        let weight = match rng.u8(..6) {
            0 if any || k + 1 < n => ", weight: 0".to_owned(),
            1 => String::new(),
            _ => format!(", weight: {}", rng.u32(1..100)),
        };
        any |= !weight.ends_with(" 0");
        let _ = write!(out, "\n        - {{name: {name}, port: 8080{weight}}}");
    }
    out
}

fn rules(rng: &mut fastrand::Rng, own: usize) -> String {
    let mut out = String::new();
    for r in 0..rng.usize(1..5) {
        let _ = write!(out, "\n    - name: r{r}");
        if rng.u8(..4) != 0 {
            let ms: Vec<String> = (0..rng.usize(1..3)).map(|_| route_match(rng)).collect();
            let _ = write!(out, "\n      matches: [{}]", ms.join(", "));
        }
        if rng.u8(..4) == 0 {
            let _ = write!(
                out,
                "\n      filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-routed, value: r{r}}}]}}}}]"
            );
        }
        let _ = write!(out, "\n      backendRefs:{}", backends(rng, own));
    }
    out
}

fn http_route(name: &str, parent: &str, hostnames: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: rnd}}\nspec:\n  parentRefs: [{parent}]{hostnames}\n  rules:{rules}\n"
    )
}

/// The manifests of batch `seed`, as one file's text.
pub fn manifests(seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut y = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: rnd}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  gatewayClassName: istio\n  listeners:\n    - name: http\n      port: 80\n      protocol: HTTP\n      allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {kubernetes.io/metadata.name: rnd}}}}\n",
    );
    let service = |name: &str, selector: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: rnd}}\nspec: {{selector: {selector}, ports: [{{name: http, port: 8080}}]}}\n"
        )
    };
    for i in 0..SERVICES {
        y.push_str(&service(&format!("svc-{i}"), &format!("{{app: svc-{i}}}")));
        for v in ["a", "b"] {
            y.push_str(&service(
                &format!("svc-{i}-{v}"),
                &format!("{{app: svc-{i}, version: {v}}}"),
            ));
            y.push_str(&deployment(
                &format!("svc-{i}-{v}"),
                &format!("{{app: svc-{i}, version: {v}}}"),
            ));
        }
    }
    y.push_str(&deployment("client-1", "{app: client, version: v1}"));
    y.push_str(&deployment(
        "client-2",
        "{app: client, version: v2, track: canary}",
    ));
    for i in 0..SERVICES {
        for k in 0..rng.usize(1..3) {
            let port = if rng.u8(..4) == 0 { ", port: 8080" } else { "" };
            let parent = format!("{{group: '', kind: Service, name: svc-{i}{port}}}");
            let rs = rules(&mut rng, i);
            y.push_str(&http_route(&format!("mesh-{i}-{k}"), &parent, "", &rs));
        }
        let hostnames = if rng.u8(..3) == 0 {
            String::new()
        } else {
            format!("\n  hostnames: ['h{i}.example.com']")
        };
        let parent = "{name: gw, namespace: istio-system, sectionName: http}";
        let rs = rules(&mut rng, i);
        y.push_str(&http_route(&format!("edge-{i}"), parent, &hostnames, &rs));
    }
    y
}
