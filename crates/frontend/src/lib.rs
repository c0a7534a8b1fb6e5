//! The frontend: `GET /?city=ID` renders the weather page, `GET /api/weather` the
//! same data as JSON, `POST /login` and `POST /logout` set and clear the `user`
//! cookie the release routes on. v1 draws grey buttons, v2 blue ones; the footer
//! shows which versions served the page.
//!
//! The handlers stay together in this file, in request order, since each is a
//! few lines over the shared context; views are in `view`, texts in `i18n`.

pub mod cookies;
pub mod i18n;
pub mod icons;
pub mod token;
pub mod view;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use askama::Template;
use axum::{
    Form, Json, Router,
    extract::{State, rejection::FormRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::RwLock;
use tower_http::limit::RequestBodyLimitLayer;
use weather_core::{
    AppArgs, AppError, AppVersion, Client, ClientArgs, Downstream, Forwarded, Health, Query, chain,
    client::{ClientError, Upstream},
    error::json_error,
    origin::cross_origin,
    server,
    sky::is_city_id,
};

use crate::{
    i18n::Lang,
    view::{ForecastData, Frame, MessagePage, WeatherPage},
};

pub const APP: &str = "frontend";
pub const DEFAULT_PORT: u16 = 3000;
/// The city shown when none is asked for: the book this sample follows is Chinese.
pub const DEFAULT_CITY: &str = "beijing";
/// The largest request body the frontend takes: a login form is a few dozen
/// bytes (413 past it).
const MAX_FORM: usize = 8 * 1024;

/// The longest query string a page or the API takes (400 past it): a city id,
/// a number of days and a language are a few dozen bytes.
const MAX_QUERY: usize = 2 * 1024;

/// How long the city list (static data) is reused before it is asked for again.
const CITIES_TTL: Duration = Duration::from_secs(300);

/// The frontend's settings.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    #[command(flatten)]
    pub app: AppArgs,

    /// Base URL of the forecast service.
    #[arg(long, env = "FORECAST_URL", default_value = "http://forecast:3002")]
    pub forecast_url: String,

    /// Total timeout of a call to forecast (milliseconds). Keep it above forecast's
    /// own RECOMMENDATION_TIMEOUT_MS, so that v2 can answer without advice in time.
    #[arg(long, env = "FORECAST_TIMEOUT_MS", default_value_t = 3000)]
    pub forecast_timeout_ms: u64,

    #[command(flatten)]
    pub client: ClientArgs,

    /// A PKCS#8 PEM P-256 private key (`weather keygen` makes one): the login
    /// then also sets a signed JWT (cookie `token`), and /.well-known/jwks.json
    /// serves the public key. Unset: no token.
    #[arg(long = "jwt-key-file", env = "JWT_KEY_FILE", value_parser = token::Signer::from_file)]
    pub jwt_key: Option<token::Signer>,

    /// The `iss` of the tokens the login issues.
    #[arg(long, env = "JWT_ISSUER", default_value = token::DEFAULT_ISSUER)]
    pub jwt_issuer: String,

    /// How long a token lives (seconds).
    #[arg(long = "jwt-ttl-s", env = "JWT_TTL_S", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub jwt_ttl_s: u64,
}

impl Config {
    /// Defaults for a given version, for tests and launchers.
    pub fn new(version: AppVersion, forecast_url: impl Into<String>) -> Self {
        Config {
            app: AppArgs::new(version),
            forecast_url: forecast_url.into(),
            forecast_timeout_ms: 3000,
            client: ClientArgs::default(),
            jwt_key: None,
            jwt_issuer: token::DEFAULT_ISSUER.to_owned(),
            jwt_ttl_s: 900,
        }
    }
}

type CityList = Arc<view::Picker>;

/// The length of the last page rendered: the next one's buffer is sized from
/// it (pages are about 7 KiB; one buffer of a fixed 16 KiB per page being
/// written was memory held for nothing at 200 connections).
static LAST_PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(8 * 1024);

struct Ctx {
    version: AppVersion,
    /// This service's link of the chain, `frontend:vN`.
    me: HeaderValue,
    forecast_url: String,
    client: Client,
    cities: RwLock<Option<(Instant, CityList)>>,
    /// Signs the login's JWT, when a key is configured.
    jwt: Option<(token::Signer, String, u64)>,
}

/// The whole service, standard endpoints included.
pub fn app(config: &Config, health: Health) -> Router {
    let telemetry = config.app.telemetry(APP);
    let ctx = Arc::new(Ctx {
        version: config.app.app_version,
        me: chain::link(APP, config.app.app_version),
        forecast_url: config.forecast_url.trim_end_matches('/').to_owned(),
        client: Client::new(
            config.client.connect_timeout(),
            Duration::from_millis(config.forecast_timeout_ms),
            telemetry.clone(),
        ),
        cities: RwLock::new(None),
        jwt: config
            .jwt_key
            .clone()
            .map(|k| (k, config.jwt_issuer.clone(), config.jwt_ttl_s)),
    });
    // A login form is a few dozen bytes: the forms' routes take 8 KiB of it.
    let form = RequestBodyLimitLayer::new(MAX_FORM);
    let routes = Router::new()
        .route("/", get(index))
        .route("/api/weather", get(api_weather))
        .route("/login", post(login).layer(form))
        .route("/logout", post(logout).layer(form))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/static/style.css", get(style))
        .route("/static/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
        .fallback(page_not_found)
        .layer(middleware::from_fn(bounded_query))
        .with_state(ctx);
    server::service(APP, &config.app, health, telemetry, routes)
}

/// 400 for a query string past [`MAX_QUERY`]: nothing the page sends is
/// near it, and what is passed on to forecast stays small.
async fn bounded_query(req: axum::extract::Request, next: middleware::Next) -> Response {
    if req.uri().query().is_some_and(|q| q.len() > MAX_QUERY) {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("the query string is over {MAX_QUERY} bytes"),
        );
    }
    next.run(req).await
}

impl Ctx {
    async fn forecast(
        &self,
        city: &str,
        days: Option<&str>,
        fwd: &Forwarded,
    ) -> Result<Upstream, ClientError> {
        // `city` is a checked slug; `days` is re-encoded, forecast validates it.
        let mut url = String::with_capacity(self.forecast_url.len() + 32);
        url.push_str(&self.forecast_url);
        url.push_str("/forecast?city=");
        url.push_str(city);
        if let Some(d) = days {
            url.push_str("&days=");
            url.extend(form_urlencoded::byte_serialize(d.as_bytes()));
        }
        self.client.get(&url, fwd).await
    }

    /// The city list for the picker: fetched from forecast, reused for a while.
    /// A failure leaves the last good list (or none) in place.
    async fn cities(&self, fwd: &Forwarded) -> Option<CityList> {
        if let Some((at, list)) = self.cities.read().await.as_ref()
            && at.elapsed() < CITIES_TTL
        {
            return Some(list.clone());
        }
        let url = format!("{}/cities", self.forecast_url);
        let fetched = match self.client.get(&url, fwd).await {
            Ok(up) if up.status == StatusCode::OK => {
                serde_json::from_slice::<Vec<view::CityData>>(&up.body).ok()
            }
            _ => None,
        };
        let mut slot = self.cities.write().await;
        if let Some(list) = fetched {
            let list = Arc::new(view::Picker::new(list));
            *slot = Some((Instant::now(), list.clone()));
            return Some(list);
        }
        slot.as_ref().map(|(_, l)| l.clone())
    }

    async fn cached_cities(&self) -> Option<CityList> {
        self.cities.read().await.as_ref().map(|(_, l)| l.clone())
    }

    fn frame(
        &self,
        lang: Lang,
        headers: &HeaderMap,
        city: &str,
        cities: Option<&CityList>,
        downstream: Option<&HeaderValue>,
    ) -> Frame {
        let me = self.me.to_str().unwrap_or(APP);
        let chain = match downstream.and_then(|d| d.to_str().ok()) {
            Some(d) => [me, d].join(","),
            None => me.to_owned(),
        };
        let other = lang.texts().other_lang_code.as_str();
        Frame {
            t: lang.texts(),
            version: self.version.as_str(),
            user: cookies::user(headers),
            username_value: String::new(),
            cities: cities.cloned(),
            selected: city.to_owned(),
            lang,
            lang_href: ["/?city=", city, "&lang=", other].concat(),
            chain: view::links(&chain),
        }
    }
}

/// The query of a page and of the API.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub city: Option<String>,
    pub days: Option<String>,
    pub lang: Option<String>,
}

