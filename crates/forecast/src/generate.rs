//! Synthetic but believable weather. There is no network to fetch real weather
//! from, so each day is drawn from the city's climate normals for that time of year,
//! with a seed of (city, date): the same all day long, different the next day, and
//! with a warm or cold spell carrying over a few days as real weather does.
//!
//! Over 400 lines with its tests, which pin the generator's properties (ranges,
//! stability per day, spells) next to the code they hold.

use serde::Serialize;
use weather_core::Condition;
pub use weather_core::sky::Current;

use crate::{
    cities::City,
    date::{Date, LocalTime},
};

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Day {
    pub date: String,
    pub weekday: &'static str,
    pub condition: Condition,
    pub temp_min_c: i32,
    pub temp_max_c: i32,
    /// Chance of precipitation, percent.
    pub precip_chance: u8,
    pub precip_mm: f64,
    /// Mean relative humidity, percent.
    pub humidity: u8,
    pub wind_kph: u16,
    /// Peak UV index of the day.
    pub uv: u8,
    /// US EPA air-quality index.
    pub aqi: u16,
}

/// `n` days from `start`, the first being `start` itself.
pub fn days(city: &City, start: Date, n: usize) -> Vec<Day> {
    (0..n as i64)
        .map(|i| day(city, start.add_days(i)))
        .collect()
}

/// One day's weather for a city.
pub fn day(city: &City, date: Date) -> Day {
    let c = &city.climate;
    let (_, month, dom) = date.ymd();
    let high = seasonal(&c.high, month, dom);
    let low = seasonal(&c.low, month, dom);
    let p_wet = (seasonal(&c.wet_days, month, dom) / 30.0).clamp(0.0, 0.85);

    let seed = seed(city.id);
    let var = variability(c);
    let r = |salt: u64| unit(seed, date, salt);
    // A spell: today's draw plus fading echoes of the two days before.
    let spell = 3.5
        * var
        * (0.6 * normal(seed, date, 1)
            + 0.5 * normal(seed, date.add_days(-1), 1)
            + 0.35 * normal(seed, date.add_days(-2), 1));

    let wet = r(2) < p_wet;
    let mut max = high + spell + 1.2 * var * normal(seed, date, 3);
    let mut min = low + spell + 1.2 * var * normal(seed, date, 4);
    if wet {
        // Clouds and rain cap the afternoon and keep the night mild.
        max -= 2.0;
        min += 0.8;
    }
    if min > max - 2.0 {
        min = max - 2.0;
    }

    let condition = if wet {
        let k = r(5);
        if max <= 1.0 {
            Condition::Snow
        } else if min <= 0.5 && max <= 5.0 {
            if k < 0.5 {
                Condition::Snow
            } else {
                Condition::Sleet
            }
        } else if max >= 25.0 && k < 0.3 {
            Condition::Thunderstorm
        } else if k < 0.45 {
            Condition::Drizzle
        } else if k < 0.85 {
            Condition::Rain
        } else {
            Condition::HeavyRain
        }
    } else if r(6) < c.fog * seasonal_fog(city, month) {
        Condition::Fog
    } else {
        let k = r(7) + (c.humidity - 65.0) / 200.0;
        if k < 0.45 {
            Condition::Sunny
        } else if k < 0.75 {
            Condition::PartlyCloudy
        } else {
            Condition::Cloudy
        }
    };

    let precip_chance = if wet {
        60.0 + 35.0 * r(8)
    } else {
        (p_wet * 80.0 * r(8)).min(55.0)
    };
    let precip_mm = match condition {
        Condition::Drizzle => 0.3 + 1.7 * r(9),
        Condition::Rain => 3.0 + 9.0 * r(9),
        Condition::HeavyRain => 15.0 + 35.0 * r(9),
        Condition::Thunderstorm => 8.0 + 30.0 * r(9),
        Condition::Snow | Condition::Sleet => 1.0 + 7.0 * r(9),
        _ => 0.0,
    };
    let humidity = (c.humidity + if wet { 15.0 } else { -5.0 } + 8.0 * normal(seed, date, 10))
        .clamp(12.0, 100.0);
    let gust = if r(11) < 0.08 { 25.0 } else { 0.0 };
    let wind = (6.0 + 14.0 * r(12) + gust + if wet { 6.0 } else { 0.0 }).round();

    let uv = clear_sky_uv(city, date) * c.uv_boost * cloud_factor(condition);
    let mut aqi = c.aqi * (0.55 + 0.9 * r(13));
    if c.winter_smog && matches!(month, 11 | 12 | 1 | 2) {
        aqi *= 1.5 + 0.8 * r(14);
    }
    if wet {
        aqi *= 0.6; // rain washes the air
    }
    let aqi = aqi.clamp(5.0, 450.0);
    let condition = if !wet && aqi > 160.0 && condition != Condition::Fog {
        Condition::Haze
    } else {
        condition
    };

    Day {
        date: date.iso(),
        weekday: WEEKDAYS[date.weekday() as usize],
        condition,
        temp_min_c: min.round() as i32,
        temp_max_c: max.round() as i32,
        precip_chance: (precip_chance.round() as u8).min(100),
        precip_mm: (precip_mm * 10.0).round() / 10.0,
        humidity: humidity.round() as u8,
        wind_kph: wind as u16,
        uv: uv.round().clamp(0.0, 16.0) as u8,
        aqi: aqi.round() as u16,
    }
}

