//! `weather check`: offline analysis of manifests, in the spirit of `istioctl
//! analyze` (its message format and, where one fits, its codes), plus the checks
//! this sample's release relies on. Each message names the object and the field.

use std::{collections::BTreeMap, fmt};

use crate::{
    hosts::fqdn,
    load::Manifests,
    matching::full_match_regex,
    model::{Labels, Meta, StringMatch},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub level: Level,
    pub code: &'static str,
    /// `VirtualService forecast-route.weather`, as istioctl names resources.
    pub resource: String,
    /// Where in the object, e.g. `spec.http[0].route[0].destination.subset`.
    pub field: String,
    pub text: String,
    /// File and document, when known.
    pub source: Option<String>,
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "Error",
            Level::Warning => "Warning",
        };
        write!(
            f,
            "{level} [{}] ({}) {}: {}",
            self.code, self.resource, self.field, self.text
        )?;
        if let Some(s) = &self.source {
            write!(f, " [{s}]")?;
        }
        Ok(())
    }
}

// Codes: istioctl's where the meaning is the same, WEA for this sample's own.
pub const REFERENCED_RESOURCE_NOT_FOUND: &str = "IST0101";
pub const SCHEMA_VALIDATION_ERROR: &str = "IST0106";
pub const CONFLICTING_MESH_VIRTUAL_SERVICE_HOSTS: &str = "IST0109";
pub const PORT_NAME_NOT_UNDER_NAMING_CONVENTION: &str = "IST0118";
pub const NO_MATCHING_WORKLOADS: &str = "IST0127";
pub const NO_CATCH_ALL: &str = "WEA0001";
pub const SELECTOR_MISMATCH: &str = "WEA0002";
pub const MISSING_APP_VERSION_LABELS: &str = "WEA0003";
pub const WEIGHTS_NOT_100: &str = "WEA0004";
pub const NOT_MODELLED: &str = "WEA0005";

fn resource(kind: &str, meta: &Meta) -> String {
    format!("{kind} {}.{}", meta.name, meta.ns())
}

fn includes(labels: &Labels, of: &Labels) -> bool {
    of.iter().all(|(k, v)| labels.get(k) == Some(v))
}

struct Out<'m> {
    m: &'m Manifests,
    messages: Vec<Message>,
}

impl Out<'_> {
    fn push(
        &mut self,
        level: Level,
        code: &'static str,
        kind: &str,
        meta: &Meta,
        field: impl Into<String>,
        text: impl Into<String>,
    ) {
        let source = self.m.source_of(kind, meta).map(|s| s.to_string());
        self.messages.push(Message {
            level,
            code,
            resource: resource(kind, meta),
            field: field.into(),
            text: text.into(),
            source,
        });
    }
}

/// Every finding, errors first.
pub fn analyze(m: &Manifests) -> Vec<Message> {
    let mut out = Out {
        m,
        messages: Vec::new(),
    };
    workloads(&mut out);
    services(&mut out);
    virtual_services(&mut out);
    destination_rules(&mut out);
    for w in &m.warnings {
        // The loader's own words already name file, object and field.
        out.messages.push(Message {
            level: Level::Warning,
            code: NOT_MODELLED,
            resource: "manifests".into(),
            field: "-".into(),
            text: w.clone(),
            source: None,
        });
    }
    out.messages.sort_by_key(|msg| msg.level);
    out.messages
}

fn workloads(out: &mut Out) {
    for d in &out.m.deployments {
        let pod = &d.spec.template.metadata.labels;
        if d.spec.selector.match_labels.is_empty() || !includes(pod, &d.spec.selector.match_labels)
        {
            let sel: Vec<String> = d
                .spec
                .selector
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push(
                Level::Error,
                SELECTOR_MISMATCH,
                "Deployment",
                &d.metadata,
                "spec.selector.matchLabels",
                format!(
                    "the selector ({}) does not select the Deployment's own pod labels",
                    sel.join(", ")
                ),
            );
        }
        for label in ["app", "version"] {
            if !pod.contains_key(label) {
                out.push(
                    Level::Error,
                    MISSING_APP_VERSION_LABELS,
                    "Deployment",
                    &d.metadata,
                    "spec.template.metadata.labels",
                    format!("pods have no `{label}` label: Kiali's versioned graph and the DestinationRule subsets need both `app` and `version`"),
                );
            }
        }
    }
}

