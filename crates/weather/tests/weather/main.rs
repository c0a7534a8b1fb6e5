//! Tests of the `weather` tool on the SHIPPED manifests: the model's prediction
//! per stage, weights over many decisions, the analysis, the command line, and
//! real HTTP through the local data plane.

mod admin;
mod check;
mod cli;
mod conformance;
mod cookies;
mod gateway_api;
mod lane;
mod metrics;
mod model;
mod proxy;
mod release;
mod resilience;
mod security;
mod traces;
mod up;

use std::path::PathBuf;

use mesh::{Manifests, Mesh};

/// The body of `GET url`, which must answer.
pub async fn get_text(url: &str) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The JSON body of `GET url`.
pub async fn get_json(url: &str) -> serde_json::Value {
    serde_json::from_str(&get_text(url).await).unwrap()
}

/// A folder for the test `name`, emptied first, under Cargo's folder for
/// integration tests' files (`target/tmp`): what a test writes stays out of
/// the system's temporary folder, can be read after a failure, and is
/// replaced by the next run instead of piling up.
pub fn scratch(name: &str) -> PathBuf {
    let dir = tmp(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The folder `name` under Cargo's folder for integration tests' files, as
/// it is (see [`scratch`] for one emptied first).
pub fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped stages, as `weather` lists them (mesh's shipped-manifest tests
/// hold the list against the book's six).
pub fn stages() -> Vec<String> {
    let names = weather::stages::names(&root());
    assert!(names.len() >= 6, "istio/stages/ lists {names:?}");
    names
}

pub fn stage_paths(stage: &str) -> Vec<PathBuf> {
    weather::stages::paths(&root(), stage).unwrap()
}

pub fn shipped(stage: &str) -> (Manifests, Mesh) {
    let m = mesh::load_paths(&stage_paths(stage)).unwrap_or_else(|e| panic!("{e:?}"));
    let mesh = Mesh::compile(&m);
    (m, mesh)
}

/// The text of every manifest of a stage, one multi-document YAML.
pub fn shipped_text(stage: &str) -> String {
    let mut text = String::new();
    for dir in stage_paths(stage) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for f in files {
            text.push_str("---\n");
            text.push_str(&std::fs::read_to_string(f).unwrap());
        }
    }
    text
}

/// `weather up` of a shipped stage, with its admin listener on a free port,
/// as `weather up` mounts it.
pub async fn up_with_admin(
    stage: &str,
) -> (weather::dataplane::Running, weather_core::RunningServer) {
    let opts = weather::dataplane::Options::local(stage_paths(stage), Some(stage.to_owned()));
    let running = weather::dataplane::start(opts).await.unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let admin = weather::admin::serve(any, running.plane.clone())
        .await
        .unwrap();
    (running, admin)
}

/// The chain of versions that served a request to the ingress (the
/// `x-weather-chain` header), sent with `headers`.
pub async fn chain(ingress: std::net::SocketAddr, headers: &[(&str, &str)]) -> String {
    let mut req = client().get(format!("http://{ingress}/?city=london"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.headers()[weather_core::chain::CHAIN_HEADER]
        .to_str()
        .unwrap()
        .to_owned()
}

/// An HTTP client that ignores any proxy of the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}
