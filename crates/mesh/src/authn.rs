//! Istio's authentication, as the destination's proxy applies it
//! (docs/architecture.md, "Security the model enforces"):
//!
//! - **PeerAuthentication**: the mTLS mode of a workload's port. The most
//!   specific policy decides: one selecting the workload (its `portLevelMtls`
//!   for the port first), then the namespace's policy without selector, then
//!   the mesh's (root namespace, no selector); `UNSET` defers to the next; with
//!   none, `PERMISSIVE`. Every caller in the model is a sidecar or the ingress
//!   gateway, which speak mTLS whenever the destination does not `DISABLE` it
//!   (Istio's auto mTLS): so the peer has its identity unless the mode is
//!   `DISABLE`.
//! - **RequestAuthentication**: the JWT rules of the workload, as istiod
//!   configures Envoy's `jwt_authn` (`policy_applier.go`): each rule a provider,
//!   required as "any provider, or no token at all" (`allow_missing`). A request
//!   without a token passes unauthenticated; a token that fails is refused with
//!   401 and Envoy's message; a valid one gives its claims to authorization and
//!   to `@request.auth.claims` routes at a gateway. Tokens are read where the
//!   rule says (`fromHeaders`, `fromParams`, `fromCookies`), else from
//!   `Authorization: Bearer` and the `access_token` parameter; keys come from
//!   `jwks` or `jwksUri` (fetched by the caller, see [`Keys`]); `exp` and `nbf`
//!   are checked with Envoy's 60 s of clock skew, `aud` against `audiences`.

use std::{borrow::Cow, sync::Arc};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind, jwk::Jwk,
};

pub use jsonwebtoken::jwk::JwkSet;

use crate::{
    model::{Labels, PeerAuthentication, RequestAuthentication},
    terms::{Claims, HeaderLookup, ROOT_NAMESPACE, selects, subset_of, trim_ows},
};

/// A PeerAuthentication mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mtls {
    Permissive,
    Strict,
    Disable,
}

impl Mtls {
    fn parse(mode: Option<&str>) -> Option<Mtls> {
        match mode {
            Some("STRICT") => Some(Mtls::Strict),
            Some("PERMISSIVE") => Some(Mtls::Permissive),
            Some("DISABLE") => Some(Mtls::Disable),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mtls::Permissive => "PERMISSIVE",
            Mtls::Strict => "STRICT",
            Mtls::Disable => "DISABLE",
        }
    }
}

fn selector_of(s: &Option<crate::model::WorkloadSelector>) -> Option<&Labels> {
    s.as_ref()
        .map(|s| &s.match_labels)
        .filter(|l| !l.is_empty())
}

/// The mTLS mode of a workload's `port`, and the policy that decided it
/// (`None`: Istio's default, PERMISSIVE).
pub fn mtls_mode(
    policies: &[PeerAuthentication],
    namespace: &str,
    labels: &Labels,
    port: u16,
) -> (Mtls, Option<String>) {
    let named = |p: &PeerAuthentication| format!("{}/{}", p.metadata.ns(), p.metadata.name);
    let workload = policies.iter().find(|p| {
        p.metadata.ns() == namespace
            && selector_of(&p.spec.selector).is_some_and(|s| subset_of(labels, s))
    });
    if let Some(p) = workload {
        let by_port = p
            .spec
            .port_level_mtls
            .get(&u32::from(port))
            .and_then(|m| Mtls::parse(m.mode.as_deref()));
        let mode =
            by_port.or_else(|| Mtls::parse(p.spec.mtls.as_ref().and_then(|m| m.mode.as_deref())));
        if let Some(mode) = mode {
            return (mode, Some(named(p)));
        }
    }
    for ns in [namespace, ROOT_NAMESPACE] {
        let wide = policies
            .iter()
            .find(|p| p.metadata.ns() == ns && selector_of(&p.spec.selector).is_none());
        if let Some(p) = wide
            && let Some(mode) = Mtls::parse(p.spec.mtls.as_ref().and_then(|m| m.mode.as_deref()))
        {
            return (mode, Some(named(p)));
        }
    }
    (Mtls::Permissive, None)
}

