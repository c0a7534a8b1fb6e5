//! A seeded random mesh: ten Services with two versions each (subsets `a`
//! and `b`; `c` is named by routes but defined by no DestinationRule), two
//! clients with different labels, and twenty random VirtualServices: ten
//! bound to the mesh, one per Service, and ten bound to the gateway.

use std::fmt::Write;

pub const SERVICES: usize = 10;
pub const HEADERS: &[&str] = &["x-user", "x-canary", "user-agent", "cookie"];
pub const VALUES: &[&str] = &[
    "canary",
    "v1",
    "v22",
    "Chrome/120",
    "chrome",
    "tester",
    "a",
    "b",
    "x",
];
const REGEXES: &[&str] = &[
    ".*",
    "v[0-9]+",
    ".*canary.*",
    "[a-z]+",
    "(?i)chrome.*",
    "a|b",
    r"\\d+",
    r"\\w+",
    "v.",
    "tes.*r",
    // Characters counted: bytes that are not UTF-8 count one each.
    "a.{2}",
    ".{3}",
    "[^a-z0-9]+",
];
const URIS: &[&str] = &["/", "/api", "/api/v1", "/static", "/Api"];
pub const PATHS: &[&str] = &[
    "/",
    "/api",
    "/api/v1?v=1",
    "/API/v1",
    "/static/x.css",
    "/other?debug=1",
    "/api?v=canary&debug=0",
    "/static/../api/v1",
    "/%61pi/v1",
];
const SOURCE_LABELS: &[&str] = &[
    "{version: v2}",
    "{app: client}",
    "{track: canary}",
    "{version: v1, app: client}",
];

fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a str]) -> &'a str {
    from[rng.usize(..from.len())]
}

fn string_match(rng: &mut fastrand::Rng, values: &[&str]) -> String {
    match rng.u8(..12) {
        0..=3 => format!("{{exact: '{}'}}", pick(rng, values)),
        4..=6 => format!("{{prefix: '{}'}}", pick(rng, values)),
        // istiod's presence matches.
        7 | 8 => "{}".to_owned(),
        9 => "{exact: ''}".to_owned(),
        _ => format!("{{regex: '{}'}}", pick(rng, REGEXES)),
    }
}

fn match_entry(rng: &mut fastrand::Rng, mesh: bool) -> String {
    let mut fields = Vec::new();
    for _ in 0..rng.usize(1..4) {
        match rng.u8(..8) {
            0 | 1 => fields.push(format!(
                "headers: {{{}: {}}}",
                pick(rng, HEADERS),
                string_match(rng, VALUES)
            )),
            6 => fields.push(format!(
                "withoutHeaders: {{{}: {}}}",
                pick(rng, HEADERS),
                string_match(rng, VALUES)
            )),
            7 => fields.push("ignoreUriCase: true".to_owned()),
            2 => fields.push(format!("uri: {}", string_match(rng, URIS))),
            3 => fields.push(format!(
                "queryParams: {{{}: {}}}",
                pick(rng, &["v", "debug"]),
                string_match(rng, &["1", "0", "canary", "v1"])
            )),
            4 => fields.push(format!(
                "method: {{exact: {}}}",
                pick(rng, &["GET", "POST"])
            )),
            _ if mesh => fields.push(format!("sourceLabels: {}", pick(rng, SOURCE_LABELS))),
            _ => fields.push(format!(
                "authority: {}",
                string_match(rng, &["h1", "h2.example.com", "h"])
            )),
        }
    }
    fields.sort_by_key(|f| f.split(':').next().unwrap_or("").to_owned());
    fields.dedup_by_key(|f| f.split(':').next().unwrap_or("").to_owned());
    format!("{{{}}}", fields.join(", "))
}

