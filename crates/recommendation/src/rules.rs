//! The advice rules, one function per category, each a plain table of thresholds
//! so that a test can hold every row against the text.
//!
//! Long because it is tables and their row-by-row tests; splitting a category
//! from its test would lose that.

use std::borrow::Cow;

use serde::Serialize;
use weather_core::Condition;

/// A day's weather, as forecast sends it.
#[derive(Clone, Debug, PartialEq)]
pub struct Conditions {
    pub temp_min_c: f64,
    pub temp_max_c: f64,
    pub condition: Condition,
    /// Chance of precipitation, 0 to 100.
    pub precip_chance: f64,
    pub wind_kph: f64,
    pub humidity: f64,
    /// UV index, 0 to 20.
    pub uv: f64,
    /// US EPA air-quality index, when known.
    pub aqi: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Clothing,
    Umbrella,
    Activity,
    Sun,
    Air,
}

/// How much attention an item deserves; the page colours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Good,
    Info,
    Caution,
    Warning,
}

/// The advice in both languages; static text unless the rule adds figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Text {
    pub en: Cow<'static, str>,
    pub zh: Cow<'static, str>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Advice {
    pub category: Category,
    /// A stable key for the advice, for clients that word it themselves.
    pub code: &'static str,
    pub level: Level,
    pub text: Text,
}

fn advice(
    category: Category,
    code: &'static str,
    level: Level,
    en: &'static str,
    zh: &'static str,
) -> Advice {
    Advice {
        category,
        code,
        level,
        text: Text {
            en: Cow::Borrowed(en),
            zh: Cow::Borrowed(zh),
        },
    }
}

/// One item per category, always in the same order.
pub fn advise(c: &Conditions) -> Vec<Advice> {
    vec![clothing(c), umbrella(c), activity(c), sun(c), air(c)]
}

/// The temperature the day feels like: the mean of its range, minus a wind chill
/// when the wind is strong.
pub fn feels_like(c: &Conditions) -> f64 {
    let mean = (c.temp_min_c + c.temp_max_c) / 2.0;
    if c.wind_kph >= 30.0 { mean - 3.0 } else { mean }
}

pub fn clothing(c: &Conditions) -> Advice {
    use Level::*;
    let t = feels_like(c);
    let (code, level, en, zh) = if t < -10.0 {
        (
            "arctic",
            Warning,
            "Down parka, thermal layers, hat, scarf and gloves",
            "羽绒服、保暖内衣，戴帽子、围巾和手套",
        )
    } else if t < 0.0 {
        (
            "winter-coat",
            Caution,
            "Winter coat, hat and gloves",
            "冬季大衣，戴帽子和手套",
        )
    } else if t < 10.0 {
        (
            "coat",
            Info,
            "A warm coat or a heavy sweater",
            "保暖外套或厚毛衣",
        )
    } else if t < 18.0 {
        (
            "jacket",
            Info,
            "A light jacket or a sweater",
            "薄外套或毛衣",
        )
    } else if t < 25.0 {
        (
            "long-sleeves",
            Good,
            "Long sleeves or a light top",
            "长袖或薄上衣",
        )
    } else if t < 30.0 {
        (
            "t-shirt",
            Good,
            "T-shirt and breathable clothes",
            "短袖和透气的衣服",
        )
    } else {
        (
            "light",
            Caution,
            "Light, loose clothing, and drink plenty of water",
            "轻薄宽松的衣服，多喝水",
        )
    };
    let mut a = advice(Category::Clothing, code, level, en, zh);
    let swing = c.temp_max_c - c.temp_min_c;
    if swing >= 10.0 {
        a.text
            .en
            .to_mut()
            .push_str(&format!("; dress in layers, it swings {swing:.0} °C today"));
        a.text
            .zh
            .to_mut()
            .push_str(&format!("；今天温差{swing:.0}°C，注意增减衣物"));
    }
    a
}