/// The conditions now, from today's forecast and the local hour: coolest near
/// 05:00, warmest near 15:00, no sun at night.
pub fn current(city: &City, now: LocalTime) -> Current {
    current_of(&day(city, now.date), now)
}

/// [`current`] from today's forecast, when it is already made.
pub fn current_of(today: &Day, now: LocalTime) -> Current {
    let phase = ((now.hour - 15.0) / 24.0 * std::f64::consts::TAU).cos();
    // cos is 1 at 15:00 and -1 at 03:00; the curve is close enough to the real one.
    let t = today.temp_min_c as f64
        + (today.temp_max_c - today.temp_min_c) as f64 * (phase + 1.0) / 2.0;
    let wind = today.wind_kph as f64;
    let feels = if t <= 10.0 && wind > 5.0 {
        // Environment Canada's wind-chill formula.
        13.12 + 0.6215 * t - 11.37 * wind.powf(0.16) + 0.3965 * t * wind.powf(0.16)
    } else if t >= 27.0 {
        t + (today.humidity as f64 - 40.0).max(0.0) * 0.1
    } else {
        t
    };
    let daylight = ((now.hour - 12.5).abs() / 6.5).min(1.0);
    let uv = today.uv as f64 * (1.0 - daylight * daylight);
    Current {
        local_time: format!(
            "{:02}:{:02}",
            now.hour as u32,
            ((now.hour.fract()) * 60.0) as u32
        ),
        temperature_c: t.round() as i32,
        feels_like_c: feels.round() as i32,
        condition: today.condition,
        humidity: today.humidity,
        wind_kph: today.wind_kph,
        uv: uv.round() as u8,
        aqi: today.aqi,
    }
}

/// A monthly normal, interpolated between mid-month values so that the 31st and
/// the 1st do not jump.
fn seasonal(by_month: &[f64; 12], month: u32, dom: u32) -> f64 {
    let m = month as usize - 1;
    let offset = (dom as f64 - 15.0) / 30.0;
    let other = if offset >= 0.0 {
        (m + 1) % 12
    } else {
        (m + 11) % 12
    };
    by_month[m] + (by_month[other] - by_month[m]) * offset.abs()
}

