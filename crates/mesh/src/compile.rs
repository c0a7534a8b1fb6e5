//! The manifests compiled into a routing table, once per applied stage: hosts
//! resolved as istiod resolves them, subsets resolved through DestinationRules to
//! pods, regexes compiled. [`crate::decide`] routes on it; [`crate::analyze`]
//! reports what it found unresolved.
//!
//! Longer than most files here because it is one pass: the compiled types, then
//! each step (workloads, services, subsets, destinations, VirtualServices, match
//! entries) as a named function, read top to bottom.

use std::collections::{BTreeMap, HashMap};

use crate::{
    cluster::{self, ClusterPolicy},
    hosts::resolve,
    load::Manifests,
    matching::Matcher,
    model::{
        Deployment, DestinationRule, HttpMatch, HttpRoute, Labels, StringMatch, VirtualService,
    },
    policy::{self, Policy},
    routing::{Problem, RuleRef, ServiceInfo, Target, Workload},
    terms::subset_of,
};

pub(crate) use crate::terms::MESH;

/// A problem that makes a rule unusable (it then never matches).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {namespace}/{name}: {field}: {message}")]
pub struct CompileError {
    /// `VirtualService` or `DestinationRule`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// Where in the object, e.g. `http[0].match[1].headers.cookie`.
    pub field: String,
    pub message: String,
}

#[derive(Default)]
pub(crate) struct CompiledMatch {
    pub uri: Option<Matcher>,
    pub scheme: Option<Matcher>,
    pub method: Option<Matcher>,
    pub authority: Option<Matcher>,
    pub headers: Vec<(String, Matcher)>,
    pub without_headers: Vec<(String, Matcher)>,
    pub query: Vec<(String, Matcher)>,
    pub source_labels: Labels,
    pub source_namespace: Option<String>,
    /// Resolved `ns/name` gateway references, or `mesh`; empty: the VS's own.
    pub gateways: Vec<String>,
    pub port: Option<u16>,
    pub ignore_uri_case: bool,
}

pub(crate) struct CompiledRule {
    pub rule: RuleRef,
    /// Empty: the rule always matches.
    pub matches: Vec<CompiledMatch>,
    /// A field of a match could not be compiled: the rule never matches.
    pub broken: bool,
    pub targets: Vec<Target>,
    /// The destinations as proxies of these namespaces see them, where a
    /// DestinationRule's `exportTo` hides a subset from them (they then have
    /// no cluster for it: 503 `NC`).
    pub scoped: Vec<(String, Vec<Target>)>,
    pub policy: Policy,
}

impl CompiledRule {
    /// The destinations as a proxy of namespace `ns` sees them.
    pub(crate) fn targets_for(&self, ns: &str) -> &[Target] {
        self.scoped
            .iter()
            .find(|(n, _)| n == ns)
            .map_or(&self.targets, |(_, t)| t)
    }
}

/// `exportTo` resolved for an object of namespace `ns`: absent, to every
/// namespace (Istio's default `*`); `.` is the object's own namespace.
fn export_list(export_to: &Option<Vec<String>>, ns: &str) -> Vec<String> {
    match export_to {
        None => vec!["*".to_owned()],
        Some(list) if list.is_empty() => vec!["*".to_owned()],
        Some(list) => list
            .iter()
            .map(|e| if e == "." { ns.to_owned() } else { e.clone() })
            .collect(),
    }
}

/// Whether an object exported to `export` is seen by a proxy in `ns`.
fn exported(export: &[String], ns: &str) -> bool {
    export.iter().any(|e| e == "*" || e == ns)
}

pub(crate) struct CompiledVs {
    pub name: String,
    /// Hosts resolved as istiod does, lowercase; `*` and `*.suffix` wildcards.
    pub hosts: Vec<String>,
    /// Resolved gateway references, `mesh` included when it applies to sidecars.
    pub gateways: Vec<String>,
    pub rules: Vec<CompiledRule>,
    /// The namespaces whose proxies see it (`*`: all).
    pub export: Vec<String>,
    pub namespace: String,
    /// Translated from HTTPRoutes: istiod's gateway semantics.
    pub gateway_semantics: bool,
}

impl CompiledVs {
    /// Whether a proxy of namespace `ns` sees it.
    pub(crate) fn visible_from(&self, ns: &str) -> bool {
        exported(&self.export, ns)
    }
}

