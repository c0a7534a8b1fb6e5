//! Authorization against Istio itself: istiod translates the
//! AuthorizationPolicies into each sidecar's inbound RBAC filters
//! (conformance/authz_test.go), a real Envoy serves them over mutual TLS, and
//! a corpus of requests goes to each sidecar with the client certificate of a
//! caller's identity (or none). Envoy's answer, 200 or 403, must be the
//! model's decision for every request. The policies: the shipped ones
//! (istio/security/ with the multiservice and multiservice-jwt stages) and
//! seeded random ones over every field the model reads.
//!
//! RequestAuthentications are left out on both sides: istiod's JWT claims reach
//! RBAC through Istio's own `istio_authn` filter, which only Istio's build of
//! Envoy has (docs/architecture.md, "Security the model enforces").

use std::{fmt::Write, path::PathBuf};

use mesh::{
    Manifests, Mesh,
    authz::{self, Subject},
    terms::HeaderLookup,
};
use serde_json::{Value, json};

use super::{envoy::envoy_binary, go_job_with};
use crate::{root, stage_paths};

/// Callers: `NS/SA`, or `""` for a client without certificate.
const CALLERS: &[&str] = &[
    "weather/frontend",
    "weather/forecast",
    "weather/recommendation",
    "istio-system/istio-ingressgateway-service-account",
    "other/frontend",
    "",
];
const METHODS: &[&str] = &["GET", "POST", "HEAD", "DELETE"];
const PATHS: &[&str] = &[
    "/forecast?city=paris",
    "/.well-known/jwks.json",
    "/metrics",
    "/api/v1/x",
    "/a/../metrics",
    "/data.json/raw",
    "/API/v1",
];
const HOSTS: &[&str] = &[
    "forecast:3002",
    "Frontend",
    "weather.example.com",
    "weather.example.com.evil",
];

struct Ask {
    from: &'static str,
    to: String,
    method: &'static str,
    path: &'static str,
    host: &'static str,
    probe: bool,
}

fn asks(mesh: &Mesh) -> Vec<Ask> {
    let mut out = Vec::new();
    let mut n = 0usize;
    for w in &mesh.workloads {
        for from in CALLERS {
            for method in METHODS {
                for path in PATHS {
                    n += 1;
                    out.push(Ask {
                        from,
                        to: w.name.clone(),
                        method,
                        path,
                        host: HOSTS[n % HOSTS.len()],
                        probe: n.is_multiple_of(3),
                    });
                }
            }
        }
    }
    out
}

struct Probe(bool);

impl HeaderLookup for Probe {
    fn header(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        (self.0 && name == "x-probe").then_some(std::borrow::Cow::Borrowed("1"))
    }
}

/// What the model answers: 200 or 403.
fn model_says(mesh: &Mesh, a: &Ask) -> (u16, String) {
    let w = mesh.workloads.iter().find(|w| w.name == a.to).unwrap();
    let peer = (!a.from.is_empty()).then(|| {
        let (ns, sa) = a.from.split_once('/').unwrap();
        mesh::terms::principal(ns, sa)
    });
    let full = mesh::path::normalize(a.path).expect("the corpus sends paths Envoy takes");
    let path = full.split('?').next().unwrap_or("");
    let headers = Probe(a.probe);
    let subject = Subject {
        peer: peer.as_deref(),
        jwt: None,
        host: a.host,
        port: w.port.unwrap_or(0),
        method: a.method,
        path,
        headers: &headers,
    };
    let d = authz::decide(
        mesh.security
            .policies
            .iter()
            .filter(|p| p.applies_to(&w.namespace, &w.labels)),
        &subject,
    );
    (if d.allowed() { 200 } else { 403 }, d.describe())
}

/// Loads `paths` without RequestAuthentications, as the oracle does.
fn without_jwt(paths: &[PathBuf]) -> Mesh {
    let mut m: Manifests = mesh::load_paths(paths).unwrap_or_else(|e| panic!("{e:?}"));
    m.request_authentications.clear();
    Mesh::compile(&m)
}

