//! Istio's AuthorizationPolicy rules translated into the model's compiled
//! form, as istiod's `pilot/pkg/security/authz/model` builds Envoy RBAC
//! policies from them: each `from`, `to` and `when` field a [`Field`] of
//! values to match and values not to.

use regex::Regex;

use super::{Attribute, Field, Pattern, Rule, Value_};
use crate::model::{AuthzRule, Condition, Operation, Source};

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or(&[])
}

/// A field from its values and `not` values; `None` when neither is set.
fn field(
    attribute: Attribute,
    values: &[String],
    not: &[String],
    compile: &dyn Fn(&str) -> Result<Value_, String>,
) -> Result<Option<Field>, String> {
    if values.is_empty() && not.is_empty() {
        return Ok(None);
    }
    let all = |vs: &[String]| vs.iter().map(|v| compile(v)).collect::<Result<Vec<_>, _>>();
    Ok(Some(Field {
        attribute,
        values: all(values)?,
        not: all(not)?,
    }))
}

fn glob_value(v: &str) -> Result<Value_, String> {
    Ok(Value_::Glob(v.to_owned()))
}

fn header_value(v: &str) -> Result<Value_, String> {
    Ok(Value_::Header(v.to_owned()))
}

/// `.*/ns/NS/.*`, `*` in NS standing for `.*`, as `srcNamespaceGenerator`.
fn namespace_value(v: &str) -> Result<Value_, String> {
    let ns = v
        .split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(".*");
    regex_value(&format!(".*/ns/{ns}/.*"))
}

fn regex_value(r: &str) -> Result<Value_, String> {
    Regex::new(&format!("^(?:{r})$"))
        .map(Value_::Regex)
        .map_err(|e| e.to_string())
}

fn request_principal_value(v: &str) -> Result<Value_, String> {
    use Pattern::*;
    let (iss, sub, found) = match v.rfind('/') {
        Some(i) => (&v[..i], &v[i + 1..], true),
        None => (v, "", false),
    };
    let trim_start = |s: &str| s.strip_prefix('*').unwrap_or(s).to_owned();
    let trim_end = |s: &str| s.strip_suffix('*').unwrap_or(s).to_owned();
    let (iss, sub) = if v == "*" {
        (NonEmpty, NonEmpty)
    } else if v.starts_with('*') {
        if found {
            let iss = if iss == "*" {
                NonEmpty
            } else {
                Suffix(trim_start(iss))
            };
            (iss, Exact(sub.to_owned()))
        } else {
            (NonEmpty, Suffix(trim_start(v)))
        }
    } else if v.ends_with('*') {
        if found {
            let sub = if sub == "*" {
                NonEmpty
            } else {
                Prefix(trim_end(sub))
            };
            (Exact(iss.to_owned()), sub)
        } else {
            (Prefix(trim_end(v)), NonEmpty)
        }
    } else {
        (Exact(iss.to_owned()), Exact(sub.to_owned()))
    };
    Ok(Value_::RequestPrincipal { iss, sub })
}

fn not_modelled(what: &str) -> Result<Option<Field>, String> {
    Err(format!("{what} is not modelled"))
}

fn source(s: &Source, policy_ns: &str) -> Result<Vec<Field>, String> {
    if !list(&s.ip_blocks).is_empty() || !list(&s.not_ip_blocks).is_empty() {
        not_modelled("source.ipBlocks")?;
    }
    if !list(&s.remote_ip_blocks).is_empty() || !list(&s.not_remote_ip_blocks).is_empty() {
        not_modelled("source.remoteIpBlocks")?;
    }
    let ns = policy_ns.to_owned();
    let service_account = move |v: &str| {
        let (n, sa) = v.split_once('/').unwrap_or((ns.as_str(), v));
        regex_value(&format!(
            "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
            regex::escape(n),
            regex::escape(sa)
        ))
    };
    let trust_domain = |v: &str| {
        if v == "*" {
            regex_value("spiffe://.*")
        } else if !v.contains('*') {
            regex_value(&format!("spiffe://{}/.*", regex::escape(v)))
        } else {
            let (a, b) = v.split_once('*').unwrap_or((v, ""));
            regex_value(&format!(
                "spiffe://{}[^/]*{}/.*",
                regex::escape(a),
                regex::escape(b)
            ))
        }
    };
    Ok([
        field(
            Attribute::Principal,
            list(&s.principals),
            list(&s.not_principals),
            &glob_value,
        )?,
        field(
            Attribute::RequestPrincipal,
            list(&s.request_principals),
            list(&s.not_request_principals),
            &request_principal_value,
        )?,
        field(
            Attribute::Namespace,
            list(&s.namespaces),
            list(&s.not_namespaces),
            &namespace_value,
        )?,
        field(
            Attribute::ServiceAccount,
            list(&s.service_accounts),
            list(&s.not_service_accounts),
            &service_account,
        )?,
        field(
            Attribute::TrustDomain,
            list(&s.trust_domains),
            list(&s.not_trust_domains),
            &trust_domain,
        )?,
    ]
    .into_iter()
    .flatten()
    .collect())
}

