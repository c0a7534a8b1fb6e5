//! How a page goes out: rendered into a buffer sized from the last one,
//! with the headers every page carries; and the static assets.

use askama::Template;
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::view::{Frame, MessagePage};

/// The length of the last page rendered: the next one's buffer is sized from
/// it (pages are about 7 KiB; one buffer of a fixed 16 KiB per page being
/// written was memory held for nothing at 200 connections).
static LAST_PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(8 * 1024);

pub(crate) fn message_page(
    status: StatusCode,
    frame: Frame,
    title: &str,
    message: String,
) -> Response {
    html(
        status,
        &MessagePage {
            frame,
            title: title.to_owned(),
            message,
        },
    )
}

/// Renders a page with the headers every page carries: nothing is loaded from
/// anywhere but this origin.
pub(crate) fn html(status: StatusCode, page: &impl Template) -> Response {
    // Room for a whole page up front: grown from askama's size hint, the
    // buffer was copied a few times over on every page.
    use std::sync::atomic::Ordering::Relaxed;
    let mut body = String::with_capacity(LAST_PAGE.load(Relaxed) + 1024);
    match page.render_into(&mut body) {
        Ok(()) => {
            LAST_PAGE.store(body.len(), Relaxed);
            // Every header a page carries, in a map sized for them (and for
            // the chain and nosniff the service layer adds) at once.
            const PAGE_HEADERS: [(header::HeaderName, HeaderValue); 5] = [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                    ),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("same-origin"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ];
            let mut res = Response::new(axum::body::Body::from(body));
            *res.status_mut() = status;
            let headers = res.headers_mut();
            headers.reserve(PAGE_HEADERS.len() + 4);
            for (name, value) in PAGE_HEADERS {
                headers.insert(name, value);
            }
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

pub(crate) async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../static/style.css"),
    )
}

pub(crate) async fn favicon() -> Response {
    asset("image/svg+xml", include_str!("../static/favicon.svg"))
}

pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
