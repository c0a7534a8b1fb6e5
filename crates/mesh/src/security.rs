//! What a request meets at its destination's proxy before the app sees it, in
//! Envoy's filter order as istiod builds it: mTLS (PeerAuthentication), the JWT
//! filter (RequestAuthentication, [`crate::authn`]), then RBAC
//! (AuthorizationPolicy, [`crate::authz`]). The ingress gateway is a
//! destination too: policies selecting `istio: ingressgateway` in
//! `istio-system` apply there, to requests from outside the mesh.

use crate::{
    authn::{self, Carrier, Keys, Mtls, Outcome, Provider},
    authz::{self, Decision, Policy, Subject},
    load::Manifests,
    model::Labels,
    routing::Workload,
    terms::{Claims, HeaderLookup, INGRESS_NAMESPACE, ingress_labels, principal},
};

/// The ServiceAccount of Istio's ingress gateway (the demo profile's).
pub const INGRESS_SERVICE_ACCOUNT: &str = "istio-ingressgateway-service-account";
/// The port the ingress gateway's pod receives the Gateway's port 80 on.
pub const INGRESS_TARGET_PORT: u16 = 8080;

/// The pods the local ingress stands for, as Istio names them: in the
/// identity they present, in the metrics they report, to the selectors of
/// policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressPods {
    /// Their Deployment, which is also their canonical service.
    pub workload: String,
    pub service_account: String,
    /// Their `app` label, if they have one.
    pub app: Option<String>,
    pub labels: Labels,
}

impl Default for IngressPods {
    /// Istio's ingress gateway, as the demo profile installs it.
    fn default() -> IngressPods {
        IngressPods {
            workload: "istio-ingressgateway".to_owned(),
            service_account: INGRESS_SERVICE_ACCOUNT.to_owned(),
            app: Some("istio-ingressgateway".to_owned()),
            labels: ingress_labels().clone(),
        }
    }
}

impl IngressPods {
    /// The ingress of the manifests `m`. When no Istio Gateway selects the
    /// demo profile's ingress and a Gateway API Gateway of class `istio` is in
    /// its namespace, the ingress is the pods istiod deploys for that Gateway
    /// (the first by name): Deployment, ServiceAccount and canonical service
    /// all `NAME-CLASS` (istiod's `gatewaycommon.GetDefaultName`), labelled
    /// as `kube-gateway.yaml` labels them, with no `app`. Otherwise it is the
    /// demo profile's ingress gateway.
    pub fn of(m: &Manifests) -> IngressPods {
        let istio_gateway = m.gateways.iter().any(|g| {
            !g.spec.selector.is_empty()
                && crate::terms::subset_of(ingress_labels(), &g.spec.selector)
        });
        let kube = m
            .kube_gateways
            .iter()
            .filter(|g| {
                g.metadata.ns() == INGRESS_NAMESPACE
                    && g.spec.gateway_class_name == crate::gateway_api::ISTIO_CLASS
            })
            .min_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let Some(g) = kube.filter(|_| !istio_gateway) else {
            return IngressPods::default();
        };
        let class = &g.spec.gateway_class_name;
        let name = format!("{}-{class}", g.metadata.name);
        let labels = Labels::from([
            (
                crate::gateway_api::GATEWAY_NAME_LABEL.to_owned(),
                g.metadata.name.clone(),
            ),
            (
                "gateway.networking.k8s.io/gateway-class-name".to_owned(),
                class.clone(),
            ),
            (
                "gateway.istio.io/managed".to_owned(),
                "istio.io-gateway-controller".to_owned(),
            ),
            ("service.istio.io/canonical-name".to_owned(), name.clone()),
            (
                "service.istio.io/canonical-revision".to_owned(),
                "latest".to_owned(),
            ),
            ("sidecar.istio.io/inject".to_owned(), "false".to_owned()),
        ]);
        IngressPods {
            workload: name.clone(),
            service_account: name,
            app: None,
            labels,
        }
    }

    /// The mTLS identity they present to the workloads they call.
    pub fn principal(&self) -> String {
        principal(INGRESS_NAMESPACE, &self.service_account)
    }
}

/// A workload's mTLS identity.
pub fn workload_principal(w: &Workload) -> String {
    principal(&w.namespace, &w.service_account)
}

