//! Reads manifests the way `kubectl apply -f` does: files and folders (a folder's
//! `.yaml`, `.yml` and `.json` files, in name order, not recursing), multi-document
//! YAML. Errors name the file, the document, the object and the field.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    gateway_api::{
        GROUP as GATEWAY_API,
        types::{HttpRouteObject, KubeGateway},
    },
    model::*,
};

/// Everything read from a set of manifests.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub namespaces: Vec<Namespace>,
    pub service_accounts: Vec<ServiceAccount>,
    pub services: Vec<Service>,
    pub deployments: Vec<Deployment>,
    pub gateways: Vec<Gateway>,
    pub destination_rules: Vec<DestinationRule>,
    pub virtual_services: Vec<VirtualService>,
    pub sidecars: Vec<Sidecar>,
    pub peer_authentications: Vec<PeerAuthentication>,
    pub authorization_policies: Vec<AuthorizationPolicy>,
    pub request_authentications: Vec<RequestAuthentication>,
    /// Gateway API's Gateways and HTTPRoutes ([`crate::gateway_api`]).
    pub kube_gateways: Vec<KubeGateway>,
    pub http_routes: Vec<HttpRouteObject>,
    /// Where each object came from, by `Kind namespace/name`.
    pub origins: Vec<(String, Origin)>,
    /// Documents skipped, and why (kinds the model does not read).
    pub notes: Vec<String>,
    /// Fields Istio defines that the model does not apply.
    pub warnings: Vec<String>,
}

/// One thing wrong in the manifests, naming file, document, object and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    pub message: String,
}

fn err(message: String) -> LoadError {
    LoadError { message }
}

/// Loads every path (file or folder). All errors are collected, not only the first.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Manifests, Vec<LoadError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let p = p.as_ref();
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| {
                            f.is_file()
                                && matches!(
                                    f.extension().and_then(|x| x.to_str()),
                                    Some("yaml" | "yml" | "json")
                                )
                        })
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        errors.push(err(format!(
                            "{}: no .yaml, .yml or .json files in this folder",
                            p.display()
                        )));
                    }
                    files.extend(found);
                }
                Err(e) => errors.push(err(format!("{}: {e}", p.display()))),
            }
        } else if p.is_file() {
            files.push(p.to_path_buf());
        } else {
            errors.push(err(format!("{}: no such file or folder", p.display())));
        }
    }
    let mut m = Manifests::default();
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(text) => {
                if let Err(mut e) = m.add_yaml(&f.display().to_string(), &text) {
                    errors.append(&mut e);
                }
            }
            Err(e) => errors.push(err(format!("{}: {e}", f.display()))),
        }
    }
    if errors.is_empty() {
        Ok(m)
    } else {
        Err(errors)
    }
}

