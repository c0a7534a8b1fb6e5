//! End-to-end tests across crates live in `e2e/`; this library locates and
//! starts the binaries they run.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

/// The repository root (k8s/, istio/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The path of a workspace binary (`frontend`, `forecast`, `recommendation`,
/// `weather`), built on first use so that `cargo test -p weather-e2e` works on
/// its own.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let root = root();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .current_dir(&root)
            .args([
                "build",
                "--quiet",
                "-p",
                "frontend",
                "-p",
                "forecast",
                "-p",
                "recommendation",
                "-p",
                "weather",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the service binaries failed");
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug").join(name)
}

/// The real `weather up` binary serving a stage from the repository, on free
/// loopback ports; stopped (SIGTERM, then killed) when dropped.
pub struct WeatherUp {
    child: Child,
    /// The ingress, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// The admin listener, e.g. `http://127.0.0.1:40124`.
    pub admin: String,
    /// The Prometheus it started, with `--prometheus`.
    pub prometheus: Option<String>,
}

impl WeatherUp {
    pub fn start(stage: &str) -> WeatherUp {
        WeatherUp::start_with(stage, &[])
    }

    /// `weather up --stage STAGE` with more arguments.
    pub fn start_with(stage: &str, args: &[&str]) -> WeatherUp {
        let mut child = Command::new(binary("weather"))
            .current_dir(root())
            .args(["up", "--stage", stage, "--quiet", "--no-watch"])
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weather up starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The banner's "Open", "Watch" and "Prometheus" lines, then "Press".
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let line = line.trim();
                for key in ["Open", "Watch", "Prometheus", "Press"] {
                    if let Some(rest) = line.strip_prefix(key) {
                        let url = rest.split_whitespace().next().unwrap_or("");
                        let _ = tx.send((key, url.trim_end_matches('/').to_owned()));
                    }
                }
            }
        });
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let (mut url, mut admin, mut prometheus) = (None, None, None);
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(("Open", u)) => url = Some(u),
                Ok(("Watch", u)) => admin = Some(u),
                Ok(("Prometheus", u)) => prometheus = Some(u),
                // "Press Ctrl-C to stop": the banner is over.
                Ok(_) => break,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let stderr = errors.join().unwrap_or_default();
                    panic!("weather up did not print its banner; stderr:\n{stderr}");
                }
            }
        }
        WeatherUp {
            child,
            url: url.expect("weather up prints the URL to open"),
            admin: admin.expect("weather up prints the admin page"),
            prometheus,
        }
    }

    /// Asks `weather up` to stop as Kubernetes or a terminal would (SIGTERM)
    /// and waits for it, killing it after `limit`. Whether it exited by itself.
    pub fn stop(&mut self, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        weather_core::testing::wait_for_exit(&mut self.child, limit).is_some()
    }
}

impl Drop for WeatherUp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop(Duration::from_secs(10));
        }
    }
}
