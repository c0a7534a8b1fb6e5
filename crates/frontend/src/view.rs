//! What the pages show: the forecast's JSON as frontend reads it, and the view
//! models the askama templates render.

use std::borrow::Cow;

use askama::Template;
use serde::Deserialize;
use weather_core::{Condition, sky::Current};

use crate::i18n::{Lang, Text, Texts};

// The forecast service's answer, as far as the page needs it. Its text is
// borrowed from the answer where it needs no unescaping, so a page copies no
// string it does not change.

#[derive(Debug, Deserialize)]
pub struct ForecastData<'a> {
    #[serde(borrow)]
    pub city: CityNames<'a>,
    pub current: Current,
    #[serde(borrow)]
    pub days: Vec<DayData<'a>>,
    #[serde(borrow)]
    pub recommendation: Option<RecommendationData<'a>>,
}

/// The forecast's city, as the page names it.
#[derive(Debug, Deserialize)]
pub struct CityNames<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub name_zh: Cow<'a, str>,
    #[serde(borrow, default)]
    pub country: Cow<'a, str>,
    #[serde(borrow, default)]
    pub country_zh: Cow<'a, str>,
}

impl CityNames<'_> {
    pub fn name(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.name,
            Lang::Zh => &self.name_zh,
        }
    }

    pub fn country(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.country,
            Lang::Zh => &self.country_zh,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct CityData {
    pub id: String,
    pub name: String,
    pub name_zh: String,
    #[serde(default)]
    pub country: String,
    #[serde(default)]
    pub country_zh: String,
}

impl CityData {
    pub fn name(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.name,
            Lang::Zh => &self.name_zh,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DayData<'a> {
    #[serde(borrow)]
    pub date: Cow<'a, str>,
    #[serde(borrow)]
    pub weekday: Cow<'a, str>,
    pub condition: Condition,
    pub temp_min_c: i32,
    pub temp_max_c: i32,
    pub precip_chance: u8,
}

#[derive(Debug, Deserialize)]
pub struct RecommendationData<'a> {
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    #[serde(borrow, default)]
    pub advice: Vec<AdviceData<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct AdviceData<'a> {
    #[serde(borrow)]
    pub category: Cow<'a, str>,
    #[serde(borrow)]
    pub level: Cow<'a, str>,
    #[serde(borrow)]
    pub text: TextData<'a>,
}

#[derive(Debug, Deserialize)]
pub struct TextData<'a> {
    #[serde(borrow)]
    pub en: Cow<'a, str>,
    #[serde(borrow)]
    pub zh: Cow<'a, str>,
}

// View models.

/// The page frame: what every page shows around its content (header, city
/// picker, login, the chain that served it).
pub struct Frame {
    pub t: &'static Texts,
    pub version: &'static str,
    pub user: Option<String>,
    /// Shown back in the login field after a rejected attempt.
    pub username_value: String,
    /// The city picker (shared, not copied per page), if the list is known.
    pub cities: Option<std::sync::Arc<Picker>>,
    /// The city shown, selected in the picker.
    pub selected: String,
    pub lang: Lang,
    pub lang_href: String,
    pub chain: Vec<Link>,
}

impl Frame {
    pub fn has_cities(&self) -> bool {
        self.cities.as_ref().is_some_and(|p| !p.cities.is_empty())
    }

    /// The picker's `<option>`s, the city shown selected; empty without a list.
    pub fn city_options(&self) -> Options<'_> {
        match self.cities.as_deref() {
            Some(p) => p.options(self.lang, &self.selected),
            None => Options { all: "", at: None },
        }
    }
}

/// The city list and the picker's options, rendered (and escaped) once per
/// list and language rather than on every page: the list changes every few
/// minutes at most, the page is drawn on every request.
pub struct Picker {
    pub cities: Vec<CityData>,
    /// By language: `[en, zh]`.
    options: [String; 2],
    /// By language, by city: where ` selected` goes in its option (after
    /// `<option value="id"`), if the id was written as it is.
    marks: [Vec<Option<usize>>; 2],
}

#[derive(Template)]
#[template(path = "city_options.html")]
struct CityOptions<'a> {
    cities: &'a [CityData],
    lang: Lang,
}

impl Picker {
    pub fn new(cities: Vec<CityData>) -> Self {
        let render = |lang| {
            let all = CityOptions {
                cities: &cities,
                lang,
            }
            .render()
            .unwrap_or_default();
            // Ids are slugs (`is_city_id`): as written, they need no
            // escaping, so the option is found by its id as it is.
            let marks = cities
                .iter()
                .map(|c| {
                    let value = format!("<option value=\"{}\"", c.id);
                    let at = all.find(&value).map(|at| at + value.len());
                    at.filter(|_| weather_core::sky::is_city_id(&c.id))
                })
                .collect();
            (all, marks)
        };
        let (en, en_marks) = render(Lang::En);
        let (zh, zh_marks) = render(Lang::Zh);
        Picker {
            cities,
            options: [en, zh],
            marks: [en_marks, zh_marks],
        }
    }

