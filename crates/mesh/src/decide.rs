//! The decision: where one request goes, in two steps as Istio takes it.
//!
//! 1. What istiod pushes to the calling proxy. For each VirtualService bound to
//!    it, istiod keeps only the match entries that hold for that proxy
//!    (`sourceMatchHTTP` and the port check in `pilot/pkg/networking/core/route/
//!    route.go`): a match naming `gateways` is kept when one of them is the
//!    proxy's (`mesh` for a sidecar) and then `sourceLabels` is not looked at;
//!    otherwise `sourceLabels` must be a subset of the proxy's own pod labels (a
//!    gateway's too) and `sourceNamespace` its namespace. A VirtualService left
//!    with no rule contributes nothing to that proxy: a sidecar then routes the
//!    host by default, over every endpoint.
//! 2. What Envoy does with the request: the first kept rule whose match holds
//!    wins; no rule: 404 `NR`. A sidecar's request for a host and port that no
//!    Service answers goes to `PassthroughCluster` (`ALLOW_ANY`).

use crate::{
    compile::{CompiledMatch, CompiledRule, CompiledSidecar, CompiledVs, MESH, Mesh},
    hosts::{expand_authority, host_matches, split_authority},
    matching::Matcher,
    model::Labels,
    routing::{Caller, INGRESS_PORT, NoRoute, Request, Routed},
    terms::{
        HeaderLookup, INGRESS_NAMESPACE, ROOT_NAMESPACE, claim_values, ingress_labels,
        routing_claim, subset_of,
    },
};

/// The policy of a host's default route (no VirtualService): Istio's.
static DEFAULT_POLICY: std::sync::LazyLock<crate::policy::Policy> =
    std::sync::LazyLock::new(crate::policy::Policy::default);

/// The proxy istiod builds routes for.
struct Proxy<'a> {
    labels: &'a Labels,
    namespace: &'a str,
    /// The gateway names its listener serves: `mesh` for a sidecar, the bound
    /// Gateways for the ingress.
    gateways: &'a [&'a str],
    port: u16,
}

/// How specifically a VirtualService's hosts match `host`: exact above any
/// wildcard, a longer wildcard above a shorter; `None` if none matches.
fn specificity(vs: &CompiledVs, host: &str) -> Option<usize> {
    vs.hosts
        .iter()
        .filter(|h| host_matches(h, host))
        .map(|h| if h.contains('*') { h.len() } else { usize::MAX })
        .max()
}

