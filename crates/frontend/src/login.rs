//! Logging in and out: the `user` cookie the release routes on, the signed
//! token of the JWT stage and its public key, and the refusals (another
//! site's form, a form too large or too slow).

use std::sync::Arc;

use axum::{
    Form,
    extract::{State, rejection::FormRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use weather_core::{origin::cross_origin, server};

use crate::i18n::Lang;

use crate::{Ctx, DEFAULT_CITY, cookies, respond::message_page, token};

/// The login form.
#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    pub username: Option<String>,
}

pub(crate) async fn login(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if cross_origin(&headers) {
        return cross_site(&ctx, &headers).await;
    }
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return refused_form(&ctx, &headers, &e).await,
    };
    let name = form.username.as_deref().map(str::trim).unwrap_or("");
    if cookies::valid_username(name)
        && let Ok(cookie) = HeaderValue::from_str(&cookies::login_cookie(name))
    {
        let mut res = Redirect::to("/").into_response();
        res.headers_mut().insert(header::SET_COOKIE, cookie);
        if let Some((signer, issuer, ttl)) = &ctx.jwt {
            match signer.issue(issuer, name, *ttl) {
                Ok(t) => {
                    if let Ok(v) = HeaderValue::from_str(&token::cookie(&t, *ttl)) {
                        res.headers_mut().append(header::SET_COOKIE, v);
                    }
                }
                Err(e) => tracing::error!("could not sign a token for {name}: {e}"),
            }
        }
        return res;
    }
    let lang = Lang::negotiate(&headers);
    let t = lang.texts();
    let cities = ctx.cached_cities().await;
    let mut frame = ctx.frame(lang, &headers, DEFAULT_CITY, cities.as_ref(), None);
    frame.username_value = name.chars().take(64).collect();
    let message = match (lang, name.is_empty()) {
        (Lang::En, true) => "Enter a username to log in, for example tester.".to_owned(),
        (Lang::Zh, true) => "请输入用户名，例如 tester。".to_owned(),
        (Lang::En, false) => {
            "A username is 1 to 32 letters, digits, - or _ (for example tester).".to_owned()
        }
        (Lang::Zh, false) => "用户名为 1 到 32 个字母、数字、- 或 _（例如 tester）。".to_owned(),
    };
    message_page(
        StatusCode::BAD_REQUEST,
        frame,
        t.bad_request_title.as_str(),
        message,
    )
}

pub(crate) async fn logout(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    if cross_origin(&headers) {
        return cross_site(&ctx, &headers).await;
    }
    let mut res = Redirect::to("/").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(cookies::LOGOUT_COOKIE),
    );
    if ctx.jwt.is_some() {
        res.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static(token::LOGOUT_COOKIE),
        );
    }
    res
}

/// The public key of the login's tokens, as a JWKS; 404 without a key.
pub(crate) async fn jwks(State(ctx): State<Arc<Ctx>>) -> Response {
    match &ctx.jwt {
        Some((signer, _, _)) => (
            [(header::CONTENT_TYPE, "application/json")],
            signer.jwks().to_owned(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"no signing key: this frontend issues no tokens (set JWT_KEY_FILE)"}"#,
        )
            .into_response(),
    }
}

/// A login whose form could not be read: too large (413), too slow (408),
/// not a form (415) or broken off (400).
pub(crate) async fn refused_form(ctx: &Ctx, headers: &HeaderMap, e: &FormRejection) -> Response {
    let status = server::body::status(e, e.status());
    let lang = Lang::negotiate(headers);
    let cities = ctx.cached_cities().await;
    let frame = ctx.frame(lang, headers, DEFAULT_CITY, cities.as_ref(), None);
    let message = match (lang, status) {
        (Lang::En, StatusCode::PAYLOAD_TOO_LARGE) => "The form is too large.",
        (Lang::Zh, StatusCode::PAYLOAD_TOO_LARGE) => "表单太大。",
        (Lang::En, StatusCode::REQUEST_TIMEOUT) => "The form took too long to arrive.",
        (Lang::Zh, StatusCode::REQUEST_TIMEOUT) => "表单发送超时。",
        (Lang::En, _) => "Log in with the form on this page.",
        (Lang::Zh, _) => "请使用本页的表单登录。",
    };
    let title = lang.texts().bad_request_title.as_str();
    message_page(status, frame, title, message.to_owned())
}

/// A log-in or log-out posted by another site's page: refused, nothing set.
pub(crate) async fn cross_site(ctx: &Ctx, headers: &HeaderMap) -> Response {
    let lang = Lang::negotiate(headers);
    let cities = ctx.cached_cities().await;
    let frame = ctx.frame(lang, headers, DEFAULT_CITY, cities.as_ref(), None);
    let (title, message) = match lang {
        Lang::En => (
            "Refused",
            "Logging in or out is only done from this site's own page.",
        ),
        Lang::Zh => ("已拒绝", "只能在本站页面上登录或退出。"),
    };
    message_page(StatusCode::FORBIDDEN, frame, title, message.to_owned())
}