fn port_value(v: &str) -> Result<Value_, String> {
    v.parse::<u16>()
        .map(Value_::Port)
        .map_err(|_| format!("port {v:?} is not a number from 0 to 65535"))
}

fn operation(o: &Operation) -> Result<Vec<Field>, String> {
    let path = |v: &str| {
        if v.contains("{*}") || v.contains("{**}") {
            Err(format!("path template {v:?} is not modelled"))
        } else {
            glob_value(v)
        }
    };
    let host = |v: &str| Ok(Value_::HostGlob(v.to_owned()));
    Ok([
        field(Attribute::Host, list(&o.hosts), list(&o.not_hosts), &host)?,
        field(
            Attribute::Port,
            list(&o.ports),
            list(&o.not_ports),
            &port_value,
        )?,
        field(
            Attribute::Method,
            list(&o.methods),
            list(&o.not_methods),
            &header_value,
        )?,
        field(Attribute::Path, list(&o.paths), list(&o.not_paths), &path)?,
    ]
    .into_iter()
    .flatten()
    .collect())
}

/// `request.auth.claims[a][b]` as `["a", "b"]`.
fn claim_path(key: &str) -> Option<Vec<String>> {
    let inner = key
        .strip_prefix("request.auth.claims[")?
        .strip_suffix(']')?;
    Some(inner.split("][").map(str::to_owned).collect())
}

fn condition(c: &Condition, policy_ns: &str) -> Result<Option<Field>, String> {
    let (values, not) = (list(&c.values), list(&c.not_values));
    let k = c.key.as_str();
    let header = k
        .strip_prefix("request.headers[")
        .and_then(|h| h.strip_suffix(']'));
    let principal_src = Source {
        principals: Some(values.to_vec()),
        not_principals: Some(not.to_vec()),
        ..Source::default()
    };
    match k {
        "source.principal" => Ok(source(&principal_src, policy_ns)?.pop()),
        "source.namespace" => field(Attribute::Namespace, values, not, &namespace_value),
        "source.serviceAccount" => {
            let s = Source {
                service_accounts: Some(values.to_vec()),
                not_service_accounts: Some(not.to_vec()),
                ..Source::default()
            };
            Ok(source(&s, policy_ns)?.pop())
        }
        "source.trustDomain" => {
            let s = Source {
                trust_domains: Some(values.to_vec()),
                not_trust_domains: Some(not.to_vec()),
                ..Source::default()
            };
            Ok(source(&s, policy_ns)?.pop())
        }
        "request.auth.principal" => field(
            Attribute::RequestPrincipal,
            values,
            not,
            &request_principal_value,
        ),
        "request.auth.audiences" => field(Attribute::Audience, values, not, &glob_value),
        "request.auth.presenter" => field(Attribute::Presenter, values, not, &glob_value),
        "destination.port" => field(Attribute::Port, values, not, &port_value),
        "source.ip" | "remote.ip" | "destination.ip" | "connection.sni" => {
            not_modelled(&format!("when {k}"))
        }
        _ if header.is_some() => field(
            Attribute::Header(header.unwrap_or_default().to_ascii_lowercase()),
            values,
            not,
            &header_value,
        ),
        _ if claim_path(k).is_some() => field(
            Attribute::Claim(claim_path(k).unwrap_or_default()),
            values,
            not,
            &glob_value,
        ),
        _ if k.starts_with("experimental.envoy.filters.") => not_modelled(&format!("when {k}")),
        _ => Err(format!("unknown attribute {k}")),
    }
}

pub(super) fn rule(index: usize, r: &AuthzRule, policy_ns: &str) -> Result<Rule, String> {
    Ok(Rule {
        index,
        from: r
            .from
            .iter()
            .map(|f| source(&f.source, policy_ns))
            .collect::<Result<_, _>>()?,
        to: r
            .to
            .iter()
            .map(|t| operation(&t.operation))
            .collect::<Result<_, _>>()?,
        when: r
            .when
            .iter()
            .map(|c| condition(c, policy_ns))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect(),
    })
}
