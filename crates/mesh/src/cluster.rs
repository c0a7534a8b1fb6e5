//! A cluster's circuit breakers and outlier detection, as istiod writes them
//! from a DestinationRule's `trafficPolicy` (`applyConnectionPool` and
//! `applyOutlierDetection` in `pilot/pkg/networking/core/cluster_traffic_policy.go`)
//! and Envoy applies them on the calling proxy, per cluster
//! (docs/architecture.md, "Resilience"):
//!
//! - a subset's `trafficPolicy` replaces the top level's `connectionPool`
//!   and `outlierDetection` each whole (`MergeTrafficPolicy`);
//! - every threshold istiod does not set is Envoy's "unlimited" as istiod
//!   writes it (`MaxUint32`); a value of 0 or less leaves it so;
//! - outlier detection, when set, ejects a host after `consecutive5xxErrors`
//!   5xx answers or failures to reach it (Envoy's default 5 when unset, none
//!   when 0) or `consecutiveGatewayErrors` 502, 503, 504 or failures (none
//!   unless set), for `baseEjectionTime` times the ejections so far (30 s),
//!   (at most 300 s, Envoy's `max_ejection_time`), returning at the next
//!   `interval` sweep (10 s); only while the hosts ejected stay within
//!   `maxEjectionPercent` (10 %): istiod does not set Envoy's
//!   `always_eject_one_host`, so the only host of a cluster is ejected only
//!   with 100; and `minHealthPercent` is the panic threshold, 0 (never panic)
//!   unless set.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::{duration::parse_duration, fault::mapping};

/// Envoy's circuit-breaker thresholds for one cluster (HTTP/1.1 upstreams).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// `tcp.maxConnections`: connections open at once, so, on HTTP/1.1,
    /// requests in flight.
    pub max_connections: u32,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection.
    pub max_pending: u32,
    /// `http.http2MaxRequests`: requests in flight, on any protocol.
    pub max_requests: u32,
    /// `http.maxRetries`: retries in flight.
    pub max_retries: u32,
    /// `http.maxRequestsPerConnection`: 0 for no limit.
    pub max_requests_per_connection: u32,
}

impl Default for Pool {
    /// istiod's thresholds when nothing is set: unlimited.
    fn default() -> Self {
        Pool {
            max_connections: u32::MAX,
            max_pending: u32::MAX,
            max_requests: u32::MAX,
            max_retries: u32::MAX,
            max_requests_per_connection: 0,
        }
    }
}

/// Outlier detection, as Envoy reads the cluster istiod writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outlier {
    /// Consecutive 5xx (or failures to reach the host) before an ejection;
    /// 0: this detector is off.
    pub consecutive_5xx: u32,
    /// Consecutive 502, 503, 504 (or failures); 0: off.
    pub consecutive_gateway: u32,
    /// How often ejected hosts are looked at and returned.
    pub interval: Duration,
    /// An ejection lasts this, times the host's ejections so far.
    pub base_ejection_time: Duration,
    /// At most this share of the hosts ejected.
    pub max_ejection_percent: u32,
    /// Below this share of healthy hosts the balancer panics and uses all.
    pub panic_threshold: u32,
}

/// A cluster's resilience settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterPolicy {
    pub pool: Pool,
    pub outlier: Option<Outlier>,
}

impl ClusterPolicy {
    /// Whether it changes anything from istiod's defaults.
    pub fn is_default(&self) -> bool {
        *self == ClusterPolicy::default()
    }

    /// What it does, in short lines, for `weather route`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        let p = &self.pool;
        let limit = |v: u32| (v != u32::MAX).then(|| v.to_string());
        let mut pool = Vec::new();
        for (name, v) in [
            ("maxConnections", limit(p.max_connections)),
            ("http1MaxPendingRequests", limit(p.max_pending)),
            ("http2MaxRequests", limit(p.max_requests)),
            ("maxRetries", limit(p.max_retries)),
        ] {
            if let Some(v) = v {
                pool.push(format!("{name} {v}"));
            }
        }
        if !pool.is_empty() {
            out.push(format!(
                "connection pool: {} (past them: 503 UO)",
                pool.join(", ")
            ));
        }
        if let Some(o) = &self.outlier {
            let mut on = Vec::new();
            if o.consecutive_5xx > 0 {
                on.push(format!("{} consecutive 5xx", o.consecutive_5xx));
            }
            if o.consecutive_gateway > 0 {
                on.push(format!(
                    "{} consecutive gateway errors",
                    o.consecutive_gateway
                ));
            }
            let on = if on.is_empty() {
                "never (both detectors off)".to_owned()
            } else {
                on.join(" or ")
            };
            let panic = if o.panic_threshold == 0 {
                "never panics (minHealthPercent 0, Istio's default): with every host ejected, 503 UH".to_owned()
            } else {
                format!(
                    "below {}% healthy hosts it panics and uses them all",
                    o.panic_threshold
                )
            };
            out.push(format!(
                "outlier detection: ejects a host after {on}, for {}s x its ejections, at most {}% of hosts; {panic}",
                o.base_ejection_time.as_secs_f64(),
                o.max_ejection_percent,
            ));
        }
        out
    }
}