impl Mesh {
    /// Where this request goes.
    pub fn route<'m, H: HeaderLookup + ?Sized>(
        &'m self,
        caller: Caller<'_>,
        req: &Request<'_, H>,
    ) -> Routed<'m> {
        match caller {
            Caller::Ingress => self.route_at_ingress(req),
            Caller::Workload { namespace, labels } => self.route_at_sidecar(namespace, labels, req),
        }
    }

    /// Whether the ingress routes anything: a Gateway of the ingress on its
    /// port with a VirtualService bound to it that has a rule.
    pub fn ingress_routes_anything(&self) -> bool {
        self.gateways
            .iter()
            .filter(|g| g.serves_ingress())
            .filter(|g| g.servers.iter().any(|(p, _)| *p == INGRESS_PORT))
            .any(|g| {
                self.virtual_services.iter().any(|vs| {
                    vs.gateways.contains(&g.reference)
                        && vs.visible_from(INGRESS_NAMESPACE)
                        && vs.rules.iter().any(|r| !r.broken)
                })
            })
    }

    fn route_at_ingress<'m, H: HeaderLookup + ?Sized>(
        &'m self,
        req: &Request<'_, H>,
    ) -> Routed<'m> {
        let (host, _) = split_authority(req.authority);
        // The ingress stands for the gateway's port 80, whatever port a local
        // listener or a port-forward exposes it on.
        let port = INGRESS_PORT;
        let labels = ingress_labels();
        let bound: Vec<&str> = self
            .gateways
            .iter()
            .filter(|g| g.serves_ingress())
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
        let proxy = Proxy {
            labels,
            namespace: INGRESS_NAMESPACE,
            gateways: &bound,
            port,
        };
        // istiod writes a virtual host per VirtualService host, merging the
        // routes of those that share it; Envoy picks the most specific
        // domain (exact, then the longest wildcard). So only the
        // VirtualServices with the best host that matches are tried.
        // (Two passes over the few VirtualServices: no allocation per request.)
        let candidates = || {
            self.virtual_services
                .iter()
                .filter(|vs| {
                    vs.gateways.iter().any(|g| bound.contains(&g.as_str()))
                        && vs.visible_from(INGRESS_NAMESPACE)
                        && vs.kept(&proxy)
                })
                .filter_map(|vs| Some((specificity(vs, &host)?, vs)))
        };
        let best = candidates().map(|(s, _)| s).max();
        let mut any = None;
        for (_, vs) in candidates().filter(|(s, _)| Some(*s) == best) {
            any = Some(vs.name.as_str());
            if let Some(r) = vs.first_match(&proxy, req) {
                return Routed::Route {
                    rule: Some(&r.rule),
                    targets: r.targets_for(INGRESS_NAMESPACE),
                    policy: &r.policy,
                };
            }
        }
        match any {
            Some(name) => Routed::NoRoute(NoRoute::NoRuleMatched(name)),
            None => Routed::NoRoute(NoRoute::NoVirtualService),
        }
    }

    fn route_at_sidecar<'m, H: HeaderLookup + ?Sized>(
        &'m self,
        namespace: &str,
        labels: &Labels,
        req: &Request<'_, H>,
    ) -> Routed<'m> {
        let (host, port) = split_authority(req.authority);
        let name = expand_authority(&host, namespace);
        // No Service on that host and port: the sidecar's catch-all virtual
        // host (`allow_any`) passes it through.
        let port = port.unwrap_or(80);
        // A `Sidecar` resource limits the hosts the proxy knows; with
        // REGISTRY_ONLY an unknown one is refused instead of passed through.
        let scope = self.sidecar_of(namespace, labels);
        let unknown = || match scope {
            Some(sc) if sc.registry_only => Routed::Blocked,
            _ => Routed::Passthrough,
        };
        let Some(svc) = self
            .service(&name)
            .filter(|&s| self.services[s].ports.contains(&port))
            .filter(|&s| scope.is_none_or(|sc| sc.shows(&self.services[s], namespace)))
        else {
            return unknown();
        };
        // Ambient: no sidecar routes the call; the Service's waypoint does,
        // or, without one, ztunnel carries it at L4 to any endpoint.
        if self.ambient.is_ambient(namespace) {
            return match self.ambient.waypoint(svc) {
                Some((wns, wlabels)) => self.route_at_waypoint(svc, wns, wlabels, port, req),
                None => Routed::Route {
                    rule: None,
                    targets: &self.default_targets[svc],
                    policy: &DEFAULT_POLICY,
                },
            };
        }
        let proxy = Proxy {
            labels,
            namespace,
            gateways: &[MESH],
            port,
        };
        // The VirtualService that names the host exactly wins, else the one
        // with the most specific wildcard (istiod's separateVSHostsAndServices
        // and mostSpecificWildcardVsIndex); among equals the first read.
        // `weather check` reports two for one host (IST0109).

        let vs = self
            .virtual_services
            .iter()
            .filter(|vs| {
                vs.gateways.iter().any(|g| g == MESH)
                    && vs.visible_from(namespace)
                    && vs.kept(&proxy)
                    // Gateway semantics: a route of the proxy's namespace
                    // (consumer) or of the Service's (producer) only.
                    && (!vs.gateway_semantics
                        || vs.namespace == namespace
                        || vs.namespace == self.services[svc].namespace)
            })
            .filter_map(|vs| Some((specificity(vs, &name)?, vs)))
            .fold(
                None,
                |best: Option<(usize, &CompiledVs)>, (s, vs)| match best {
                    Some((b, _)) if b >= s => best,
                    _ => Some((s, vs)),
                },
            )
            .map(|(_, vs)| vs);
        match vs {
            Some(vs) => match vs.first_match(&proxy, req) {
                Some(r) => Routed::Route {
                    rule: Some(&r.rule),
                    targets: r.targets_for(namespace),
                    policy: &r.policy,
                },
                None => Routed::NoRoute(NoRoute::NoRuleMatched(&vs.name)),
            },
            None => Routed::Route {
                rule: None,
                targets: &self.default_targets[svc],
                policy: &DEFAULT_POLICY,
            },
        }
    }
}

impl Mesh {
    /// The `Sidecar` resource of a workload: one selecting it in its
    /// namespace, else its namespace's without selector, else the root
    /// namespace's without selector.
    /// The waypoint's routes for Service `svc` ([`crate::ambient`]): every
    /// VirtualService of the waypoint's or the Service's namespace for its
    /// host, in order, matches with `sourceLabels` dropped.
    fn route_at_waypoint<'m, H: HeaderLookup + ?Sized>(
        &'m self,
        svc: usize,
        waypoint_ns: &str,
        waypoint_labels: &Labels,
        port: u16,
        req: &Request<'_, H>,
    ) -> Routed<'m> {
        let info = &self.services[svc];
        let proxy = Proxy {
            labels: waypoint_labels,
            namespace: waypoint_ns,
            gateways: &[MESH],
            port,
        };
        let mut any = None;
        let vses = self.virtual_services.iter().filter(|vs| {
            vs.gateways.iter().any(|g| g == MESH)
                && vs.visible_from(waypoint_ns)
                && (vs.namespace == waypoint_ns || vs.namespace == info.namespace)
                && vs.hosts.iter().any(|h| host_matches(h, &info.fqdn))
        });
        for vs in vses {
            for r in vs.rules.iter().filter(|r| !r.broken) {
                let mut kept = r
                    .matches
                    .iter()
                    .filter(|m| m.source_labels.is_empty() && m.kept(&proxy))
                    .peekable();
                if !r.matches.is_empty() && kept.peek().is_none() {
                    continue;
                }
                any = Some(vs.name.as_str());
                if r.matches.is_empty() || kept.any(|m| m.holds(req)) {
                    return Routed::Route {
                        rule: Some(&r.rule),
                        targets: r.targets_for(waypoint_ns),
                        policy: &r.policy,
                    };
                }
            }
        }
        match any {
            Some(name) => Routed::NoRoute(NoRoute::NoRuleMatched(name)),
            None => Routed::Route {
                rule: None,
                targets: &self.default_targets[svc],
                policy: &DEFAULT_POLICY,
            },
        }
    }

    fn sidecar_of(&self, namespace: &str, labels: &Labels) -> Option<&CompiledSidecar> {
        self.sidecars
            .iter()
            .find(|s| {
                s.namespace == namespace
                    && s.selector.as_ref().is_some_and(|l| subset_of(labels, l))
            })
            .or_else(|| {
                [namespace, ROOT_NAMESPACE].iter().find_map(|ns| {
                    self.sidecars
                        .iter()
                        .find(|s| s.namespace == *ns && s.selector.is_none())
                })
            })
    }
}