/// Where a token is read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Location {
    Header { name: String, prefix: String },
    Param(String),
    Cookie(String),
}

/// One `jwtRules` entry of a RequestAuthentication, compiled.
#[derive(Clone, Debug)]
pub struct Provider {
    /// `namespace/name` of its RequestAuthentication.
    pub policy: String,
    pub namespace: String,
    pub selector: Option<Labels>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_uri: Option<String>,
    jwks: Option<Result<Arc<JwkSet>, String>>,
    locations: Vec<Location>,
}

impl Provider {
    /// The providers of one RequestAuthentication (one per JWT rule). A
    /// `targetRef` policy applies to no sidecar and no classic gateway.
    pub fn compile(ra: &RequestAuthentication) -> Vec<Provider> {
        if ra.spec.target_ref.is_some() || ra.spec.target_refs.is_some() {
            return Vec::new();
        }
        ra.spec
            .jwt_rules
            .iter()
            .map(|r| {
                let mut locations: Vec<Location> = r
                    .from_headers
                    .iter()
                    .map(|h| Location::Header {
                        name: h.name.to_ascii_lowercase(),
                        prefix: h.prefix.clone().unwrap_or_default(),
                    })
                    .chain(r.from_params.iter().cloned().map(Location::Param))
                    .chain(r.from_cookies.iter().cloned().map(Location::Cookie))
                    .collect();
                if locations.is_empty() {
                    locations = vec![
                        Location::Header {
                            name: "authorization".into(),
                            prefix: "Bearer ".into(),
                        },
                        Location::Param("access_token".into()),
                    ];
                }
                Provider {
                    policy: format!("{}/{}", ra.metadata.ns(), ra.metadata.name),
                    namespace: ra.metadata.ns().to_owned(),
                    selector: selector_of(&ra.spec.selector).cloned(),
                    issuer: r.issuer.clone(),
                    audiences: r.audiences.clone(),
                    jwks_uri: r.jwks_uri.clone().filter(|_| r.jwks.is_none()),
                    jwks: r.jwks.as_ref().map(|text| {
                        serde_json::from_str::<JwkSet>(text)
                            .map(Arc::new)
                            .map_err(|e| format!("jwks does not parse: {e}"))
                    }),
                    locations,
                }
            })
            .collect()
    }

    /// Whether it applies to a pod with these labels in `namespace` (in the
    /// root namespace, to such pods everywhere), as for AuthorizationPolicy.
    pub fn applies_to(&self, namespace: &str, labels: &Labels) -> bool {
        selects(&self.namespace, self.selector.as_ref(), namespace, labels)
    }

    /// A problem with its inline `jwks`, for `weather check`.
    pub fn jwks_problem(&self) -> Option<&str> {
        match &self.jwks {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// The keys of a `jwksUri`, as the caller fetched them (`None`: could not).
pub type Keys<'a> = &'a dyn Fn(&str) -> Option<Arc<JwkSet>>;

/// What the JWT filter made of a request.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// No RequestAuthentication applies, or it found no token: the request
    /// goes on unauthenticated.
    NoToken,
    /// A token verified by `policy`.
    Valid { policy: String, claims: Claims },
    /// 401, with Envoy's message (`Jwt is expired`, ...).
    Invalid { message: &'static str },
}

/// The request's parts a token may be in.
pub struct Carrier<'a, H: HeaderLookup + ?Sized> {
    pub headers: &'a H,
    /// The query, without `?`.
    pub query: &'a str,
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = trim_ows(kv).split_once('=')?;
        (k == name).then_some(v)
    })
}

impl Location {
    fn read<'a, H: HeaderLookup + ?Sized>(&self, c: &'a Carrier<'a, H>) -> Option<Cow<'a, str>> {
        match self {
            Location::Header { name, prefix } => {
                let v = c.headers.header(name)?;
                let token = trim_ows(v.strip_prefix(prefix.as_str())?).to_owned();
                (!token.is_empty()).then_some(Cow::Owned(token))
            }
            Location::Param(p) => form_pairs(c.query)
                .find(|(k, _)| k == p)
                .map(|(_, v)| Cow::Owned(v)),
            Location::Cookie(name) => {
                let h = c.headers.header("cookie")?;
                cookie(&h, name).map(|v| Cow::Owned(v.to_owned()))
            }
        }
    }
}

fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Envoy's `jwt_authn` messages for the failures the model tells apart.
fn message(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "Jwt is expired",
        ErrorKind::ImmatureSignature => "Jwt not yet valid",
        ErrorKind::InvalidAudience => "Audiences in Jwt are not allowed",
        ErrorKind::InvalidSignature => "Jwt verification fails",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "Jwks doesn't have key to match kid or alg from Jwt"
        }
        ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidClaimFormat(_) => {
            "Jwt payload is an invalid JSON"
        }
        // Header and payload were read before: what is left is the signature.
        ErrorKind::Base64(_) => "Jwt signature is an invalid Base64url encoded",
        _ => "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
    }
}

/// The JWT filter of a workload: `providers` are those that apply to it.
pub fn authenticate<H: HeaderLookup + ?Sized>(
    providers: &[&Provider],
    carrier: &Carrier<'_, H>,
    keys: Keys<'_>,
) -> Outcome {
    let mut first_error = None;
    let mut seen = Vec::new();
    for p in providers {
        for loc in &p.locations {
            let Some(token) = loc.read(carrier) else {
                continue;
            };
            if seen.contains(&token) {
                continue;
            }
            seen.push(token.clone());
            match verify(providers, &token, keys) {
                Ok((policy, claims)) => return Outcome::Valid { policy, claims },
                Err(m) => {
                    first_error.get_or_insert(m);
                }
            }
        }
    }
    match first_error {
        Some(message) => Outcome::Invalid { message },
        None => Outcome::NoToken,
    }
}

/// The key of `set` the token names (`kid`), or the first of its algorithm.
fn key_for<'s>(set: &'s JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<&'s Jwk> {
    match kid {
        Some(kid) => set.find(kid),
        None => set
            .keys
            .iter()
            .find(|k| DecodingKey::from_jwk(k).is_ok_and(|d| d.family() == alg.family())),
    }
}

fn verify(
    providers: &[&Provider],
    token: &str,
    keys: Keys<'_>,
) -> Result<(String, Claims), &'static str> {
    let part = |kind: &ErrorKind, header: &'static str, payload: &'static str| match kind {
        ErrorKind::Base64(_) => header,
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => payload,
        other => message(other),
    };
    let header = decode_header(token).map_err(|e| {
        part(
            e.kind(),
            "Jwt header is an invalid Base64url encoded",
            "Jwt header is an invalid JSON",
        )
    })?;
    let unverified: Claims =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|e| {
            part(
                e.kind(),
                "Jwt payload is an invalid Base64url encoded",
                "Jwt payload is an invalid JSON",
            )
        })?;
    let iss = unverified.get("iss").and_then(|v| v.as_str()).unwrap_or("");
    let provider = providers
        .iter()
        .find(|p| p.issuer == iss)
        .ok_or("Jwt issuer is not configured")?;
    let set = match (&provider.jwks, &provider.jwks_uri) {
        (Some(Ok(set)), _) => Some(set.clone()),
        (None, Some(uri)) => keys(uri),
        _ => None,
    };
    const NO_KEY: &str = "Jwks doesn't have key to match kid or alg from Jwt";
    let set = set.ok_or(NO_KEY)?;
    let jwk = key_for(&set, header.kid.as_deref(), header.alg).ok_or(NO_KEY)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| NO_KEY)?;
    let mut v = Validation::new(header.alg);
    v.leeway = 60;
    v.validate_nbf = true;
    v.required_spec_claims.clear();
    if provider.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&provider.audiences);
        v.required_spec_claims.insert("aud".into());
    }
    let data = decode::<Claims>(token, &key, &v).map_err(|e| message(e.kind()))?;
    Ok((provider.policy.clone(), data.claims))
}

/// `iss/sub` of verified claims: the request principal.
pub fn request_principal(claims: &Claims) -> Option<String> {
    let iss = claims.get("iss")?.as_str()?;
    let sub = claims.get("sub")?.as_str()?;
    Some(format!("{iss}/{sub}"))
}

#[cfg(test)]
mod tests;