/// Runs the corpus through Envoy and the model: how many requests, how many
/// Envoy refused, and the disagreements.
fn differences(paths: &[PathBuf], name: &str) -> (usize, usize, Vec<String>) {
    let mesh = without_jwt(paths);
    let asks = asks(&mesh);
    let job_asks: Vec<Value> = asks
        .iter()
        .map(|a| {
            let mut headers = json!({});
            if a.probe {
                headers["x-probe"] = json!("1");
            }
            json!({"from": a.from, "to": a.to, "method": a.method, "path": a.path,
                   "host": a.host, "headers": headers})
        })
        .collect();
    let export = go_job_with(
        "TestAuthz",
        "WEATHER_AUTHZ_JOB",
        paths,
        name,
        json!({"envoy": envoy_binary(), "asks": job_asks}),
    );
    let statuses = export["statuses"].as_array().expect("statuses");
    assert_eq!(statuses.len(), asks.len());
    let refused = statuses.iter().filter(|s| s.as_u64() == Some(403)).count();
    let mut out = Vec::new();
    for (a, s) in asks.iter().zip(statuses) {
        let envoy = s.as_u64().unwrap() as u16;
        let (model, why) = model_says(&mesh, a);
        if envoy != model {
            out.push(format!(
                "{} {}{} from {:?} to {} (x-probe: {}): Envoy {envoy}, model {model} ({why})",
                a.method, a.host, a.path, a.from, a.to, a.probe
            ));
        }
    }
    (asks.len(), refused, out)
}

#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn the_shipped_policies_decide_as_istiod_and_envoy_do() {
    for stage in ["multiservice", "multiservice-jwt"] {
        let paths = stage_paths(stage);
        assert!(paths.iter().any(|p| p.ends_with("istio/security")));
        let (n, refused, diffs) = differences(&paths, &format!("authz-{stage}"));
        // Envoy let some through and refused others: its filters are on.
        assert!(
            refused > 0 && refused < n,
            "{stage}: Envoy refused {refused} of {n}"
        );
        assert!(
            diffs.is_empty(),
            "{stage}: {} of {n} requests decided differently:\n{}",
            diffs.len(),
            diffs.join("\n")
        );
    }
}