impl Manifests {
    /// Parses one file's text (multi-document YAML or JSON) into the set.
    pub fn add_yaml(&mut self, file: &str, text: &str) -> Result<(), Vec<LoadError>> {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
            vec![err(format!(
                "{file}: not valid YAML: {}",
                first_line(&e.to_string())
            ))]
        })?;
        let mut errors = Vec::new();
        for (i, doc) in docs.into_iter().enumerate() {
            let origin = Origin {
                file: file.to_owned(),
                document: i + 1,
            };
            if let Err(e) = self.add_document(origin, doc) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn add_document(&mut self, origin: Origin, doc: Value) -> Result<(), LoadError> {
        if doc.is_null() {
            return Ok(());
        }
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if kind.is_empty() || api_version.is_empty() {
            return Err(err(format!(
                "{origin}: not a Kubernetes object (no apiVersion or kind)"
            )));
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let id = format!("{kind} {ns}/{name}");
        let (group, _version) = api_version
            .rsplit_once('/')
            .unwrap_or(("", api_version.as_str()));
        let unknown_version = match group {
            "networking.istio.io" => !matches!(
                api_version.as_str(),
                "networking.istio.io/v1"
                    | "networking.istio.io/v1beta1"
                    | "networking.istio.io/v1alpha3"
            ),
            "security.istio.io" => !matches!(
                api_version.as_str(),
                "security.istio.io/v1" | "security.istio.io/v1beta1"
            ),
            GATEWAY_API => !matches!(
                api_version.as_str(),
                "gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1"
            ),
            _ => false,
        };
        if unknown_version {
            return Err(err(format!(
                "{origin} ({id}): unknown apiVersion {api_version}"
            )));
        }
        let known = matches!(
            (group, kind.as_str()),
            ("", "Namespace" | "ServiceAccount" | "Service")
                | ("apps", "Deployment")
                | (
                    "networking.istio.io",
                    "Gateway" | "DestinationRule" | "VirtualService" | "Sidecar"
                )
                | (
                    "security.istio.io",
                    "PeerAuthentication" | "AuthorizationPolicy" | "RequestAuthentication"
                )
                | (GATEWAY_API, "Gateway" | "HTTPRoute")
        );
        if known {
            // A later object of the same kind and name replaces the earlier, as
            // `kubectl apply -f a -f b` leaves the last one applied.
            self.origins.retain(|(i, _)| *i != id);
            self.origins.push((id.clone(), origin.clone()));
        }
        match (group, kind.as_str()) {
            ("", "Namespace") => {
                upsert(&mut self.namespaces, parse(&origin, &id, doc)?, |o| {
                    &o.metadata
                });
            }
            ("", "ServiceAccount") => {
                let sa = parse(&origin, &id, doc)?;
                upsert(&mut self.service_accounts, sa, |o| &o.metadata);
            }
            ("", "Service") => {
                upsert(&mut self.services, parse(&origin, &id, doc)?, |o| {
                    &o.metadata
                });
            }
            ("apps", "Deployment") => {
                let d = parse(&origin, &id, doc)?;
                upsert(&mut self.deployments, d, |o| &o.metadata);
            }
            ("networking.istio.io", "Gateway") => {
                upsert(&mut self.gateways, parse(&origin, &id, doc)?, |o| {
                    &o.metadata
                });
            }
            ("networking.istio.io", "DestinationRule") => {
                let dr: DestinationRule = parse(&origin, &id, doc)?;
                let mut unread = Vec::new();
                if dr.spec.workload_selector.is_some() {
                    unread.push("workloadSelector".to_owned());
                }
                // connectionPool and outlierDetection apply (crate::cluster);
                // the rest of a trafficPolicy does not.
                let policies = dr
                    .spec
                    .traffic_policy
                    .iter()
                    .map(|t| ("trafficPolicy".to_owned(), t))
                    .chain(dr.spec.subsets.iter().enumerate().filter_map(|(i, s)| {
                        Some((
                            format!("subsets[{i}].trafficPolicy"),
                            s.traffic_policy.as_ref()?,
                        ))
                    }));
                for (at, tp) in policies {
                    for key in tp.as_object().into_iter().flat_map(|o| o.keys()) {
                        if !crate::cluster::APPLIED.contains(&key.as_str()) {
                            unread.push(format!("{at}.{key}"));
                        }
                    }
                }
                for field in unread {
                    self.warnings.push(format!(
                        "{origin} ({id}): spec.{field} is not modelled: a local run ignores it, the cluster does not"
                    ));
                }
                upsert(&mut self.destination_rules, dr, |o| &o.metadata);
            }
            ("networking.istio.io", "VirtualService") => {
                let vs: VirtualService = parse(&origin, &id, doc)?;
                for (i, r) in vs.spec.http.iter().enumerate() {
                    for field in r.not_modelled() {
                        self.warnings.push(format!(
                            "{origin} ({id}): spec.http[{i}].{field} is not modelled: a local run ignores it, the cluster does not"
                        ));
                    }
                }
                if vs.spec.tcp.is_some() || vs.spec.tls.is_some() {
                    self.warnings.push(format!(
                        "{origin} ({id}): tcp and tls routes are not modelled; only http routes are"
                    ));
                }
                upsert(&mut self.virtual_services, vs, |o| &o.metadata);
            }
            ("networking.istio.io", "Sidecar") => {
                let sc: Sidecar = parse(&origin, &id, doc)?;
                upsert(&mut self.sidecars, sc, |o| &o.metadata);
            }
            ("security.istio.io", "PeerAuthentication") => {
                let pa = parse(&origin, &id, doc)?;
                upsert(&mut self.peer_authentications, pa, |o| &o.metadata);
            }
            ("security.istio.io", "AuthorizationPolicy") => {
                let ap: AuthorizationPolicy = parse(&origin, &id, doc)?;
                if ap.spec.target_ref.is_some() || ap.spec.target_refs.is_some() {
                    self.warnings.push(format!(
                        "{origin} ({id}): spec.targetRef(s): Istio applies such a policy to Gateway API gateways and waypoints only, none of which the model has; it applies to nothing here"
                    ));
                }
                if ap.spec.action.as_deref() == Some("CUSTOM") {
                    self.warnings.push(format!(
                        "{origin} ({id}): action CUSTOM: weather up has no external authorizer; as istiod does when the provider is no extension provider of the mesh (this project's meshConfig has none), it denies what the rules match"
                    ));
                }
                upsert(&mut self.authorization_policies, ap, |o| &o.metadata);
            }
            ("security.istio.io", "RequestAuthentication") => {
                let ra: RequestAuthentication = parse(&origin, &id, doc)?;
                if ra.spec.target_ref.is_some() || ra.spec.target_refs.is_some() {
                    self.warnings.push(format!(
                        "{origin} ({id}): spec.targetRef(s) is not modelled: a local run ignores it, the cluster does not"
                    ));
                }
                upsert(&mut self.request_authentications, ra, |o| &o.metadata);
            }
            (GATEWAY_API, "Gateway") => {
                let g: KubeGateway = parse(&origin, &id, doc)?;
                let class = g.spec.gateway_class_name.as_str();
                if class != crate::gateway_api::ISTIO_CLASS
                    && class != crate::gateway_api::WAYPOINT_CLASS
                {
                    self.warnings.push(format!(
                        "{origin} ({id}): class {class:?}: istiod programs Gateways of class istio (and waypoints, istio-waypoint) only; routes attached to this one go nowhere"
                    ));
                }
                for (i, l) in g.spec.listeners.iter().enumerate() {
                    // A waypoint's one listener is HBONE (15008), as istiod requires.
                    if l.protocol != "HTTP" && class != crate::gateway_api::WAYPOINT_CLASS {
                        self.warnings.push(format!(
                            "{origin} ({id}): spec.listeners[{i}]: protocol {} is not modelled; only HTTP listeners are",
                            l.protocol
                        ));
                    }
                }
                upsert(&mut self.kube_gateways, g, |o| &o.metadata);
            }
            (GATEWAY_API, "HTTPRoute") => {
                let r: HttpRouteObject = parse(&origin, &id, doc)?;
                for field in crate::gateway_api::not_modelled(&r) {
                    self.warnings.push(format!(
                        "{origin} ({id}): {field} is not modelled: a local run ignores it, the cluster does not"
                    ));
                }
                upsert(&mut self.http_routes, r, |o| &o.metadata);
            }
            _ => self.notes.push(format!(
                "{origin}: skipped {kind} ({api_version}): not a kind the model reads"
            )),
        }
        Ok(())
    }

    /// Applies `overlay` over this set as `kubectl apply` would: an object of
    /// the same kind, namespace and name is replaced, a new one added. Only
    /// routing objects (VirtualService, DestinationRule, Gateway) may be in the
    /// overlay: a running data plane cannot start new workloads.
    pub fn apply(&mut self, overlay: Manifests) -> Result<(), Vec<LoadError>> {
        let not_routing: Vec<LoadError> = overlay
            .origins
            .iter()
            .filter(|(id, _)| {
                !["VirtualService ", "DestinationRule ", "Gateway ", "HTTPRoute "]
                    .iter()
                    .any(|k| id.starts_with(k))
            })
            .map(|(id, origin)| {
                err(format!(
                    "{origin} ({id}): only VirtualServices, HTTPRoutes, DestinationRules and Gateways can be applied over the running manifests"
                ))
            })
            .collect();
        if !not_routing.is_empty() {
            return Err(not_routing);
        }
        for v in overlay.virtual_services {
            upsert(&mut self.virtual_services, v, |o| &o.metadata);
        }
        for d in overlay.destination_rules {
            upsert(&mut self.destination_rules, d, |o| &o.metadata);
        }
        for g in overlay.gateways {
            upsert(&mut self.gateways, g, |o| &o.metadata);
        }
        for g in overlay.kube_gateways {
            upsert(&mut self.kube_gateways, g, |o| &o.metadata);
        }
        for r in overlay.http_routes {
            upsert(&mut self.http_routes, r, |o| &o.metadata);
        }
        for (id, origin) in overlay.origins {
            self.origins.retain(|(i, _)| *i != id);
            self.origins.push((id, origin));
        }
        self.warnings.extend(overlay.warnings);
        self.notes.extend(overlay.notes);
        Ok(())
    }

    /// Where an object was read, for messages.
    pub fn origin_of(&self, kind: &str, namespace: &str, name: &str) -> Option<&Origin> {
        let id = format!("{kind} {namespace}/{name}");
        self.origins.iter().find(|(i, _)| *i == id).map(|(_, s)| s)
    }
}

/// Adds `new`, replacing an object of the same namespace and name.
fn upsert<T>(all: &mut Vec<T>, new: T, meta: impl Fn(&T) -> &Meta) {
    let (ns, name) = (meta(&new).ns().to_owned(), meta(&new).name.clone());
    all.retain(|o| !(meta(o).ns() == ns && meta(o).name == name));
    all.push(new);
}

fn parse<T: DeserializeOwned>(origin: &Origin, id: &str, doc: Value) -> Result<T, LoadError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            err(format!("{origin} ({id}): {inner}"))
        } else {
            err(format!("{origin} ({id}): {path}: {inner}"))
        }
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests;
