//! The page's words in English and Chinese, and how a request picks its language:
//! `?lang=` first (the switch), then the `lang` cookie it sets, then
//! `Accept-Language`, then English.

use axum::http::{HeaderMap, header};

use crate::cookies;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    pub fn from_code(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }

    /// The language a request asked for, without the `?lang=` override.
    pub fn negotiate(headers: &HeaderMap) -> Lang {
        if let Some(l) = cookies::get(headers, "lang").and_then(|v| Lang::from_code(&v)) {
            return l;
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // Take the listed languages by quality, first listed on ties.
        let mut best: Option<(f32, Lang)> = None;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::En)
    }
}

/// A word of the page, checked when the program is compiled to hold nothing
/// HTML reads as markup (`<`, `>`, `&`, `"`, `'`): templates write it as it
/// is instead of escaping the same words on every page.
/// A text with one of those fails the build here; write the typographic
/// character instead (’ for an apostrophe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Text(&'static str);

impl Text {
    pub const fn new(s: &'static str) -> Text {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            assert!(
                !matches!(b[i], b'<' | b'>' | b'&' | b'"' | b'\''),
                "a page text holds a character HTML reads as markup"
            );
            i += 1;
        }
        Text(s)
    }

    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.0
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Checked by [`Text::new`]: askama writes it without escaping.
impl askama::filters::HtmlSafe for Text {}

/// Every word the pages show.
#[derive(Debug)]
pub struct Texts {
    pub html_lang: Text,
    pub title: Text,
    pub city_label: Text,
    pub show: Text,
    pub username_label: Text,
    pub username_hint: Text,
    pub login: Text,
    pub logout: Text,
    pub signed_in_as: Text,
    pub other_lang_code: Text,
    pub other_lang_name: Text,
    pub local_time: Text,
    pub feels_like: Text,
    pub humidity: Text,
    pub wind: Text,
    pub uv: Text,
    pub aqi: Text,
    pub forecast_heading: Text,
    pub precip: Text,
    pub advice_heading: Text,
    pub advice_unavailable: Text,
    pub served_by: Text,
    pub synthetic_note: Text,
    pub not_found_title: Text,
    pub unavailable_title: Text,
    pub unavailable_body: Text,
    pub bad_request_title: Text,
    pub back_home: Text,
    pub login_title: Text,
    pub cookie_note: Text,
    pub weekdays: [Text; 7],
    pub clothing: Text,
    pub umbrella: Text,
    pub activity: Text,
    pub sun: Text,
    pub air: Text,
}

impl Texts {
    /// `Mon`..`Sun` (as forecast sends them) in this language.
    pub fn weekday(&self, en: &str) -> Text {
        const KEYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        KEYS.iter()
            .position(|k| *k == en)
            .map_or(Text::new(""), |i| self.weekdays[i])
    }

    pub fn category(&self, key: &str) -> &'static str {
        let text = match key {
            "clothing" => self.clothing,
            "umbrella" => self.umbrella,
            "activity" => self.activity,
            "sun" => self.sun,
            "air" => self.air,
            _ => return "",
        };
        text.as_str()
    }
}

pub static EN: Texts = Texts {
    html_lang: Text::new("en"),
    title: Text::new("Weather"),
    city_label: Text::new("City"),
    show: Text::new("Show"),
    username_label: Text::new("Username"),
    username_hint: Text::new("Letters, digits, - and _, up to 32 characters"),
    login: Text::new("Log in"),
    logout: Text::new("Log out"),
    signed_in_as: Text::new("Signed in as"),
    other_lang_code: Text::new("zh"),
    other_lang_name: Text::new("中文"),
    local_time: Text::new("Local time"),
    feels_like: Text::new("Feels like"),
    humidity: Text::new("Humidity"),
    wind: Text::new("Wind"),
    uv: Text::new("UV index"),
    aqi: Text::new("Air quality (AQI)"),
    forecast_heading: Text::new("Forecast"),
    precip: Text::new("Chance of rain"),
    advice_heading: Text::new("Today’s advice"),
    advice_unavailable: Text::new(
        "Advice is unavailable right now; the forecast is still up to date.",
    ),
    served_by: Text::new("Served by"),
    synthetic_note: Text::new(
        "Weather data is synthetic, derived from each city’s climate normals.",
    ),
    not_found_title: Text::new("City not found"),
    unavailable_title: Text::new("The forecast is unavailable"),
    unavailable_body: Text::new(
        "We could not reach the forecast service. Please try again in a moment.",
    ),
    bad_request_title: Text::new("That did not work"),
    back_home: Text::new("Back to the weather"),
    login_title: Text::new("Log in"),
    cookie_note: Text::new(
        "Logging in only sets a cookie that routes you to the release under test; it is not authentication.",
    ),
    weekdays: [
        Text::new("Mon"),
        Text::new("Tue"),
        Text::new("Wed"),
        Text::new("Thu"),
        Text::new("Fri"),
        Text::new("Sat"),
        Text::new("Sun"),
    ],
    clothing: Text::new("What to wear"),
    umbrella: Text::new("Umbrella"),
    activity: Text::new("Outdoors"),
    sun: Text::new("Sun"),
    air: Text::new("Air"),
};

