//! A response body that reports its exchange to [`Stats`] when it ends, so the
//! duration runs to the last byte and the size is what was sent, as Envoy
//! measures them. A body dropped before its end (the client went away) is
//! reported with Envoy's `DC` flag.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::stats::{Exchange, Stats};

pub(super) struct Metered {
    inner: Body,
    /// Taken when reported, so it is reported once.
    pending: Option<Pending>,
}

struct Pending {
    stats: Arc<Stats>,
    exchange: Exchange,
    start: Instant,
}

impl Metered {
    pub(super) fn new(inner: Body, stats: Arc<Stats>, exchange: Exchange, start: Instant) -> Self {
        Metered {
            inner,
            pending: Some(Pending {
                stats,
                exchange,
                start,
            }),
        }
    }

    fn report(&mut self, flags: Option<&'static str>) {
        if let Some(mut p) = self.pending.take() {
            p.exchange.duration = p.start.elapsed();
            if let Some(f) = flags {
                p.exchange.flags = f;
            }
            p.stats.record(&p.exchange);
        }
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(p)) = (frame.data_ref(), this.pending.as_mut()) {
                    p.exchange.response_bytes += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.report(None);
                }
            }
            // The upstream broke off mid-body: Envoy's upstream reset.
            Poll::Ready(Some(Err(_))) => this.report(Some("UR")),
            Poll::Ready(None) => this.report(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let flags = if self.inner.is_end_stream() {
            None
        } else {
            Some("DC")
        };
        self.report(flags);
    }
}
