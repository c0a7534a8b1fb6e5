//! `weather check`: offline analysis of manifests, in the spirit of `istioctl
//! analyze` (its message format and, where one fits, its codes), plus the checks
//! this sample's release relies on. Each message names the object and the field.
//! What the routing resolves (hosts, subsets, gateways, regexes) is read from the
//! compiled [`Mesh`], so the analysis and the routing cannot disagree on it.

pub mod ambient;
mod lanes;
mod security;

use std::{collections::BTreeMap, fmt};

use crate::{
    compile::{MESH, Mesh},
    load::Manifests,
    model::{Labels, Meta},
    routing::Problem,
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
// Stricter than istioctl, so codes of this sample's own: istioctl's IST0118 is
// an Info it does not raise for an unnamed port (protocol detection applies),
// and its IST0127 is about workload selectors, not DestinationRule subsets
// (checked by conformance/analyze_test.go and check.rs).
pub const PORT_NOT_NAMED_HTTP: &str = "WEA0006";
pub const SUBSET_WITHOUT_PODS: &str = "WEA0007";
pub const NO_CATCH_ALL: &str = "WEA0001";
pub const SELECTOR_MISMATCH: &str = "WEA0002";
pub const MISSING_APP_VERSION_LABELS: &str = "WEA0003";
pub const WEIGHTS_NOT_100: &str = "WEA0004";
pub const NOT_MODELLED: &str = "WEA0005";
pub const UNKNOWN_SERVICE_ACCOUNT: &str = "WEA0008";
pub const PRINCIPAL_WITHOUT_STRICT_MTLS: &str = "WEA0009";
pub const CLAIM_ROUTE_OUTSIDE_GATEWAY: &str = "WEA0010";
pub const POD_SECURITY_RESTRICTED: &str = "WEA0011";
pub const EXPORT_HIDES: &str = "WEA0012";
pub const RETRY_PAST_TIMEOUT: &str = "WEA0013";
pub const MIRROR_NOWHERE: &str = "WEA0014";
pub const OUTLIER_NEVER_EJECTS: &str = "WEA0015";
pub const AMBIENT_DROPS_ROUTES: &str = "WEA0016";
/// An AuthorizationPolicy that ztunnel enforces with HTTP attributes it does
/// not support, or an action it does not support.
pub const ZTUNNEL_DROPS_HTTP_RULES: &str = "WEA0021";
/// An HTTPRoute a parent does not take (no such Gateway or listener, a
/// namespace `allowedRoutes` excludes, a class istiod does not program).
pub const ROUTE_NOT_ATTACHED: &str = "WEA0020";
pub use lanes::{CLIENT_PICKS_LANE, LANE_NEVER_SET, VS_AND_HTTPROUTE};

fn includes(labels: &Labels, of: &Labels) -> bool {
    of.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// An object, as messages name it.
struct Object<'a> {
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
}

impl<'a> Object<'a> {
    fn of(kind: &'static str, meta: &'a Meta) -> Object<'a> {
        Object {
            kind,
            namespace: meta.ns(),
            name: &meta.name,
        }
    }
}

struct Out<'m> {
    m: &'m Manifests,
    mesh: &'m Mesh,
    messages: Vec<Message>,
}

impl Out<'_> {
    fn push(
        &mut self,
        level: Level,
        code: &'static str,
        o: &Object<'_>,
        field: impl Into<String>,
        text: impl Into<String>,
    ) {
        let source = self
            .m
            .origin_of(o.kind, o.namespace, o.name)
            .map(|s| s.to_string());
        self.messages.push(Message {
            level,
            code,
            resource: format!("{} {}.{}", o.kind, o.name, o.namespace),
            field: field.into(),
            text: text.into(),
            source,
        });
    }
}

