//! The sky every service speaks of: forecast produces conditions and readings,
//! recommendation reasons on them, frontend draws them.

use serde::{Deserialize, Serialize};

/// Whether `id` has the shape of a city id (docs/architecture.md, Contracts 7):
/// a lowercase ASCII slug such as `new-york`, at most 40 bytes. forecast answers
/// 404 for any other id, frontend never sends one on nor reflects it.
pub fn is_city_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 40
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The conditions in a city now: the `current` field of forecast's answer,
/// which frontend shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Current {
    /// Local time of the reading, `HH:MM`.
    pub local_time: String,
    pub temperature_c: i32,
    pub feels_like_c: i32,
    pub condition: Condition,
    pub humidity: u8,
    pub wind_kph: u16,
    pub uv: u8,
    pub aqi: u16,
}

/// A sky condition; its kebab-case slug (`partly-cloudy`) is the wire form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    Sunny,
    PartlyCloudy,
    Cloudy,
    Fog,
    Haze,
    Drizzle,
    Rain,
    HeavyRain,
    Thunderstorm,
    Sleet,
    Snow,
}

impl Condition {
    pub const ALL: [Condition; 11] = [
        Condition::Sunny,
        Condition::PartlyCloudy,
        Condition::Cloudy,
        Condition::Fog,
        Condition::Haze,
        Condition::Drizzle,
        Condition::Rain,
        Condition::HeavyRain,
        Condition::Thunderstorm,
        Condition::Sleet,
        Condition::Snow,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Condition::Sunny => "sunny",
            Condition::PartlyCloudy => "partly-cloudy",
            Condition::Cloudy => "cloudy",
            Condition::Fog => "fog",
            Condition::Haze => "haze",
            Condition::Drizzle => "drizzle",
            Condition::Rain => "rain",
            Condition::HeavyRain => "heavy-rain",
            Condition::Thunderstorm => "thunderstorm",
            Condition::Sleet => "sleet",
            Condition::Snow => "snow",
        }
    }

    pub fn from_slug(s: &str) -> Option<Condition> {
        Condition::ALL.into_iter().find(|c| c.slug() == s)
    }

    /// Whether water (or snow) falls from the sky.
    pub fn is_wet(self) -> bool {
        matches!(
            self,
            Condition::Drizzle
                | Condition::Rain
                | Condition::HeavyRain
                | Condition::Thunderstorm
                | Condition::Sleet
                | Condition::Snow
        )
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Condition::Sunny => "Sunny",
            Condition::PartlyCloudy => "Partly cloudy",
            Condition::Cloudy => "Cloudy",
            Condition::Fog => "Fog",
            Condition::Haze => "Haze",
            Condition::Drizzle => "Drizzle",
            Condition::Rain => "Rain",
            Condition::HeavyRain => "Heavy rain",
            Condition::Thunderstorm => "Thunderstorms",
            Condition::Sleet => "Sleet",
            Condition::Snow => "Snow",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Condition::Sunny => "晴",
            Condition::PartlyCloudy => "多云",
            Condition::Cloudy => "阴",
            Condition::Fog => "雾",
            Condition::Haze => "霾",
            Condition::Drizzle => "小雨",
            Condition::Rain => "中雨",
            Condition::HeavyRain => "大雨",
            Condition::Thunderstorm => "雷阵雨",
            Condition::Sleet => "雨夹雪",
            Condition::Snow => "雪",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_round_trip_and_match_the_json_form() {
        for c in Condition::ALL {
            assert_eq!(Condition::from_slug(c.slug()), Some(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.slug())
            );
        }
        assert_eq!(Condition::from_slug("Sunny"), None);
    }
}