pub(crate) struct GatewayInfo {
    pub reference: String,
    pub namespace: String,
    pub selector: Labels,
    pub servers: Vec<(u16, Vec<String>)>,
    /// Generated from a Gateway API Gateway: served by the pods istiod
    /// deploys for it, which the local ingress stands for in its namespace.
    pub gateway_api: bool,
}

impl GatewayInfo {
    /// Whether the local ingress serves it: the demo profile's ingress pods
    /// match its selector, or istiod deployed it into the ingress's namespace.
    pub(crate) fn serves_ingress(&self) -> bool {
        if self.gateway_api {
            self.namespace == crate::terms::INGRESS_NAMESPACE
        } else {
            !self.selector.is_empty() && subset_of(crate::terms::ingress_labels(), &self.selector)
        }
    }
}

/// A DestinationRule's subsets, resolved to pods.
pub struct CompiledDr {
    pub name: String,
    pub namespace: String,
    /// The Service its host names, if any.
    pub service: Option<usize>,
    /// Name and the workloads (indices) each subset selects.
    pub subsets: Vec<(String, Labels, Vec<usize>)>,
}

/// The manifests, compiled for routing.
pub struct Mesh {
    pub workloads: Vec<Workload>,
    pub services: Vec<ServiceInfo>,
    pub destination_rules: Vec<CompiledDr>,
    pub(crate) gateways: Vec<GatewayInfo>,
    pub(crate) virtual_services: Vec<CompiledVs>,
    /// The route of a host without VirtualService: every endpoint.
    pub(crate) default_targets: Vec<Vec<Target>>,
    pub(crate) by_fqdn: HashMap<String, usize>,
    /// Rules that could not be compiled (a regex RE2 refuses, say); each never
    /// matches. `weather check` reports them with the rest.
    pub errors: Vec<CompileError>,
    /// mTLS, JWT and authorization, as each workload's proxy enforces them.
    pub security: crate::security::Security,
    /// The pods the ingress stands for: their identity, labels and names.
    pub ingress: crate::security::IngressPods,
    /// The `Sidecar` resources: which hosts each workload's proxy knows.
    pub(crate) sidecars: Vec<CompiledSidecar>,
    /// The DestinationRules' subsets and cluster policies, by Service.
    clusters: Clusters,
    /// Ambient namespaces and waypoints.
    pub(crate) ambient: crate::ambient::Ambient,
}

/// A `Sidecar` resource's egress, compiled.
pub(crate) struct CompiledSidecar {
    pub namespace: String,
    /// `None`: every workload of its namespace (of the mesh, in the root one).
    pub selector: Option<Labels>,
    /// `(namespace, host)` patterns of `egress[].hosts`.
    pub hosts: Vec<(String, String)>,
    pub registry_only: bool,
}

fn sidecar(s: &crate::model::Sidecar) -> CompiledSidecar {
    let selector = s
        .spec
        .workload_selector
        .as_ref()
        .and_then(|w| w.get("labels"))
        .and_then(|l| serde_json::from_value::<Labels>(l.clone()).ok())
        .filter(|l| !l.is_empty());
    let hosts = s
        .spec
        .egress
        .iter()
        .flat_map(|e| &e.hosts)
        .map(|h| {
            let (ns, host) = h.split_once('/').unwrap_or(("*", h));
            (ns.to_owned(), host.to_ascii_lowercase())
        })
        .collect();
    let registry_only = s
        .spec
        .outbound_traffic_policy
        .as_ref()
        .and_then(|p| p.get("mode"))
        .and_then(|m| m.as_str())
        == Some("REGISTRY_ONLY");
    CompiledSidecar {
        namespace: s.metadata.ns().to_owned(),
        selector,
        hosts,
        registry_only,
    }
}