fn destinations(rng: &mut fastrand::Rng, own: usize) -> String {
    let n = rng.usize(1..4);
    let mut weights: Vec<u32> = vec![0; n];
    let mut left = 100;
    for w in weights.iter_mut().take(n - 1) {
        *w = rng.u32(..=left);
        left -= *w;
    }
    weights[n - 1] = left;
    let mut out = String::new();
    for w in weights {
        let svc = if rng.bool() {
            own
        } else {
            rng.usize(..SERVICES)
        };
        let subset = match rng.u8(..8) {
            0 => String::new(),
            1 => ", subset: c".to_owned(),
            2..=4 => ", subset: a".to_owned(),
            _ => ", subset: b".to_owned(),
        };
        let weight = match (n, rng.u8(..10)) {
            (1, 0) => ", weight: 0".to_owned(),
            (1, _) => String::new(),
            _ => format!(", weight: {w}"),
        };
        let _ = write!(
            out,
            "\n    - {{destination: {{host: svc-{svc}{subset}}}{weight}}}"
        );
    }
    out
}

fn virtual_service(rng: &mut fastrand::Rng, i: usize, mesh: bool) -> String {
    let (name, hosts, gateways) = if mesh {
        (format!("vs-svc-{i}"), format!("[svc-{i}]"), String::new())
    } else {
        (
            format!("vs-h{i}"),
            format!("['h{i}.example.com']"),
            "\n  gateways: [istio-system/gw]".to_owned(),
        )
    };
    let mut http = String::new();
    for r in 0..rng.usize(1..5) {
        let _ = write!(http, "\n  - name: r{r}");
        if rng.u8(..5) != 0 {
            let entries: Vec<String> = (0..rng.usize(1..3))
                .map(|_| match_entry(rng, mesh))
                .collect();
            let _ = write!(http, "\n    match: [{}]", entries.join(", "));
        }
        let _ = write!(http, "\n    route:{}", destinations(rng, i));
    }
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: rnd}}\nspec:\n  hosts: {hosts}{gateways}\n  http:{http}\n"
    )
}

/// A Deployment of namespace `rnd` whose pods carry `labels` (a YAML flow
/// mapping), as a document of a multi-document file.
pub fn deployment(name: &str, labels: &str) -> String {
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: rnd}}\nspec:\n  selector: {{matchLabels: {labels}}}\n  template:\n    metadata: {{labels: {labels}}}\n    spec: {{containers: [{{name: app, image: weather/forecast:v1}}]}}\n"
    )
}

/// The manifests of batch `seed`, as one file's text.
pub fn manifests(seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut y = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n",
    );
    for i in 0..SERVICES {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: rnd}}\nspec: {{selector: {{app: svc-{i}}}, ports: [{{name: http, port: 8080}}]}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc-{i}, namespace: rnd}}\nspec:\n  host: svc-{i}\n  subsets: [{{name: a, labels: {{version: a}}}}, {{name: b, labels: {{version: b}}}}]\n"
        );
        for v in ["a", "b"] {
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
        y.push_str(&virtual_service(&mut rng, i, true));
        y.push_str(&virtual_service(&mut rng, i, false));
    }
    y
}

/// Requests of batch `seed` from `from` (`ingress`, `client-1`, `client-2`).
pub fn corpus(from: &str, n: usize, seed: u64) -> Vec<super::Ask> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    (0..n)
        .map(|_| {
            let (listener, authority) = if from == "ingress" {
                (
                    "http.80".to_owned(),
                    format!("h{}.example.com", rng.usize(..SERVICES + 1)),
                )
            } else {
                (
                    "8080".to_owned(),
                    format!("svc-{}:8080", rng.usize(..SERVICES)),
                )
            };
            let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
            for _ in 0..rng.usize(..4) {
                let name = pick(&mut rng, HEADERS);
                // A name may come again: a header sent several times.
                let value = pick(&mut rng, VALUES);
                let value = if rng.bool() {
                    format!("{value}{}", pick(&mut rng, VALUES))
                } else {
                    value.to_owned()
                };
                let mut value = value.into_bytes();
                // Now and then bytes that are not UTF-8.
                if rng.u8(..12) == 0 {
                    value.extend_from_slice(
                        super::corpus::NOT_UTF8[rng.usize(..super::corpus::NOT_UTF8.len())],
                    );
                }
                headers.push((name.to_owned(), value));
            }
            super::Ask {
                from: from.to_owned(),
                listener,
                authority,
                path: pick(&mut rng, PATHS).to_owned(),
                method: pick(&mut rng, &["GET", "POST", "PUT"]),
                headers,
                roll: rng.u32(..100),
            }
        })
        .collect()
}