/// The security objects, compiled, and what applies where, resolved once per
/// destination when the manifests are applied (no request pays for finding
/// its policies).
#[derive(Debug, Default)]
pub struct Security {
    pub policies: Vec<Policy>,
    pub providers: Vec<Provider>,
    /// Per workload of the mesh, by index; then the ingress gateway.
    scopes: Vec<Scope>,
    /// Nothing here can refuse a request: read on every hop.
    open: bool,
}

/// What applies at one destination.
#[derive(Debug)]
struct Scope {
    mtls: Mtls,
    /// The PeerAuthentication that set the mode (`None`: Istio's default).
    mtls_policy: Option<String>,
    /// Indices into `policies` and `providers`.
    policies: Vec<usize>,
    providers: Vec<usize>,
    /// The port its proxy receives on.
    port: u16,
}

/// Where a request arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// Istio's ingress gateway, from outside the mesh.
    Ingress,
    /// A workload's pod, through its sidecar: its index in the mesh's
    /// workloads.
    Workload(usize),
}

/// A request as it arrives.
pub struct Arrival<'a, H: HeaderLookup + ?Sized> {
    /// The caller's mTLS identity when it is in the mesh (a sidecar or the
    /// ingress gateway); `None` from outside.
    pub caller: Option<&'a str>,
    pub host: &'a str,
    pub method: &'a str,
    /// The normalized path, without the query.
    pub path: &'a str,
    /// The query, without `?`.
    pub query: &'a str,
    pub headers: &'a H,
}

/// What the destination's proxy decided.
#[derive(Clone, Debug)]
pub struct Admission<'a> {
    pub mtls: Mtls,
    /// The PeerAuthentication that set the mode; `None`: Istio's default.
    pub mtls_policy: Option<&'a str>,
    /// The peer identity authorization sees: the caller's, over mTLS.
    pub peer: Option<&'a str>,
    pub jwt: Outcome,
    /// `None` when the request was refused before authorization.
    pub decision: Option<Decision<'a>>,
}

/// How the proxy refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub body: &'static str,
}