impl Mesh {
    /// Compiles the manifests. Problems that make a rule unusable are collected
    /// in [`Mesh::errors`].
    pub fn compile(m: &Manifests) -> Mesh {
        let translated =
            crate::gateway_api::translate(&m.kube_gateways, &m.http_routes, &m.namespaces);
        let workloads: Vec<Workload> = m.deployments.iter().map(workload).collect();
        let services: Vec<ServiceInfo> = m.services.iter().map(service).collect();
        let by_fqdn = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.fqdn.clone(), i))
            .collect();
        let mut errors: Vec<CompileError> = translated
            .problems
            .iter()
            .map(|(id, field, message)| {
                let (namespace, name) = id.split_once('/').unwrap_or(("default", id));
                CompileError {
                    kind: "HTTPRoute",
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    field: field.clone(),
                    message: message.clone(),
                }
            })
            .collect();
        let resolver = Resolver {
            workloads: &workloads,
            services: &services,
            by_fqdn: &by_fqdn,
            clusters: clusters(&m.destination_rules, &by_fqdn, &mut errors),
            proxy_namespaces: {
                let mut ns: Vec<String> = workloads.iter().map(|w| w.namespace.clone()).collect();
                ns.push(crate::terms::INGRESS_NAMESPACE.to_owned());
                ns.sort();
                ns.dedup();
                ns
            },
        };
        let default_targets = services
            .iter()
            .map(|s| vec![resolver.target(&s.name, &s.namespace, None, 100, None)])
            .collect();
        let destination_rules = m
            .destination_rules
            .iter()
            .map(|dr| resolver.destination_rule(dr))
            .collect();
        let virtual_services = m
            .virtual_services
            .iter()
            .chain(&translated.virtual_services)
            .map(|vs| virtual_service(vs, &resolver, &mut errors))
            .collect();
        let ingress = crate::security::IngressPods::of(m);
        let security = crate::security::Security::compile(m, &workloads, &ingress);
        let clusters = resolver.clusters;
        let ambient = crate::ambient::Ambient::compile(m, &services);
        Mesh {
            ambient,
            clusters,
            gateways: m
                .gateways
                .iter()
                .chain(&translated.gateways)
                .map(gateway)
                .collect(),
            workloads,
            services,
            destination_rules,
            virtual_services,
            default_targets,
            by_fqdn,
            errors,
            security,
            ingress,
            sidecars: m.sidecars.iter().map(sidecar).collect(),
        }
    }

    /// The policy of Service `service`'s cluster for `subset` (`None`: its
    /// own cluster), as its DestinationRule sets it for a proxy of namespace
    /// `seen_from`; `None` for a subset no DestinationRule defines there.
    pub fn cluster_policy(
        &self,
        service: usize,
        subset: Option<&str>,
        seen_from: &str,
    ) -> Option<&ClusterPolicy> {
        match subset {
            None => Some(self.clusters.own_seen(service, Some(seen_from))),
            Some(name) => self
                .clusters
                .subsets
                .get(&service)?
                .iter()
                .find(|d| d.name == name && exported(&d.export, seen_from))
                .map(|d| &d.cluster),
        }
    }

    /// Whether a route leads to a cluster with circuit breakers or outlier
    /// detection: what then reaches it depends on the load, not only on the
    /// routes.
    pub fn load_dependent(&self) -> bool {
        self.virtual_services
            .iter()
            .flat_map(|vs| &vs.rules)
            .flat_map(|r| &r.targets)
            .chain(self.default_targets.iter().flatten())
            .any(|t| !t.cluster.is_default())
    }

    /// How many VirtualServices are in force.
    pub fn virtual_service_count(&self) -> usize {
        self.virtual_services.len()
    }

    /// What routes, in words: `3 VirtualServices`, `2 HTTPRoutes`, or both.
    pub fn routes_summary(&self) -> String {
        let (translated, own): (Vec<&CompiledVs>, Vec<&CompiledVs>) = self
            .virtual_services
            .iter()
            .partition(|v| v.gateway_semantics);
        let mut routes: Vec<&str> = translated
            .iter()
            .flat_map(|v| v.rules.iter().map(|r| r.rule.virtual_service.as_str()))
            .collect();
        routes.sort();
        routes.dedup();
        match (own.len(), routes.len()) {
            (n, 0) => format!("{n} VirtualServices"),
            (0, r) => format!("{r} HTTPRoutes"),
            (n, r) => format!("{n} VirtualServices and {r} HTTPRoutes"),
        }
    }

    /// Who the ingress stands for: Istio's ingress gateway, or the pods
    /// istiod deploys for the Gateway API Gateways it serves.
    pub fn ingress_description(&self) -> String {
        let mut names: Vec<String> = self
            .gateways
            .iter()
            .filter(|g| g.gateway_api && g.serves_ingress())
            .map(|g| {
                g.reference
                    .split(crate::gateway_api::GENERATED)
                    .next()
                    .unwrap_or(&g.reference)
                    .to_owned()
            })
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            "the ingress gateway (istio: ingressgateway)".to_owned()
        } else {
            format!(
                "the ingress gateway (the pods of Gateway {})",
                names.join(", ")
            )
        }
    }

    /// The workloads (indices) behind Service `service`: its pods.
    pub fn endpoints(&self, service: usize) -> &[usize] {
        self.default_targets
            .get(service)
            .and_then(|t| t.first())
            .map_or(&[], |t| &t.endpoints)
    }

    /// The Service a host resolved as istiod does names, if any.
    pub fn service(&self, fqdn: &str) -> Option<usize> {
        self.by_fqdn.get(fqdn).copied()
    }
}