/// The login form.
#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    pub username: Option<String>,
}

/// The language of this request, and whether the switch asked for it (then it
/// is remembered in a cookie).
fn language(params: &PageQuery, headers: &HeaderMap) -> (Lang, bool) {
    match params.lang.as_deref().and_then(Lang::from_code) {
        Some(l) => (l, true),
        None => (Lang::negotiate(headers), false),
    }
}

/// The city a page asks for; the default when none is given. `None` when the id
/// cannot be a city (not a lowercase slug), so it is never sent on or reflected.
fn requested_city(params: &PageQuery) -> Option<&str> {
    match params.city.as_deref().map(str::trim) {
        None | Some("") => Some(DEFAULT_CITY),
        Some(c) if is_city_id(c) => Some(c),
        Some(_) => None,
    }
}

async fn index(
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
fn page_from(up: Upstream, frame: Frame, lang: Lang, city: &str) -> Response {
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

fn upstream_error(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(v.get("error")?.as_str()?.to_owned())
}

async fn api_weather(
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

async fn login(
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

async fn logout(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
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
async fn jwks(State(ctx): State<Arc<Ctx>>) -> Response {
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
async fn refused_form(ctx: &Ctx, headers: &HeaderMap, e: &FormRejection) -> Response {
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
async fn cross_site(ctx: &Ctx, headers: &HeaderMap) -> Response {
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

async fn page_not_found(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
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

fn message_page(status: StatusCode, frame: Frame, title: &str, message: String) -> Response {
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
fn html(status: StatusCode, page: &impl Template) -> Response {
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

async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../static/style.css"),
    )
}

async fn favicon() -> Response {
    asset("image/svg+xml", include_str!("../static/favicon.svg"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
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

weather_core::service!(Config, APP, DEFAULT_PORT, app);