fn services(out: &mut Out) {
    for s in &out.m.services {
        for (i, p) in s.spec.ports.iter().enumerate() {
            let named_http = p.name.as_deref().is_some_and(|n| {
                n == "http" || n.starts_with("http-") || n == "http2" || n.starts_with("http2-")
            });
            let app_http = p
                .app_protocol
                .as_deref()
                .is_some_and(|a| a == "http" || a == "http2");
            if !named_http && !app_http {
                out.push(
                    Level::Error,
                    PORT_NAME_NOT_UNDER_NAMING_CONVENTION,
                    "Service",
                    &s.metadata,
                    format!("spec.ports[{i}]"),
                    format!(
                        "port {} is {}: name it `http` (or `http-…`) or set `appProtocol: http`, so Istio and Kiali treat it as HTTP",
                        p.port,
                        match &p.name {
                            Some(n) => format!("named {n:?}"),
                            None => "unnamed".to_owned(),
                        }
                    ),
                );
            }
        }
    }
}

fn service_exists(m: &Manifests, host: &str, ns: &str) -> bool {
    let name = fqdn(host, ns);
    m.services
        .iter()
        .any(|s| fqdn(&s.metadata.name, s.metadata.ns()) == name)
}

fn virtual_services(out: &mut Out) {
    let m = out.m;
    let gateways: Vec<String> = m
        .gateways
        .iter()
        .map(|g| format!("{}/{}", g.metadata.ns(), g.metadata.name))
        .collect();
    // Hosts bound to the mesh, to find two VirtualServices for one host.
    let mut mesh_hosts: BTreeMap<String, Vec<&Meta>> = BTreeMap::new();
    for vs in &m.virtual_services {
        let ns = vs.metadata.ns();
        let meta = &vs.metadata;
        let refs = |gs: &[String]| -> Vec<String> {
            gs.iter()
                .map(|g| {
                    if g == "mesh" || g.contains('/') {
                        g.clone()
                    } else {
                        format!("{ns}/{g}")
                    }
                })
                .collect()
        };
        let vs_gateways = refs(&vs.spec.gateways);
        for (i, g) in vs_gateways.iter().enumerate() {
            if g != "mesh" && !gateways.contains(g) {
                out.push(
                    Level::Error,
                    REFERENCED_RESOURCE_NOT_FOUND,
                    "VirtualService",
                    meta,
                    format!("spec.gateways[{i}]"),
                    format!("Referenced gateway not found: {g:?}"),
                );
            }
        }
        if vs_gateways.is_empty() || vs_gateways.iter().any(|g| g == "mesh") {
            for h in &vs.spec.hosts {
                mesh_hosts.entry(fqdn(h, ns)).or_default().push(meta);
            }
        }
        for (i, r) in vs.spec.http.iter().enumerate() {
            for (j, hm) in r.matches.iter().enumerate() {
                let at = format!("spec.http[{i}].match[{j}]");
                let mut regexes: Vec<(String, &StringMatch)> = Vec::new();
                for (f, sm) in [
                    ("uri", &hm.uri),
                    ("scheme", &hm.scheme),
                    ("method", &hm.method),
                    ("authority", &hm.authority),
                ] {
                    if let Some(sm) = sm {
                        regexes.push((format!("{at}.{f}"), sm));
                    }
                }
                for (f, map) in [
                    ("headers", &hm.headers),
                    ("withoutHeaders", &hm.without_headers),
                    ("queryParams", &hm.query_params),
                ] {
                    for (k, sm) in map {
                        regexes.push((format!("{at}.{f}.{k}"), sm));
                    }
                }
                for (field, sm) in regexes {
                    if let StringMatch::Regex(r) = sm
                        && let Err(e) = full_match_regex(r)
                    {
                        out.push(
                            Level::Error,
                            SCHEMA_VALIDATION_ERROR,
                            "VirtualService",
                            meta,
                            format!("{field}.regex"),
                            format!("{e}: Envoy (RE2) refuses it"),
                        );
                    }
                }
                for (k, g) in refs(&hm.gateways).iter().enumerate() {
                    if g != "mesh" && !gateways.contains(g) {
                        out.push(
                            Level::Error,
                            REFERENCED_RESOURCE_NOT_FOUND,
                            "VirtualService",
                            meta,
                            format!("{at}.gateways[{k}]"),
                            format!("Referenced gateway not found: {g:?}"),
                        );
                    }
                }
            }
            for (k, d) in r.route.iter().enumerate() {
                let at = format!("spec.http[{i}].route[{k}].destination");
                let host = &d.destination.host;
                if !service_exists(m, host, ns) {
                    out.push(
                        Level::Error,
                        REFERENCED_RESOURCE_NOT_FOUND,
                        "VirtualService",
                        meta,
                        format!("{at}.host"),
                        format!("Referenced host not found: {host:?} (no Service of that name)"),
                    );
                    continue;
                }
                let Some(subset) = &d.destination.subset else {
                    continue;
                };
                let defined = m.destination_rules.iter().any(|dr| {
                    fqdn(&dr.spec.host, dr.metadata.ns()) == fqdn(host, ns)
                        && dr.spec.subsets.iter().any(|s| &s.name == subset)
                });
                if !defined {
                    out.push(
                        Level::Error,
                        REFERENCED_RESOURCE_NOT_FOUND,
                        "VirtualService",
                        meta,
                        format!("{at}.subset"),
                        format!("Referenced host+subset in destinationrule not found: \"{host}+{subset}\": Envoy answers 503 (NC)"),
                    );
                }
            }
            if r.route.len() > 1 {
                let total: i64 = r.route.iter().map(|d| d.weight.unwrap_or(0)).sum();
                if total != 100 {
                    out.push(
                        Level::Error,
                        WEIGHTS_NOT_100,
                        "VirtualService",
                        meta,
                        format!("spec.http[{i}].route"),
                        format!("weights add up to {total}, not 100"),
                    );
                }
            }
        }
        match vs.spec.http.last() {
            None => out.push(Level::Error, NO_CATCH_ALL, "VirtualService", meta, "spec.http", "no http routes: every request to its hosts gets 404 (NR)"),
            Some(last) if !last.matches.is_empty() => out.push(
                Level::Error,
                NO_CATCH_ALL,
                "VirtualService",
                meta,
                format!("spec.http[{}].match", vs.spec.http.len() - 1),
                "the last route has a match, so there is no catch-all: a request no rule matches gets 404 (NR); end with a route without `match`",
            ),
            Some(_) => {}
        }
    }
    for (host, owners) in mesh_hosts {
        if owners.len() > 1 && !host.contains('*') {
            let names: Vec<String> = owners
                .iter()
                .map(|o| format!("{}.{}", o.name, o.ns()))
                .collect();
            for o in &owners {
                out.push(
                    Level::Error,
                    CONFLICTING_MESH_VIRTUAL_SERVICE_HOSTS,
                    "VirtualService",
                    o,
                    "spec.hosts",
                    format!("The VirtualServices {} associated with mesh define the same host or subset of host {host:?}: only one applies", names.join(",")),
                );
            }
        }
    }
}

