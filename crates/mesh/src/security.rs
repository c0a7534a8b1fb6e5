//! What a request meets at its destination's proxy before the app sees it, in
//! Envoy's filter order as istiod builds it: mTLS (PeerAuthentication), the JWT
//! filter (RequestAuthentication, [`crate::authn`]), then RBAC
//! (AuthorizationPolicy, [`crate::authz`]). The ingress gateway is a
//! destination too: policies selecting `istio: ingressgateway` in
//! `istio-system` apply there, to requests from outside the mesh.

use std::borrow::Cow;

use crate::{
    authn::{self, Carrier, Keys, Mtls, Outcome, Provider},
    authz::{self, Decision, Policy, Subject},
    load::Manifests,
    model::{Labels, PeerAuthentication},
    routing::{HeaderLookup, INGRESS_NAMESPACE, Workload, ingress_labels},
};

/// The ServiceAccount of Istio's ingress gateway (the demo profile's).
pub const INGRESS_SERVICE_ACCOUNT: &str = "istio-ingressgateway-service-account";
/// The port the ingress gateway's pod receives the Gateway's port 80 on.
pub const INGRESS_TARGET_PORT: u16 = 8080;

/// The ingress gateway's mTLS identity, which it presents to the workloads it
/// calls.
pub fn ingress_principal() -> String {
    authz::principal(INGRESS_NAMESPACE, INGRESS_SERVICE_ACCOUNT)
}

/// A workload's mTLS identity.
pub fn workload_principal(w: &Workload) -> String {
    authz::principal(&w.namespace, &w.service_account)
}

/// The security objects, compiled.
#[derive(Debug, Default)]
pub struct Security {
    pub policies: Vec<Policy>,
    pub providers: Vec<Provider>,
    peer: Vec<PeerAuthentication>,
}

/// Where a request arrives.
#[derive(Clone, Copy, Debug)]
pub enum Dest<'a> {
    /// Istio's ingress gateway, from outside the mesh.
    Ingress,
    /// A workload's pod, through its sidecar.
    Workload(&'a Workload),
}

impl Dest<'_> {
    fn namespace(&self) -> &str {
        match self {
            Dest::Ingress => INGRESS_NAMESPACE,
            Dest::Workload(w) => &w.namespace,
        }
    }

    fn labels(&self) -> &Labels {
        match self {
            Dest::Ingress => ingress_labels(),
            Dest::Workload(w) => &w.labels,
        }
    }

    fn port(&self) -> u16 {
        match self {
            Dest::Ingress => INGRESS_TARGET_PORT,
            Dest::Workload(w) => w.port.unwrap_or(0),
        }
    }
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
pub struct Admission {
    pub mtls: Mtls,
    /// The PeerAuthentication that set the mode; `None`: Istio's default.
    pub mtls_policy: Option<String>,
    /// The peer identity authorization sees: the caller's, over mTLS.
    pub peer: Option<String>,
    pub jwt: Outcome,
    /// `None` when the request was refused before authorization.
    pub decision: Option<Decision>,
}

/// How the proxy refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub body: &'static str,
}

impl Admission {
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
    pub fn claims(&self) -> Option<&authz::Claims> {
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
    pub fn compile(m: &Manifests) -> Security {
        Security {
            policies: m
                .authorization_policies
                .iter()
                .map(Policy::compile)
                .collect(),
            providers: m
                .request_authentications
                .iter()
                .flat_map(Provider::compile)
                .collect(),
            peer: m.peer_authentications.clone(),
        }
    }

    /// The mTLS mode of a destination's port, and the policy that set it.
    pub fn mtls(&self, dest: Dest<'_>) -> (Mtls, Option<String>) {
        authn::mtls_mode(&self.peer, dest.namespace(), dest.labels(), dest.port())
    }

    /// The JWT providers of a destination.
    pub fn providers(&self, dest: Dest<'_>) -> Vec<&Provider> {
        self.providers
            .iter()
            .filter(|p| p.applies_to(dest.namespace(), dest.labels()))
            .collect()
    }

    /// Whether anything here can refuse a request: no policy, no JWT rule, no
    /// STRICT mode.
    pub fn is_open(&self) -> bool {
        self.policies.is_empty() && self.providers.is_empty() && self.peer.is_empty()
    }

    /// mTLS, JWT and authorization of one request at `dest`. `keys` gives the
    /// keys of a `jwksUri`.
    pub fn admit<H: HeaderLookup + ?Sized>(
        &self,
        dest: Dest<'_>,
        a: &Arrival<'_, H>,
        keys: Keys<'_>,
    ) -> Admission {
        let (mtls, mtls_policy) = match dest {
            // The gateway's clients are outside the mesh.
            Dest::Ingress => (Mtls::Permissive, None),
            Dest::Workload(_) => self.mtls(dest),
        };
        let peer = match (dest, mtls) {
            (Dest::Ingress, _) | (_, Mtls::Disable) => None,
            _ => a.caller.map(str::to_owned),
        };
        let providers = self.providers(dest);
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
        let (namespace, labels) = (dest.namespace(), dest.labels());
        let subject = Subject {
            peer: admission.peer.as_deref(),
            jwt: admission.claims(),
            host: a.host,
            port: dest.port(),
            method: a.method,
            path: a.path,
            headers: a.headers,
        };
        let decision = authz::decide(
            self.policies
                .iter()
                .filter(|p| p.applies_to(namespace, labels)),
            &subject,
        );
        admission.decision = Some(decision);
        admission
    }
}

/// Headers seen through a verified JWT: `@request.auth.claims.NAME` and
/// `@request.auth.claims[A][B]` read the claim (a string, or a list of
/// strings joined by `,`), as a gateway's routes match them; every other
/// name is a header.
pub struct WithClaims<'a, H: HeaderLookup + ?Sized> {
    pub headers: &'a H,
    pub claims: Option<&'a authz::Claims>,
}

/// The claim path of an `@request.auth.claims` header name, as istiod's
/// `jwt.ToRoutingClaim` reads it.
pub fn routing_claim(name: &str) -> Option<Vec<&str>> {
    const PREFIX: &str = "@request.auth.claims";
    if name.len() < PREFIX.len() || !name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &name[PREFIX.len()..];
    if let Some(dotted) = rest.strip_prefix('.').filter(|r| !r.is_empty()) {
        Some(dotted.split('.').collect())
    } else if rest.len() > 2 && rest.starts_with('[') && rest.ends_with(']') {
        Some(rest[1..rest.len() - 1].split("][").collect())
    } else {
        None
    }
}

/// The values of a claim, for a route's match: a string claim as one value, a
/// list of strings as each of its strings (Envoy's list matcher `oneOf`).
pub fn claim_values(claims: Option<&authz::Claims>, path: &[&str]) -> Vec<String> {
    let Some(claims) = claims else {
        return Vec::new();
    };
    let Some((first, rest)) = path.split_first() else {
        return Vec::new();
    };
    let mut at = claims.get(*first);
    for k in rest {
        at = at.and_then(|v| v.get(k));
    }
    match at {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

impl<H: HeaderLookup + ?Sized> HeaderLookup for WithClaims<'_, H> {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers.header(name)
    }

    fn claims(&self) -> Option<&authz::Claims> {
        self.claims
    }
}
