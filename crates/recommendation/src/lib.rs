//! The recommendation service: `GET /recommendation?temp_min=..&temp_max=..&condition=..`
//! answers what to wear, whether to take an umbrella, what to do outdoors, how to
//! protect from the sun and the air. Only forecast v2 calls it.

pub mod rules;

use axum::{Router, routing::get};
use serde::Serialize;
use weather_core::{AppArgs, AppError, Condition, Health, Json, Params, server};

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

async fn recommendation(params: Params) -> Result<Json<Answer>, AppError> {
    let conditions = parse(&params)?;
    Ok(Json(Answer {
        feels_like_c: (rules::feels_like(&conditions) * 10.0).round() / 10.0,
        advice: advise(&conditions),
    }))
}

/// Reads the query; every value is checked against a physical range.
pub fn parse(p: &Params) -> Result<Conditions, AppError> {
    let temp_min_c = p.required_number("temp_min", -90.0, 60.0)?;
    let temp_max_c = p.required_number("temp_max", -90.0, 60.0)?;
    if temp_min_c > temp_max_c {
        return Err(AppError::BadRequest(
            "`temp_min` must not be above `temp_max`".into(),
        ));
    }
    let condition = match p.get("condition") {
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
        precip_chance: p.number("precip_chance", 0.0, 100.0)?.unwrap_or(0.0),
        wind_kph: p.number("wind_kph", 0.0, 400.0)?.unwrap_or(0.0),
        humidity: p.number("humidity", 0.0, 100.0)?.unwrap_or(50.0),
        uv: p.number("uv", 0.0, 20.0)?.unwrap_or(0.0),
        aqi: p.number("aqi", 0.0, 1000.0)?,
    })
}

weather_core::service!(Config, APP, DEFAULT_PORT, app);
