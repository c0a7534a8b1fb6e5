//! A real trace viewer beside `weather up` (`--traces`): Zipkin's server with
//! its UI (`io.zipkin:zipkin-server` 3.5.1, the `exec` jar from Maven Central,
//! on Java 17), on loopback, its spans in memory. Every workload and proxy hop
//! of `weather up` sends its spans there (`OTEL_TRACES_EXPORTER=zipkin`). Why
//! Zipkin: Jaeger's UI cannot be had from the package registries here
//! (docs/tracing.md).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use tokio::process::Command;

use crate::companion::{Companion, NotReady, SpawnError, probe_client};

/// The server `scripts/setup` fetches.
pub const VERSION: &str = "3.5.1";

/// Why Zipkin could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no Zipkin server at {0}: fetch it with scripts/setup (mvn dependency:get -Dartifact=io.zipkin:zipkin-server:3.5.1:jar:exec -Dtransitive=false), or name the jar with --zipkin-jar / WEATHER_ZIPKIN_JAR"
    )]
    NoJar(PathBuf),
    #[error(
        "cannot run {program}: {source} (Zipkin's server needs Java 17 or later: apt-get install openjdk-17-jre-headless, or name it with --java / WEATHER_JAVA)"
    )]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot write Zipkin's log in {dir}: {source}")]
    Log {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("Zipkin exited at start ({status}); the end of its log: {log}")]
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("Zipkin did not answer on {0} within 120 s")]
    NotReady(SocketAddr),
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Options {
    pub java: PathBuf,
    /// The `exec` jar; `None`: where Maven puts it ([`maven_jar`]).
    pub jar: Option<PathBuf>,
    pub listen: SocketAddr,
}

impl Options {
    /// The Java and the jar `WEATHER_JAVA` and `WEATHER_ZIPKIN_JAR` name (else
    /// `java` on the PATH and Maven's copy), listening on `listen`.
    pub fn from_env(listen: SocketAddr) -> Options {
        Options {
            java: std::env::var_os("WEATHER_JAVA").map_or_else(|| "java".into(), Into::into),
            jar: std::env::var_os("WEATHER_ZIPKIN_JAR").map(Into::into),
            listen,
        }
    }
}

/// Where `mvn dependency:get` puts the server's jar.
pub fn maven_jar() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(format!(
        ".m2/repository/io/zipkin/zipkin-server/{VERSION}/zipkin-server-{VERSION}-exec.jar"
    ))
}

/// A running Zipkin; [`Zipkin::stop`] ends it.
pub struct Zipkin {
    companion: Companion,
    /// `http://ADDR`: the UI is under `/zipkin/`, the API under `/api/v2/`.
    pub url: String,
}

impl Zipkin {
    /// Starts the server on `opts.listen` and waits until it answers.
    pub async fn start(opts: &Options) -> Result<Zipkin, Error> {
        let jar = opts.jar.clone().unwrap_or_else(maven_jar);
        if !jar.is_file() {
            return Err(Error::NoJar(jar));
        }
        let mut listen = opts.listen;
        if listen.port() == 0 {
            listen = std::net::TcpListener::bind(listen)
                .and_then(|l| l.local_addr())
                .map_err(|_| Error::NotReady(listen))?;
        }
        let dir = std::env::temp_dir().join(format!(
            "weather-zipkin-{}-{}",
            std::process::id(),
            listen.port()
        ));
        let mut cmd = Command::new(&opts.java);
        cmd.arg("-Xmx256m")
            // The native libraries the server unpacks go to its own folder,
            // removed when it stops, not one more folder per run in /tmp.
            .arg(format!("-Djava.io.tmpdir={}", dir.display()))
            .arg("-jar")
            .arg(&jar)
            // Loopback only, HTTP only: the API and the UI on one port.
            .arg(format!("--armeria.ports[0].ip={}", listen.ip()))
            .arg(format!("--armeria.ports[0].port={}", listen.port()))
            .arg("--armeria.ports[0].protocols=http")
            .env("QUERY_PORT", listen.port().to_string())
            .env("STORAGE_TYPE", "mem");
        let companion = Companion::spawn(cmd, dir.clone(), "zipkin.log").map_err(|e| match e {
            SpawnError::Folder(source) => Error::Log { dir, source },
            SpawnError::Program(source) => Error::Spawn {
                program: opts.java.display().to_string(),
                source,
            },
        })?;
        let mut z = Zipkin {
            companion,
            url: format!("http://{listen}"),
        };
        if let Err(e) = z.ready(listen).await {
            z.stop().await;
            return Err(e);
        }
        Ok(z)
    }

    /// The collector URL spans are posted to.
    pub fn collector(&self) -> String {
        format!("{}/api/v2/spans", self.url)
    }

    /// The UI's page of one trace.
    pub fn trace_page(base: &str, trace_id: &str) -> String {
        format!("{base}/zipkin/traces/{trace_id}")
    }

    /// Waits for `/health` to say UP (the JVM takes some seconds).
    async fn ready(&mut self, listen: SocketAddr) -> Result<(), Error> {
        let http = probe_client().ok_or(Error::NotReady(listen))?;
        let url = format!("{}/health", self.url);
        let up = async || {
            if let Ok(r) = http.get(&url).send().await
                && let Ok(v) = r.json::<serde_json::Value>().await
            {
                return v["status"] == "UP";
            }
            false
        };
        match self.companion.wait(Duration::from_secs(120), up).await {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(status, log)) => Err(Error::Exited { status, log }),
            Err(NotReady::Late) => Err(Error::NotReady(listen)),
        }
    }

    /// Stops Zipkin (its spans were in memory) and removes its log.
    pub async fn stop(self) {
        self.companion.stop().await;
    }
}
