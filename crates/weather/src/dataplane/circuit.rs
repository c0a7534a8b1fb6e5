//! What each calling proxy keeps per cluster when its DestinationRule sets a
//! `connectionPool` or `outlierDetection` ([`mesh::cluster`]): Envoy's circuit
//! breakers (requests in flight, connections, the queue waiting for one,
//! retries in flight; past a limit, 503 `UO`) and its outlier detector
//! (hosts ejected after consecutive errors, back at a later sweep; with no
//! healthy host left and no panic, 503 `UH`). A cluster with istiod's
//! defaults keeps nothing and costs nothing.
//!
//! State lives per hop and per cluster (`outbound|PORT|SUBSET|FQDN`), as
//! each Envoy keeps its own; a cluster whose policy changes starts afresh, as
//! Envoy rebuilds a cluster it is sent anew.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::body::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use mesh::cluster::{ClusterPolicy, Outlier};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// Envoy's cap on an ejection, `max_ejection_time`'s default.
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Every hop's clusters that have a policy.
#[derive(Default)]
pub(super) struct Circuits {
    map: Mutex<HashMap<(usize, String), Arc<Circuit>>>,
}

impl Circuits {
    /// The state of `cluster` as seen from hop `peer`, if its policy keeps
    /// any.
    pub(super) fn get(
        &self,
        peer: usize,
        cluster: &str,
        policy: &ClusterPolicy,
    ) -> Option<Arc<Circuit>> {
        if policy.is_default() {
            return None;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let slot = map
            .entry((peer, cluster.to_owned()))
            .or_insert_with(|| Arc::new(Circuit::new(policy.clone())));
        if slot.policy != *policy {
            *slot = Arc::new(Circuit::new(policy.clone()));
        }
        Some(slot.clone())
    }
}

/// One cluster of one hop.
pub(super) struct Circuit {
    policy: ClusterPolicy,
    /// Requests in flight (Envoy's `max_requests`).
    requests: AtomicU32,
    /// Connections busy: on HTTP/1.1 one request each.
    connections: Arc<Semaphore>,
    /// Requests waiting for a connection.
    pending: AtomicU32,
    /// Retries in flight.
    retries: AtomicU32,
    hosts: Mutex<HashMap<SocketAddr, Host>>,
    /// When the detector started: its sweeps come every `interval` from here.
    started: Instant,
}

#[derive(Default)]
struct Host {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    /// Ejected until the first sweep at or after this.
    ejected_until: Option<Instant>,
    ejections: u32,
}

/// Why the circuit refused a request: Envoy's overflow.
pub(super) struct Overflow;

/// A request's place in the circuit: freed when dropped.
pub(super) struct Permit {
    circuit: Arc<Circuit>,
    _connection: Option<OwnedSemaphorePermit>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.circuit.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What came of an attempt, as the outlier detector counts it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Outcome {
    /// The upstream answered with this status.
    Status(u16),
    /// It could not be reached, reset, or timed out: a local-origin error,
    /// counted as a 5xx and a gateway error (Envoy does not split them unless
    /// told, and istiod does not tell it).
    Failed,
}

impl Circuit {
    fn new(policy: ClusterPolicy) -> Circuit {
        let permits = (policy.pool.max_connections as usize).min(Semaphore::MAX_PERMITS);
        Circuit {
            policy,
            requests: AtomicU32::new(0),
            connections: Arc::new(Semaphore::new(permits)),
            pending: AtomicU32::new(0),
            retries: AtomicU32::new(0),
            hosts: Mutex::default(),
            started: Instant::now(),
        }
    }

    /// A place for one request: at once if a connection is free, after a
    /// wait in the queue if the queue has room, else [`Overflow`].
    pub(super) async fn admit(self: &Arc<Self>) -> Result<Permit, Overflow> {
        let pool = &self.policy.pool;
        if self.requests.fetch_add(1, Ordering::AcqRel) >= pool.max_requests {
            self.requests.fetch_sub(1, Ordering::AcqRel);
            return Err(Overflow);
        }
        // From here the permit owns the count of requests.
        let mut permit = Permit {
            circuit: self.clone(),
            _connection: None,
        };
        if pool.max_connections == u32::MAX {
            return Ok(permit);
        }
        match self.connections.clone().try_acquire_owned() {
            Ok(c) => permit._connection = Some(c),
            Err(_) => {
                if self.pending.fetch_add(1, Ordering::AcqRel) >= pool.max_pending {
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                    return Err(Overflow);
                }
                let c = self.connections.clone().acquire_owned().await;
                self.pending.fetch_sub(1, Ordering::AcqRel);
                permit._connection = c.ok();
            }
        }
        Ok(permit)
    }

