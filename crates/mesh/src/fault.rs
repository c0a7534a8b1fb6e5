//! A route's fault injection, as istiod translates a VirtualService's `fault`
//! (`TranslateFault` in `pilot/pkg/networking/core/route/route.go`) and
//! Envoy's fault filter applies it on the calling proxy, before the router:
//!
//! - `delay.fixedDelay` holds the request that long first (flag `DI`); the
//!   route's timeout starts after it, in the router;
//! - `abort.httpStatus` answers the request without sending it on (flag
//!   `FI`, body `fault filter abort`), so no retry is made and the
//!   destination never sees it;
//! - each applies to `percentage.value` percent of requests, or the
//!   deprecated integer `percent`; with neither, to none (istiod writes a
//!   delay's unset `percent` as 0 of 100, and Envoy reads an abort's unset
//!   percentage as 0; Istio's reference: "If left unspecified, no request
//!   will be delayed", "... aborted").
//!
//! istiod keeps a share as parts per million, `value * 10000` truncated: the
//! model keeps it so too.

use std::time::Duration;

use serde_json::Value;

use crate::duration::parse_duration;

/// Parts per million: Envoy's `FractionalPercent` with denominator MILLION.
pub const MILLION: u32 = 1_000_000;

/// A route's fault injection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub delay: Option<Delay>,
    pub abort: Option<Abort>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delay {
    pub fixed: Duration,
    /// The share of requests delayed, per million.
    pub per_million: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abort {
    pub status: u16,
    /// The share of requests aborted, per million.
    pub per_million: u32,
}

impl Fault {
    /// What the fault does, in a line: `delay 2s (100%)`, `abort 503 (50%)`.
    pub fn describe(&self) -> String {
        let pct = |p: u32| format!("{}%", f64::from(p) / 10_000.0);
        let mut parts = Vec::new();
        if let Some(d) = &self.delay {
            parts.push(format!(
                "delay {}s ({})",
                d.fixed.as_secs_f64(),
                pct(d.per_million)
            ));
        }
        if let Some(a) = &self.abort {
            parts.push(format!("abort {} ({})", a.status, pct(a.per_million)));
        }
        parts.join(", ")
    }
}

/// A `percentage: {value: P}` or `percent: N` beside it, per million, as
/// istiod writes it; neither is 0.
fn share(obj: &serde_json::Map<String, Value>, at: &str) -> Result<u32, (String, String)> {
    if let Some(p) = obj.get("percentage") {
        let value = p.get("value").and_then(Value::as_f64).ok_or_else(|| {
            (
                format!("{at}.percentage"),
                "must be a mapping with a number `value`".to_owned(),
            )
        })?;
        if !(0.0..=100.0).contains(&value) {
            return Err((
                format!("{at}.percentage.value"),
                format!("{value} is not a percentage between 0 and 100"),
            ));
        }
        return Ok((value * 10_000.0) as u32);
    }
    match obj.get("percent") {
        None => Ok(0),
        Some(n) => match n.as_i64() {
            Some(n @ 0..=100) => Ok(n as u32 * 10_000),
            _ => Err((
                format!("{at}.percent"),
                format!("{n} is not a percentage between 0 and 100"),
            )),
        },
    }
}

/// `v` as a mapping of only the `known` keys; an error names the field `at`
/// (or the unknown key under it).
pub(crate) fn mapping<'a>(
    v: &'a Value,
    at: &str,
    known: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, (String, String)> {
    let obj = v
        .as_object()
        .ok_or_else(|| (at.to_owned(), "must be a mapping".to_owned()))?;
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err((format!("{at}.{k}"), "unknown field".to_owned()));
    }
    Ok(obj)
}