/// Every finding, errors first. `mesh` is `m` compiled.
pub fn analyze(m: &Manifests, mesh: &Mesh) -> Vec<Message> {
    let mut out = Out {
        m,
        mesh,
        messages: Vec::new(),
    };
    workloads(&mut out);
    services(&mut out);
    virtual_services(&mut out);
    destination_rules(&mut out);
    ambient::check(&mut out);
    ambient::policies(&mut out);
    lanes::check(&mut out);
    security::check(&mut out);
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
                &Object::of("Deployment", &d.metadata),
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
                    &Object::of("Deployment", &d.metadata),
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
                    PORT_NOT_NAMED_HTTP,
                    &Object::of("Service", &s.metadata),
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

/// IST0101 for each of `gateways` (resolved references, at `field[i]`) that is
/// neither `mesh` nor a Gateway of the manifests.
fn unknown_gateways(out: &mut Out, o: &Object<'_>, field: &str, gateways: &[String]) {
    for (i, g) in gateways.iter().enumerate() {
        if g != MESH && !out.mesh.gateways.iter().any(|k| &k.reference == g) {
            let text = format!("Referenced gateway not found: {g:?}");
            out.push(
                Level::Error,
                REFERENCED_RESOURCE_NOT_FOUND,
                o,
                format!("{field}[{i}]"),
                text,
            );
        }
    }
}

fn virtual_services(out: &mut Out) {
    let (m, mesh) = (out.m, out.mesh);
    // Hosts bound to the mesh, to find two VirtualServices for one host.
    let mut mesh_hosts: BTreeMap<&str, Vec<Object>> = BTreeMap::new();
    for (vs, c) in m.virtual_services.iter().zip(&mesh.virtual_services) {
        let o = Object::of("VirtualService", &vs.metadata);
        if !vs.spec.gateways.is_empty() {
            unknown_gateways(out, &o, "spec.gateways", &c.gateways);
        }
        // A gateway's proxies run in the Gateway's namespace: they must see it.
        for g in c.gateways.iter().filter(|g| *g != MESH) {
            let gw_ns = g.split('/').next().unwrap_or("");
            if !c.visible_from(gw_ns) {
                out.push(Level::Error, EXPORT_HIDES, &o, "spec.exportTo", format!(
                    "bound to gateway {g}, whose proxies run in namespace {gw_ns}, but not exported there: the gateway has no route from it (404 NR); add {gw_ns:?} to exportTo"
                ));
            }
        }
        if c.gateways.iter().any(|g| g == MESH) {
            for h in &c.hosts {
                mesh_hosts
                    .entry(h)
                    .or_default()
                    .push(Object::of("VirtualService", &vs.metadata));
                if !h.contains('*') && mesh.service(h).is_none() {
                    out.push(Level::Warning, NOT_MODELLED, &o, "spec.hosts", format!(
                        "host {h:?} names no Service (istiod expands only a name without a dot): requests addressed to it are not modelled"
                    ));
                }
            }
        }
        for (i, (r, cr)) in vs.spec.http.iter().zip(&c.rules).enumerate() {
            // Envoy's route timeout covers every attempt: a per-try timeout
            // that is not under it never ends an attempt, so no retry follows.
            let p = &cr.policy;
            if let (Some(total), Some(per_try)) = (p.timeout, p.retries.per_try_timeout)
                && p.retries.attempts > 0
                && per_try >= total
            {
                out.push(Level::Warning, RETRY_PAST_TIMEOUT, &o, format!("spec.http[{i}].retries.perTryTimeout"), format!(
                    "perTryTimeout {}s is not under the route's timeout {}s: the route's timeout ends the request during its first attempt (504 UT), so no retry on a per-try timeout is ever made",
                    per_try.as_secs_f64(), total.as_secs_f64()
                ));
            }
            // A mirror to nowhere: istiod writes it, Envoy drops every copy.
            for m in &p.mirrors {
                let t = &m.target;
                let what = match &t.problem {
                    Some(Problem::UnknownHost | Problem::UnknownBackend) => {
                        Some("names no Service")
                    }
                    Some(Problem::UnknownSubset) => {
                        Some("names a subset no DestinationRule defines")
                    }
                    Some(Problem::NoEndpoints) => Some("selects no pods"),
                    None => None,
                };
                if let Some(what) = what {
                    let dest = match &t.subset {
                        Some(s) => format!("{} subset {s}", t.host),
                        None => t.host.clone(),
                    };
                    out.push(Level::Warning, MIRROR_NOWHERE, &o, format!("spec.http[{i}].mirror"), format!(
                        "the mirror {dest} {what}: the copies go nowhere, and nothing says so but Envoy's stats"
                    ));
                }
            }
            for (j, cm) in cr.matches.iter().enumerate() {
                let field = format!("spec.http[{i}].match[{j}].gateways");
                unknown_gateways(out, &o, &field, &cm.gateways);
            }
            for (k, t) in cr.targets.iter().enumerate() {
                let at = format!("spec.http[{i}].route[{k}].destination");
                let host = &t.host;
                match &t.problem {
                    Some(Problem::UnknownHost | Problem::UnknownBackend) => out.push(Level::Error, REFERENCED_RESOURCE_NOT_FOUND, &o, format!("{at}.host"),
                        format!("Referenced host not found: {host:?} (no Service of that name)")),
                    Some(Problem::UnknownSubset) => out.push(Level::Error, REFERENCED_RESOURCE_NOT_FOUND, &o, format!("{at}.subset"),
                        format!("Referenced host+subset in destinationrule not found: \"{host}+{}\": Envoy answers 503 (NC)", t.subset.as_deref().unwrap_or(""))),
                    _ => {}
                }
            }
            // Only the proxies that take the route: a gateway's for a
            // VirtualService bound to one, sidecars' for one bound to `mesh`.
            let takes = |ns: &str| {
                c.visible_from(ns)
                    && if ns == crate::terms::INGRESS_NAMESPACE {
                        c.gateways.iter().any(|g| g != MESH)
                    } else {
                        c.gateways.iter().any(|g| g == MESH)
                    }
            };
            for (ns, seen) in cr.scoped.iter().filter(|(ns, _)| takes(ns)) {
                for (k, t) in seen.iter().enumerate() {
                    if t.problem == Some(Problem::UnknownSubset)
                        && cr.targets.get(k).is_some_and(|d| d.problem.is_none())
                    {
                        out.push(Level::Error, EXPORT_HIDES, &o, format!("spec.http[{i}].route[{k}].destination.subset"), format!(
                            "the DestinationRule defining subset {:?} of {} is not exported to namespace {ns}, whose proxies take this route: they have no such cluster (503 NC)",
                            t.subset.as_deref().unwrap_or(""), t.host
                        ));
                    }
                }
            }
            if r.route.len() > 1 {
                let total: i64 = r.route.iter().map(|d| d.weight.unwrap_or(0)).sum();
                if total != 100 {
                    out.push(
                        Level::Error,
                        WEIGHTS_NOT_100,
                        &o,
                        format!("spec.http[{i}].route"),
                        format!("weights add up to {total}, not 100"),
                    );
                }
            }
        }
        match vs.spec.http.last() {
            None => out.push(Level::Error, NO_CATCH_ALL, &o, "spec.http", "no http routes: every request to its hosts gets 404 (NR)"),
            Some(last) if !last.matches.is_empty() => out.push(
                Level::Error,
                NO_CATCH_ALL,
                &o,
                format!("spec.http[{}].match", vs.spec.http.len() - 1),
                "the last route has a match, so there is no catch-all: a request no rule matches gets 404 (NR); end with a route without `match`",
            ),
            Some(_) => {}
        }
    }
    for e in &mesh.errors {
        let o = Object {
            kind: e.kind,
            namespace: &e.namespace,
            name: &e.name,
        };
        // An HTTPRoute's problem is where it attaches, not its schema.
        let code = match e.kind {
            "HTTPRoute" => ROUTE_NOT_ATTACHED,
            _ => SCHEMA_VALIDATION_ERROR,
        };
        out.push(
            Level::Error,
            code,
            &o,
            format!("spec.{}", e.field),
            e.message.clone(),
        );
    }
    for (host, owners) in mesh_hosts {
        if owners.len() > 1 && !host.contains('*') {
            let names: Vec<String> = owners
                .iter()
                .map(|o| format!("{}.{}", o.name, o.namespace))
                .collect();
            for o in &owners {
                out.push(
                    Level::Error,
                    CONFLICTING_MESH_VIRTUAL_SERVICE_HOSTS,
                    o,
                    "spec.hosts",
                    format!("The VirtualServices {} associated with mesh define the same host or subset of host {host:?}: only one applies", names.join(",")),
                );
            }
        }
    }
}

fn destination_rules(out: &mut Out) {
    let (m, mesh) = (out.m, out.mesh);
    for (dr, c) in m.destination_rules.iter().zip(&mesh.destination_rules) {
        let o = Object::of("DestinationRule", &dr.metadata);
        let Some(svc) = c.service else {
            if !dr.spec.host.contains('*') {
                out.push(
                    Level::Error,
                    REFERENCED_RESOURCE_NOT_FOUND,
                    &o,
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
        // Outlier detection that can never eject: with n pods, one ejection
        // is 100/n percent of them, over maxEjectionPercent (istiod does not
        // set Envoy's always_eject_one_host).
        let never_ejects = |policy: Result<crate::cluster::ClusterPolicy, _>, pods: usize| {
            let o = policy.ok()?.outlier?;
            let detects = o.consecutive_5xx > 0 || o.consecutive_gateway > 0;
            (detects && pods > 0 && 100 / pods > o.max_ejection_percent as usize)
                .then_some(o.max_ejection_percent)
        };
        let top = dr.spec.traffic_policy.as_ref();
        let own = mesh.endpoints(svc).len();
        if let Some(max) = never_ejects(crate::cluster::compile(top, None), own) {
            out.push(Level::Warning, OUTLIER_NEVER_EJECTS, &o, "spec.trafficPolicy.outlierDetection",
                format!("maxEjectionPercent {max} of {own} pod(s): ejecting even one is over it, so no pod is ever ejected; set maxEjectionPercent to 100"));
        }
        for (i, (s, (_, _, pods))) in dr.spec.subsets.iter().zip(&c.subsets).enumerate() {
            let at = format!("spec.subsets[{i}].trafficPolicy");
            let policy =
                crate::cluster::compile(top, s.traffic_policy.as_ref().map(|t| (t, at.as_str())));
            let changed = s
                .traffic_policy
                .as_ref()
                .is_some_and(|t| t.get("outlierDetection").is_some());
            if let Some(max) =
                never_ejects(policy, pods.len()).filter(|_| changed || pods.len() != own)
            {
                out.push(Level::Warning, OUTLIER_NEVER_EJECTS, &o, format!("{at}.outlierDetection"),
                    format!("maxEjectionPercent {max} of subset {}'s {} pod(s): ejecting even one is over it, so no pod is ever ejected; set maxEjectionPercent to 100", s.name, pods.len()));
            }
        }
        for (i, (name, labels, pods)) in c.subsets.iter().enumerate() {
            if pods.is_empty() {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push(Level::Error, SUBSET_WITHOUT_PODS, &o, format!("spec.subsets[{i}]"),
                    format!("subset {name} ({}) selects no pods of Service {}: traffic routed to it gets 503 (UH)", l.join(", "), mesh.services[svc].name));
            }
        }
    }
}
