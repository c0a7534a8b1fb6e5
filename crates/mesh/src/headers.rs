//! A route's `headers` (and a destination's), as istiod translates them
//! (`TranslateHeadersOperations` in `pilot/pkg/networking/core/route/route.go`)
//! and Envoy's router applies them to what it forwards and what it answers:
//! the names to remove first, then each `set` (replacing every value of the
//! name) and each `add` (one more value), each list in the order of its names.
//! istiod drops the removal of `host` and of pseudo-headers (`:path`, ...);
//! a `set` or `add` of `host` or `:authority` rewrites the authority, which the
//! model does not apply (the loader warns).

use serde_json::Value;

/// What to do to one message's headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ops {
    /// Lowercase names, removed first.
    pub remove: Vec<String>,
    /// `(name, value, append)` in Envoy's order: every `set` (append false)
    /// by name, then every `add` (append true) by name.
    pub add: Vec<(String, String, bool)>,
}

impl Ops {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// These operations, then `then`'s, as one list Envoy would hold
    /// (istiod appends a lone destination's after its route's).
    pub fn then(&self, then: &Ops) -> Ops {
        let mut out = self.clone();
        out.remove.extend(then.remove.iter().cloned());
        out.add.extend(then.add.iter().cloned());
        out
    }

    /// These operations applied whole, then `then`'s applied whole: its
    /// removals come after this one's additions.
    pub fn then_separately(&self, then: &Ops) -> Ops {
        if self.is_empty() {
            return then.clone();
        }
        if then.is_empty() {
            return self.clone();
        }
        // Expressed as one list when `then` removes nothing this one adds;
        // else its removals would have to come between, which one list of
        // removals-then-additions cannot say: keep the later removal last by
        // dropping the earlier additions it removes.
        let mut out = self.clone();
        out.add.retain(|(k, _, _)| !then.remove.contains(k));
        out.remove.extend(then.remove.iter().cloned());
        out.add.extend(then.add.iter().cloned());
        out
    }

    /// In a line: `remove baggage; set x-lane=v2; add x-a=1`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.remove.is_empty() {
            parts.push(format!("remove {}", self.remove.join(", ")));
        }
        for (k, v, append) in &self.add {
            parts.push(format!("{} {k}: {v}", if *append { "add" } else { "set" }));
        }
        parts.join("; ")
    }
}

/// A route's or a destination's header operations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    pub request: Ops,
    pub response: Ops,
}

impl Headers {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// What Envoy's router does to the headers of a request sent to a
/// destination of a route: for a route's lone destination, istiod appends
/// the destination's operations to the route's (one list: removals first);
/// a weighted destination's are its cluster's own, which Envoy applies
/// before the route's.
pub fn effective(route: &Headers, destination: &Headers, lone: bool) -> Headers {
    if lone {
        Headers {
            request: route.request.then(&destination.request),
            response: route.response.then(&destination.response),
        }
    } else {
        Headers {
            request: destination.request.then_separately(&route.request),
            response: destination.response.then_separately(&route.response),
        }
    }
}

/// A name istiod will not let a route change: pseudo-headers and `host`.
fn internal(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

/// Whether `headers` sets or adds the authority (`host`, `:authority`),
/// which istiod turns into a host rewrite the model does not apply.
pub fn rewrites_authority(headers: &Value) -> bool {
    ["request"].iter().any(|side| {
        ["set", "add"].iter().any(|op| {
            headers[side][op]
                .as_object()
                .is_some_and(|m| m.keys().any(|k| internal(k)))
        })
    })
}

fn ops(v: &Value, at: &str) -> Result<Ops, (String, String)> {
    let obj = v
        .as_object()
        .ok_or_else(|| (at.to_owned(), "must be a mapping".to_owned()))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["set", "add", "remove"].contains(&k.as_str()))
    {
        return Err((format!("{at}.{k}"), "unknown field".to_owned()));
    }
    let mut out = Ops::default();
    for (op, append) in [("set", false), ("add", true)] {
        let Some(m) = obj.get(op) else { continue };
        let m = m.as_object().ok_or_else(|| {
            (
                format!("{at}.{op}"),
                "must be a mapping of names to values".to_owned(),
            )
        })?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, value) in m {
            let value = value
                .as_str()
                .ok_or_else(|| (format!("{at}.{op}.{k}"), format!("{value} is not a string")))?;
            if token(k).is_none() {
                return Err((
                    format!("{at}.{op}.{k}"),
                    "is not an HTTP header name".to_owned(),
                ));
            }
            // The authority is rewritten instead (not modelled).
            if internal(k) {
                continue;
            }
            pairs.push((k.to_ascii_lowercase(), value.to_owned()));
        }
        // istiod sorts each list by name (`SortHeaderValueOption`).
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        out.add
            .extend(pairs.into_iter().map(|(k, v)| (k, v, append)));
    }
    if let Some(r) = obj.get("remove") {
        let list = r
            .as_array()
            .ok_or_else(|| (format!("{at}.remove"), "must be a list of names".to_owned()))?;
        for n in list {
            let n = n
                .as_str()
                .ok_or_else(|| (format!("{at}.remove"), format!("{n} is not a name")))?;
            if !internal(n) {
                out.remove.push(n.to_ascii_lowercase());
            }
        }
    }
    Ok(out)
}

