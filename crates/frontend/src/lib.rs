//! The frontend: `GET /?city=ID` renders the weather page, `GET /api/weather` the
//! same data as JSON, `POST /login` and `POST /logout` set and clear the `user`
//! cookie the release routes on. v1 draws grey buttons, v2 blue ones; the footer
//! shows which versions served the page.
//!
//! Here the settings, the shared context and the router; the handlers are in
//! [`pages`] (the page and the API) and [`login`] (the cookie and the token),
//! how a page goes out in [`respond`], views in [`view`], texts in [`i18n`].

pub mod cookies;
pub mod i18n;
pub mod icons;
mod login;
mod pages;
mod respond;
pub mod token;
pub mod view;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode},
    middleware,
    response::Response,
    routing::{get, post},
};
use tokio::sync::RwLock;
use tower_http::limit::RequestBodyLimitLayer;
use weather_core::{
    AppArgs, AppVersion, Client, ClientArgs, Forwarded, Health, chain,
    client::{ClientError, Upstream},
    error::json_error,
    server,
};

use crate::{
    i18n::Lang,
    login::{jwks, login, logout},
    pages::{api_weather, index, page_not_found},
    respond::{favicon, style},
    view::Frame,
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

weather_core::service!(Config, APP, DEFAULT_PORT, app);
