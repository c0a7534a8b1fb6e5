//! A model of Istio's HTTP routing, on the very YAML that goes to the cluster: it
//! loads Kubernetes and Istio objects ([`load`]), decides where a request goes as
//! Istio and Envoy would, and analyses manifests. It knows Istio and Kubernetes,
//! never a Weather service.

pub mod analyze;
pub mod explain;
pub mod hosts;
pub mod load;
pub mod matching;
pub mod model;
pub mod routing;

pub use load::{LoadError, Manifests, load_paths};
pub use routing::{Caller, Mesh, Request, Routed};
