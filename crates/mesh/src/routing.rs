//! The routing model: the manifests compiled into a table (regexes compiled,
//! hosts, subsets and endpoints resolved, once per applied stage), and the
//! decision Istio's Envoys would take for one request.
//!
//! What it reproduces (DESIGN.md, "Routing semantics"):
//! - a VirtualService applies to its `hosts`; no `gateways` means `mesh`; a list
//!   without `mesh` binds it to those gateways only; a match's own `gateways`
//!   overrides the VirtualService's;
//! - `http` rules are tried in order, the first whose `match` holds wins; match
//!   entries are ORed, the fields of one entry ANDed; no `match` always holds;
//! - header, uri, scheme, method, authority and query matches: exact, prefix, or
//!   a regex that must match the whole value; header names are case-insensitive;
//! - `sourceLabels` holds when the caller's pod labels include every listed one,
//!   and only for sidecar (mesh) traffic, never at the gateway;
//! - weights (one destination alone takes 100); a subset resolves through the
//!   host's DestinationRule to pod labels, on top of the Service's selector;
//! - a host without a VirtualService is balanced over all its endpoints;
//! - no rule matches: 404 (Envoy `NR`); subset not defined: 503 (`NC`); subset
//!   without pods: 503 (`UH`).

use std::{borrow::Cow, collections::HashMap};

use crate::{
    hosts::{fqdn, host_matches, split_authority},
    load::Manifests,
    matching::Matcher,
    model::{Labels, StringMatch},
};

/// The labels of Istio's ingress gateway, which `--from ingress`
/// stands for (the demo profile's `istio-ingressgateway`).
pub fn ingress_labels() -> Labels {
    Labels::from([
        ("app".to_owned(), "istio-ingressgateway".to_owned()),
        ("istio".to_owned(), "ingressgateway".to_owned()),
    ])
}
/// The port the ingress listens on, as the Gateway's server states it.
pub const INGRESS_PORT: u16 = 80;

/// Who sends the request.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    /// Istio's ingress gateway: routes bound to Gateways apply.
    Ingress,
    /// A workload's sidecar: routes bound to `mesh` apply.
    Workload {
        namespace: &'a str,
        labels: &'a Labels,
    },
}

/// Request headers, looked up by lowercase name. Several values of one header
/// are joined with "," as Envoy does before matching.
pub trait HeaderLookup {
    fn header(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// Joins several values of one header with ",", as Envoy does before matching;
/// one value is borrowed as is.
pub fn join_values<'a>(mut values: impl Iterator<Item = &'a str>) -> Option<Cow<'a, str>> {
    let first = values.next()?;
    match values.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = format!("{first},{second}");
            for v in values {
                joined.push(',');
                joined.push_str(v);
            }
            Some(Cow::Owned(joined))
        }
    }
}

impl HeaderLookup for [(String, String)] {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        join_values(
            self.iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
        )
    }
}

/// One HTTP request, as routing sees it.
pub struct Request<'a, H: HeaderLookup + ?Sized> {
    /// `Host` / `:authority`, e.g. `forecast:3002`.
    pub authority: &'a str,
    /// Path and query, e.g. `/forecast?city=beijing`.
    pub path: &'a str,
    pub method: &'a str,
    pub scheme: &'a str,
    pub headers: &'a H,
}

/// A workload (Deployment) and its pods' labels.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub labels: Labels,
    pub image: String,
}

#[derive(Clone, Debug)]
pub struct ServiceInfo {
    pub name: String,
    pub namespace: String,
    pub fqdn: String,
    pub selector: Labels,
    pub ports: Vec<u16>,
}

/// Why a destination cannot take traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The host is not a Service: Envoy has no cluster (503 `NC`).
    UnknownHost,
    /// No DestinationRule defines the subset: no cluster (503 `NC`).
    UnknownSubset,
    /// The subset selects no pods (503 `UH`).
    NoEndpoints,
}

impl Problem {
    pub fn flag(&self) -> &'static str {
        match self {
            Problem::UnknownHost | Problem::UnknownSubset => "NC",
            Problem::NoEndpoints => "UH",
        }
    }
}