pub fn umbrella(c: &Conditions) -> Advice {
    use Condition::*;
    use Level::*;
    let cat = Category::Umbrella;
    match c.condition {
        Thunderstorm => advice(
            cat,
            "storm",
            Warning,
            "Thunderstorms: take a sturdy umbrella and avoid open ground",
            "有雷阵雨：带结实的雨伞，避开空旷地带",
        ),
        Snow | Sleet => advice(
            cat,
            "snow",
            Caution,
            "Snow or sleet: waterproof boots and a hooded coat",
            "有雨雪：穿防水靴和带帽外套",
        ),
        Drizzle | Rain | HeavyRain => {
            advice(cat, "umbrella", Caution, "Take an umbrella", "记得带伞")
        }
        _ if c.precip_chance >= 60.0 => {
            advice(cat, "umbrella", Caution, "Take an umbrella", "记得带伞")
        }
        _ if c.precip_chance >= 30.0 => advice(
            cat,
            "maybe-umbrella",
            Info,
            "A compact umbrella, just in case",
            "带把折叠伞以防万一",
        ),
        _ => advice(cat, "no-umbrella", Good, "No umbrella needed", "不需要带伞"),
    }
}

pub fn activity(c: &Conditions) -> Advice {
    use Condition::*;
    use Level::*;
    let cat = Category::Activity;
    let aqi = c.aqi.unwrap_or(0.0);
    if matches!(c.condition, Thunderstorm | HeavyRain | Snow | Sleet) {
        advice(
            cat,
            "indoors",
            Warning,
            "Best to plan indoor activities today",
            "今天最好安排室内活动",
        )
    } else if aqi > 150.0 {
        advice(
            cat,
            "limit-outdoor",
            Warning,
            "Unhealthy air: keep outdoor exercise short",
            "空气不佳：减少户外运动",
        )
    } else if c.temp_max_c >= 35.0 {
        advice(
            cat,
            "heat",
            Caution,
            "Very hot: exercise early in the morning or in the evening",
            "天气炎热：早晚再运动",
        )
    } else if c.temp_max_c <= -5.0 {
        advice(
            cat,
            "cold",
            Caution,
            "Bitter cold: keep time outdoors short",
            "严寒：缩短户外时间",
        )
    } else if c.wind_kph >= 50.0 {
        advice(
            cat,
            "wind",
            Caution,
            "Strong wind: avoid cycling and exposed places",
            "大风：避免骑车和空旷处",
        )
    } else if matches!(c.condition, Drizzle | Rain) || c.precip_chance >= 60.0 {
        advice(
            cat,
            "rainy",
            Info,
            "Rain likely: a museum, a café or the gym",
            "可能下雨：去博物馆、咖啡馆或健身房",
        )
    } else if matches!(c.condition, Sunny | PartlyCloudy)
        && (15.0..=30.0).contains(&c.temp_max_c)
        && aqi <= 100.0
        && c.precip_chance < 30.0
    {
        advice(
            cat,
            "great-outdoors",
            Good,
            "A great day for a walk, cycling or a picnic",
            "适合散步、骑行或野餐",
        )
    } else {
        advice(
            cat,
            "fine",
            Good,
            "Fine for outdoor activities",
            "适合户外活动",
        )
    }
}

pub fn sun(c: &Conditions) -> Advice {
    use Level::*;
    let cat = Category::Sun;
    let uv = c.uv.round();
    if uv <= 2.0 {
        advice(
            cat,
            "low",
            Good,
            "Low UV: no sun protection needed",
            "紫外线弱：无需防晒",
        )
    } else if uv <= 5.0 {
        advice(
            cat,
            "moderate",
            Info,
            "Moderate UV: sunglasses and SPF 30 around midday",
            "紫外线中等：中午戴太阳镜、涂SPF30防晒霜",
        )
    } else if uv <= 7.0 {
        advice(
            cat,
            "high",
            Caution,
            "High UV: SPF 30+, a hat, and shade at midday",
            "紫外线强：涂SPF30+防晒霜，戴帽子，中午避阴",
        )
    } else if uv <= 10.0 {
        advice(
            cat,
            "very-high",
            Warning,
            "Very high UV: SPF 50+, cover up, avoid the sun from 11:00 to 15:00",
            "紫外线很强：涂SPF50+，穿防晒衣，11点至15点避免日晒",
        )
    } else {
        advice(
            cat,
            "extreme",
            Warning,
            "Extreme UV: stay out of the midday sun",
            "紫外线极强：避免中午外出",
        )
    }
}