/// The fault of a route's `fault` field; an error names the field. An
/// `exponentialDelay` or a `grpcStatus` abort compiles to nothing, as istiod
/// drops them (the loader warns that they are not modelled).
pub fn compile(v: &Value) -> Result<Option<Fault>, (String, String)> {
    let obj = mapping(v, "fault", &["delay", "abort"])?;
    let delay = match obj.get("delay") {
        None => None,
        Some(d) => {
            let d = mapping(
                d,
                "fault.delay",
                &["fixedDelay", "exponentialDelay", "percentage", "percent"],
            )?;
            let per_million = share(d, "fault.delay")?;
            match d.get("fixedDelay") {
                Some(f) => Some(Delay {
                    fixed: parse_duration(f)
                        .map_err(|e| ("fault.delay.fixedDelay".to_owned(), e))?,
                    per_million,
                }),
                None if d.contains_key("exponentialDelay") => None,
                None => {
                    return Err(("fault.delay".to_owned(), "needs fixedDelay".to_owned()));
                }
            }
        }
    };
    let abort = match obj.get("abort") {
        None => None,
        Some(a) => {
            let a = mapping(
                a,
                "fault.abort",
                &["httpStatus", "grpcStatus", "http2Error", "percentage"],
            )?;
            let per_million = share(a, "fault.abort")?;
            match a.get("httpStatus") {
                Some(s) => match s.as_u64() {
                    Some(code @ 200..=599) => Some(Abort {
                        status: code as u16,
                        per_million,
                    }),
                    _ => {
                        return Err((
                            "fault.abort.httpStatus".to_owned(),
                            format!("{s} is not an HTTP status between 200 and 599"),
                        ));
                    }
                },
                None => None,
            }
        }
    };
    Ok((delay.is_some() || abort.is_some()).then_some(Fault { delay, abort }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn shares_are_kept_per_million_as_istiod_writes_them_and_none_means_none() {
        let f = compile(&json!({
            "delay": {"fixedDelay": "2s", "percentage": {"value": 100}},
            "abort": {"httpStatus": 503, "percentage": {"value": 0.1}},
        }))
        .unwrap()
        .unwrap();
        assert_eq!(
            f.delay,
            Some(Delay {
                fixed: Duration::from_secs(2),
                per_million: MILLION
            })
        );
        assert_eq!(
            f.abort,
            Some(Abort {
                status: 503,
                per_million: 1000
            })
        );
        assert_eq!(f.describe(), "delay 2s (100%), abort 503 (0.1%)");
        // The deprecated integer.
        let f = compile(&json!({"delay": {"fixedDelay": "0.5s", "percent": 30}}))
            .unwrap()
            .unwrap();
        assert_eq!(f.delay.unwrap().per_million, 300_000);
        // Neither: no request is delayed or aborted.
        let f = compile(&json!({"delay": {"fixedDelay": "1s"}, "abort": {"httpStatus": 500}}))
            .unwrap()
            .unwrap();
        assert_eq!(f.delay.unwrap().per_million, 0);
        assert_eq!(f.abort.unwrap().per_million, 0);
        // What istiod drops.
        assert_eq!(
            compile(
                &json!({"delay": {"exponentialDelay": "1s"}, "abort": {"grpcStatus": "UNAVAILABLE"}})
            ),
            Ok(None)
        );
    }

    #[test]
    fn bad_fields_are_named() {
        for (v, field) in [
            (
                json!({"delay": {"fixedDelay": "2"}}),
                "fault.delay.fixedDelay",
            ),
            (json!({"delay": {}}), "fault.delay"),
            (
                json!({"abort": {"httpStatus": 99}}),
                "fault.abort.httpStatus",
            ),
            (
                json!({"abort": {"httpStatus": 503, "percentage": {"value": 101}}}),
                "fault.abort.percentage.value",
            ),
            (
                json!({"abort": {"httpStatus": 503, "percentage": 50}}),
                "fault.abort.percentage",
            ),
            (
                json!({"delay": {"fixedDelay": "1s", "percent": 200}}),
                "fault.delay.percent",
            ),
            (json!({"abortt": {}}), "fault.abortt"),
            (json!([]), "fault"),
        ] {
            assert_eq!(compile(&v).unwrap_err().0, field, "{v}");
        }
    }
}
