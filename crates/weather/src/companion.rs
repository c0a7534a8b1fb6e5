//! A program run beside `weather up` (a Prometheus, a Zipkin): started with
//! its output in a log in a temporary folder of its own, waited for until it
//! answers, and stopped, its folder removed, with `weather up`.

use std::{
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

/// Why a companion did not start.
#[derive(Debug)]
pub enum SpawnError {
    /// Its folder or log could not be made.
    Folder(std::io::Error),
    /// The program could not be run.
    Program(std::io::Error),
}

/// Why a started companion is not ready.
#[derive(Debug)]
pub enum NotReady {
    /// It exited: its status and the end of its log.
    Exited(ExitStatus, String),
    /// It did not answer in time.
    Late,
}

pub struct Companion {
    child: Child,
    /// Its temporary folder, removed when it stops.
    pub dir: PathBuf,
    log: PathBuf,
}

impl Companion {
    /// Makes `dir` and runs `cmd` in the background, its output in `dir/log`.
    pub fn spawn(mut cmd: Command, dir: PathBuf, log: &str) -> Result<Companion, SpawnError> {
        let log = dir.join(log);
        let files = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::File::create(&log))
            .and_then(|f| Ok((f.try_clone()?, f)));
        let (stdout, stderr) = files.map_err(SpawnError::Folder)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(child) => Ok(Companion { child, dir, log }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(SpawnError::Program(e))
            }
        }
    }

    /// Waits up to `limit` for `ready` to say yes, asking every 200 ms: the
    /// program's own answer over HTTP, which nothing signals.
    pub async fn wait(
        &mut self,
        limit: Duration,
        mut ready: impl AsyncFnMut() -> bool,
    ) -> Result<(), NotReady> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(NotReady::Exited(status, self.log_tail(8)));
            }
            if ready().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(NotReady::Late)
    }

    /// The last `n` lines of its log.
    fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut tail: Vec<&str> = log.lines().rev().take(n).collect();
        tail.reverse();
        tail.join("\n")
    }

    /// Stops it and removes its folder.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Dropped without [`Companion::stop`] (a caller that panicked or returned
/// early), it is killed all the same (`kill_on_drop`) and its folder removed.
impl Drop for Companion {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client for asking a companion whether it is ready.
pub fn probe_client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()
}
