//! The recommendation service: `GET /recommendation?temp_min=..&temp_max=..&condition=..`
//! answers what to wear, whether to take an umbrella, what to do outdoors, how to
//! protect from the sun and the air. Only forecast v2 calls it.

pub mod rules;

use axum::{Json, Router, routing::get};
use serde::{Deserialize, Serialize};
use weather_core::{
    AppArgs, AppError, Condition, Health, Query,
    query::{number, required_number},
    server,
};

pub use rules::{Advice, Conditions, advise};

pub const APP: &str = "recommendation";
pub const DEFAULT_PORT: u16 = 3005;

/// The recommendation service's settings (it calls no one).
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    #[command(flatten)]
    pub app: AppArgs,
}

/// The whole service, standard endpoints included.
pub fn app(config: &Config, health: Health) -> Router {
    let routes = Router::new()
        .route("/recommendation", get(recommendation))
        .fallback(server::not_found);
    server::service(APP, &config.app, health, config.app.telemetry(APP), routes)
}

#[derive(Serialize)]
struct Answer {
    feels_like_c: f64,
    advice: Vec<Advice>,
}

/// The query a forecast sends: every value checked by [`parse`].
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    pub temp_min: Option<String>,
    pub temp_max: Option<String>,
    pub condition: Option<String>,
    pub precip_chance: Option<String>,
    pub wind_kph: Option<String>,
    pub humidity: Option<String>,
    pub uv: Option<String>,
    pub aqi: Option<String>,
}

async fn recommendation(Query(params): Query<Params>) -> Result<Json<Answer>, AppError> {
    let conditions = parse(&params)?;
    Ok(Json(Answer {
        feels_like_c: (rules::feels_like(&conditions) * 10.0).round() / 10.0,
        advice: advise(&conditions),
    }))
}

/// Reads the query; every value is checked against a physical range.
pub fn parse(p: &Params) -> Result<Conditions, AppError> {
    let temp_min_c = required_number("temp_min", p.temp_min.as_deref(), -90.0, 60.0)?;
    let temp_max_c = required_number("temp_max", p.temp_max.as_deref(), -90.0, 60.0)?;
    if temp_min_c > temp_max_c {
        return Err(AppError::BadRequest(
            "`temp_min` must not be above `temp_max`".into(),
        ));
    }
    let condition = match p.condition.as_deref() {
        None | Some("") => return Err(AppError::BadRequest("`condition` is required".into())),
        Some(c) => Condition::from_slug(c).ok_or_else(|| {
            let known: Vec<&str> = Condition::ALL.iter().map(|c| c.slug()).collect();
            AppError::BadRequest(format!("`condition` must be one of: {}", known.join(", ")))
        })?,
    };
    Ok(Conditions {
        temp_min_c,
        temp_max_c,
        condition,
        precip_chance: number("precip_chance", p.precip_chance.as_deref(), 0.0, 100.0)?
            .unwrap_or(0.0),
        wind_kph: number("wind_kph", p.wind_kph.as_deref(), 0.0, 400.0)?.unwrap_or(0.0),
        humidity: number("humidity", p.humidity.as_deref(), 0.0, 100.0)?.unwrap_or(50.0),
        uv: number("uv", p.uv.as_deref(), 0.0, 20.0)?.unwrap_or(0.0),
        aqi: number("aqi", p.aqi.as_deref(), 0.0, 1000.0)?,
    })
}

weather_core::service!(Config, APP, DEFAULT_PORT, app);