/// The field an error is in, and what is wrong.
pub type Problem = (String, String);

/// An integer field; absent is `None`.
fn int(obj: &Map<String, Value>, at: &str, key: &str) -> Result<Option<i64>, Problem> {
    obj.get(key)
        .map(|v| {
            v.as_i64()
                .ok_or_else(|| (format!("{at}.{key}"), format!("{v} is not an integer")))
        })
        .transpose()
}

/// A threshold istiod sets only when above 0.
fn threshold(obj: &Map<String, Value>, at: &str, key: &str, slot: &mut u32) -> Result<(), Problem> {
    if let Some(n) = int(obj, at, key)?
        && n > 0
    {
        *slot = u32::try_from(n).map_err(|_| (format!("{at}.{key}"), "too large".to_owned()))?;
    }
    Ok(())
}

fn duration(obj: &Map<String, Value>, at: &str, key: &str) -> Result<Option<Duration>, Problem> {
    obj.get(key)
        .map(|v| parse_duration(v).map_err(|e| (format!("{at}.{key}"), e)))
        .transpose()
}

const POOL_TCP: &[&str] = &[
    "maxConnections",
    "connectTimeout",
    "tcpKeepalive",
    "maxConnectionDuration",
    "idleTimeout",
];
const POOL_HTTP: &[&str] = &[
    "http1MaxPendingRequests",
    "http2MaxRequests",
    "maxRequestsPerConnection",
    "maxRetries",
    "idleTimeout",
    "h2UpgradePolicy",
    "useClientProtocol",
    "maxConcurrentStreams",
    "http2KeepAlive",
];

fn pool(v: &Value, at: &str) -> Result<Pool, Problem> {
    let obj = mapping(v, at, &["tcp", "http"])?;
    let mut p = Pool::default();
    if let Some(tcp) = obj.get("tcp") {
        let at = format!("{at}.tcp");
        let tcp = mapping(tcp, &at, POOL_TCP)?;
        threshold(tcp, &at, "maxConnections", &mut p.max_connections)?;
    }
    if let Some(http) = obj.get("http") {
        let at = format!("{at}.http");
        let http = mapping(http, &at, POOL_HTTP)?;
        threshold(http, &at, "http1MaxPendingRequests", &mut p.max_pending)?;
        threshold(http, &at, "http2MaxRequests", &mut p.max_requests)?;
        threshold(http, &at, "maxRetries", &mut p.max_retries)?;
        if let Some(n) = int(http, &at, "maxRequestsPerConnection")? {
            p.max_requests_per_connection = u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        }
    }
    Ok(p)
}

const OUTLIER: &[&str] = &[
    "consecutiveErrors",
    "consecutive5xxErrors",
    "consecutiveGatewayErrors",
    "consecutiveLocalOriginFailures",
    "splitExternalLocalOriginErrors",
    "interval",
    "baseEjectionTime",
    "maxEjectionPercent",
    "minHealthPercent",
];

fn outlier(v: &Value, at: &str) -> Result<Outlier, Problem> {
    let obj = mapping(v, at, OUTLIER)?;
    let count = |key: &str, default: u32| -> Result<u32, Problem> {
        Ok(match int(obj, at, key)? {
            None => default,
            Some(n) => u32::try_from(n)
                .map_err(|_| (format!("{at}.{key}"), format!("{n} is not a count")))?,
        })
    };
    let max_ejection_percent = match int(obj, at, "maxEjectionPercent")? {
        Some(n @ 1..=100) => n as u32,
        Some(n) if n <= 0 => 10,
        Some(n) => {
            return Err((
                format!("{at}.maxEjectionPercent"),
                format!("{n} is not a percentage"),
            ));
        }
        None => 10,
    };
    let panic_threshold = match int(obj, at, "minHealthPercent")? {
        Some(n @ 0..=100) => n as u32,
        Some(n) => {
            return Err((
                format!("{at}.minHealthPercent"),
                format!("{n} is not a percentage"),
            ));
        }
        None => 0,
    };
    Ok(Outlier {
        consecutive_5xx: count("consecutive5xxErrors", 5)?,
        consecutive_gateway: count("consecutiveGatewayErrors", 0)?,
        interval: duration(obj, at, "interval")?.unwrap_or(Duration::from_secs(10)),
        base_ejection_time: duration(obj, at, "baseEjectionTime")?
            .unwrap_or(Duration::from_secs(30)),
        max_ejection_percent,
        panic_threshold,
    })
}

/// The fields of `trafficPolicy` the model applies, and those it reads only
/// to warn of.
pub const APPLIED: &[&str] = &["connectionPool", "outlierDetection"];

