//! `weather route`: where one request goes, and why, with what its
//! destination's proxy decides of it.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;

use mesh::{
    Mesh,
    authn::JwkSet,
    explain::explain,
    routing::{Caller, Request},
    security::{Arrival, Dest},
    terms::{WithClaims, trim_ows},
};

use super::{Output, load};

#[derive(Args, Debug)]
pub struct RouteArgs {
    /// Manifest files or folders, like kubectl apply -f.
    #[arg(short = 'f', long = "filename", required = true)]
    pub paths: Vec<PathBuf>,
    /// Who sends it: `ingress`, or the name of a Deployment (its sidecar).
    #[arg(long)]
    pub from: String,
    /// The Host (authority), e.g. forecast:3002 or weather.example.com.
    #[arg(long)]
    pub host: String,
    /// Path and query.
    #[arg(long, default_value = "/")]
    pub path: String,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A request header, 'name: value' (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The keys (a JWKS file) that RequestAuthentications naming a jwksUri
    /// verify tokens with; the frontend serves them on /.well-known/jwks.json.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

pub fn route(a: RouteArgs) -> ExitCode {
    let m = match load(&a.paths) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let mut headers = Vec::new();
    for h in &a.headers {
        match h.split_once(':') {
            Some((k, v)) if !trim_ows(k).is_empty() => {
                headers.push((trim_ows(k).to_ascii_lowercase(), trim_ows(v).to_owned()))
            }
            _ => {
                eprintln!("error: -H {h:?}: expected 'name: value'");
                return ExitCode::from(2);
            }
        }
    }
    let mesh = Mesh::compile(&m);
    if !mesh.errors.is_empty() {
        // Routes a cluster would never have: istiod refuses the object.
        for e in &mesh.errors {
            eprintln!("error: {e}");
        }
        eprintln!("error: the manifests cannot be routed: `weather check` lists every problem");
        return ExitCode::FAILURE;
    }
    let caller = if a.from == "ingress" {
        Caller::Ingress
    } else {
        match mesh.workloads.iter().find(|w| w.name == a.from) {
            Some(w) => Caller::Workload {
                namespace: &w.namespace,
                labels: &w.labels,
            },
            None => {
                let names: Vec<&str> = mesh.workloads.iter().map(|w| w.name.as_str()).collect();
                eprintln!(
                    "error: --from {:?}: no such Deployment; use `ingress` or one of: {}",
                    a.from,
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    };
    let keys = match &a.jwks {
        None => None,
        Some(file) => match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<JwkSet>(&t).map_err(|e| e.to_string()))
        {
            Ok(k) => Some(std::sync::Arc::new(k)),
            Err(e) => {
                eprintln!("error: --jwks {}: {e}", file.display());
                return ExitCode::from(2);
            }
        },
    };
    let keys = |_: &str| keys.clone();
    let (path, query) = a.path.split_once('?').unwrap_or((&a.path, ""));
    let normalized = mesh::path::normalize(path).unwrap_or(std::borrow::Cow::Borrowed(path));
    let arrival = |caller: Option<&'static str>| Arrival {
        caller,
        host: &a.host,
        method: &a.method,
        path: &normalized,
        query,
        headers: headers.as_slice(),
    };
    // At the ingress, its own filters come first, and a verified token's
    // claims are what `@request.auth.claims` routes read.
    let mut security = Vec::new();
    let mut claims = None;
    let mut refused = None;
    if matches!(caller, Caller::Ingress) && !mesh.security.is_open() {
        let admission = mesh.security.admit(Dest::Ingress, &arrival(None), &keys);
        security.extend(admission.describe("ingress gateway"));
        refused = admission.refusal();
        claims = admission.claims().cloned();
    }
    let with_claims = WithClaims {
        headers: headers.as_slice(),
        claims: claims.as_ref(),
    };
    let req = Request {
        authority: &a.host,
        path: &a.path,
        method: &a.method,
        scheme: "http",
        headers: &with_claims,
    };
    let e = explain(&mesh, caller, &req);
    // Then each destination's sidecar, with the caller's identity.
    let identity = match caller {
        Caller::Ingress => Some(mesh.ingress.principal()),
        Caller::Workload { .. } => mesh
            .workloads
            .iter()
            .find(|w| w.name == a.from)
            .map(mesh::security::workload_principal),
    };
    if refused.is_none() && !mesh.security.is_open() {
        if matches!(mesh.route(caller, &req), mesh::Routed::Blocked) {
            security.push("were its Sidecar to let it through:".to_owned());
        }
        let callee = identity.as_deref();
        for i in destination_workloads(&mesh, caller, &req) {
            let w = &mesh.workloads[i];
            let arrival = Arrival {
                caller: callee,
                ..arrival(None)
            };
            let admission = mesh.security.admit(Dest::Workload(i), &arrival, &keys);
            security.extend(admission.describe(&w.name));
        }
    }
    if matches!(a.output, Output::Json) {
        let mut v = serde_json::to_value(&e).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            if !security.is_empty() {
                o.insert("security".into(), serde_json::json!(security));
            }
            if let Some(r) = refused {
                o.insert("status".into(), serde_json::json!(r.status));
            }
        }
        println!("{v}");
    } else {
        match refused {
            Some(r) => {
                for l in &security {
                    println!("{l}");
                }
                println!("refused at the ingress: {} {}", r.status, r.body);
            }
            None => {
                print!("{}", e.text());
                for l in &security {
                    println!("{l}");
                }
            }
        }
    }
    ExitCode::SUCCESS
}

/// The workloads a request may land on, for the security lines.
fn destination_workloads<H: mesh::terms::HeaderLookup + ?Sized>(
    mesh: &Mesh,
    caller: Caller<'_>,
    req: &Request<'_, H>,
) -> Vec<usize> {
    let mut out = Vec::new();
    match mesh.route(caller, req) {
        mesh::Routed::Route { targets, .. } => {
            for t in targets.iter().filter(|t| t.weight > 0) {
                for &i in &t.endpoints {
                    if !out.contains(&i) {
                        out.push(i);
                    }
                }
            }
        }
        // Refused by the caller's own Sidecar: what the Service's pods would
        // say, were it let through (the second line of defence).
        mesh::Routed::Blocked => {
            if let Caller::Workload { namespace, .. } = caller {
                let (host, _) = mesh::hosts::split_authority(req.authority);
                let fqdn = mesh::hosts::expand_authority(&host, namespace);
                if let Some(s) = mesh.service(&fqdn) {
                    out.extend_from_slice(mesh.endpoints(s));
                }
            }
        }
        _ => {}
    }
    out
}