/// A destination of a route, resolved when the table is built.
#[derive(Clone, Debug)]
pub struct Target {
    /// The host as the route names it.
    pub host: String,
    pub service: Option<usize>,
    pub subset: Option<String>,
    /// The weight as configured (100 for a lone destination).
    pub weight: u32,
    /// Indices into [`Mesh::workloads`].
    pub endpoints: Vec<usize>,
    pub problem: Option<Problem>,
}

/// Which rule decided: `forecast-route http[0]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub virtual_service: String,
    pub namespace: String,
    pub index: usize,
    pub name: Option<String>,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} http[{}]", self.virtual_service, self.index)
    }
}

/// The outcome for one request.
#[derive(Clone, Copy, Debug)]
pub enum Routed<'m> {
    /// A rule (or the default route of a host without VirtualService) chose
    /// these destinations.
    Route {
        rule: Option<&'m RuleRef>,
        targets: &'m [Target],
    },
    /// No route: 404 `NR`.
    NoRoute(NoRoute<'m>),
}

/// Why no route was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRoute<'m> {
    /// The ingress has no Gateway for this host and port.
    NoGateway,
    /// No VirtualService bound to the gateway serves this host.
    NoVirtualService,
    /// The caller addressed a host that is not a Service.
    UnknownHost,
    /// The Service has no such port.
    UnknownPort(u16),
    /// The VirtualServices for the host had no rule that matched.
    NoRuleMatched(&'m str),
}

#[derive(Default)]
struct CompiledMatch {
    uri: Option<Matcher>,
    scheme: Option<Matcher>,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    headers: Vec<(String, Matcher)>,
    without_headers: Vec<(String, Matcher)>,
    query: Vec<(String, Matcher)>,
    source_labels: Labels,
    source_namespace: Option<String>,
    /// Resolved `ns/name` gateway references, or `mesh`; empty: the VS's own.
    gateways: Vec<String>,
    port: Option<u16>,
    ignore_uri_case: bool,
}

struct CompiledRule {
    rule: RuleRef,
    matches: Vec<CompiledMatch>,
    targets: Vec<Target>,
}

struct CompiledVs {
    name: String,
    /// FQDNs or wildcard patterns.
    hosts: Vec<String>,
    /// Resolved gateway references, `mesh` included when it applies to sidecars.
    gateways: Vec<String>,
    rules: Vec<CompiledRule>,
}

struct GatewayInfo {
    reference: String,
    selector: Labels,
    servers: Vec<(u16, Vec<String>)>,
}

/// The manifests, compiled for routing.
pub struct Mesh {
    pub workloads: Vec<Workload>,
    pub services: Vec<ServiceInfo>,
    gateways: Vec<GatewayInfo>,
    virtual_services: Vec<CompiledVs>,
    /// The route of a host without VirtualService: every endpoint.
    default_targets: Vec<Vec<Target>>,
    by_fqdn: HashMap<String, usize>,
    /// Problems found while compiling (a regex that does not compile, say); the
    /// rule concerned never matches.
    pub errors: Vec<String>,
}

const MESH: &str = "mesh";

/// Resolves a gateway reference as written in a VirtualService of namespace `ns`.
fn gateway_ref(g: &str, ns: &str) -> String {
    if g == MESH || g.contains('/') {
        g.to_owned()
    } else {
        format!("{ns}/{g}")
    }
}

