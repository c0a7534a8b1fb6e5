//! The train's steps and the VirtualServices each one applies, generated from
//! the spec and the manifests in force (docs/architecture.md, "The release
//! train"). The lane is decided once, at the gateway; each next service of the
//! train keys on its caller's version (`sourceLabels`), so a request that
//! entered the new lane stays on it.

use mesh::{Manifests, hosts::resolve, model::VirtualService};
use serde_json::{Value, json};

pub use super::phase::Phase;
use super::spec::Train;

/// The analysed steps in order, then promotion.
pub fn phases(train: &Train) -> Vec<Phase> {
    let mut out: Vec<Phase> = (1..=train.iterations)
        .map(|iteration| Phase::AB { iteration })
        .collect();
    out.extend(
        train
            .weights
            .iter()
            .map(|&weight| Phase::Weighted { weight }),
    );
    out.push(Phase::Promote);
    out
}

/// A VirtualService of the manifests the train's service is routed by: at the
/// gateway for the first, in the mesh for the others. Its name and hosts are
/// kept, so applying the generated one replaces it.
fn existing<'a>(
    m: &'a Manifests,
    ns: &str,
    service: &str,
    gateway: Option<&str>,
) -> Option<&'a VirtualService> {
    let fqdn = resolve(service, ns);
    m.virtual_services.iter().find(|vs| {
        let vns = vs.metadata.ns();
        let bound = match gateway {
            Some(gw) => vs.spec.gateways.iter().any(|g| {
                let g = if g.contains('/') {
                    g.clone()
                } else {
                    format!("{vns}/{g}")
                };
                g == gw
            }),
            None => vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh"),
        };
        let routes_to = vs.spec.http.iter().any(|r| {
            r.route
                .iter()
                .any(|d| resolve(&d.destination.host, vns) == fqdn)
        });
        let hosts_it = vs.spec.hosts.iter().any(|h| resolve(h, vns) == fqdn);
        vns == ns && bound && (routes_to || hosts_it)
    })
}

fn destination(host: &str, subset: &str, weight: u32) -> Value {
    json!({"destination": {"host": host, "subset": subset}, "weight": weight})
}

/// The VirtualServices of one step, as objects.
pub fn virtual_services(train: &Train, m: &Manifests, phase: Phase) -> Vec<Value> {
    let ns = train.namespace();
    let gateway = &train.spec.spec.gateway;
    let (old, new) = phase.weights();
    let mut out = Vec::new();
    for (i, s) in train.services().iter().enumerate() {
        let gw = (i == 0).then_some(gateway.as_str());
        let found = existing(m, ns, &s.name, gw);
        let name = found.map_or_else(|| format!("{}-route", s.name), |v| v.metadata.name.clone());
        let hosts: Vec<String> = match found {
            Some(v) => v.spec.hosts.clone(),
            None if i == 0 => vec!["*".into()],
            None => vec![s.name.clone()],
        };
        let all = |o: u32, n: u32| {
            json!({
                "name": format!("train-{}", if n == 100 { &s.to } else { &s.from }),
                "route": [destination(&s.name, &s.from, o), destination(&s.name, &s.to, n)],
            })
        };
        let http: Vec<Value> = match (i, phase) {
            (_, Phase::Promote | Phase::Rollback) => vec![all(old, new)],
            // The gateway decides the lane.
            (0, Phase::AB { .. }) => vec![
                json!({
                    "name": "train-match",
                    "match": train.matches,
                    "route": [destination(&s.name, &s.to, 100)],
                }),
                all(100, 0),
            ],
            (0, Phase::Weighted { .. }) => vec![json!({
                "name": "train-split",
                "route": [destination(&s.name, &s.from, old), destination(&s.name, &s.to, new)],
            })],
            // Downstream, the lane follows the caller's version.
            (_, _) => {
                let caller = &train.services()[i - 1];
                vec![
                    json!({
                        "name": "train-lane",
                        "match": [{"sourceLabels": {"app": caller.name, "version": caller.to}, "sourceNamespace": ns}],
                        "route": [destination(&s.name, &s.to, 100)],
                    }),
                    all(100, 0),
                ]
            }
        };
        let mut spec = json!({"hosts": hosts, "http": http});
        if i == 0 {
            spec["gateways"] = json!([gateway]);
        }
        // Seen by whom the VirtualService it replaces was (istio/stages/).
        if let Some(export) = found.and_then(|v| v.spec.export_to.as_ref()) {
            spec["exportTo"] = json!(export);
        }
        out.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "weather-release", "weather.example/train": train.name()},
            },
            "spec": spec,
        }));
    }
    out
}

/// The step's VirtualServices as the YAML `kubectl apply -f -` reads.
pub fn yaml(train: &Train, m: &Manifests, phase: Phase) -> String {
    let mut out = format!("# {}: {phase}\n", train.name());
    let objects = if super::routes::applies(train, m) {
        super::routes::http_routes(train, m, phase)
    } else {
        virtual_services(train, m, phase)
    };
    for (i, vs) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        write_yaml(&mut out, vs, 0, false);
    }
    out
}

/// Block-style YAML of a JSON value; strings double-quoted (JSON strings are
/// YAML strings), so nothing is read back as another type.
fn write_yaml(out: &mut String, v: &Value, indent: usize, in_list: bool) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (i, (k, val)) in map.iter().enumerate() {
                let lead = if in_list && i == 0 {
                    String::new()
                } else {
                    pad.clone()
                };
                match val {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{lead}{k}:\n"));
                        write_yaml(out, val, indent + 2, false);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{lead}{k}:\n"));
                        write_yaml(out, val, indent + 2, false);
                    }
                    scalar => out.push_str(&format!("{lead}{k}: {}\n", inline(scalar))),
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&format!("{pad}- "));
                match item {
                    Value::Object(m) if !m.is_empty() => write_yaml(out, item, indent + 2, true),
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        write_yaml(out, item, indent + 2, false);
                    }
                    scalar => out.push_str(&format!("{}\n", inline(scalar))),
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", inline(scalar))),
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}