fn workload(d: &Deployment) -> Workload {
    Workload {
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
        service_account: d
            .spec
            .template
            .spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        port: d
            .spec
            .template
            .spec
            .containers
            .first()
            .and_then(|c| c.ports.first())
            .map(|p| p.container_port),
    }
}

fn service(s: &crate::model::Service) -> ServiceInfo {
    ServiceInfo {
        name: s.metadata.name.clone(),
        namespace: s.metadata.ns().to_owned(),
        fqdn: resolve(&s.metadata.name, s.metadata.ns()),
        selector: s.spec.selector.clone(),
        ports: s.spec.ports.iter().map(|p| p.port).collect(),
    }
}

fn gateway(g: &crate::model::Gateway) -> GatewayInfo {
    GatewayInfo {
        reference: format!("{}/{}", g.metadata.ns(), g.metadata.name),
        namespace: g.metadata.ns().to_owned(),
        gateway_api: g.gateway_api,
        selector: g.spec.selector.clone(),
        servers: g
            .spec
            .servers
            .iter()
            .map(|s| (s.port.number as u16, s.hosts.clone()))
            .collect(),
    }
}

/// A subset: its name, labels, the namespaces its DestinationRule is
/// exported to, and its cluster's policy.
struct SubsetDef {
    name: String,
    labels: Labels,
    export: Vec<String>,
    cluster: ClusterPolicy,
}

/// istiod's defaults: no limit, no outlier detection.
static DEFAULT_CLUSTER: std::sync::LazyLock<ClusterPolicy> =
    std::sync::LazyLock::new(ClusterPolicy::default);

/// What the DestinationRules say of each Service's clusters.
#[derive(Default)]
struct Clusters {
    /// Every subset, by the Service its host names.
    subsets: HashMap<usize, Vec<SubsetDef>>,
    /// The policy of the Service's own cluster (no subset), and the
    /// namespaces its DestinationRule is exported to.
    own: HashMap<usize, (ClusterPolicy, Vec<String>)>,
}

impl Clusters {
    /// The policy of Service `svc`'s own cluster as a proxy of namespace
    /// `seen_from` has it (`None`: whatever `exportTo` says): istiod's
    /// defaults where its DestinationRule is not exported there.
    fn own_seen(&self, svc: usize, seen_from: Option<&str>) -> &ClusterPolicy {
        match self.own.get(&svc) {
            Some((p, export)) if seen_from.is_none_or(|ns| exported(export, ns)) => p,
            _ => &DEFAULT_CLUSTER,
        }
    }
}

/// Every DestinationRule subset and cluster policy; a `trafficPolicy` that
/// cannot be read is an error, and leaves istiod's defaults.
fn clusters(
    drs: &[DestinationRule],
    by_fqdn: &HashMap<String, usize>,
    errors: &mut Vec<CompileError>,
) -> Clusters {
    let mut out = Clusters::default();
    for dr in drs {
        let ns = dr.metadata.ns();
        let mut policy = |subset: Option<(&serde_json::Value, &str)>| {
            cluster::compile(dr.spec.traffic_policy.as_ref(), subset).unwrap_or_else(
                |(field, message)| {
                    errors.push(CompileError {
                        kind: "DestinationRule",
                        namespace: ns.to_owned(),
                        name: dr.metadata.name.clone(),
                        field,
                        message,
                    });
                    ClusterPolicy::default()
                },
            )
        };
        let Some(&svc) = by_fqdn.get(&resolve(&dr.spec.host, ns)) else {
            continue;
        };
        // (Two DestinationRules for one host: istiod keeps the first one's policy.)
        let own = policy(None);
        let export = export_list(&dr.spec.export_to, ns);
        out.own.entry(svc).or_insert((own, export.clone()));
        let defs: Vec<SubsetDef> = dr
            .spec
            .subsets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let at = format!("subsets[{i}].trafficPolicy");
                SubsetDef {
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    export: export.clone(),
                    cluster: policy(s.traffic_policy.as_ref().map(|t| (t, at.as_str()))),
                }
            })
            .collect();
        out.subsets.entry(svc).or_default().extend(defs);
    }
    out
}