pub fn air(c: &Conditions) -> Advice {
    use Level::*;
    let cat = Category::Air;
    let Some(aqi) = c.aqi else {
        return advice(
            cat,
            "unknown",
            Info,
            "No air-quality reading",
            "暂无空气质量数据",
        );
    };
    if aqi <= 50.0 {
        advice(cat, "good", Good, "Air quality is good", "空气质量优")
    } else if aqi <= 100.0 {
        advice(
            cat,
            "moderate",
            Info,
            "Air quality is acceptable; unusually sensitive people should take it easy",
            "空气质量良，极少数敏感人群应减少户外活动",
        )
    } else if aqi <= 150.0 {
        advice(
            cat,
            "sensitive",
            Caution,
            "Unhealthy for sensitive groups: children, the elderly and people with asthma should limit outdoor exertion",
            "轻度污染：儿童、老人和呼吸道疾病患者应减少户外活动",
        )
    } else if aqi <= 200.0 {
        advice(
            cat,
            "unhealthy",
            Warning,
            "Unhealthy air: wear a mask (N95) outdoors",
            "中度污染：外出佩戴N95口罩",
        )
    } else if aqi <= 300.0 {
        advice(
            cat,
            "very-unhealthy",
            Warning,
            "Very unhealthy air: stay indoors and run an air purifier",
            "重度污染：留在室内并开启空气净化器",
        )
    } else {
        advice(
            cat,
            "hazardous",
            Warning,
            "Hazardous air: avoid going out",
            "严重污染：避免外出",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Advice is written as its fields say, fixed text and figures alike.
    #[test]
    fn advice_is_written_as_its_fields_say() {
        let swinging = day(2.0, 16.0, Condition::Sunny);
        let calm = day(14.0, 16.0, Condition::Rain);
        for c in [&swinging, &calm] {
            for a in advise(c) {
                let expected = serde_json::json!({
                    "category": a.category,
                    "code": a.code,
                    "level": a.level,
                    "text": {"en": a.text.en, "zh": a.text.zh},
                });
                assert_eq!(serde_json::to_value(&a).unwrap(), expected);
            }
        }
        assert!(
            advise(&swinging)
                .iter()
                .any(|a| matches!(a.text.en, Cow::Owned(_))),
            "a row with figures is exercised"
        );
    }

    fn day(min: f64, max: f64, condition: Condition) -> Conditions {
        Conditions {
            temp_min_c: min,
            temp_max_c: max,
            condition,
            precip_chance: 0.0,
            wind_kph: 5.0,
            humidity: 50.0,
            uv: 1.0,
            aqi: Some(20.0),
        }
    }

    #[test]
    fn clothing_follows_the_feels_like_temperature() {
        // (min, max, wind, expected code)
        let rows = [
            (-25.0, -15.0, 5.0, "arctic"),
            (-8.0, -2.0, 5.0, "winter-coat"),
            (2.0, 8.0, 5.0, "coat"),
            (10.0, 16.0, 5.0, "jacket"),
            (18.0, 24.0, 5.0, "long-sleeves"),
            (24.0, 30.0, 5.0, "t-shirt"),
            (28.0, 36.0, 5.0, "light"),
            // 20 °C mean, but a strong wind makes it feel like 17: a jacket.
            (16.0, 24.0, 40.0, "jacket"),
        ];
        for (min, max, wind, code) in rows {
            let mut c = day(min, max, Condition::Sunny);
            c.wind_kph = wind;
            assert_eq!(clothing(&c).code, code, "min {min} max {max} wind {wind}");
        }
    }

    #[test]
    fn a_wide_daily_swing_adds_layers() {
        let a = clothing(&day(5.0, 18.0, Condition::Sunny));
        assert!(
            a.text.en.contains("dress in layers, it swings 13 °C"),
            "{}",
            a.text.en
        );
        assert!(a.text.zh.contains("温差13°C"));
        let b = clothing(&day(10.0, 15.0, Condition::Sunny));
        assert!(!b.text.en.contains("layers"));
    }

    #[test]
    fn umbrella_follows_condition_then_chance_of_rain() {
        // (condition, chance, expected code)
        let rows = [
            (Condition::Thunderstorm, 90.0, "storm"),
            (Condition::Snow, 80.0, "snow"),
            (Condition::Sleet, 80.0, "snow"),
            (Condition::Rain, 80.0, "umbrella"),
            (Condition::Drizzle, 40.0, "umbrella"),
            (Condition::Cloudy, 65.0, "umbrella"),
            (Condition::Cloudy, 45.0, "maybe-umbrella"),
            (Condition::PartlyCloudy, 29.0, "no-umbrella"),
            (Condition::Sunny, 0.0, "no-umbrella"),
        ];
        for (condition, chance, code) in rows {
            let mut c = day(10.0, 20.0, condition);
            c.precip_chance = chance;
            assert_eq!(umbrella(&c).code, code, "{condition:?} at {chance}%");
        }
    }

    #[test]
    fn activity_puts_safety_before_pleasure() {
        let storm = day(20.0, 28.0, Condition::Thunderstorm);
        assert_eq!(activity(&storm).code, "indoors");
        let mut smog = day(5.0, 12.0, Condition::Haze);
        smog.aqi = Some(180.0);
        assert_eq!(activity(&smog).code, "limit-outdoor");
        assert_eq!(activity(&day(27.0, 38.0, Condition::Sunny)).code, "heat");
        assert_eq!(activity(&day(-20.0, -8.0, Condition::Sunny)).code, "cold");
        let mut gale = day(10.0, 18.0, Condition::Cloudy);
        gale.wind_kph = 60.0;
        assert_eq!(activity(&gale).code, "wind");
        assert_eq!(activity(&day(12.0, 18.0, Condition::Rain)).code, "rainy");
        assert_eq!(
            activity(&day(14.0, 24.0, Condition::Sunny)).code,
            "great-outdoors"
        );
        assert_eq!(activity(&day(8.0, 13.0, Condition::Cloudy)).code, "fine");
    }

    #[test]
    fn sun_protection_follows_the_who_uv_scale() {
        let rows = [
            (0.0, "low"),
            (2.4, "low"),
            (3.0, "moderate"),
            (5.0, "moderate"),
            (6.0, "high"),
            (7.4, "high"),
            (8.0, "very-high"),
            (10.0, "very-high"),
            (11.0, "extreme"),
        ];
        for (uv, code) in rows {
            let mut c = day(10.0, 20.0, Condition::Sunny);
            c.uv = uv;
            assert_eq!(sun(&c).code, code, "uv {uv}");
        }
    }

    #[test]
    fn air_follows_the_epa_aqi_bands() {
        let rows = [
            (Some(0.0), "good"),
            (Some(50.0), "good"),
            (Some(51.0), "moderate"),
            (Some(100.0), "moderate"),
            (Some(101.0), "sensitive"),
            (Some(151.0), "unhealthy"),
            (Some(201.0), "very-unhealthy"),
            (Some(301.0), "hazardous"),
            (None, "unknown"),
        ];
        for (aqi, code) in rows {
            let mut c = day(10.0, 20.0, Condition::Sunny);
            c.aqi = aqi;
            assert_eq!(air(&c).code, code, "aqi {aqi:?}");
        }
    }

    #[test]
    fn every_category_is_answered_once_in_order() {
        let all = advise(&day(10.0, 20.0, Condition::Cloudy));
        let cats: Vec<Category> = all.iter().map(|a| a.category).collect();
        assert_eq!(
            cats,
            [
                Category::Clothing,
                Category::Umbrella,
                Category::Activity,
                Category::Sun,
                Category::Air
            ]
        );
        assert!(
            all.iter()
                .all(|a| !a.text.en.is_empty() && !a.text.zh.is_empty())
        );
    }
}