impl Admission<'_> {
    /// `None`: the request goes to the app.
    pub fn refusal(&self) -> Option<Refusal> {
        if let Outcome::Invalid { message } = self.jwt {
            return Some(Refusal {
                status: 401,
                body: message,
            });
        }
        if self.mtls == Mtls::Strict && self.peer.is_none() {
            return Some(Refusal {
                status: 503,
                body: "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            });
        }
        match &self.decision {
            Some(d) if !d.allowed() => Some(Refusal {
                status: 403,
                body: "RBAC: access denied",
            }),
            _ => None,
        }
    }

    /// The claims of a verified JWT.
    pub fn claims(&self) -> Option<&Claims> {
        match &self.jwt {
            Outcome::Valid { claims, .. } => Some(claims),
            _ => None,
        }
    }

    /// Lines for `weather route`; `at` names the destination (`ingress
    /// gateway`, whose clients are outside the mesh, has no mTLS line).
    pub fn describe(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        if at != "ingress gateway" {
            out.push(format!(
                "{at}: mTLS {}{}",
                self.mtls.name(),
                match &self.mtls_policy {
                    Some(p) => format!(" (PeerAuthentication {p})"),
                    None => " (no PeerAuthentication: Istio's default)".to_owned(),
                }
            ));
        }
        match &self.jwt {
            Outcome::NoToken => {}
            Outcome::Valid { policy, claims } => out.push(format!(
                "{at}: JWT of {} verified by RequestAuthentication {policy}",
                authn::request_principal(claims).unwrap_or_else(|| "?".into())
            )),
            Outcome::Invalid { message } => {
                out.push(format!("{at}: JWT refused: 401 {message}"));
            }
        }
        if self.mtls == Mtls::Strict && self.peer.is_none() {
            out.push(format!("{at}: plaintext refused by STRICT mTLS"));
        }
        if let Some(d) = &self.decision {
            out.push(format!("{at}: {}", d.describe()));
        }
        out
    }
}

impl Security {
    /// Compiles the security objects of `m` for the mesh's `workloads` and
    /// its `ingress`.
    pub fn compile(m: &Manifests, workloads: &[Workload], ingress: &IngressPods) -> Security {
        let policies: Vec<Policy> = m
            .authorization_policies
            .iter()
            .map(Policy::compile)
            .collect();
        let providers: Vec<Provider> = m
            .request_authentications
            .iter()
            .flat_map(Provider::compile)
            .collect();
        let pa = &m.peer_authentications;
        let scope = |ns: &str, labels: &Labels, port: u16, mtls: Option<(Mtls, Option<String>)>| {
            let (mtls, mtls_policy) =
                mtls.unwrap_or_else(|| authn::mtls_mode(pa, ns, labels, port));
            Scope {
                mtls,
                mtls_policy,
                policies: (0..policies.len())
                    .filter(|&i| policies[i].applies_to(ns, labels))
                    .collect(),
                providers: (0..providers.len())
                    .filter(|&i| providers[i].applies_to(ns, labels))
                    .collect(),
                port,
            }
        };
        let mut scopes: Vec<Scope> = workloads
            .iter()
            .map(|w| scope(&w.namespace, &w.labels, w.port.unwrap_or(0), None))
            .collect();
        // The gateway's clients are outside the mesh: no mTLS to speak of.
        scopes.push(scope(
            INGRESS_NAMESPACE,
            &ingress.labels,
            INGRESS_TARGET_PORT,
            Some((Mtls::Permissive, None)),
        ));
        let open = policies.is_empty()
            && providers.is_empty()
            && scopes.iter().all(|s| s.mtls != Mtls::Strict);
        Security {
            policies,
            providers,
            scopes,
            open,
        }
    }

    fn scope(&self, dest: Dest) -> Option<&Scope> {
        match dest {
            Dest::Ingress => self.scopes.last(),
            Dest::Workload(i) => self.scopes.get(i).filter(|_| i + 1 < self.scopes.len()),
        }
    }

    /// The mTLS mode of a destination's port, and the policy that set it.
    pub fn mtls(&self, dest: Dest) -> (Mtls, Option<&str>) {
        self.scope(dest).map_or((Mtls::Permissive, None), |s| {
            (s.mtls, s.mtls_policy.as_deref())
        })
    }

    /// The JWT providers of a destination.
    pub fn providers(&self, dest: Dest) -> impl Iterator<Item = &Provider> {
        self.scope(dest)
            .into_iter()
            .flat_map(|s| s.providers.iter().map(|&i| &self.providers[i]))
    }

    /// The AuthorizationPolicies of a destination.
    pub fn policies(&self, dest: Dest) -> impl Iterator<Item = &Policy> + Clone {
        self.scope(dest)
            .into_iter()
            .flat_map(|s| s.policies.iter().map(|&i| &self.policies[i]))
    }

    /// Whether nothing here can refuse a request: no policy, no JWT rule, no
    /// STRICT mode anywhere.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// mTLS, JWT and authorization of one request at `dest`. `keys` gives the
    /// keys of a `jwksUri`.
    pub fn admit<'a, H: HeaderLookup + ?Sized>(
        &'a self,
        dest: Dest,
        a: &Arrival<'a, H>,
        keys: Keys<'_>,
    ) -> Admission<'a> {
        let (mtls, mtls_policy) = self.mtls(dest);
        let peer = match (dest, mtls) {
            (Dest::Ingress, _) | (_, Mtls::Disable) => None,
            _ => a.caller,
        };
        let providers: Vec<&Provider> = self.providers(dest).collect();
        let jwt = if providers.is_empty() {
            Outcome::NoToken
        } else {
            authn::authenticate(
                &providers,
                &Carrier {
                    headers: a.headers,
                    query: a.query,
                },
                keys,
            )
        };
        let mut admission = Admission {
            mtls,
            mtls_policy,
            peer,
            jwt,
            decision: None,
        };
        if admission.refusal().is_some() {
            return admission;
        }
        let subject = Subject {
            peer,
            jwt: admission.claims(),
            host: a.host,
            port: self.scope(dest).map_or(0, |s| s.port),
            method: a.method,
            path: a.path,
            headers: a.headers,
        };
        let decision = authz::decide(self.policies(dest), &subject);
        admission.decision = Some(decision);
        admission
    }
}
