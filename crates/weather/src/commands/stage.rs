//! `weather stage`: switching a running `weather up` to another stage.

use std::{path::PathBuf, process::ExitCode, time::Duration};

pub async fn stage(name: &str, admin: &str) -> ExitCode {
    let url = format!("{}/stage/{name}", admin.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .pool_idle_timeout(weather_core::server::listen::POOL_IDLE)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build();
    let res = match http {
        Ok(h) => h.post(&url).send().await,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match res {
        Ok(r) => {
            let ok = r.status().is_success();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            if ok {
                println!("{}", body["applied"].as_str().unwrap_or("applied"));
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "error: {}",
                    body["error"]
                        .as_str()
                        .unwrap_or("the stage was not applied")
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!(
                "error: cannot reach weather up's admin listener at {admin}: {e} (is weather up running?)"
            );
            ExitCode::FAILURE
        }
    }
}

/// The manifests a running weather up was started from (`GET /stage`).
pub(super) async fn admin_paths(admin: &str) -> Result<Vec<PathBuf>, String> {
    let url = format!("{admin}/stage");
    let http = reqwest::Client::builder()
        .pool_idle_timeout(weather_core::server::listen::POOL_IDLE)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot reach weather up's admin listener at {admin}: {e} (is weather up running? or pass -f for --dry-run)"))?
        .json()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let paths: Vec<PathBuf> = v["paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(PathBuf::from))
                .collect()
        })
        .unwrap_or_default();
    if paths.is_empty() {
        return Err(format!("{url} names no manifests"));
    }
    Ok(paths)
}