fn subset_of(labels: &Labels, of: &Labels) -> bool {
    of.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl Mesh {
    /// Compiles the manifests. Problems that make a rule unusable are collected
    /// in [`Mesh::errors`]; `weather check` reports them with the rest.
    pub fn compile(m: &Manifests) -> Mesh {
        let mut errors = Vec::new();
        let workloads: Vec<Workload> = m
            .deployments
            .iter()
            .map(|d| Workload {
                name: d.metadata.name.clone(),
                namespace: d.metadata.ns().to_owned(),
                labels: d.spec.template.metadata.labels.clone(),
                image: d
                    .spec
                    .template
                    .spec
                    .containers
                    .first()
                    .map(|c| c.image.clone())
                    .unwrap_or_default(),
            })
            .collect();
        let services: Vec<ServiceInfo> = m
            .services
            .iter()
            .map(|s| ServiceInfo {
                name: s.metadata.name.clone(),
                namespace: s.metadata.ns().to_owned(),
                fqdn: fqdn(&s.metadata.name, s.metadata.ns()),
                selector: s.spec.selector.clone(),
                ports: s.spec.ports.iter().map(|p| p.port).collect(),
            })
            .collect();
        let by_fqdn: HashMap<String, usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.fqdn.clone(), i))
            .collect();
        let endpoints_of = |svc: usize, extra: &Labels| -> Vec<usize> {
            let s = &services[svc];
            if s.selector.is_empty() {
                return Vec::new();
            }
            workloads
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    w.namespace == s.namespace
                        && subset_of(&w.labels, &s.selector)
                        && subset_of(&w.labels, extra)
                })
                .map(|(i, _)| i)
                .collect()
        };
        // DestinationRule subsets, by service.
        let mut subsets: HashMap<usize, Vec<(String, Labels)>> = HashMap::new();
        for dr in &m.destination_rules {
            if let Some(&svc) = by_fqdn.get(&fqdn(&dr.spec.host, dr.metadata.ns())) {
                let entry = subsets.entry(svc).or_default();
                for s in &dr.spec.subsets {
                    entry.push((s.name.clone(), s.labels.clone()));
                }
            }
        }
        let target = |host: &str, ns: &str, subset: Option<&str>, weight: u32| -> Target {
            let service = by_fqdn.get(&fqdn(host, ns)).copied();
            let (endpoints, problem) = match (service, subset) {
                (None, _) => (Vec::new(), Some(Problem::UnknownHost)),
                (Some(svc), None) => {
                    let e = endpoints_of(svc, &Labels::new());
                    let p = e.is_empty().then_some(Problem::NoEndpoints);
                    (e, p)
                }
                (Some(svc), Some(name)) => match subsets
                    .get(&svc)
                    .and_then(|all| all.iter().find(|(n, _)| n == name))
                {
                    None => (Vec::new(), Some(Problem::UnknownSubset)),
                    Some((_, labels)) => {
                        let e = endpoints_of(svc, labels);
                        let p = e.is_empty().then_some(Problem::NoEndpoints);
                        (e, p)
                    }
                },
            };
            Target {
                host: host.to_owned(),
                service,
                subset: subset.map(str::to_owned),
                weight,
                endpoints,
                problem,
            }
        };
        let default_targets = services
            .iter()
            .map(|s| vec![target(&s.name, &s.namespace, None, 100)])
            .collect();

        let gateways = m
            .gateways
            .iter()
            .map(|g| GatewayInfo {
                reference: format!("{}/{}", g.metadata.ns(), g.metadata.name),
                selector: g.spec.selector.clone(),
                servers: g
                    .spec
                    .servers
                    .iter()
                    .map(|s| (s.port.number as u16, s.hosts.clone()))
                    .collect(),
            })
            .collect();

        let mut virtual_services = Vec::new();
        for vs in &m.virtual_services {
            let ns = vs.metadata.ns();
            let mut errors_here = Vec::new();
            let mut compile = |what: &str, sm: &StringMatch| -> Option<Matcher> {
                match Matcher::new(sm) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        errors_here.push(format!(
                            "VirtualService {ns}/{}: {what}: {e}",
                            vs.metadata.name
                        ));
                        None
                    }
                }
            };
            let mut rules = Vec::new();
            for (i, r) in vs.spec.http.iter().enumerate() {
                let mut broken = false;
                let mut matches = Vec::new();
                for (j, hm) in r.matches.iter().enumerate() {
                    let mut cm = |field: &str, sm: &Option<StringMatch>| -> Option<Matcher> {
                        let sm = sm.as_ref()?;
                        let m = compile(&format!("http[{i}].match[{j}].{field}"), sm);
                        broken |= m.is_none();
                        m
                    };
                    let uri = cm("uri", &hm.uri);
                    let scheme = cm("scheme", &hm.scheme);
                    let method = cm("method", &hm.method);
                    let authority = cm("authority", &hm.authority);
                    let mut map = |field: &str,
                                   entries: &std::collections::BTreeMap<String, StringMatch>|
                     -> Vec<(String, Matcher)> {
                        entries
                            .iter()
                            .filter_map(|(k, sm)| {
                                let m = compile(&format!("http[{i}].match[{j}].{field}.{k}"), sm);
                                broken |= m.is_none();
                                m.map(|m| (k.to_ascii_lowercase(), m))
                            })
                            .collect()
                    };
                    let headers = map("headers", &hm.headers);
                    let without_headers = map("withoutHeaders", &hm.without_headers);
                    let query = map("queryParams", &hm.query_params);
                    let ignore_uri_case = hm.ignore_uri_case.unwrap_or(false);
                    let uri = match (uri, ignore_uri_case) {
                        (Some(Matcher::Exact(s)), true) => {
                            Some(Matcher::Exact(s.to_ascii_lowercase()))
                        }
                        (Some(Matcher::Prefix(s)), true) => {
                            Some(Matcher::Prefix(s.to_ascii_lowercase()))
                        }
                        (m, _) => m,
                    };
                    matches.push(CompiledMatch {
                        uri,
                        scheme,
                        method,
                        authority,
                        headers,
                        without_headers,
                        query,
                        source_labels: hm.source_labels.clone(),
                        source_namespace: hm.source_namespace.clone(),
                        gateways: hm.gateways.iter().map(|g| gateway_ref(g, ns)).collect(),
                        port: hm.port.map(|p| p as u16),
                        ignore_uri_case,
                    });
                }
                if broken {
                    // A match that cannot be evaluated must not match everything.
                    matches = vec![CompiledMatch::never()];
                }
                let lone = r.route.len() == 1;
                let targets = r
                    .route
                    .iter()
                    .map(|d| {
                        let weight = match d.weight {
                            Some(w) => w.clamp(0, 100) as u32,
                            None if lone => 100,
                            None => 0,
                        };
                        target(
                            &d.destination.host,
                            ns,
                            d.destination.subset.as_deref(),
                            weight,
                        )
                    })
                    .collect();
                rules.push(CompiledRule {
                    rule: RuleRef {
                        virtual_service: vs.metadata.name.clone(),
                        namespace: ns.to_owned(),
                        index: i,
                        name: r.name.clone(),
                    },
                    matches,
                    targets,
                });
            }
            errors.extend(errors_here);
            let gateways = if vs.spec.gateways.is_empty() {
                vec![MESH.to_owned()]
            } else {
                vs.spec
                    .gateways
                    .iter()
                    .map(|g| gateway_ref(g, ns))
                    .collect()
            };
            virtual_services.push(CompiledVs {
                name: vs.metadata.name.clone(),
                hosts: vs.spec.hosts.iter().map(|h| fqdn(h, ns)).collect(),
                gateways,
                rules,
            });
        }
        Mesh {
            workloads,
            services,
            gateways,
            virtual_services,
            default_targets,
            by_fqdn,
            errors,
        }
    }

    /// Where this request goes.
    pub fn route<'m, H: HeaderLookup + ?Sized>(
        &'m self,
        caller: Caller<'_>,
        req: &Request<'_, H>,
    ) -> Routed<'m> {
        let (host, port) = split_authority(req.authority);
        match caller {
            Caller::Ingress => {
                // The ingress stands for the gateway's port 80, whatever port a
                // local listener or a port-forward exposes it on.
                let port = INGRESS_PORT;
                let ingress = ingress_labels();
                let bound: Vec<&str> = self
                    .gateways
                    .iter()
                    .filter(|g| !g.selector.is_empty() && subset_of(&ingress, &g.selector))
                    .filter(|g| {
                        g.servers.iter().any(|(p, hosts)| {
                            *p == port
                                && hosts
                                    .iter()
                                    .any(|h| host_matches(h.rsplit('/').next().unwrap_or(h), &host))
                        })
                    })
                    .map(|g| g.reference.as_str())
                    .collect();
                if bound.is_empty() {
                    return Routed::NoRoute(NoRoute::NoGateway);
                }
                let mut any = None;
                for vs in &self.virtual_services {
                    let Some(gw) = vs.gateways.iter().find(|g| bound.contains(&g.as_str())) else {
                        continue;
                    };
                    if !vs.hosts.iter().any(|h| host_matches(h, &host)) {
                        continue;
                    }
                    any = Some(vs.name.as_str());
                    if let Some(r) = first_rule(vs, gw, None, port, req) {
                        return Routed::Route {
                            rule: Some(&r.rule),
                            targets: &r.targets,
                        };
                    }
                }
                match any {
                    Some(name) => Routed::NoRoute(NoRoute::NoRuleMatched(name)),
                    None => Routed::NoRoute(NoRoute::NoVirtualService),
                }
            }
            Caller::Workload { namespace, labels } => {
                let name = fqdn(&host, namespace);
                let Some(&svc) = self.by_fqdn.get(&name) else {
                    return Routed::NoRoute(NoRoute::UnknownHost);
                };
                let service = &self.services[svc];
                let port = port.unwrap_or(80);
                if !service.ports.contains(&port) {
                    return Routed::NoRoute(NoRoute::UnknownPort(port));
                }
                let source = Some((namespace, labels));
                // The first VirtualService for the host wins; `weather check`
                // reports a second one (IST0109).
                for vs in &self.virtual_services {
                    if !vs.gateways.iter().any(|g| g == MESH)
                        || !vs.hosts.iter().any(|h| host_matches(h, &name))
                    {
                        continue;
                    }
                    return match first_rule(vs, MESH, source, port, req) {
                        Some(r) => Routed::Route {
                            rule: Some(&r.rule),
                            targets: &r.targets,
                        },
                        None => Routed::NoRoute(NoRoute::NoRuleMatched(&vs.name)),
                    };
                }
                Routed::Route {
                    rule: None,
                    targets: &self.default_targets[svc],
                }
            }
        }
    }
}

