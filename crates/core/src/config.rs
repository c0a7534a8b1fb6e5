//! Settings shared by every service. Each one is a command-line flag and an
//! environment variable (docs/architecture.md, Contracts 2), so `--help` and a Kubernetes `env:`
//! block are two views of the same definition.

use std::{fmt, net::IpAddr, time::Duration};

use clap::{Args, ValueEnum};

/// The release a binary plays. Container images bake it in with `APP_VERSION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppVersion {
    V1,
    V2,
}

impl AppVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            AppVersion::V1 => "v1",
            AppVersion::V2 => "v2",
        }
    }
}

impl fmt::Display for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AppVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" => Ok(AppVersion::V1),
            "v2" => Ok(AppVersion::V2),
            other => Err(format!("unknown version {other:?}: expected v1 or v2")),
        }
    }
}

/// What every service's router is built from.
#[derive(Args, Clone, Debug)]
pub struct AppArgs {
    /// The release this process plays: v1 or v2.
    #[arg(
        long = "app-version",
        env = "APP_VERSION",
        value_enum,
        default_value = "v1"
    )]
    pub app_version: AppVersion,

    /// Longest time one request may take before it is answered 503, so that a slow
    /// downstream can never hold a drain open (milliseconds).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Longest pause a client may make while sending a request body, before
    /// it is answered 408 (milliseconds).
    #[arg(long, env = "BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,

    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,

    #[command(flatten)]
    pub fault: FaultArgs,
}

/// Failure switches, off by default, as podinfo's `--random-error` and
/// `--random-delay`: a release's gates and rollback can be shown with a version
/// that misbehaves (docs/architecture.md, Contracts 13). Health, readiness,
/// version and metrics are never touched.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct FaultArgs {
    /// Share of requests answered 500, from 0 to 1.
    #[arg(long, env = "FAULT_ERROR_RATE", default_value_t = 0.0, value_parser = share)]
    pub fault_error_rate: f64,

    /// Latency added to every request (milliseconds).
    #[arg(long, env = "FAULT_DELAY_MS", default_value_t = 0)]
    pub fault_delay_ms: u64,
}

impl FaultArgs {
    /// Whether any fault is switched on.
    pub fn any(&self) -> bool {
        self.fault_error_rate > 0.0 || self.fault_delay_ms > 0
    }

    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.fault_delay_ms)
    }
}

/// A share between 0 and 1.
fn share(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number: expected a share from 0 to 1, e.g. 0.3"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range: expected a share from 0 to 1, e.g. 0.3"
        ))
    }
}

impl AppArgs {
    pub fn new(version: AppVersion) -> Self {
        AppArgs {
            app_version: version,
            request_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            telemetry: Default::default(),
            fault: FaultArgs::default(),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How long a request body may pause between two pieces before it is
    /// answered 408.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// The app's tracer, reporting as `app` of this version.
    pub fn telemetry(&self, app: &str) -> crate::telemetry::Telemetry {
        crate::telemetry::Telemetry::new(app, self.app_version.as_str(), &self.telemetry, &[])
    }
}

/// The default connection limit of a service. A connection holding the
/// largest head the limits allow holds hyper's read buffer grown to it
/// (64 KiB) and a write buffer: at this many a service stays under its pod's
/// 64 MiB (docs/benchmarks.md, "Hostile clients").
pub const MAX_CONNECTIONS: u32 = 512;

/// Where and how a service listens.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,

    /// After SIGTERM, how long /readyz answers 503 before the listener closes, so
    /// that Kubernetes and the mesh stop sending new requests first (milliseconds).
    /// Ctrl-C skips this delay.
    #[arg(long, env = "SHUTDOWN_DELAY_MS", default_value_t = 2000)]
    pub shutdown_delay_ms: u64,

    /// Once the listener has closed, how long in-flight requests may take
    /// before the connections left are cut (milliseconds): a client that never
    /// finishes its request cannot hold the process past a pod's grace period.
    #[arg(long, env = "DRAIN_TIMEOUT_MS", default_value_t = 20_000)]
    pub drain_timeout_ms: u64,

    /// Connections served at once; past it a few more are told 503 (the
    /// probes still answered) and the rest closed. The default keeps the
    /// service under its pod's 64 MiB with every connection holding the
    /// largest head allowed.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
}

impl ServeArgs {
    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_delay_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

/// The connect timeout every outbound call shares; each service adds its own total
/// timeout, since a hop further from the user must give up sooner.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// Connect timeout of outbound calls (milliseconds).
    #[arg(long, env = "CONNECT_TIMEOUT_MS", default_value_t = 500)]
    pub connect_timeout_ms: u64,
}

impl ClientArgs {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl Default for ClientArgs {
    fn default() -> Self {
        ClientArgs {
            connect_timeout_ms: 500,
        }
    }
}