/// Resolves a gateway reference as written in a VirtualService of namespace `ns`.
fn gateway_ref(g: &str, ns: &str) -> String {
    if g == MESH || g.contains('/') {
        g.to_owned()
    } else {
        format!("{ns}/{g}")
    }
}

/// Resolves destinations: host to Service, subset to pods.
struct Resolver<'a> {
    workloads: &'a [Workload],
    services: &'a [ServiceInfo],
    by_fqdn: &'a HashMap<String, usize>,
    clusters: Clusters,
    /// The namespaces of the proxies: the workloads' and the ingress's.
    proxy_namespaces: Vec<String>,
}

impl Resolver<'_> {
    /// The workloads of Service `svc` whose pods also carry `extra`.
    fn endpoints(&self, svc: usize, extra: &Labels) -> Vec<usize> {
        let s = &self.services[svc];
        if s.selector.is_empty() {
            return Vec::new();
        }
        self.workloads
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                w.namespace == s.namespace
                    && subset_of(&w.labels, &s.selector)
                    && subset_of(&w.labels, extra)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// A route destination, as written in an object of namespace `ns`, seen
    /// by a proxy of namespace `seen_from` (`None`: whatever `exportTo` says).
    fn target(
        &self,
        host: &str,
        ns: &str,
        subset: Option<&str>,
        weight: u32,
        seen_from: Option<&str>,
    ) -> Target {
        let service = self.by_fqdn.get(&resolve(host, ns)).copied();
        let selected = match (service, subset) {
            (None, _) => Err(Problem::UnknownHost),
            (Some(svc), None) => Ok((
                svc,
                Labels::new(),
                self.clusters.own_seen(svc, seen_from).clone(),
            )),
            (Some(svc), Some(name)) => self
                .clusters
                .subsets
                .get(&svc)
                .and_then(|all| {
                    all.iter().find(|d| {
                        d.name == name && seen_from.is_none_or(|p| exported(&d.export, p))
                    })
                })
                .map(|d| (svc, d.labels.clone(), d.cluster.clone()))
                .ok_or(Problem::UnknownSubset),
        };
        let (endpoints, problem, cluster) = match selected {
            Ok((svc, labels, cluster)) => {
                let e = self.endpoints(svc, &labels);
                let p = e.is_empty().then_some(Problem::NoEndpoints);
                (e, p, cluster)
            }
            Err(p) => (Vec::new(), Some(p), ClusterPolicy::default()),
        };
        Target {
            host: host.to_owned(),
            service,
            subset: subset.map(str::to_owned),
            weight,
            endpoints,
            problem,
            cluster,
            headers: Default::default(),
        }
    }

    fn destination_rule(&self, dr: &DestinationRule) -> CompiledDr {
        let service = self
            .by_fqdn
            .get(&resolve(&dr.spec.host, dr.metadata.ns()))
            .copied();
        let subsets = dr
            .spec
            .subsets
            .iter()
            .map(|s| {
                let pods = service.map(|svc| self.endpoints(svc, &s.labels));
                (s.name.clone(), s.labels.clone(), pods.unwrap_or_default())
            })
            .collect();
        CompiledDr {
            name: dr.metadata.name.clone(),
            namespace: dr.metadata.ns().to_owned(),
            service,
            subsets,
        }
    }
}

fn virtual_service(
    vs: &VirtualService,
    resolver: &Resolver<'_>,
    errors: &mut Vec<CompileError>,
) -> CompiledVs {
    let ns = vs.metadata.ns();
    let rules = vs
        .spec
        .http
        .iter()
        .enumerate()
        .map(|(i, r)| rule(vs, i, r, resolver, errors))
        .collect();
    let gateways = if vs.spec.gateways.is_empty() {
        vec![MESH.to_owned()]
    } else {
        vs.spec
            .gateways
            .iter()
            .map(|g| gateway_ref(g, ns))
            .collect()
    };
    CompiledVs {
        name: vs.metadata.name.clone(),
        hosts: vs.spec.hosts.iter().map(|h| resolve(h, ns)).collect(),
        gateways,
        rules,
        export: export_list(&vs.spec.export_to, ns),
        namespace: ns.to_owned(),
        gateway_semantics: vs.gateway_semantics,
    }
}

