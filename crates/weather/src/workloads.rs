//! What `weather` knows of the Weather services, and the mesh does not: which
//! router an image stands for, how a Deployment's environment configures it, and
//! whom each service calls. This is the one place that joins the two worlds.

use axum::Router;
use clap::Command;
use weather_core::{AppVersion, Health, server::Service};

/// A service a Deployment's image names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    Frontend,
    Forecast,
    Recommendation,
}

impl App {
    pub fn name(self) -> &'static str {
        match self {
            App::Frontend => frontend::APP,
            App::Forecast => forecast::APP,
            App::Recommendation => recommendation::APP,
        }
    }

    /// The downstream this release of the app calls: the setting that names it,
    /// and its default. forecast v1 calls no one; v2 asks recommendation.
    pub fn downstream(self, version: AppVersion) -> Option<(&'static str, &'static str)> {
        match (self, version) {
            (App::Frontend, _) => Some(("FORECAST_URL", "http://forecast:3002")),
            (App::Forecast, AppVersion::V2) => {
                Some(("RECOMMENDATION_URL", "http://recommendation:3005"))
            }
            _ => None,
        }
    }
}

impl App {
    /// How long the app waits for its downstream, in milliseconds, as its
    /// environment `env` sets it or its binary defaults it (`None` for an app
    /// that calls no one). Past it, frontend answers 503 and forecast v2
    /// answers without advice.
    pub fn downstream_timeout(self, env: impl Fn(&str) -> Option<String>) -> Option<u64> {
        let var = match self {
            App::Frontend => "FORECAST_TIMEOUT_MS",
            App::Forecast => "RECOMMENDATION_TIMEOUT_MS",
            App::Recommendation => return None,
        };
        let value = env(var).or_else(|| match self {
            App::Frontend => default_of::<frontend::Config>(var),
            App::Forecast => default_of::<forecast::Config>(var),
            App::Recommendation => None,
        })?;
        value.parse().ok()
    }
}

/// The default the service's binary gives the setting read from `var`.
fn default_of<S: Service>(var: &str) -> Option<String> {
    let cmd = S::augment_args(Command::new(S::APP));
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == var))?;
    arg.get_default_values()
        .first()
        .map(|v| v.to_string_lossy().into_owned())
}

/// Why a Deployment cannot be run locally.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("image {0:?} has no tag: expected weather/<app>:<v1|v2>")]
    NoTag(String),
    #[error(
        "image {image:?}: {name:?} is not a Weather service (frontend, forecast, recommendation)"
    )]
    NotWeather { image: String, name: String },
    #[error("image {image:?}: {reason}")]
    BadVersion { image: String, reason: String },
    /// A setting the service refuses, in its binary's own words.
    #[error("{app}: {reason}")]
    Config { app: &'static str, reason: String },
}

/// Reads `weather/<app>:<version>` (any registry prefix): the app, and the
/// version the image bakes in.
pub fn parse_image(image: &str) -> Result<(App, AppVersion), Error> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let (name, tag) = last
        .split_once(':')
        .ok_or_else(|| Error::NoTag(image.to_owned()))?;
    let app = match name {
        "frontend" => App::Frontend,
        "forecast" => App::Forecast,
        "recommendation" => App::Recommendation,
        other => {
            return Err(Error::NotWeather {
                image: image.to_owned(),
                name: other.to_owned(),
            });
        }
    };
    let version = tag.parse::<AppVersion>().map_err(|e| Error::BadVersion {
        image: image.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((app, version))
}

/// Builds a service's router from a container environment, as its binary would
/// read it: each variable becomes the flag that reads it. Variables the service
/// does not know (SHUTDOWN_DELAY_MS, ...) are left out.
pub fn router(
    app: App,
    version: AppVersion,
    env: &[(String, String)],
    health: Health,
) -> Result<Router, Error> {
    let mut env: Vec<(String, String)> = env.to_vec();
    if !env.iter().any(|(k, _)| k == "APP_VERSION") {
        env.push(("APP_VERSION".into(), version.to_string()));
    }
    match app {
        App::Frontend => build::<frontend::Config>(&env, health),
        App::Forecast => build::<forecast::Config>(&env, health),
        App::Recommendation => build::<recommendation::Config>(&env, health),
    }
}

/// The service's router, its settings read from `env` as its binary reads them.
fn build<S: Service>(env: &[(String, String)], health: Health) -> Result<Router, Error> {
    let cmd = S::augment_args(Command::new(S::APP).no_binary_name(true));
    let mut args = Vec::new();
    for (k, v) in env {
        if let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == k.as_str()))
            && let Some(long) = arg.get_long()
        {
            args.push(format!("--{long}={v}"));
        }
    }
    let config = |reason: String| Error::Config {
        app: S::APP,
        reason,
    };
    let matches = cmd
        .try_get_matches_from(&args)
        .map_err(|e| config(e.to_string().lines().next().unwrap_or("").to_owned()))?;
    let settings = S::from_arg_matches(&matches).map_err(|e| config(e.to_string()))?;
    Ok(settings.router(health))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_name_the_app_and_the_version() {
        assert_eq!(
            parse_image("weather/forecast:v2"),
            Ok((App::Forecast, AppVersion::V2))
        );
        assert_eq!(
            parse_image("ghcr.io/me/weather/frontend:v1"),
            Ok((App::Frontend, AppVersion::V1))
        );
        let error = |image: &str| parse_image(image).unwrap_err().to_string();
        assert!(error("weather/forecast").contains("no tag"));
        assert!(error("weather/forecast:v3").contains("v1 or v2"));
        assert!(error("nginx:1.27").contains("not a Weather service"));
    }

    #[test]
    fn downstream_timeouts_are_the_binaries_defaults_unless_set() {
        let none = |_: &str| None;
        assert_eq!(App::Frontend.downstream_timeout(none), Some(3000));
        assert_eq!(App::Forecast.downstream_timeout(none), Some(1000));
        assert_eq!(App::Recommendation.downstream_timeout(none), None);
        let set = |v: &str| (v == "RECOMMENDATION_TIMEOUT_MS").then(|| "250".to_owned());
        assert_eq!(App::Forecast.downstream_timeout(set), Some(250));
    }

    #[test]
    fn the_environment_configures_the_router_like_the_binary() {
        let env = vec![
            ("FORECAST_URL".to_owned(), "http://127.0.0.1:1".to_owned()),
            ("SHUTDOWN_DELAY_MS".to_owned(), "5000".to_owned()),
        ];
        assert!(router(App::Frontend, AppVersion::V2, &env, Health::default()).is_ok());
        let bad = vec![("FORECAST_TIMEOUT_MS".to_owned(), "soon".to_owned())];
        let e = router(App::Frontend, AppVersion::V1, &bad, Health::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("frontend: error: invalid value 'soon'"),
            "{e}"
        );
    }
}
