//! End-to-end tests across crates live in `e2e/`; this library only locates the
//! service binaries they start.

use std::{path::PathBuf, process::Command, sync::OnceLock};

/// The path of a workspace binary (`frontend`, `forecast`, `recommendation`),
/// built on first use so that `cargo test -p weather-e2e` works on its own.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
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