/// Seeded random AuthorizationPolicies over every field the model reads.
fn random_policies(seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    fn pick(rng: &mut fastrand::Rng, pool: &[&'static str], max: usize) -> Vec<&'static str> {
        let n = rng.usize(1..=max);
        (0..n).map(|_| pool[rng.usize(..pool.len())]).collect()
    }
    const PRINCIPALS: &[&str] = &[
        "cluster.local/ns/weather/sa/frontend",
        "cluster.local/ns/weather/sa/forecast",
        "*/sa/recommendation",
        "cluster.local/ns/istio-system/*",
        "*",
    ];
    const NAMESPACES: &[&str] = &["weather", "istio-system", "weath*", "*", "other"];
    const SERVICE_ACCOUNTS: &[&str] = &[
        "frontend",
        "weather/forecast",
        "istio-system/istio-ingressgateway-service-account",
    ];
    const METHODS_P: &[&str] = &["GET", "POST", "HEAD", "G*", "*"];
    const PATHS_P: &[&str] = &[
        "/forecast",
        "/metrics",
        "/api/*",
        "*.json",
        "/.well-known/*",
        "*",
    ];
    const HOSTS_P: &[&str] = &[
        "forecast:3002",
        "frontend",
        "*.example.com",
        "forecast*",
        "*",
    ];
    const PORTS_P: &[&str] = &["3000", "3002", "3005"];
    const APPS: &[&str] = &["frontend", "forecast", "recommendation"];
    let mut yaml = String::new();
    for i in 0..10 {
        // CUSTOM names an authorizer the mesh does not have: istiod denies
        // what its rules match. Its rules may not name identities.
        let action = match rng.u8(..6) {
            0 => "CUSTOM",
            1..=2 => "DENY",
            _ => "ALLOW",
        };
        let custom = action == "CUSTOM";
        let _ = write!(
            yaml,
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: random-{i}, namespace: weather}}\nspec:\n  action: {action}\n"
        );
        if custom {
            yaml.push_str("  provider: {name: ext-authz}\n");
        }
        if rng.u8(..3) > 0 {
            let app = APPS[rng.usize(..APPS.len())];
            let _ = writeln!(yaml, "  selector: {{matchLabels: {{app: {app}}}}}");
        }
        // No rules: allow nothing (istiod refuses a DENY without rules).
        if action == "ALLOW" && rng.u8(..8) == 0 {
            continue;
        }
        yaml.push_str("  rules:\n");
        for _ in 0..rng.usize(1..=2) {
            yaml.push_str("    - {}\n");
            let rule_at = yaml.len() - 3;
            let mut parts = Vec::new();
            if !custom && rng.bool() {
                let (field, pool): (&str, &[&'static str]) = match rng.u8(..6) {
                    0 => ("principals", PRINCIPALS),
                    1 => ("notPrincipals", PRINCIPALS),
                    2 => ("namespaces", NAMESPACES),
                    3 => ("notNamespaces", NAMESPACES),
                    4 => ("serviceAccounts", SERVICE_ACCOUNTS),
                    _ => ("notServiceAccounts", SERVICE_ACCOUNTS),
                };
                parts.push(format!(
                    "from: [{{source: {{{field}: {:?}}}}}]",
                    pick(&mut rng, pool, 2)
                ));
            }
            if rng.bool() {
                let (field, pool): (&str, &[&'static str]) = match rng.u8(..7) {
                    0 => ("methods", METHODS_P),
                    1 => ("notMethods", METHODS_P),
                    2 => ("paths", PATHS_P),
                    3 => ("notPaths", PATHS_P),
                    4 => ("hosts", HOSTS_P),
                    5 => ("notHosts", HOSTS_P),
                    _ => ("ports", PORTS_P),
                };
                parts.push(format!(
                    "to: [{{operation: {{{field}: {:?}}}}}]",
                    pick(&mut rng, pool, 2)
                ));
            }
            if rng.u8(..3) == 0 {
                let values = if rng.bool() { "values" } else { "notValues" };
                let (key, v) = match if custom { 0 } else { rng.u8(..3) } {
                    0 => ("request.headers[x-probe]", "1"),
                    1 => ("source.namespace", "weather"),
                    _ => ("source.principal", "cluster.local/ns/weather/sa/frontend"),
                };
                parts.push(format!("when: [{{key: '{key}', {values}: [{v:?}]}}]"));
            }
            let rule = format!("{{{}}}", parts.join(", "));
            yaml.replace_range(rule_at..rule_at + 2, &rule);
        }
    }
    yaml
}

/// Policies that put each kind of value (exact, `prefix*`, `*suffix`, `*`)
/// of each field in front of requests that tell them apart.
const FEATURES: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-json, namespace: weather}
spec:
  selector: {matchLabels: {app: forecast}}
  action: DENY
  rules: [{to: [{operation: {paths: ['*.json', '/api/*']}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: example-hosts, namespace: weather}
spec:
  selector: {matchLabels: {app: frontend}}
  rules:
    - to: [{operation: {hosts: ['*.example.com', 'front*'], notMethods: [DELETE]}}]
    - from: [{source: {principals: ['*/sa/forecast'], notNamespaces: [other]}}]
      when: [{key: 'request.headers[x-probe]', values: ['*']}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: recommendation, namespace: weather}
spec:
  selector: {matchLabels: {app: recommendation}}
  rules:
    - from: [{source: {serviceAccounts: [forecast, istio-system/istio-ingressgateway-service-account]}}]
      to: [{operation: {ports: ['3005'], methods: ['G*', HEAD]}}]
    - from: [{source: {notPrincipals: ['*']}}]
      to: [{operation: {notPaths: ['/metrics']}}]
";

#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn random_policies_decide_as_istiod_and_envoy_do() {
    let dir = crate::scratch("authz");
    let mut total = (0, 0, Vec::new());
    let mut actions = std::collections::BTreeSet::new();
    for seed in 0..=4u64 {
        let file = dir.join(format!("random-{seed}.yaml"));
        let policies = if seed == 0 {
            FEATURES.to_owned()
        } else {
            random_policies(seed)
        };
        std::fs::write(&file, policies).unwrap();
        let paths = vec![
            root().join("k8s"),
            root().join("istio/base"),
            root().join("istio/stages/multiservice"),
            file.clone(),
        ];
        // The model must read every random policy whole: nothing skipped.
        let mesh = without_jwt(&paths);
        assert!(mesh.security.policies.len() >= 3);
        for p in &mesh.security.policies {
            assert!(p.skipped.is_empty(), "{}: {:?}", p.name, p.skipped);
            actions.insert(format!("{:?}", p.action));
        }
        let (n, refused, diffs) = differences(&paths, &format!("authz-random-{seed}"));
        total.0 += n;
        total.1 += refused;
        total
            .2
            .extend(diffs.into_iter().map(|d| format!("seed {seed}: {d}")));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        total.1 > 0 && total.1 < total.0,
        "Envoy refused {} of {}",
        total.1,
        total.0
    );
    assert!(
        total.2.is_empty(),
        "{} of {} requests decided differently:\n{}",
        total.2.len(),
        total.0,
        total.2.join("\n")
    );
}
