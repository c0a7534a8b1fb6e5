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
/// loopback ports; killed when dropped.
pub struct WeatherUp {
    child: Child,
    /// The ingress, e.g. `http://127.0.0.1:40123`.
    pub url: String,
}

impl WeatherUp {
    pub fn start(stage: &str) -> WeatherUp {
        let mut child = Command::new(binary("weather"))
            .current_dir(root())
            .args(["up", "--stage", stage, "--quiet", "--no-watch"])
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("weather up starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("Open") {
                    let _ = tx.send(url.trim().trim_end_matches('/').to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("weather up prints the URL to open");
        WeatherUp { child, url }
    }
}

impl Drop for WeatherUp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
