//! The forecast service: `GET /forecast?city=ID[&days=N]` and `GET /cities`.
//! v1 answers the forecast; v2 also asks recommendation for advice on today and
//! adds it, or marks it unavailable when recommendation fails or is slow.

pub mod cities;
pub mod date;
pub mod generate;

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weather_core::{
    AppArgs, AppError, AppVersion, Client, ClientArgs, Downstream, Forwarded, Health, Query, server,
};

use crate::{
    cities::City,
    date::LocalTime,
    generate::{Current, Day},
};

pub const APP: &str = "forecast";
pub const DEFAULT_PORT: u16 = 3002;
pub const DEFAULT_DAYS: usize = 5;
pub const MAX_DAYS: usize = 7;

/// The forecast service's settings.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    #[command(flatten)]
    pub app: AppArgs,

    /// Base URL of the recommendation service (v2 only calls it).
    #[arg(
        long,
        env = "RECOMMENDATION_URL",
        default_value = "http://recommendation:3005"
    )]
    pub recommendation_url: String,

    /// Total timeout of a call to recommendation (milliseconds); past it, v2
    /// answers without advice rather than keep the user waiting.
    #[arg(long, env = "RECOMMENDATION_TIMEOUT_MS", default_value_t = 1000)]
    pub recommendation_timeout_ms: u64,

    #[command(flatten)]
    pub client: ClientArgs,
}

impl Config {
    /// Defaults for a given version, for tests and launchers.
    pub fn new(version: AppVersion, recommendation_url: impl Into<String>) -> Self {
        Config {
            app: AppArgs::new(version),
            recommendation_url: recommendation_url.into(),
            recommendation_timeout_ms: 1000,
            client: ClientArgs::default(),
        }
    }
}

struct Ctx {
    version: AppVersion,
    recommendation_url: String,
    client: Client,
}

/// The whole service, standard endpoints included.
pub fn app(config: &Config, health: Health) -> Router {
    let telemetry = config.app.telemetry(APP);
    let ctx = Arc::new(Ctx {
        version: config.app.app_version,
        recommendation_url: config.recommendation_url.trim_end_matches('/').to_owned(),
        client: Client::new(
            config.client.connect_timeout(),
            Duration::from_millis(config.recommendation_timeout_ms),
            telemetry.clone(),
        ),
    });
    let routes = Router::new()
        .route("/forecast", get(forecast))
        .route("/cities", get(list_cities))
        .fallback(server::not_found)
        .with_state(ctx);
    server::service(APP, &config.app, health, telemetry, routes)
}

async fn list_cities() -> Json<&'static [City]> {
    Json(&cities::CITIES[..])
}

#[derive(Serialize)]
struct Forecast<'a> {
    city: &'static City,
    /// Always `synthetic`: see docs/services.md.
    source: &'static str,
    current: Current,
    days: Vec<Day>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recommendation: Option<Recommendation<'a>>,
}

/// v2's `recommendation`: recommendation's answer for today, tagged with its
/// status and date, or why there is none.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Recommendation<'a> {
    Available {
        date: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        feels_like_c: Option<f64>,
        /// Passed on as recommendation wrote it (checked to be JSON): forecast
        /// has nothing to change in it.
        advice: &'a RawValue,
    },
    Unavailable {
        reason: String,
    },
}

/// What forecast reads of recommendation's answer.
#[derive(Deserialize)]
struct Advised<'a> {
    #[serde(default)]
    feels_like_c: Option<f64>,
    #[serde(borrow)]
    advice: &'a RawValue,
}

/// The query of `GET /forecast`.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    pub city: Option<String>,
    pub days: Option<String>,
}

async fn forecast(
    State(ctx): State<Arc<Ctx>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let (city, n) = match parse(&params) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let now = LocalTime::now(city.utc_offset_minutes);
    let days = generate::days(city, now.date, n);
    let Some(today) = days.first() else {
        return AppError::BadRequest("no days asked for".into()).into_response();
    };
    let mut body = Forecast {
        city,
        source: "synthetic",
        current: generate::current_of(today, now),
        days,
        recommendation: None,
    };
    if ctx.version == AppVersion::V1 {
        return Json(body).into_response();
    }
    // Only v2 calls on, so only v2 gathers what it forwards.
    let fwd = Forwarded::from_headers(&headers);
    let (answer, chain) = recommend(&ctx, &body.days[0], &fwd).await;
    body.recommendation = Some(match &answer {
        Ok(bytes) => match serde_json::from_slice::<Advised>(bytes) {
            Ok(a) => Recommendation::Available {
                date: body.days[0].date.clone(),
                feels_like_c: a.feels_like_c,
                advice: a.advice,
            },
            Err(_) => unavailable("recommendation sent a malformed answer".into()),
        },
        Err(reason) => unavailable(reason.clone()),
    });
    (Downstream(chain), Json(body)).into_response()
}

fn unavailable(reason: String) -> Recommendation<'static> {
    tracing::warn!(%reason, "recommendation unavailable");
    Recommendation::Unavailable { reason }
}

fn parse(p: &Params) -> Result<(&'static City, usize), AppError> {
    let id = p.city.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| {
        AppError::BadRequest(
            "`city` is required, e.g. ?city=beijing (GET /cities lists them)".into(),
        )
    })?;
    let city = cities::find(id).ok_or_else(|| {
        AppError::NotFound(if cities::is_slug(id) {
            format!("unknown city `{id}`; GET /cities lists the known ids")
        } else {
            "unknown city: ids are lowercase letters, digits and dashes; GET /cities lists them"
                .into()
        })
    })?;
    let days = match p.days.as_deref() {
        None => DEFAULT_DAYS,
        Some(d) => d
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_DAYS).contains(n))
            .ok_or_else(|| {
                AppError::BadRequest(format!(
                    "`days` must be a whole number from 1 to {MAX_DAYS}"
                ))
            })?,
    };
    Ok((city, days))
}

/// Asks recommendation about `today`: its answer when it is a 200, else why
/// not, and its chain header. Whatever goes wrong, the forecast is still
/// served, the advice marked unavailable with the reason.
async fn recommend(
    ctx: &Ctx,
    today: &Day,
    fwd: &Forwarded,
) -> (Result<Bytes, String>, Option<HeaderValue>) {
    let url = format!(
        "{}/recommendation?temp_min={}&temp_max={}&condition={}&precip_chance={}&wind_kph={}&humidity={}&uv={}&aqi={}",
        ctx.recommendation_url,
        today.temp_min_c,
        today.temp_max_c,
        today.condition.slug(),
        today.precip_chance,
        today.wind_kph,
        today.humidity,
        today.uv,
        today.aqi
    );
    match ctx.client.get(&url, fwd).await {
        Ok(up) if up.status == StatusCode::OK => (Ok(up.body), up.chain),
        Ok(up) => (
            Err(format!("recommendation answered {}", up.status)),
            up.chain,
        ),
        Err(e) => (Err(format!("recommendation {e}")), None),
    }
}

weather_core::service!(Config, APP, DEFAULT_PORT, app);
