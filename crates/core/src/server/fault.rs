//! The failure switches (`FAULT_DELAY_MS`, `FAULT_ERROR_RATE`; docs/architecture.md,
//! Contracts 13) as a tower layer of their own, over an app's own routes.
//!
//! It sits outside the in-flight bound and asks its inner service for
//! readiness only after the delay: a delayed request waits as a slow network
//! would, holding no turn. (axum's `from_fn` middleware forwards `poll_ready`
//! to its inner service, which would take the turn before the delay.)

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tower::{Layer, Service, ServiceExt};

use crate::{config::FaultArgs, error::json_error};

/// Delays every request by `FAULT_DELAY_MS`, then answers that share of them
/// 500.
#[derive(Clone, Debug)]
pub struct FaultLayer {
    fault: FaultArgs,
}

impl FaultLayer {
    /// The layer, when either switch is on.
    pub fn new(fault: &FaultArgs) -> Option<Self> {
        if !fault.any() {
            return None;
        }
        tracing::warn!(
            error_rate = fault.fault_error_rate,
            delay_ms = fault.fault_delay_ms,
            "fault injection is on (FAULT_ERROR_RATE, FAULT_DELAY_MS)"
        );
        Some(FaultLayer {
            fault: fault.clone(),
        })
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Fault<S> {
        Fault {
            inner,
            fault: self.fault.clone(),
        }
    }
}

/// [`FaultLayer`]'s service.
#[derive(Clone, Debug)]
pub struct Fault<S> {
    inner: S,
    fault: FaultArgs,
}

impl<S> Service<Request> for Fault<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is asked of the inner service after the delay.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let inner = self.inner.clone();
        let fault = self.fault.clone();
        Box::pin(async move {
            if fault.fault_delay_ms > 0 {
                tokio::time::sleep(fault.delay()).await;
            }
            if fault.fault_error_rate > 0.0 && fastrand::f64() < fault.fault_error_rate {
                return Ok(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "injected fault (FAULT_ERROR_RATE)",
                ));
            }
            let res = inner.oneshot(req).await?;
            Ok(res.into_response())
        })
    }
}