/// How much a city's weather swings from day to day: the tropics hardly, the
/// continental north a lot. Scaled from the spread of its monthly highs.
fn variability(c: &crate::cities::Climate) -> f64 {
    let hottest = c.high.iter().cloned().fold(f64::MIN, f64::max);
    let coldest = c.high.iter().cloned().fold(f64::MAX, f64::min);
    ((hottest - coldest) / 6.0).clamp(0.4, 1.0)
}

/// San Francisco's fog is a summer affair; elsewhere fog favours the cold months.
fn seasonal_fog(city: &City, month: u32) -> f64 {
    let summer = if city.lat >= 0.0 {
        (5..=9).contains(&month)
    } else {
        !(4..=10).contains(&month)
    };
    if city.climate.fog > 0.1 {
        if summer { 1.0 } else { 0.3 }
    } else if summer {
        0.5
    } else {
        1.5
    }
}

/// Clear-sky noon UV index from the sun's height at the city's latitude.
fn clear_sky_uv(city: &City, date: Date) -> f64 {
    let declination =
        23.44 * ((date.day_of_year() as f64 - 80.0) / 365.25 * std::f64::consts::TAU).sin();
    let elevation = (90.0 - (city.lat - declination).abs()).clamp(0.0, 90.0);
    12.5 * elevation.to_radians().sin().powf(2.4)
}

fn cloud_factor(c: Condition) -> f64 {
    match c {
        Condition::Sunny => 1.0,
        Condition::PartlyCloudy => 0.85,
        Condition::Haze => 0.7,
        Condition::Cloudy | Condition::Fog => 0.5,
        Condition::Drizzle | Condition::Snow => 0.4,
        _ => 0.3,
    }
}

