//! A route's timeout and retry policy, as istiod translates a VirtualService's
//! `timeout` and `retries` (pilot/pkg/networking/core/route/retry/retry.go):
//! no timeout unless one is set, and Istio's default retries when none are
//! (2 retries on `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`
//! with no status code listed, so in practice on connect failures only).
//! The data plane applies it per hop (docs/architecture.md, "Timeouts and
//! retries"); the conformance test compares it with the routes istiod pushes.

use std::time::Duration;

use serde_json::Value;

pub use crate::duration::parse_duration;
use crate::{
    fault::{self, Fault},
    target::Target,
};

/// What `retryOn` asks for, as Envoy's router reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// The conditions as istiod passes them to Envoy, status codes taken out.
    pub conditions: Vec<String>,
    /// `retriable-status-codes`: the response codes retried.
    pub status_codes: Vec<u16>,
}

impl RetryOn {
    fn has(&self, c: &str) -> bool {
        self.conditions.iter().any(|x| x == c)
    }

    /// A connection that could not be made (Envoy's `UF`).
    pub fn connect_failure(&self) -> bool {
        self.has("connect-failure") || self.has("5xx") || self.has("gateway-error")
    }

    /// A connection reset or closed before the response began (`UC`).
    pub fn reset(&self) -> bool {
        self.has("reset") || self.has("5xx")
    }

    /// The attempt's own timeout (`perTryTimeout`) ran out.
    pub fn per_try_timeout(&self) -> bool {
        self.has("5xx") || self.has("gateway-error")
    }

    /// A response with this status.
    pub fn status(&self, code: u16) -> bool {
        (self.has("5xx") && code >= 500)
            || (self.has("gateway-error") && matches!(code, 502..=504))
            || (self.has("retriable-status-codes") && self.status_codes.contains(&code))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retries {
    /// Retries after the first attempt; 0 turns them off.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub on: RetryOn,
}

/// A route's timeout, retries and fault injection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The whole request, retries included; `None`: no timeout, Istio's default.
    pub timeout: Option<Duration>,
    pub retries: Retries,
    /// What the calling proxy's fault filter does first ([`crate::fault`]).
    pub fault: Option<Fault>,
    /// Copies of the request sent elsewhere, their answers dropped.
    pub mirrors: Vec<Mirror>,
    /// The route's `headers`: what the router changes in the request it
    /// forwards and the answer it passes back.
    pub headers: crate::headers::Headers,
}

/// A route's `mirror` (or an entry of `mirrors`), as istiod writes a
/// `request_mirror_policy`: the destination, the share of requests copied
/// (per million; 100 % when no percentage is set, none when it is 0), the
/// copy's Host left as it was (istiod's `DISABLE_SHADOW_HOST_SUFFIX`) and its
/// trace not sampled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    pub target: Target,
    pub per_million: u32,
}

/// Istio's `retryOn` when a VirtualService sets none.
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

impl Default for Policy {
    /// What istiod gives a route that sets neither field.
    fn default() -> Self {
        Policy {
            timeout: None,
            fault: None,
            mirrors: Vec::new(),
            headers: Default::default(),
            retries: Retries {
                attempts: 2,
                per_try_timeout: None,
                on: parse_retry_on(DEFAULT_RETRY_ON),
            },
        }
    }
}

/// `retryOn` split as istiod does: integers that are HTTP status codes go to
/// `retriable-status-codes` (added when missing), the rest stay conditions.
pub fn parse_retry_on(s: &str) -> RetryOn {
    let mut on = RetryOn::default();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u16>() {
            Ok(code) if (100..600).contains(&code) => on.status_codes.push(code),
            _ => on.conditions.push(part.to_owned()),
        }
    }
    if !on.status_codes.is_empty() && !on.has("retriable-status-codes") {
        on.conditions.push("retriable-status-codes".into());
    }
    on
}