fn first_rule<'v, H: HeaderLookup + ?Sized>(
    vs: &'v CompiledVs,
    context: &str,
    source: Option<(&str, &Labels)>,
    port: u16,
    req: &Request<'_, H>,
) -> Option<&'v CompiledRule> {
    vs.rules.iter().find(|r| {
        r.matches.is_empty()
            || r.matches
                .iter()
                .any(|m| m.holds(&vs.gateways, context, source, port, req))
    })
}

impl CompiledMatch {
    fn never() -> CompiledMatch {
        CompiledMatch {
            gateways: vec!["(never)".to_owned()],
            ..CompiledMatch::default()
        }
    }

    fn holds<H: HeaderLookup + ?Sized>(
        &self,
        vs_gateways: &[String],
        context: &str,
        source: Option<(&str, &Labels)>,
        port: u16,
        req: &Request<'_, H>,
    ) -> bool {
        let gateways = if self.gateways.is_empty() {
            vs_gateways
        } else {
            &self.gateways[..]
        };
        if !gateways.iter().any(|g| g == context) {
            return false;
        }
        if !self.source_labels.is_empty() {
            // Only a sidecar knows its workload's labels; at the gateway the
            // condition never holds.
            match source {
                Some((_, labels)) if subset_of(labels, &self.source_labels) => {}
                _ => return false,
            }
        }
        if let Some(ns) = &self.source_namespace
            && source.map(|(n, _)| n) != Some(ns.as_str())
        {
            return false;
        }
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let (path, query) = req.path.split_once('?').unwrap_or((req.path, ""));
        if let Some(m) = &self.uri {
            let ok = if self.ignore_uri_case {
                m.matches(&path.to_ascii_lowercase())
            } else {
                m.matches(path)
            };
            if !ok {
                return false;
            }
        }
        if self.scheme.as_ref().is_some_and(|m| !m.matches(req.scheme))
            || self.method.as_ref().is_some_and(|m| !m.matches(req.method))
        {
            return false;
        }
        if let Some(m) = &self.authority
            && !m.matches(req.authority)
        {
            return false;
        }
        for (name, m) in &self.headers {
            match req.headers.header(name) {
                Some(v) if m.matches(&v) => {}
                _ => return false,
            }
        }
        for (name, m) in &self.without_headers {
            if req.headers.header(name).is_some_and(|v| m.matches(&v)) {
                return false;
            }
        }
        for (name, m) in &self.query {
            let found = form_pairs(query).find(|(k, _)| k == name).map(|(_, v)| v);
            match found {
                Some(v) if m.matches(&v) => {}
                _ => return false,
            }
        }
        true
    }
}

fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k.to_owned(), v.to_owned())
    })
}

impl Routed<'_> {
    /// Picks one destination by weight, with `roll` uniform in `0..total`.
    /// `None` when every weight is 0.
    pub fn pick(targets: &[Target], roll: u32) -> Option<&Target> {
        let mut left = roll;
        for t in targets {
            if left < t.weight {
                return Some(t);
            }
            left -= t.weight;
        }
        None
    }

    /// The total weight of a route's destinations.
    pub fn total(targets: &[Target]) -> u32 {
        targets.iter().map(|t| t.weight).sum()
    }
}
