//! What every Weather service shares: typed configuration, the server bootstrap
//! (health, readiness, version, metrics, graceful shutdown), the outbound client that
//! forwards the tracing and routing headers, the `x-weather-chain` header, and the one
//! error type that maps to clear JSON 4xx/5xx responses.

pub mod calendar;
pub mod chain;
pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
pub mod origin;
pub mod query;
pub mod server;
pub mod sky;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use chain::{CHAIN_HEADER, Downstream};
pub use client::{Client, ClientError, Forwarded};
pub use config::{AppArgs, AppVersion, ClientArgs, ServeArgs};
pub use error::AppError;
pub use query::Query;
pub use server::{AppInfo, Health, RunningServer};
pub use sky::Condition;