fn destination_rules(out: &mut Out) {
    let m = out.m;
    for dr in &m.destination_rules {
        let ns = dr.metadata.ns();
        let host = fqdn(&dr.spec.host, ns);
        let Some(svc) = m
            .services
            .iter()
            .find(|s| fqdn(&s.metadata.name, s.metadata.ns()) == host)
        else {
            if !dr.spec.host.contains('*') {
                out.push(
                    Level::Error,
                    REFERENCED_RESOURCE_NOT_FOUND,
                    "DestinationRule",
                    &dr.metadata,
                    "spec.host",
                    format!(
                        "Referenced host not found: {:?} (no Service of that name)",
                        dr.spec.host
                    ),
                );
            }
            continue;
        };
        // Only meaningful when the workloads are part of the manifests analysed.
        if m.deployments.is_empty() {
            continue;
        }
        for (i, s) in dr.spec.subsets.iter().enumerate() {
            let selected = m.deployments.iter().any(|d| {
                let pod = &d.spec.template.metadata.labels;
                d.metadata.ns() == svc.metadata.ns()
                    && !svc.spec.selector.is_empty()
                    && includes(pod, &svc.spec.selector)
                    && includes(pod, &s.labels)
            });
            if !selected {
                let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push(
                    Level::Error,
                    NO_MATCHING_WORKLOADS,
                    "DestinationRule",
                    &dr.metadata,
                    format!("spec.subsets[{i}]"),
                    format!("subset {} ({}) selects no pods of Service {}: traffic routed to it gets 503 (UH)", s.name, l.join(", "), svc.metadata.name),
                );
            }
        }
    }
}
