//! Serving a router: in the background on a bound listener ([`spawn`], for
//! tests and `weather up`), or as a service binary's whole `main` ([`run`]):
//! logging, bind, serve, and a graceful drain on SIGTERM.

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::Router;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use super::listen::{Limits, serve_bounded};
use crate::{
    config::{AppVersion, ServeArgs},
    telemetry,
};

/// A service as its binary runs it: settings read from flags and the
/// environment, and the router built from them. `main` and `weather up` both
/// build a service through this.
pub trait Service: clap::Args + clap::FromArgMatches {
    const APP: &'static str;
    const DEFAULT_PORT: u16;
    fn version(&self) -> AppVersion;
    fn router(&self, health: Health) -> Router;
}

/// Implements [`Service`] for a service crate's settings type, whose `app`
/// field holds the settings every service has: `service!(Config, APP,
/// DEFAULT_PORT, app)` where `app(&Config, Health) -> Router` builds the router.
#[macro_export]
macro_rules! service {
    ($config:ty, $app:expr, $port:expr, $router:path) => {
        impl $crate::server::Service for $config {
            const APP: &'static str = $app;
            const DEFAULT_PORT: u16 = $port;
            fn version(&self) -> $crate::AppVersion {
                self.app.app_version
            }
            fn router(&self, health: $crate::Health) -> ::axum::Router {
                $router(self, health)
            }
        }
    };
}

// A service binary's command line: where to listen, then the service's own.
#[derive(clap::Parser)]
struct Cli<S: clap::Args> {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    config: S,
}

/// A service binary's whole `main`: parses the command line (`--help` shows
/// `about`; every flag also reads its environment variable), then [`run`]s.
pub async fn main<S: Service>(about: &'static str) -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::<S>::command()
        .name(S::APP)
        .bin_name(S::APP)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
        .get_matches();
    let cli = Cli::<S>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let info = AppInfo {
        app: S::APP,
        version: cli.config.version(),
    };
    run(info, S::DEFAULT_PORT, cli.serve, |health| {
        cli.config.router(health)
    })
    .await
}

/// Which service this is and which release of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppInfo {
    pub app: &'static str,
    pub version: AppVersion,
}

/// Readiness, shared by `/readyz` and the shutdown sequence: a draining service
/// answers 503 so that Kubernetes takes it out of the endpoints before it stops.
#[derive(Clone, Debug, Default)]
pub struct Health {
    draining: Arc<AtomicBool>,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// A router being served in the background on a bound listener.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, and waits for them.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Serves `router` on `listener` until [`RunningServer::shutdown`]. Handlers
/// can read the peer's address as `ConnectInfo<SocketAddr>` (a proxy needs it
/// for `x-forwarded-for`).
pub fn spawn(listener: TcpListener, router: Router) -> std::io::Result<RunningServer> {
    spawn_with(
        listener,
        router,
        Limits {
            drain: Duration::from_secs(10),
            ..Limits::default()
        },
    )
}

/// [`spawn`] within `limits`.
pub fn spawn_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
) -> std::io::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(serve_bounded(listener, router, limits, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    Ok(RunningServer { addr, stop, task })
}

/// Binds `127.0.0.1:0` and serves `router`: a test's one-liner.
pub async fn spawn_local(router: Router) -> std::io::Result<RunningServer> {
    spawn(TcpListener::bind("127.0.0.1:0").await?, router)
}

/// A service binary's `main`: logs, binds, serves, drains on SIGTERM and exits 0.
/// `build` gets the readiness handle the drain flips.
pub async fn run(
    info: AppInfo,
    default_port: u16,
    serve: ServeArgs,
    build: impl FnOnce(Health) -> Router,
) -> ExitCode {
    let signal = StopSignal::install();
    telemetry::init();
    let health = Health::default();
    let router = build(health.clone());
    let addr = SocketAddr::new(serve.host, serve.port.unwrap_or(default_port));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}: cannot listen on {addr}: {e}", info.app);
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(app = info.app, version = %info.version, %bound, "listening");
    let drain = serve.shutdown_delay();
    let limits = Limits {
        drain: serve.drain_timeout(),
        max_connections: serve.max_connections as usize,
        ..Limits::default()
    };
    let result = serve_bounded(
        listener,
        router,
        limits,
        shutdown_signal(signal, health, drain),
    )
    .await;
    // Send the spans still buffered before the process ends.
    let _ = tokio::task::spawn_blocking(telemetry::shutdown_all).await;
    match result {
        Ok(()) => {
            tracing::info!(app = info.app, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: server error: {e}", info.app);
            ExitCode::FAILURE
        }
    }
}

/// Which signal asked the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C (SIGINT).
    Interrupt,
    /// SIGTERM, as Kubernetes sends.
    Terminate,
}

/// Ctrl-C and SIGTERM, caught from the moment [`StopSignal::install`] returns.
/// Install it before the process can be seen (before it binds or prints), or a
/// SIGTERM sent right after would meet the default action and kill it.
#[derive(Debug)]
pub struct StopSignal {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    /// Registers the handlers now. Must run inside a tokio runtime.
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Resolves at the first Ctrl-C or SIGTERM since [`StopSignal::install`].
    pub async fn wait(self) -> Stop {
        #[cfg(unix)]
        {
            async fn recv(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = recv(self.interrupt) => Stop::Interrupt,
                () = recv(self.terminate) => Stop::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stop::Interrupt
        }
    }
}

/// Resolves when the server should stop accepting. On SIGTERM readiness turns 503
/// for `drain` first, so the endpoint is removed before the listener closes;
/// Ctrl-C stops at once. Either way in-flight requests finish.
async fn shutdown_signal(signal: StopSignal, health: Health, drain: Duration) {
    let stop = signal.wait().await;
    health.start_draining();
    match stop {
        Stop::Interrupt => tracing::info!("interrupted: finishing in-flight requests"),
        Stop::Terminate => {
            tracing::info!(
                drain_ms = drain.as_millis() as u64,
                "SIGTERM: readiness is now 503, draining"
            );
            tokio::time::sleep(drain).await;
        }
    }
}