    /// Whether one more retry may start (`maxRetries` in flight); the
    /// guard ends it.
    pub(super) fn retry(self: &Arc<Self>) -> Option<RetryGuard> {
        if self.retries.fetch_add(1, Ordering::AcqRel) >= self.policy.pool.max_retries {
            self.retries.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(RetryGuard(self.clone()))
    }

    fn outlier(&self) -> Option<&Outlier> {
        self.policy.outlier.as_ref()
    }

    /// The first sweep at or after `t`.
    fn sweep_after(&self, o: &Outlier, t: Instant) -> Instant {
        let interval = o.interval.max(Duration::from_millis(1));
        let since = t.saturating_duration_since(self.started);
        let n = since.as_nanos().div_ceil(interval.as_nanos());
        self.started + interval * u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Of `hosts`, those the balancer may pick: all but the ejected, or all
    /// when fewer than the panic threshold are healthy. Empty: no healthy
    /// host and no panic.
    pub(super) fn usable(&self, hosts: &[SocketAddr]) -> Vec<usize> {
        let all: Vec<usize> = (0..hosts.len()).collect();
        let Some(o) = self.outlier() else {
            return all;
        };
        let now = Instant::now();
        let mut state = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let healthy: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| {
                let Some(h) = state.get_mut(&hosts[i]) else {
                    return true;
                };
                match h.ejected_until {
                    Some(until) if now < until => false,
                    Some(_) => {
                        h.ejected_until = None;
                        true
                    }
                    None => true,
                }
            })
            .collect();
        let percent = healthy.len() * 100 / hosts.len().max(1);
        if (percent as u32) < o.panic_threshold {
            return all;
        }
        healthy
    }

    /// Counts an attempt's outcome against its host, and ejects it when a
    /// detector's count is reached and the hosts ejected stay within
    /// `maxEjectionPercent` of `hosts`.
    pub(super) fn report(&self, host: SocketAddr, outcome: Outcome, hosts: usize) {
        let Some(o) = self.outlier() else { return };
        let (five, gateway) = match outcome {
            Outcome::Status(s) => (s >= 500, matches!(s, 502..=504)),
            Outcome::Failed => (true, true),
        };
        let now = Instant::now();
        let mut state = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let ejected = state
            .values()
            .filter(|h| h.ejected_until.is_some_and(|u| now < u))
            .count();
        let h = state.entry(host).or_default();
        if h.ejected_until.is_some_and(|u| now < u) {
            return;
        }
        h.consecutive_5xx = if five { h.consecutive_5xx + 1 } else { 0 };
        h.consecutive_gateway = if gateway {
            h.consecutive_gateway + 1
        } else {
            0
        };
        let tripped = (o.consecutive_5xx > 0 && h.consecutive_5xx >= o.consecutive_5xx)
            || (o.consecutive_gateway > 0 && h.consecutive_gateway >= o.consecutive_gateway);
        if !tripped {
            return;
        }
        h.consecutive_5xx = 0;
        h.consecutive_gateway = 0;
        let share = 100 * (ejected + 1) / hosts.max(1);
        if share > o.max_ejection_percent as usize {
            return;
        }
        h.ejections += 1;
        let time = (o.base_ejection_time * h.ejections).min(MAX_EJECTION.max(o.base_ejection_time));
        let until = self.sweep_after(o, now + time);
        h.ejected_until = Some(until);
        tracing::info!(
            "outlier detection: {host} ejected (ejection {}), back at the sweep {:.1}s from now",
            h.ejections,
            (until - now).as_secs_f64()
        );
    }
}

/// A retry in flight.
pub(super) struct RetryGuard(Arc<Circuit>);

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request's place in the circuit until its
/// last byte: on HTTP/1.1 the connection is busy until then.
pub(super) struct Holding<B> {
    inner: B,
    _permit: Option<Permit>,
}

impl<B> Holding<B> {
    pub(super) fn new(inner: B, permit: Option<Permit>) -> Self {
        Holding {
            inner,
            _permit: permit,
        }
    }
}

impl<B> HttpBody for Holding<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = poll {
            self._permit = None;
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use mesh::cluster::Pool;

