//! A model of Istio's HTTP routing and security, on the very YAML that goes to the cluster
//! (docs/architecture.md, "The Istio the model follows"). It knows Istio and
//! Kubernetes, never a Weather service.
//!
//! - [`load`] reads manifests as `kubectl apply -f` does, strictly for Istio's
//!   fields, into [`model`] types;
//! - [`gateway_api`] translates Gateway API's HTTPRoutes into VirtualService
//!   routes, as istiod does;
//! - [`compile`] resolves hosts, subsets and regexes once into a [`Mesh`];
//! - [`decide`] routes one request on it as istiod and Envoy would;
//! - [`explain`] says why, for `weather route`; [`analyze`] reports what is
//!   wrong, for `weather check`;
//! - [`security`] is what a request meets at its destination's proxy
//!   (docs/architecture.md, "Security the model enforces"): mTLS and JWT
//!   ([`authn`]), then AuthorizationPolicy ([`authz`]);
//! - [`terms`] holds the words they share (headers and claims, selectors,
//!   the mesh's fixed names), so that no two of them import each other.

pub mod ambient;
pub mod analyze;
pub mod authn;
pub mod authz;
pub mod cluster;
pub mod compile;
pub mod decide;
pub mod duration;
pub mod explain;
pub mod fault;
pub mod gateway_api;
pub mod headers;
pub mod hosts;
pub mod load;
pub mod matching;
pub mod model;
pub mod path;
pub mod policy;
pub mod routing;
pub mod security;
pub mod target;
pub mod terms;

pub use compile::{CompileError, Mesh};
pub use load::{LoadError, Manifests, load_paths};
pub use routing::{Caller, Request, Routed};