fn rule(
    vs: &VirtualService,
    i: usize,
    r: &HttpRoute,
    resolver: &Resolver<'_>,
    errors: &mut Vec<CompileError>,
) -> CompiledRule {
    let ns = vs.metadata.ns();
    let mut broken = false;
    let matches = r
        .matches
        .iter()
        .enumerate()
        .map(|(j, hm)| {
            let mut c = MatchCompiler {
                vs,
                at: format!("http[{i}].match[{j}]"),
                broken: false,
                errors: &mut *errors,
            };
            let m = c.compile(hm);
            broken |= c.broken;
            m
        })
        .collect();
    // istiod gives a lone destination the whole route, whatever its weight
    // (applyHTTPRouteDestination: one destination is a plain cluster route).
    let lone = r.route.len() == 1;
    // Each destination's own `headers`; one that cannot be read is an error.
    let mut header_errors = Vec::new();
    let dest_headers: Vec<crate::headers::Headers> =
        r.route
            .iter()
            .enumerate()
            .map(|(k, d)| match &d.headers {
                None => Default::default(),
                Some(h) => crate::headers::compile(h, &format!("route[{k}].headers"))
                    .unwrap_or_else(|e| {
                        header_errors.push(e);
                        Default::default()
                    }),
            })
            .collect();
    let resolve_all = |seen_from: Option<&str>| -> Vec<Target> {
        r.route
            .iter()
            .zip(&dest_headers)
            .map(|(d, headers)| {
                let weight = match d.weight {
                    _ if lone => 100,
                    Some(w) => w.clamp(0, 100) as u32,
                    None => 0,
                };
                let mut t = resolver.target(
                    &d.destination.host,
                    ns,
                    d.destination.subset.as_deref(),
                    weight,
                    seen_from,
                );
                t.headers = headers.clone();
                // Gateway semantics: a backend that is no Service answers 500.
                if vs.gateway_semantics && t.problem == Some(Problem::UnknownHost) {
                    t.problem = Some(Problem::UnknownBackend);
                }
                t
            })
            .collect()
    };
    let targets = resolve_all(None);
    let same = |a: &[Target], b: &[Target]| {
        a.iter().zip(b).all(|(x, y)| {
            x.problem == y.problem && x.endpoints == y.endpoints && x.cluster == y.cluster
        })
    };
    let scoped = resolver
        .proxy_namespaces
        .iter()
        .filter_map(|p| {
            let seen = resolve_all(Some(p));
            (!same(&seen, &targets)).then(|| (p.clone(), seen))
        })
        .collect();
    let compiled = policy::compile(r.timeout.as_ref(), r.retries.as_ref(), r.fault.as_ref())
        .and_then(|mut p| {
            p.mirrors = mirrors(r, ns, resolver)?;
            if let Some(h) = &r.headers {
                p.headers = crate::headers::compile(h, "headers")?;
            }
            if let Some(e) = header_errors.into_iter().next() {
                return Err(e);
            }
            Ok(p)
        });
    let policy = match compiled {
        Ok(p) => p,
        Err((field, message)) => {
            broken = true;
            errors.push(CompileError {
                kind: "VirtualService",
                namespace: ns.to_owned(),
                name: vs.metadata.name.clone(),
                field: format!("http[{i}].{field}"),
                message,
            });
            Policy::default()
        }
    };
    let rule = match &r.origin {
        Some((route, index)) => RuleRef {
            kind: "HTTPRoute",
            virtual_service: route.clone(),
            namespace: ns.to_owned(),
            index: *index,
            name: r.name.clone(),
        },
        None => RuleRef {
            kind: "VirtualService",
            virtual_service: vs.metadata.name.clone(),
            namespace: ns.to_owned(),
            index: i,
            name: r.name.clone(),
        },
    };
    CompiledRule {
        rule,
        matches,
        broken,
        targets,
        scoped,
        policy,
    }
}

