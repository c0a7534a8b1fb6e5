//! `weather release SPEC`: a release train that canaries dependent services
//! together, with one lane, one set of gates and one rollback
//! (docs/architecture.md, "The release train").
//!
//! - [`spec`]: the `ReleaseTrain` object, loaded strictly;
//! - [`phase`]: what a step routes;
//! - [`plan`]: the steps and the VirtualServices each applies;
//! - [`routes`]: the same steps as HTTPRoutes, for a release written in
//!   Gateway API (the lane carried in `baggage`);
//! - [`metrics`]: the gates' arithmetic on Istio's standard metrics;
//! - [`run`]: applying, waiting, judging, promoting or rolling back.

mod driver;
pub mod metrics;
mod options;
pub mod phase;
pub mod plan;
mod report;
pub mod routes;
pub mod run;
pub mod spec;
