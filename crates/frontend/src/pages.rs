//! The weather page and its JSON twin: the city and language a request asks
//! for, forecast's answer turned into a page, and the pages that say why
//! there is none.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};
use weather_core::{
    AppError, Downstream, Forwarded, Query, chain, client::Upstream, error::json_error,
    sky::is_city_id,
};

use crate::{
    i18n::Lang,
    view::{ForecastData, Frame, WeatherPage},
};

use crate::{
    Ctx, DEFAULT_CITY, cookies,
    respond::{html, message_page},
};

/// The query of a page and of the API.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub city: Option<String>,
    pub days: Option<String>,
    pub lang: Option<String>,
}

/// The language of this request, and whether the switch asked for it (then it
/// is remembered in a cookie).
pub(crate) fn language(params: &PageQuery, headers: &HeaderMap) -> (Lang, bool) {
    match params.lang.as_deref().and_then(Lang::from_code) {
        Some(l) => (l, true),
        None => (Lang::negotiate(headers), false),
    }
}

/// The city a page asks for; the default when none is given. `None` when the id
/// cannot be a city (not a lowercase slug), so it is never sent on or reflected.
pub(crate) fn requested_city(params: &PageQuery) -> Option<&str> {
    match params.city.as_deref().map(str::trim) {
        None | Some("") => Some(DEFAULT_CITY),
        Some(c) if is_city_id(c) => Some(c),
        Some(_) => None,
    }
}

pub(crate) async fn index(
    State(ctx): State<Arc<Ctx>>,
    params: Result<Query<PageQuery>, AppError>,
    headers: HeaderMap,
    fwd: Forwarded,
) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(e) => {
            let lang = Lang::negotiate(&headers);
            let cities = ctx.cached_cities().await;
            let frame = ctx.frame(lang, &headers, DEFAULT_CITY, cities.as_ref(), None);
            let title = lang.texts().bad_request_title.as_str();
            return message_page(e.status(), frame, title, e.to_string());
        }
    };
    let (lang, remember) = language(&params, &headers);
    let t = lang.texts();
    let mut res = match requested_city(&params) {
        None => {
            let cities = ctx.cached_cities().await;
            let frame = ctx.frame(lang, &headers, DEFAULT_CITY, cities.as_ref(), None);
            let message = match lang {
                Lang::En => {
                    "City ids are lowercase letters, digits and dashes, like new-york.".to_owned()
                }
                Lang::Zh => "城市编号由小写字母、数字和连字符组成，例如 new-york。".to_owned(),
            };
            message_page(
                StatusCode::NOT_FOUND,
                frame,
                t.not_found_title.as_str(),
                message,
            )
        }
        Some(city) => {
            let (cities, answer) = tokio::join!(
                ctx.cities(&fwd),
                ctx.forecast(city, params.days.as_deref(), &fwd)
            );
            match answer {
                Ok(up) => {
                    let frame = ctx.frame(lang, &headers, city, cities.as_ref(), up.chain.as_ref());
                    let downstream = Downstream(up.chain.clone());
                    (downstream, page_from(up, frame, lang, city)).into_response()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "forecast unreachable");
                    let frame = ctx.frame(lang, &headers, city, cities.as_ref(), None);
                    message_page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        frame,
                        t.unavailable_title.as_str(),
                        t.unavailable_body.as_str().to_owned(),
                    )
                }
            }
        }
    };
    if remember && let Ok(v) = HeaderValue::from_str(&cookies::lang_cookie(lang.code())) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// The page for what forecast answered.
pub(crate) fn page_from(up: Upstream, frame: Frame, lang: Lang, city: &str) -> Response {
    let t = frame.t;
    match up.status {
        StatusCode::OK => match serde_json::from_slice::<ForecastData>(&up.body) {
            Ok(data) => html(StatusCode::OK, &WeatherPage::new(frame, lang, &data)),
            Err(e) => {
                tracing::warn!(error = %e, "forecast sent a malformed answer");
                message_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    frame,
                    t.unavailable_title.as_str(),
                    t.unavailable_body.as_str().to_owned(),
                )
            }
        },
        StatusCode::NOT_FOUND => {
            let message = match lang {
                Lang::En => format!("We have no weather for “{city}”. Pick a city from the list."),
                Lang::Zh => format!("没有“{city}”的天气，请从列表中选择城市。"),
            };
            message_page(
                StatusCode::NOT_FOUND,
                frame,
                t.not_found_title.as_str(),
                message,
            )
        }
        StatusCode::BAD_REQUEST => {
            let message = upstream_error(&up.body).unwrap_or_else(|| "bad request".into());
            message_page(
                StatusCode::BAD_REQUEST,
                frame,
                t.bad_request_title.as_str(),
                message,
            )
        }
        status => {
            tracing::warn!(%status, "forecast failed");
            message_page(
                StatusCode::SERVICE_UNAVAILABLE,
                frame,
                t.unavailable_title.as_str(),
                t.unavailable_body.as_str().to_owned(),
            )
        }
    }
}

pub(crate) fn upstream_error(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(v.get("error")?.as_str()?.to_owned())
}

pub(crate) async fn api_weather(
    State(ctx): State<Arc<Ctx>>,
    Query(params): Query<PageQuery>,
    headers: HeaderMap,
    fwd: Forwarded,
) -> Response {
    let Some(city) = requested_city(&params) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown city: ids are lowercase letters, digits and dashes",
        );
    };
    let up = match ctx.forecast(city, params.days.as_deref(), &fwd).await {
        Ok(up) => up,
        Err(e) => {
            tracing::warn!(error = %e, "forecast unreachable");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("forecast is unavailable: {e}"),
            );
        }
    };
    let downstream = Downstream(up.chain.clone());
    let res = match up.status {
        // Checked against the shape the page needs, so the API and the page agree
        // on what a usable answer is.
        StatusCode::OK => match serde_json::from_slice::<ForecastData>(&up.body)
            .and_then(|_| serde_json::from_slice::<Value>(&up.body))
        {
            Ok(Value::Object(mut data)) => {
                let chain = chain::served_by(&ctx.me, up.chain.as_ref());
                let served_by: Vec<&str> = chain.to_str().unwrap_or("").split(',').collect();
                data.insert("served_by".into(), json!(served_by));
                data.insert("user".into(), json!(cookies::user(&headers)));
                Json(Value::Object(data)).into_response()
            }
            _ => json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "forecast is unavailable: it sent a malformed answer",
            ),
        },
        s @ (StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST) => json_error(
            s,
            &upstream_error(&up.body).unwrap_or_else(|| "bad request".into()),
        ),
        s => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("forecast is unavailable: it answered {s}"),
        ),
    };
    (downstream, res).into_response()
}

pub(crate) async fn page_not_found(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let lang = Lang::negotiate(&headers);
    let cities = ctx.cached_cities().await;
    let frame = ctx.frame(lang, &headers, DEFAULT_CITY, cities.as_ref(), None);
    let message = match lang {
        Lang::En => "There is no page here.",
        Lang::Zh => "这里没有页面。",
    };
    let title = match lang {
        Lang::En => "Not found",
        Lang::Zh => "页面不存在",
    };
    message_page(StatusCode::NOT_FOUND, frame, title, message.to_owned())
}