/// A header name as HTTP allows it (a token), lowercase.
fn token(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || b"!#$%&'*+-.^_`|~".contains(&b)
                || (b == b':' && name.starts_with(':'))
        });
    ok.then(|| name.to_ascii_lowercase())
}

/// The operations of a `headers` field; an error names the field.
pub fn compile(v: &Value, at: &str) -> Result<Headers, (String, String)> {
    let obj = v
        .as_object()
        .ok_or_else(|| (at.to_owned(), "must be a mapping".to_owned()))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["request", "response"].contains(&k.as_str()))
    {
        return Err((format!("{at}.{k}"), "unknown field".to_owned()));
    }
    let side = |s: &str| -> Result<Ops, (String, String)> {
        obj.get(s)
            .map(|v| ops(v, &format!("{at}.{s}")))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(Headers {
        request: side("request")?,
        response: side("response")?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn operations_are_in_istiods_order_and_internal_names_dropped() {
        let h = compile(
            &json!({
                "request": {
                    "set": {"X-B": "2", "x-a": "1", "host": "other"},
                    "add": {"x-c": "3"},
                    "remove": ["Baggage", ":path", "host"],
                },
                "response": {"set": {"x-served-by": "v2"}},
            }),
            "headers",
        )
        .unwrap();
        assert_eq!(h.request.remove, ["baggage"]);
        assert_eq!(
            h.request.add,
            [
                ("x-a".to_owned(), "1".to_owned(), false),
                ("x-b".to_owned(), "2".to_owned(), false),
                ("x-c".to_owned(), "3".to_owned(), true),
            ]
        );
        assert_eq!(
            h.response.add,
            [("x-served-by".to_owned(), "v2".to_owned(), false)]
        );
        assert_eq!(
            h.request.describe(),
            "remove baggage; set x-a: 1; set x-b: 2; add x-c: 3"
        );
        assert!(rewrites_authority(
            &json!({"request": {"set": {"host": "x"}}})
        ));
        assert!(!rewrites_authority(
            &json!({"request": {"set": {"x-host": "x"}}})
        ));
    }

    #[test]
    fn bad_fields_are_named() {
        for (v, field) in [
            (
                json!({"request": {"set": {"x": 1}}}),
                "headers.request.set.x",
            ),
            (json!({"request": {"sett": {}}}), "headers.request.sett"),
            (json!({"requests": {}}), "headers.requests"),
            (
                json!({"request": {"remove": "x"}}),
                "headers.request.remove",
            ),
            (
                json!({"request": {"add": {"bad name": "v"}}}),
                "headers.request.add.bad name",
            ),
        ] {
            assert_eq!(compile(&v, "headers").unwrap_err().0, field, "{v}");
        }
    }
}