/// The policy of a cluster of a DestinationRule whose `trafficPolicy` is
/// `top`, for a subset whose own is `subset` (`None`: the host's own cluster).
/// `at` is where `top` is, for errors (`trafficPolicy`).
pub fn compile(
    top: Option<&Value>,
    subset: Option<(&Value, &str)>,
) -> Result<ClusterPolicy, Problem> {
    let field = |tp: Option<&Value>, key: &str| tp.and_then(|t| t.get(key)).cloned();
    let mut pool_v = field(top, "connectionPool").map(|v| (v, "trafficPolicy".to_owned()));
    let mut outlier_v = field(top, "outlierDetection").map(|v| (v, "trafficPolicy".to_owned()));
    if let Some((s, at)) = subset {
        if let Some(v) = s.get("connectionPool") {
            pool_v = Some((v.clone(), at.to_owned()));
        }
        if let Some(v) = s.get("outlierDetection") {
            outlier_v = Some((v.clone(), at.to_owned()));
        }
    }
    for (tp, at) in [(top, "trafficPolicy")]
        .into_iter()
        .chain(subset.map(|(s, at)| (Some(s), at)))
    {
        if let Some(tp) = tp
            && !tp.is_object()
        {
            return Err((at.to_owned(), "must be a mapping".to_owned()));
        }
    }
    let pool = match pool_v {
        Some((v, at)) => pool(&v, &format!("{at}.connectionPool"))?,
        None => Pool::default(),
    };
    let outlier = match outlier_v {
        Some((v, at)) => Some(outlier(&v, &format!("{at}.outlierDetection"))?),
        None => None,
    };
    Ok(ClusterPolicy { pool, outlier })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn istio_circuit_breaking_task_compiles_as_istiod_writes_it() {
        let tp = json!({
            "connectionPool": {"tcp": {"maxConnections": 1},
                "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1}},
            "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s",
                "baseEjectionTime": "180s", "maxEjectionPercent": 100},
        });
        let p = compile(Some(&tp), None).unwrap();
        assert_eq!(p.pool.max_connections, 1);
        assert_eq!(p.pool.max_pending, 1);
        assert_eq!(p.pool.max_requests, u32::MAX);
        assert_eq!(p.pool.max_requests_per_connection, 1);
        let o = p.outlier.unwrap();
        assert_eq!(
            o,
            Outlier {
                consecutive_5xx: 1,
                consecutive_gateway: 0,
                interval: Duration::from_secs(1),
                base_ejection_time: Duration::from_secs(180),
                max_ejection_percent: 100,
                panic_threshold: 0,
            }
        );
    }

    #[test]
    fn unset_and_zero_are_envoys_defaults_and_a_subset_replaces_each_block_whole() {
        let top = json!({
            "connectionPool": {"tcp": {"maxConnections": 0}, "http": {"http1MaxPendingRequests": 5}},
            "outlierDetection": {},
        });
        let p = compile(Some(&top), None).unwrap();
        assert_eq!(p.pool.max_connections, u32::MAX);
        assert_eq!(p.pool.max_pending, 5);
        let o = p.outlier.clone().unwrap();
        assert_eq!((o.consecutive_5xx, o.consecutive_gateway), (5, 0));
        assert_eq!(o.interval, Duration::from_secs(10));
        assert_eq!(o.base_ejection_time, Duration::from_secs(30));
        assert_eq!(o.max_ejection_percent, 10);
        // The subset sets its own pool: the top level's pool is gone, its
        // outlier detection stays.
        let sub = json!({"connectionPool": {"tcp": {"maxConnections": 3}}});
        let s = compile(Some(&top), Some((&sub, "subsets[0].trafficPolicy"))).unwrap();
        assert_eq!(s.pool.max_connections, 3);
        assert_eq!(s.pool.max_pending, u32::MAX);
        assert_eq!(s.outlier, p.outlier);
        assert!(compile(None, None).unwrap().is_default());
    }

    #[test]
    fn bad_fields_are_named() {
        for (tp, field) in [
            (
                json!({"connectionPool": {"tcp": {"maxConnections": "1"}}}),
                "trafficPolicy.connectionPool.tcp.maxConnections",
            ),
            (
                json!({"outlierDetection": {"interval": "1"}}),
                "trafficPolicy.outlierDetection.interval",
            ),
            (
                json!({"outlierDetection": {"maxEjectionPercent": 101}}),
                "trafficPolicy.outlierDetection.maxEjectionPercent",
            ),
            (
                json!({"outlierDetection": {"consecutive5xxErrors": -1}}),
                "trafficPolicy.outlierDetection.consecutive5xxErrors",
            ),
            (
                json!({"connectionPool": {"htp": {}}}),
                "trafficPolicy.connectionPool.htp",
            ),
        ] {
            assert_eq!(compile(Some(&tp), None).unwrap_err().0, field, "{tp}");
        }
    }
}