pub static ZH: Texts = Texts {
    html_lang: Text::new("zh-CN"),
    title: Text::new("天气"),
    city_label: Text::new("城市"),
    show: Text::new("查看"),
    username_label: Text::new("用户名"),
    username_hint: Text::new("字母、数字、- 和 _，最多 32 个字符"),
    login: Text::new("登录"),
    logout: Text::new("退出"),
    signed_in_as: Text::new("已登录："),
    other_lang_code: Text::new("en"),
    other_lang_name: Text::new("English"),
    local_time: Text::new("当地时间"),
    feels_like: Text::new("体感"),
    humidity: Text::new("湿度"),
    wind: Text::new("风速"),
    uv: Text::new("紫外线指数"),
    aqi: Text::new("空气质量（AQI）"),
    forecast_heading: Text::new("天气预报"),
    precip: Text::new("降水概率"),
    advice_heading: Text::new("今日建议"),
    advice_unavailable: Text::new("暂时无法获取建议；天气预报仍是最新的。"),
    served_by: Text::new("服务版本"),
    synthetic_note: Text::new("天气数据为模拟数据，依据各城市的气候平均值生成。"),
    not_found_title: Text::new("找不到该城市"),
    unavailable_title: Text::new("天气预报暂不可用"),
    unavailable_body: Text::new("无法连接天气预报服务，请稍后再试。"),
    bad_request_title: Text::new("操作未成功"),
    back_home: Text::new("返回天气"),
    login_title: Text::new("登录"),
    cookie_note: Text::new("登录只会设置一个用于路由到测试版本的 Cookie，并不是身份认证。"),
    weekdays: [
        Text::new("周一"),
        Text::new("周二"),
        Text::new("周三"),
        Text::new("周四"),
        Text::new("周五"),
        Text::new("周六"),
        Text::new("周日"),
    ],
    clothing: Text::new("穿衣"),
    umbrella: Text::new("雨具"),
    activity: Text::new("户外活动"),
    sun: Text::new("防晒"),
    air: Text::new("空气"),
};

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn accept_language_picks_the_preferred_known_language() {
        let rows = [
            ("zh-CN,zh;q=0.9,en;q=0.8", Lang::Zh),
            ("en-US,en;q=0.9,zh-CN;q=0.8", Lang::En),
            ("fr-FR,zh-TW;q=0.7,en;q=0.5", Lang::Zh),
            ("de", Lang::En),
            ("", Lang::En),
            ("en;q=0.2, zh;q=0.9", Lang::Zh),
        ];
        for (accept, want) in rows {
            assert_eq!(
                Lang::negotiate(&with("accept-language", accept)),
                want,
                "{accept}"
            );
        }
    }

    #[test]
    fn the_lang_cookie_beats_accept_language() {
        let mut h = with("accept-language", "en-US");
        h.insert("cookie", HeaderValue::from_static("user=tester; lang=zh"));
        assert_eq!(Lang::negotiate(&h), Lang::Zh);
    }

    #[test]
    fn both_languages_name_every_weekday_and_category() {
        for t in [&EN, &ZH] {
            assert_eq!(t.weekday("Sun"), t.weekdays[6]);
            for c in ["clothing", "umbrella", "activity", "sun", "air"] {
                assert!(!t.category(c).is_empty());
            }
        }
    }
}