    use super::*;

    fn policy(pool: Pool, outlier: Option<Outlier>) -> ClusterPolicy {
        ClusterPolicy { pool, outlier }
    }

    fn outlier(n: u32, max_percent: u32, panic: u32) -> Outlier {
        Outlier {
            consecutive_5xx: n,
            consecutive_gateway: 0,
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_secs(3),
            max_ejection_percent: max_percent,
            panic_threshold: panic,
        }
    }

    #[tokio::test]
    async fn past_the_connections_and_the_queue_a_request_overflows() {
        let c = Arc::new(Circuit::new(policy(
            Pool {
                max_connections: 1,
                max_pending: 1,
                ..Pool::default()
            },
            None,
        )));
        let first = c.admit().await.ok().expect("a free connection");
        // The second waits in the queue; the third finds it full.
        let c2 = c.clone();
        let second = tokio::spawn(async move { c2.admit().await.is_ok() });
        weather_core::testing::eventually("the second request waits", async || {
            c.pending.load(Ordering::Acquire) == 1
        })
        .await;
        assert!(c.admit().await.is_err(), "the queue holds one");
        drop(first);
        assert!(
            second.await.unwrap(),
            "the queued request gets the connection"
        );
        assert_eq!(c.requests.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn max_requests_counts_requests_in_flight() {
        let c = Arc::new(Circuit::new(policy(
            Pool {
                max_requests: 2,
                ..Pool::default()
            },
            None,
        )));
        let (a, b) = (c.admit().await.ok(), c.admit().await.ok());
        assert!(a.is_some() && b.is_some());
        assert!(c.admit().await.is_err());
        drop(a);
        assert!(c.admit().await.is_ok());
    }

    #[test]
    fn max_retries_counts_retries_in_flight() {
        let c = Arc::new(Circuit::new(policy(
            Pool {
                max_retries: 1,
                ..Pool::default()
            },
            None,
        )));
        let first = c.retry();
        assert!(first.is_some());
        assert!(c.retry().is_none(), "one retry in flight at most");
        drop(first);
        assert!(c.retry().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_host_is_ejected_within_the_share_and_back_at_a_sweep() {
        let hosts: Vec<SocketAddr> = vec!["127.0.0.1:1".parse().unwrap()];
        // 10 %: the only host is never ejected (istiod does not set
        // always_eject_one_host).
        let c = Circuit::new(policy(Pool::default(), Some(outlier(1, 10, 0))));
        c.report(hosts[0], Outcome::Status(500), 1);
        assert_eq!(c.usable(&hosts), [0]);
        // 100 %: ejected, no panic: nothing usable.
        let c = Circuit::new(policy(Pool::default(), Some(outlier(2, 100, 0))));
        c.report(hosts[0], Outcome::Status(503), 1);
        c.report(hosts[0], Outcome::Status(200), 1);
        c.report(hosts[0], Outcome::Failed, 1);
        assert_eq!(
            c.usable(&hosts),
            [0],
            "a success in between resets the count"
        );
        c.report(hosts[0], Outcome::Status(500), 1);
        assert!(c.usable(&hosts).is_empty());
        // Back at the first sweep after 3 s.
        tokio::time::advance(Duration::from_millis(2999)).await;
        assert!(c.usable(&hosts).is_empty());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(c.usable(&hosts), [0]);
        // With a panic threshold, all hosts are used when too few are healthy.
        let c = Circuit::new(policy(Pool::default(), Some(outlier(1, 100, 50))));
        c.report(hosts[0], Outcome::Failed, 1);
        assert_eq!(c.usable(&hosts), [0]);
    }
}