/// The policy of a route with these `timeout`, `retries` and `fault` fields;
/// an error names the field.
pub fn compile(
    timeout: Option<&Value>,
    retries: Option<&Value>,
    fault: Option<&Value>,
) -> Result<Policy, (String, String)> {
    let mut p = Policy::default();
    if let Some(f) = fault {
        p.fault = fault::compile(f)?;
    }
    if let Some(t) = timeout {
        let d = parse_duration(t).map_err(|e| ("timeout".to_owned(), e))?;
        // 0s turns the timeout off, as in Envoy.
        p.timeout = (!d.is_zero()).then_some(d);
    }
    let Some(r) = retries else { return Ok(p) };
    let field = |f: &str| format!("retries.{f}");
    let obj = r
        .as_object()
        .ok_or_else(|| ("retries".to_owned(), "must be a mapping".to_owned()))?;
    for key in obj.keys() {
        if ![
            "attempts",
            "perTryTimeout",
            "retryOn",
            "retryRemoteLocalities",
            "retryIgnorePreviousHosts",
            "backoff",
        ]
        .contains(&key.as_str())
        {
            return Err((field(key), "unknown field".into()));
        }
    }
    let attempts = match obj.get("attempts") {
        None => 0,
        Some(a) => a
            .as_i64()
            .ok_or_else(|| (field("attempts"), format!("{a} is not a number")))?,
    };
    // istiod: attempts <= 0 means no retry policy at all.
    if attempts <= 0 {
        p.retries.attempts = 0;
        return Ok(p);
    }
    p.retries.attempts =
        u32::try_from(attempts).map_err(|_| (field("attempts"), "too large".to_owned()))?;
    if let Some(on) = obj.get("retryOn") {
        let s = on
            .as_str()
            .ok_or_else(|| (field("retryOn"), format!("{on} is not a string")))?;
        if !s.trim().is_empty() {
            p.retries.on = parse_retry_on(s);
        }
    }
    if let Some(t) = obj.get("perTryTimeout") {
        let d = parse_duration(t).map_err(|e| (field("perTryTimeout"), e))?;
        p.retries.per_try_timeout = (!d.is_zero()).then_some(d);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn istio_defaults_retry_connect_failures_twice_and_never_time_out() {
        let p = Policy::default();
        assert_eq!(p.timeout, None);
        assert_eq!(p.retries.attempts, 2);
        assert!(p.retries.on.connect_failure());
        assert!(!p.retries.on.reset());
        assert!(!p.retries.on.status(503));
    }

    #[test]
    fn fields_compile_as_istiod_reads_them() {
        let p = compile(
            Some(&json!("1.5s")),
            Some(
                &json!({"attempts": 3, "perTryTimeout": "0.25s", "retryOn": "gateway-error, 429"}),
            ),
            None,
        )
        .unwrap();
        assert_eq!(p.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(p.retries.attempts, 3);
        assert_eq!(p.retries.per_try_timeout, Some(Duration::from_millis(250)));
        assert_eq!(
            p.retries.on.conditions,
            ["gateway-error", "retriable-status-codes"]
        );
        assert_eq!(p.retries.on.status_codes, [429]);
        assert!(p.retries.on.status(503) && p.retries.on.status(429) && !p.retries.on.status(500));
        assert_eq!(
            compile(Some(&json!("0s")), Some(&json!({"attempts": 0})), None)
                .unwrap()
                .retries
                .attempts,
            0
        );
        assert_eq!(
            compile(Some(&json!("0s")), None, None).unwrap().timeout,
            None
        );
        // Attempts without retryOn keep Istio's conditions.
        let p = compile(None, Some(&json!({"attempts": 5})), None).unwrap();
        assert_eq!(p.retries.on, Policy::default().retries.on);
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(
            compile(Some(&json!("300ms")), None, None).unwrap_err().0,
            "timeout"
        );
        assert_eq!(
            compile(Some(&json!(5)), None, None).unwrap_err().0,
            "timeout"
        );
        assert_eq!(
            compile(
                None,
                Some(&json!({"attempts": 2, "perTryTimeout": "x"})),
                None
            )
            .unwrap_err()
            .0,
            "retries.perTryTimeout"
        );
        assert_eq!(
            compile(None, Some(&json!({"atempts": 2})), None)
                .unwrap_err()
                .0,
            "retries.atempts"
        );
    }
}