/// A route's `mirror` and `mirrors`, resolved, as istiod translates them
/// (`MirrorPercent`, `MirrorPercentByPolicy`): a share per million, 100 %
/// when none is given, no mirror when it is 0.
fn mirrors(
    r: &HttpRoute,
    ns: &str,
    resolver: &Resolver<'_>,
) -> Result<Vec<policy::Mirror>, (String, String)> {
    use serde_json::Value;
    let destination = |v: &Value, at: &str| -> Result<(String, Option<String>), (String, String)> {
        let d: crate::model::Destination = serde_json::from_value(v.clone())
            .map_err(|e| (at.to_owned(), format!("not a destination: {e}")))?;
        Ok((d.host, d.subset))
    };
    // A `Percent` ({value: P}) per million, `None` when it says 0.
    let percentage = |v: &Value, at: &str| -> Result<Option<u32>, (String, String)> {
        let p = v
            .get("value")
            .and_then(Value::as_f64)
            .filter(|p| (0.0..=100.0).contains(p))
            .ok_or_else(|| {
                (
                    at.to_owned(),
                    "must be {value: P}, P from 0 to 100".to_owned(),
                )
            })?;
        Ok((p > 0.0).then_some((p * 10_000.0) as u32))
    };
    let mut out = Vec::new();
    if let Some(m) = &r.mirror {
        let (host, subset) = destination(m, "mirror")?;
        let share = if let Some(p) = &r.mirror_percentage {
            percentage(p, "mirrorPercentage")?
        } else if let Some(p) = r
            .mirror_percent
            .as_ref()
            .or(r.mirror_percent_snake.as_ref())
        {
            let n = p
                .as_u64()
                .filter(|n| *n <= 100)
                .ok_or_else(|| ("mirrorPercent".to_owned(), format!("{p} is not 0 to 100")))?;
            (n > 0).then_some(n as u32 * 10_000)
        } else {
            Some(crate::fault::MILLION)
        };
        if let Some(per_million) = share {
            let target = resolver.target(&host, ns, subset.as_deref(), 100, None);
            out.push(policy::Mirror {
                target,
                per_million,
            });
        }
    }
    if let Some(list) = &r.mirrors {
        let list = list
            .as_array()
            .ok_or_else(|| ("mirrors".to_owned(), "must be a list".to_owned()))?;
        for (i, m) in list.iter().enumerate() {
            let at = format!("mirrors[{i}]");
            let d = m
                .get("destination")
                .ok_or_else(|| (at.clone(), "needs a destination".to_owned()))?;
            let (host, subset) = destination(d, &format!("{at}.destination"))?;
            let share = match m.get("percentage") {
                Some(p) => percentage(p, &format!("{at}.percentage"))?,
                None => Some(crate::fault::MILLION),
            };
            if let Some(per_million) = share {
                let target = resolver.target(&host, ns, subset.as_deref(), 100, None);
                out.push(policy::Mirror {
                    target,
                    per_million,
                });
            }
        }
    }
    Ok(out)
}

/// The fields of a match entry that hold `StringMatch`es, which istiod's
/// validation treats apart (`validateHTTPRouteMatchRequest`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Uri,
    Scheme,
    Method,
    Authority,
    Headers,
    WithoutHeaders,
    QueryParams,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Uri => "uri",
            Field::Scheme => "scheme",
            Field::Method => "method",
            Field::Authority => "authority",
            Field::Headers => "headers",
            Field::WithoutHeaders => "withoutHeaders",
            Field::QueryParams => "queryParams",
        }
    }
}

/// The longest regex istiod's validation lets in (`validateStringRegexp`).
const MAX_REGEX_LEN: usize = 1024;

/// A match compiled, or why istiod's validating webhook refuses it, in its
/// words (`validateStringMatch` and `validateStringMatchRegexp` in
/// `pkg/config/validation`): an empty prefix anywhere but `uri`, an empty
/// regex, one over 1024 bytes, or one that does not compile. The object is
/// then refused whole. `regex: "*"` is no regex: under `withoutHeaders`, where
/// the webhook lets it in, istiod makes it a presence match
/// (`canBeConvertedToPresentMatch`); anywhere else it does not compile.
fn compile_match(sm: &StringMatch, field: Field) -> Result<Matcher, String> {
    let refused = |why: String| {
        format!(
            "istiod's validation refuses the object: {:?}: {why}",
            field.name()
        )
    };
    match sm {
        StringMatch::Prefix(p) if p.is_empty() && field != Field::Uri => Err(refused(
            "prefix string match should not be empty".to_owned(),
        )),
        StringMatch::Regex(r) if r == "*" && field == Field::WithoutHeaders => Ok(Matcher::Present),
        StringMatch::Regex(r) if r.is_empty() => {
            Err(refused("regex string match should not be empty".to_owned()))
        }
        StringMatch::Regex(r) if r.len() > MAX_REGEX_LEN => Err(refused(format!(
            "regex is too large, max length allowed is {MAX_REGEX_LEN}"
        ))),
        _ => Matcher::new(sm)
            .map_err(|e| refused(format!("{e}; Istio uses RE2 style regex-based match"))),
    }
}