/// A city's share of every draw: its id, hashed (FNV-1a) once per day drawn.
fn seed(city: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in city.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A uniform number in [0, 1) that depends only on (city, date, salt).
fn unit(seed: u64, date: Date, salt: u64) -> f64 {
    let mut x = seed
        ^ (date.0 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ salt.wrapping_mul(0xd1b5_4a32_d192_ed03);
    // splitmix64's finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Roughly standard normal (mean 0, sd 1), from three uniforms.
fn normal(seed: u64, date: Date, salt: u64) -> f64 {
    let s = unit(seed, date, salt * 3)
        + unit(seed, date, salt * 3 + 1)
        + unit(seed, date, salt * 3 + 2);
    (s - 1.5) * 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cities::{CITIES, find};

    fn city(id: &str) -> &'static City {
        find(id).unwrap()
    }

    #[test]
    fn the_same_city_and_date_give_the_same_weather() {
        let d = Date::from_ymd(2026, 11, 25);
        for c in CITIES.iter() {
            assert_eq!(day(c, d), day(c, d), "{}", c.id);
        }
    }

    #[test]
    fn weather_changes_from_day_to_day_and_city_to_city() {
        let d = Date::from_ymd(2026, 11, 25);
        let week: Vec<Day> = days(city("london"), d, 7);
        let distinct = week
            .iter()
            .map(|x| (x.temp_max_c, x.temp_min_c, x.condition, x.wind_kph))
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() >= 5, "a week of identical days: {week:?}");
        assert_ne!(day(city("london"), d), day(city("paris"), d));
    }

    #[test]
    fn a_forecast_starts_today_and_counts_consecutive_days() {
        let start = Date::from_ymd(2026, 12, 30);
        let ds = days(city("beijing"), start, 4);
        let dates: Vec<&str> = ds.iter().map(|d| d.date.as_str()).collect();
        assert_eq!(
            dates,
            ["2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02"]
        );
        assert_eq!(ds[0].weekday, "Wed");
    }

    #[test]
    fn every_value_stays_within_physical_bounds() {
        let start = Date::from_ymd(2026, 1, 1);
        for c in CITIES.iter() {
            for d in days(c, start, 365) {
                assert!(d.temp_min_c < d.temp_max_c, "{} {d:?}", c.id);
                assert!((-50..=50).contains(&d.temp_min_c) && (-45..=55).contains(&d.temp_max_c));
                assert!(d.precip_chance <= 100 && d.humidity <= 100 && d.uv <= 16);
                assert!((5..=450).contains(&d.aqi));
                assert_eq!(d.precip_mm > 0.0, d.condition.is_wet(), "{} {d:?}", c.id);
                if d.condition.is_wet() {
                    assert!(d.precip_chance >= 60, "{} {d:?}", c.id);
                }
            }
        }
    }

    /// The average over many years of a month's highs must sit near the climate
    /// normal: the generator follows each city's seasons.
    #[test]
    fn monthly_means_follow_the_climate_normals() {
        for c in CITIES.iter() {
            for month in [1u32, 4, 7, 10] {
                let mut highs = 0.0;
                let mut lows = 0.0;
                let mut n = 0.0;
                for year in 2000..2030 {
                    for dom in 10..=20 {
                        let d = day(c, Date::from_ymd(year, month, dom));
                        highs += d.temp_max_c as f64;
                        lows += d.temp_min_c as f64;
                        n += 1.0;
                    }
                }
                let m = month as usize - 1;
                let (hi, lo) = (highs / n, lows / n);
                assert!(
                    (hi - c.climate.high[m]).abs() < 2.5,
                    "{} month {month}: mean high {hi:.1} vs {}",
                    c.id,
                    c.climate.high[m]
                );
                assert!(
                    (lo - c.climate.low[m]).abs() < 2.5,
                    "{} month {month}: mean low {lo:.1} vs {}",
                    c.id,
                    c.climate.low[m]
                );
            }
        }
    }

    #[test]
    fn seasons_are_plausible() {
        let winter = |id: &str| days(city(id), Date::from_ymd(2027, 1, 10), 60);
        // Harbin in January: no rain, only snow, and hard frost every night.
        for d in winter("harbin") {
            assert!(
                !matches!(
                    d.condition,
                    Condition::Rain
                        | Condition::Drizzle
                        | Condition::HeavyRain
                        | Condition::Thunderstorm
                ),
                "{d:?}"
            );
            assert!(d.temp_min_c < 0, "{d:?}");
        }
        // Singapore never freezes; Dubai barely rains in summer.
        assert!(
            days(city("singapore"), Date::from_ymd(2027, 1, 1), 365)
                .iter()
                .all(|d| d.temp_min_c > 15)
        );
        let wet = days(city("dubai"), Date::from_ymd(2027, 6, 1), 90)
            .iter()
            .filter(|d| d.condition.is_wet())
            .count();
        assert!(wet <= 3, "{wet} wet summer days in Dubai");
        // Sun: stronger in Singapore than in London in December; Beijing's smog in winter.
        let uv = |id: &str, m| {
            days(city(id), Date::from_ymd(2026, m, 1), 30)
                .iter()
                .map(|d| d.uv as u32)
                .max()
                .unwrap()
        };
        assert!(uv("singapore", 12) >= 9 && uv("london", 12) <= 2);
        let aqi = |m| {
            days(city("beijing"), Date::from_ymd(2026, m, 1), 28)
                .iter()
                .map(|d| d.aqi as u32)
                .sum::<u32>()
        };
        assert!(aqi(1) > aqi(7));
    }

    #[test]
    fn now_is_warmer_in_the_afternoon_than_before_dawn() {
        let c = city("chengdu");
        let date = Date::from_ymd(2026, 8, 1);
        let at = |hour| current(c, LocalTime { date, hour });
        let dawn = at(4.0);
        let afternoon = at(15.0);
        let today = day(c, date);
        assert_eq!(afternoon.temperature_c, today.temp_max_c);
        assert!(dawn.temperature_c <= today.temp_min_c + 1);
        assert_eq!(at(23.0).uv, 0);
        assert_eq!(at(15.5).local_time, "15:30");
    }
}
