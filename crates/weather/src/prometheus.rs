//! A real Prometheus beside `weather up` (`--prometheus`): Debian's
//! `prometheus` program on loopback, scraping the admin listener's
//! `/stats/prometheus` as a cluster's Prometheus scrapes every Envoy, so the
//! PromQL that Kiali and Flagger run on a cluster answers locally. Its data
//! lives in a temporary folder removed when it stops.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use tokio::process::Command;

use crate::companion::{Companion, NotReady, SpawnError, probe_client};

/// Why Prometheus could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot run {program}: {source} (install it: apt-get install prometheus, or name it with --prometheus-bin / WEATHER_PROMETHEUS)"
    )]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot write Prometheus's configuration in {dir}: {source}")]
    Config {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("Prometheus exited at start ({status}); its log: {log}")]
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("Prometheus did not answer on {0}, or did not scrape the admin listener, within 60 s")]
    NotReady(SocketAddr),
}

/// Flagger's `request-success-rate` (its Istio provider's query), per
/// destination workload over the last minute: a percentage.
pub const SUCCESS_RATE: &str = r#"sum by (destination_workload) (rate(istio_requests_total{reporter="destination",destination_workload_namespace="weather",response_code!~"5.*"}[1m])) / sum by (destination_workload) (rate(istio_requests_total{reporter="destination",destination_workload_namespace="weather"}[1m])) * 100"#;

/// Flagger's `request-duration`: the p99 in milliseconds per destination
/// workload over the last minute.
pub const P99: &str = r#"histogram_quantile(0.99, sum by (le, destination_workload) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="weather"}[1m])))"#;

/// What to start.
#[derive(Clone, Debug)]
pub struct Options {
    pub program: PathBuf,
    pub listen: SocketAddr,
    /// The admin listener whose `/stats/prometheus` it scrapes.
    pub target: SocketAddr,
    pub scrape_interval: Duration,
}

/// A running Prometheus; [`Prometheus::stop`] ends it and removes its data.
pub struct Prometheus {
    companion: Companion,
    pub url: String,
}

/// The scrape configuration: the admin listener as the one target, labelled
/// as a cluster's Istio scrape job labels its pods' proxies.
pub fn config(target: SocketAddr, interval: Duration) -> String {
    let ms = interval.as_millis();
    format!(
        "global:
  scrape_interval: {ms}ms
  evaluation_interval: {ms}ms
scrape_configs:
  - job_name: envoy-stats
    metrics_path: /stats/prometheus
    static_configs:
      - targets: ['{target}']
        labels:
          namespace: weather
"
    )
}

impl Prometheus {
    /// Starts Prometheus and waits until it is ready. Port 0 in `listen`
    /// means a free port, chosen here (Prometheus would not say which it got).
    pub async fn start(opts: &Options) -> Result<Prometheus, Error> {
        let mut opts = opts.clone();
        if opts.listen.port() == 0 {
            let free = std::net::TcpListener::bind(opts.listen)
                .and_then(|l| l.local_addr())
                .map_err(|_| Error::NotReady(opts.listen))?;
            opts.listen = free;
        }
        let opts = &opts;
        let dir = std::env::temp_dir().join(format!(
            "weather-prometheus-{}-{}",
            std::process::id(),
            opts.listen.port()
        ));
        let config_path = dir.join("prometheus.yml");
        let written = std::fs::create_dir_all(dir.join("data"))
            .and_then(|()| std::fs::write(&config_path, config(opts.target, opts.scrape_interval)));
        if let Err(source) = written {
            return Err(Error::Config { dir, source });
        }
        let mut cmd = Command::new(&opts.program);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={}", opts.listen))
            .arg("--log.level=warn");
        let companion =
            Companion::spawn(cmd, dir.clone(), "prometheus.log").map_err(|e| match e {
                SpawnError::Folder(source) => Error::Config { dir, source },
                SpawnError::Program(source) => Error::Spawn {
                    program: opts.program.display().to_string(),
                    source,
                },
            })?;
        let mut p = Prometheus {
            companion,
            url: format!("http://{}", opts.listen),
        };
        if let Err(e) = p.ready(opts.listen).await {
            p.stop().await;
            return Err(e);
        }
        Ok(p)
    }

    /// Waits for the first scrape of the admin listener (Prometheus starts
    /// scraping a few seconds after it is ready), so that traffic sent once
    /// `weather up` has printed its banner is all counted.
    async fn ready(&mut self, listen: SocketAddr) -> Result<(), Error> {
        let http = probe_client().ok_or(Error::NotReady(listen))?;
        // `up` is 1 once the target has been scraped.
        let url = format!(
            "{}/api/v1/query?query=up%7Bjob%3D%22envoy-stats%22%7D",
            self.url
        );
        let scraped = async || {
            if let Ok(r) = http.get(&url).send().await
                && let Ok(v) = r.json::<serde_json::Value>().await
            {
                return v["data"]["result"][0]["value"][1] == "1";
            }
            false
        };
        match self.companion.wait(Duration::from_secs(60), scraped).await {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(status, log)) => Err(Error::Exited { status, log }),
            Err(NotReady::Late) => Err(Error::NotReady(listen)),
        }
    }

    /// Stops Prometheus and removes its data.
    pub async fn stop(self) {
        self.companion.stop().await;
    }
}