/// Compiles one match entry, recording every field that does not compile.
struct MatchCompiler<'a> {
    vs: &'a VirtualService,
    /// `http[i].match[j]`.
    at: String,
    broken: bool,
    errors: &'a mut Vec<CompileError>,
}

impl MatchCompiler<'_> {
    fn one(&mut self, field: &str, sm: &StringMatch, kind: Field) -> Option<Matcher> {
        match compile_match(sm, kind) {
            Ok(m) => Some(m),
            Err(message) => {
                self.broken = true;
                let part = match sm {
                    StringMatch::Prefix(_) => ".prefix",
                    StringMatch::Regex(_) => ".regex",
                    _ => "",
                };
                self.errors.push(CompileError {
                    kind: "VirtualService",
                    namespace: self.vs.metadata.ns().to_owned(),
                    name: self.vs.metadata.name.clone(),
                    field: format!("{}.{field}{part}", self.at),
                    message,
                });
                None
            }
        }
    }

    fn optional(&mut self, field: Field, sm: &Option<StringMatch>) -> Option<Matcher> {
        self.one(field.name(), sm.as_ref()?, field)
    }

    /// Headers, withoutHeaders, queryParams: by name.
    fn named(
        &mut self,
        field: Field,
        entries: &BTreeMap<String, StringMatch>,
        lowercase: bool,
    ) -> Vec<(String, Matcher)> {
        entries
            .iter()
            .filter_map(|(k, sm)| {
                let m = self.one(&format!("{}.{k}", field.name()), sm, field)?;
                // A JWT claim's name keeps its case; a header's does not matter.
                let name = if lowercase && crate::terms::routing_claim(k).is_none() {
                    k.to_ascii_lowercase()
                } else {
                    k.clone()
                };
                Some((name, m))
            })
            .collect()
    }

    fn compile(&mut self, hm: &HttpMatch) -> CompiledMatch {
        let ignore_uri_case = hm.ignore_uri_case.unwrap_or(false);
        let uri = match (self.optional(Field::Uri, &hm.uri), ignore_uri_case) {
            (Some(Matcher::Exact(s)), true) => Some(Matcher::Exact(s.to_ascii_lowercase())),
            (Some(Matcher::Prefix(s)), true) => Some(Matcher::Prefix(s.to_ascii_lowercase())),
            (m, _) => m,
        };
        // Gateway semantics: a prefix other than `/` matches whole path
        // segments (istiod's `path_separated_prefix`, route.go).
        let uri = match uri {
            Some(Matcher::Prefix(p)) if self.vs.gateway_semantics && p != "/" => Some(
                Matcher::PathSeparatedPrefix(p.trim_end_matches('/').to_owned()),
            ),
            m => m,
        };
        let ns = self.vs.metadata.ns();
        CompiledMatch {
            uri,
            scheme: self.optional(Field::Scheme, &hm.scheme),
            method: self.optional(Field::Method, &hm.method),
            authority: self.optional(Field::Authority, &hm.authority),
            // Header names are case-insensitive; query parameter names are not.
            headers: self.named(Field::Headers, &hm.headers, true),
            without_headers: self.named(Field::WithoutHeaders, &hm.without_headers, true),
            query: self.named(Field::QueryParams, &hm.query_params, false),
            source_labels: hm.source_labels.clone(),
            source_namespace: hm.source_namespace.clone(),
            gateways: hm.gateways.iter().map(|g| gateway_ref(g, ns)).collect(),
            port: hm.port.map(|p| p as u16),
            ignore_uri_case,
        }
    }
}

impl Mesh {
    /// Rule `index` of VirtualService `namespace/name`.
    fn rule_at(&self, namespace: &str, name: &str, index: usize) -> Option<&CompiledRule> {
        self.virtual_services
            .iter()
            .filter(|vs| vs.name == name)
            .flat_map(|vs| vs.rules.get(index))
            .find(|r| r.rule.namespace == namespace)
    }

    /// The destinations of rule `index` of VirtualService `namespace/name`.
    pub fn rule_targets(&self, namespace: &str, name: &str, index: usize) -> Option<&[Target]> {
        self.rule_at(namespace, name, index)
            .map(|r| r.targets.as_slice())
    }

    /// The timeout, retries, fault, mirrors and header operations of rule
    /// `index` of VirtualService `namespace/name`.
    pub fn policy(&self, namespace: &str, name: &str, index: usize) -> Option<&Policy> {
        self.rule_at(namespace, name, index).map(|r| &r.policy)
    }
}