impl CompiledSidecar {
    /// Whether an egress host (`namespace/host`: `.` the Sidecar's own
    /// namespace, `*` any, `~` none; host `*`, `*.suffix` or exact) names the
    /// Service.
    fn shows(&self, svc: &crate::routing::ServiceInfo, proxy_ns: &str) -> bool {
        self.hosts.iter().any(|(ns, host)| {
            let ns_ok = match ns.as_str() {
                "*" => true,
                "~" => false,
                "." => svc.namespace == proxy_ns,
                other => svc.namespace == other,
            };
            ns_ok && host_matches(host, &svc.fqdn)
        })
    }
}

impl CompiledVs {
    /// Whether istiod pushes any of its rules to this proxy.
    fn kept(&self, proxy: &Proxy<'_>) -> bool {
        self.rules.iter().any(|r| r.kept(proxy))
    }

    fn first_match<H: HeaderLookup + ?Sized>(
        &self,
        proxy: &Proxy<'_>,
        req: &Request<'_, H>,
    ) -> Option<&CompiledRule> {
        self.rules.iter().find(|r| {
            r.kept(proxy)
                && (r.matches.is_empty() || r.matches.iter().any(|m| m.kept(proxy) && m.holds(req)))
        })
    }
}

impl CompiledRule {
    fn kept(&self, proxy: &Proxy<'_>) -> bool {
        !self.broken && (self.matches.is_empty() || self.matches.iter().any(|m| m.kept(proxy)))
    }
}

impl CompiledMatch {
    /// istiod's `sourceMatchHTTP` and the port check of `TranslateRoute`.
    fn kept(&self, proxy: &Proxy<'_>) -> bool {
        if self.port.is_some_and(|p| p != proxy.port) {
            return false;
        }
        if !self.gateways.is_empty() {
            return self
                .gateways
                .iter()
                .any(|g| proxy.gateways.contains(&g.as_str()));
        }
        subset_of(proxy.labels, &self.source_labels)
            && self
                .source_namespace
                .as_deref()
                .is_none_or(|ns| ns == proxy.namespace)
    }

    /// Envoy's route match: every field of the entry holds.
    fn holds<H: HeaderLookup + ?Sized>(&self, req: &Request<'_, H>) -> bool {
        let (path, query) = req.path.split_once('?').unwrap_or((req.path, ""));
        if let Some(m) = &self.uri {
            // Envoy's case_sensitive applies to path and prefix, not to a regex.
            let ok = if self.ignore_uri_case && !matches!(m, Matcher::Regex(_)) {
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
            || self
                .authority
                .as_ref()
                .is_some_and(|m| !m.matches(req.authority))
        {
            return false;
        }
        for (name, m) in &self.headers {
            // A JWT claim, where the proxy verified one (only a gateway does).
            if let Some(path) = routing_claim(name) {
                let values = claim_values(req.headers.claims(), &path);
                if !values.iter().any(|v| m.matches(v)) {
                    return false;
                }
                continue;
            }
            match req.headers.header(name) {
                Some(v) if m.matches(&v) => {}
                _ => return false,
            }
        }
        // istiod inverts the match and, but for a presence match, treats a
        // missing header as empty (`treat_missing_header_as_empty`).
        for (name, m) in &self.without_headers {
            if let Some(path) = routing_claim(name) {
                let values = claim_values(req.headers.claims(), &path);
                if values.iter().any(|v| m.matches(v)) {
                    return false;
                }
                continue;
            }
            let excluded = match req.headers.header(name) {
                Some(v) => m.matches(&v),
                None => !matches!(m, Matcher::Present) && m.matches(""),
            };
            if excluded {
                return false;
            }
        }
        self.query.iter().all(|(name, m)| {
            query_pairs(query)
                .find(|(k, _)| k == name)
                .is_some_and(|(_, v)| m.matches(v))
        })
    }
}

fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}
