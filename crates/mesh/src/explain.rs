//! One routing decision, explained for a person (`weather route`) or as JSON
//! (`--output json`, docs/architecture.md, Contracts 8).

use serde::Serialize;

use crate::{
    compile::Mesh,
    routing::{Caller, NoRoute, Problem, Request, Routed, Target},
    terms::HeaderLookup,
};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub subset: Option<String>,
    pub weight: u32,
}

/// What `weather route` prints.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// Where the request can go; empty when it cannot go anywhere.
    pub destinations: Vec<Destination>,
    /// `forecast-route http[0]`, or `null` for the default route or no route.
    pub rule: Option<String>,
    /// Why there is no destination (or why some cannot take traffic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The status the caller gets when a request lands on each destination in
    /// turn is 200 unless a destination has a problem; 404 for no route.
    #[serde(skip)]
    pub status: u16,
    #[serde(skip)]
    pub lines: Vec<String>,
}

pub fn explain<H: HeaderLookup + ?Sized>(
    mesh: &Mesh,
    caller: Caller<'_>,
    req: &Request<'_, H>,
) -> Explanation {
    let from = match caller {
        Caller::Ingress => mesh.ingress_description(),
        Caller::Workload { namespace, labels } => {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("a workload in {namespace} with labels {}", l.join(", "))
        }
    };
    let mut lines = vec![format!(
        "{} {}{} from {from}",
        req.method, req.authority, req.path
    )];
    // Every proxy normalizes the path before it routes (crate::path).
    let path = match crate::path::normalize(req.path) {
        Ok(p) => p,
        Err(e) => {
            let reason = format!("the path is refused before any route is looked at ({e:?})");
            lines.push(format!("{reason}: Envoy answers 400"));
            return Explanation {
                destinations: Vec::new(),
                rule: None,
                reason: Some(reason),
                status: 400,
                lines,
            };
        }
    };
    if path != req.path {
        lines.push(format!(
            "path normalized to {path} (Istio's default path normalization), then routed"
        ));
    }
    let req = &Request {
        authority: req.authority,
        path: &path,
        method: req.method,
        scheme: req.scheme,
        headers: req.headers,
    };
    match mesh.route(caller, req) {
        Routed::NoRoute(why) => {
            let reason = match why {
                NoRoute::NoGateway => format!(
                    "no Gateway selects the ingress (istio: ingressgateway) on port 80 for host {:?}",
                    req.authority
                ),
                NoRoute::NoVirtualService => format!(
                    "no VirtualService bound to the ingress Gateway serves host {:?}",
                    req.authority
                ),
                // (Translated routes are named `HTTPRoute NS/NAME for HOST`.)
                NoRoute::NoRuleMatched(vs) if vs.starts_with("HTTPRoute ") => {
                    format!("{vs} has no rule that matches this request")
                }
                NoRoute::NoRuleMatched(vs) => {
                    format!("VirtualService {vs} has no rule that matches this request")
                }
            };
            lines.push(format!("no route: {reason}: Envoy answers 404 (NR)"));
            Explanation {
                destinations: Vec::new(),
                rule: None,
                reason: Some(reason),
                status: 404,
                lines,
            }
        }
        Routed::Blocked => {
            let reason = format!(
                "{:?} is not among the hosts the caller's Sidecar resource lets it reach (or no Service answers it), and its outboundTrafficPolicy is REGISTRY_ONLY: the sidecar answers 502 itself",
                req.authority
            );
            lines.push(format!("blocked: {reason}"));
            Explanation {
                destinations: Vec::new(),
                rule: None,
                reason: Some(reason),
                status: 502,
                lines,
            }
        }
        Routed::Passthrough => {
            let reason = format!(
                "no Service answers {:?} on that port: the sidecar passes the request through to the address it was sent to (PassthroughCluster; Istio's default outboundTrafficPolicy ALLOW_ANY)",
                req.authority
            );
            lines.push(format!("passthrough: {reason}"));
            Explanation {
                destinations: Vec::new(),
                rule: None,
                reason: Some(reason),
                status: 200,
                lines,
            }
        }
        Routed::Route {
            rule,
            targets,
            policy,
        } => {
            match rule {
                Some(r) => lines.push(format!(
                    "rule: {r}{} of {} {}/{}",
                    r.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
                    r.kind,
                    r.namespace,
                    r.virtual_service
                )),
                None => lines.push("rule: none: no VirtualService for this host, so it is balanced over all its endpoints, every version".to_owned()),
            }
            let mut problems = Vec::new();
            let mut destinations = Vec::new();
            for t in targets {
                let pods: Vec<&str> = t
                    .endpoints
                    .iter()
                    .map(|&i| mesh.workloads[i].name.as_str())
                    .collect();
                let what = describe(t);
                match &t.problem {
                    None => {
                        lines.push(format!(
                            "  -> {what}, weight {}: {}",
                            t.weight,
                            pods.join(", ")
                        ));
                        for c in t.cluster.describe() {
                            lines.push(format!("     {c}"));
                        }
                        for (side, ops) in [
                            ("request", &t.headers.request),
                            ("response", &t.headers.response),
                        ] {
                            if !ops.is_empty() {
                                lines.push(format!(
                                    "     {side} headers, this destination's: {}",
                                    ops.describe()
                                ));
                            }
                        }
                        destinations.push(Destination {
                            host: t.host.clone(),
                            subset: t.subset.clone(),
                            weight: t.weight,
                        });
                    }
                    Some(p) => {
                        let why = match p {
                            Problem::UnknownHost => format!("host {} is not a Service", t.host),
                            Problem::UnknownBackend => format!(
                                "backend {} is not a Service (istiod has Envoy answer 500)",
                                t.host
                            ),
                            Problem::UnknownSubset => format!(
                                "no DestinationRule defines subset {} of {}",
                                t.subset.as_deref().unwrap_or(""),
                                t.host
                            ),
                            Problem::NoEndpoints => format!("{what} selects no pods"),
                        };
                        lines.push(format!(
                            "  -> {what}, weight {}: unusable, {why}: Envoy answers 503 ({})",
                            t.weight,
                            p.flag()
                        ));
                        problems.push(why);
                    }
                }
            }
            if let Some(f) = &policy.fault {
                lines.push(format!(
                    "  fault injected by the caller's proxy before it routes: {} (flags DI for a delay, FI for an abort)",
                    f.describe()
                ));
            }
            for (side, ops) in [
                ("request", &policy.headers.request),
                ("response", &policy.headers.response),
            ] {
                if !ops.is_empty() {
                    lines.push(format!(
                        "  {side} headers, as the router forwards it: {}",
                        ops.describe()
                    ));
                }
            }
            match policy.timeout {
                Some(t) => lines.push(format!(
                    "  timeout: {}s for the whole request, retries included (past it: 504 UT)",
                    t.as_secs_f64()
                )),
                None => lines.push("  timeout: none (Istio's default)".to_owned()),
            }
            let r = &policy.retries;
            if r.attempts == 0 {
                lines.push("  retries: none".to_owned());
            } else {
                let mut on = r.on.conditions.join(",");
                if !r.on.status_codes.is_empty() {
                    let codes: Vec<String> = r.on.status_codes.iter().map(u16::to_string).collect();
                    on.push_str(&format!(" (codes {})", codes.join(",")));
                }
                let per_try = r
                    .per_try_timeout
                    .map(|t| format!(", {}s per try", t.as_secs_f64()))
                    .unwrap_or_default();
                let note = if r.on.status(503) {
                    ""
                } else {
                    "; a 503 answer is not retried (Istio 1.24 took 503 out of the default)"
                };
                lines.push(format!(
                    "  retries: up to {} on {on}{per_try}{note}",
                    r.attempts
                ));
            }
            for m in &policy.mirrors {
                let pods: Vec<&str> = m
                    .target
                    .endpoints
                    .iter()
                    .map(|&i| mesh.workloads[i].name.as_str())
                    .collect();
                let to = if pods.is_empty() {
                    "no pods: the copies go nowhere".to_owned()
                } else {
                    pods.join(", ")
                };
                lines.push(format!(
                    "  mirror: a copy of {}% of requests to {} ({to}); its answer is dropped",
                    f64::from(m.per_million) / 10_000.0,
                    describe(&m.target)
                ));
            }
            let status = if destinations.is_empty() { 503 } else { 200 };
            Explanation {
                destinations,
                rule: rule.map(|r| r.to_string()),
                reason: (!problems.is_empty()).then(|| problems.join("; ")),
                status,
                lines,
            }
        }
    }
}

fn describe(t: &Target) -> String {
    match &t.subset {
        Some(s) => format!("{} subset {s}", t.host),
        None => format!("{} (all endpoints)", t.host),
    }
}

impl Explanation {
    pub fn text(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }
}