    /// The options in `lang`, `selected` (a city id) marked so.
    pub fn options(&self, lang: Lang, selected: &str) -> Options<'_> {
        let l = match lang {
            Lang::En => 0,
            Lang::Zh => 1,
        };
        let at = self
            .cities
            .iter()
            .position(|c| c.id == selected)
            .and_then(|i| self.marks[l][i]);
        Options {
            all: &self.options[l],
            at,
        }
    }
}

/// The picker's options as a page writes them: the list rendered once, with
/// ` selected` put in at `at`.
pub struct Options<'a> {
    all: &'a str,
    at: Option<usize>,
}

impl std::fmt::Display for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some(at) => {
                f.write_str(&self.all[..at])?;
                f.write_str(" selected")?;
                f.write_str(&self.all[at..])
            }
            None => f.write_str(self.all),
        }
    }
}

/// Rendered and escaped by askama when the list was read.
impl askama::filters::HtmlSafe for Options<'_> {}

/// One `app:version` of the `x-weather-chain`.
pub struct Link {
    pub app: String,
    pub version: String,
}

/// Splits a chain header into its links; anything that is not `app:version` is
/// left out.
pub fn links(chain: &str) -> Vec<Link> {
    chain
        .split(',')
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(app, version)| Link {
            app: app.to_owned(),
            version: version.to_owned(),
        })
        .collect()
}

pub struct CurrentView {
    pub local_time: String,
    pub icon: &'static str,
    pub label: &'static str,
    pub temperature: i32,
    pub feels_like: i32,
    pub humidity: u8,
    pub wind_kph: u16,
    pub uv: u8,
    pub aqi: u16,
}

pub struct DayView<'a> {
    pub weekday: Text,
    pub date: &'a str,
    pub icon: &'static str,
    pub label: &'static str,
    pub max: i32,
    pub min: i32,
    pub precip: u8,
}

pub struct AdviceView<'a> {
    pub category: &'static str,
    pub level: &'a str,
    pub text: &'a str,
}

#[derive(Template)]
#[template(path = "weather.html")]
pub struct WeatherPage<'a> {
    pub frame: Frame,
    pub city_name: &'a str,
    pub country: &'a str,
    pub current: CurrentView,
    pub days: Vec<DayView<'a>>,
    /// `available`, `unavailable` or `none` (v1 forecast: no advice at all).
    pub advice_state: &'static str,
    pub advice: Vec<AdviceView<'a>>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub frame: Frame,
    pub title: String,
    pub message: String,
}

/// Night, for the sky's pictogram: before 06:00 or from 19:00, local time.
fn is_night(local_time: &str) -> bool {
    let hour: u32 = local_time
        .get(..2)
        .and_then(|h| h.parse().ok())
        .unwrap_or(12);
    !(6..19).contains(&hour)
}

pub fn label(c: Condition, lang: Lang) -> &'static str {
    match lang {
        Lang::En => c.label_en(),
        Lang::Zh => c.label_zh(),
    }
}

/// The page borrows its words from the forecast's answer it shows.
impl<'a> WeatherPage<'a> {
    pub fn new(frame: Frame, lang: Lang, data: &'a ForecastData<'a>) -> Self {
        let t = frame.t;
        let c = &data.current;
        let night = is_night(&c.local_time);
        let current = CurrentView {
            local_time: c.local_time.clone(),
            icon: crate::icons::icon_at(c.condition, night),
            label: match (c.condition, night, lang) {
                (Condition::Sunny, true, Lang::En) => "Clear",
                (condition, _, _) => label(condition, lang),
            },
            temperature: c.temperature_c,
            feels_like: c.feels_like_c,
            humidity: c.humidity,
            wind_kph: c.wind_kph,
            uv: c.uv,
            aqi: c.aqi,
        };
        let days = data
            .days
            .iter()
            .map(|d| DayView {
                weekday: t.weekday(&d.weekday),
                // `2026-11-25` shows as `11-25`.
                date: d.date.get(5..).unwrap_or(&d.date),
                icon: crate::icons::icon(d.condition),
                label: label(d.condition, lang),
                max: d.temp_max_c,
                min: d.temp_min_c,
                precip: d.precip_chance,
            })
            .collect();
        let (advice_state, advice) = match &data.recommendation {
            None => ("none", Vec::new()),
            Some(r) if r.status == "available" && !r.advice.is_empty() => (
                "available",
                r.advice
                    .iter()
                    .map(|a| AdviceView {
                        category: t.category(&a.category),
                        level: &a.level,
                        text: match lang {
                            Lang::En => &a.text.en,
                            Lang::Zh => &a.text.zh,
                        },
                    })
                    .collect(),
            ),
            Some(_) => ("unavailable", Vec::new()),
        };
        WeatherPage {
            city_name: data.city.name(lang),
            country: data.city.country(lang),
            frame,
            current,
            days,
            advice_state,
            advice,
        }
    }
}
