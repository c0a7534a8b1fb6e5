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

/// Every word the pages show.
#[derive(Debug)]
pub struct Texts {
    pub html_lang: &'static str,
    pub title: &'static str,
    pub city_label: &'static str,
    pub show: &'static str,
    pub username_label: &'static str,
    pub username_hint: &'static str,
    pub login: &'static str,
    pub logout: &'static str,
    pub signed_in_as: &'static str,
    pub other_lang_code: &'static str,
    pub other_lang_name: &'static str,
    pub local_time: &'static str,
    pub feels_like: &'static str,
    pub humidity: &'static str,
    pub wind: &'static str,
    pub uv: &'static str,
    pub aqi: &'static str,
    pub forecast_heading: &'static str,
    pub precip: &'static str,
    pub advice_heading: &'static str,
    pub advice_unavailable: &'static str,
    pub served_by: &'static str,
    pub synthetic_note: &'static str,
    pub not_found_title: &'static str,
    pub unavailable_title: &'static str,
    pub unavailable_body: &'static str,
    pub bad_request_title: &'static str,
    pub back_home: &'static str,
    pub login_title: &'static str,
    pub cookie_note: &'static str,
    pub weekdays: [&'static str; 7],
    pub clothing: &'static str,
    pub umbrella: &'static str,
    pub activity: &'static str,
    pub sun: &'static str,
    pub air: &'static str,
}

impl Texts {
    /// `Mon`..`Sun` (as forecast sends them) in this language.
    pub fn weekday(&self, en: &str) -> &'static str {
        const KEYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        KEYS.iter()
            .position(|k| *k == en)
            .map(|i| self.weekdays[i])
            .unwrap_or("")
    }

    pub fn category(&self, key: &str) -> &'static str {
        match key {
            "clothing" => self.clothing,
            "umbrella" => self.umbrella,
            "activity" => self.activity,
            "sun" => self.sun,
            "air" => self.air,
            _ => "",
        }
    }
}

pub static EN: Texts = Texts {
    html_lang: "en",
    title: "Weather",
    city_label: "City",
    show: "Show",
    username_label: "Username",
    username_hint: "Letters, digits, - and _, up to 32 characters",
    login: "Log in",
    logout: "Log out",
    signed_in_as: "Signed in as",
    other_lang_code: "zh",
    other_lang_name: "中文",
    local_time: "Local time",
    feels_like: "Feels like",
    humidity: "Humidity",
    wind: "Wind",
    uv: "UV index",
    aqi: "Air quality (AQI)",
    forecast_heading: "Forecast",
    precip: "Chance of rain",
    advice_heading: "Today's advice",
    advice_unavailable: "Advice is unavailable right now; the forecast is still up to date.",
    served_by: "Served by",
    synthetic_note: "Weather data is synthetic, derived from each city's climate normals.",
    not_found_title: "City not found",
    unavailable_title: "The forecast is unavailable",
    unavailable_body: "We could not reach the forecast service. Please try again in a moment.",
    bad_request_title: "That did not work",
    back_home: "Back to the weather",
    login_title: "Log in",
    cookie_note: "Logging in only sets a cookie that routes you to the release under test; it is not authentication.",
    weekdays: ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    clothing: "What to wear",
    umbrella: "Umbrella",
    activity: "Outdoors",
    sun: "Sun",
    air: "Air",
};

pub static ZH: Texts = Texts {
    html_lang: "zh-CN",
    title: "天气",
    city_label: "城市",
    show: "查看",
    username_label: "用户名",
    username_hint: "字母、数字、- 和 _，最多 32 个字符",
    login: "登录",
    logout: "退出",
    signed_in_as: "已登录：",
    other_lang_code: "en",
    other_lang_name: "English",
    local_time: "当地时间",
    feels_like: "体感",
    humidity: "湿度",
    wind: "风速",
    uv: "紫外线指数",
    aqi: "空气质量（AQI）",
    forecast_heading: "天气预报",
    precip: "降水概率",
    advice_heading: "今日建议",
    advice_unavailable: "暂时无法获取建议；天气预报仍是最新的。",
    served_by: "服务版本",
    synthetic_note: "天气数据为模拟数据，依据各城市的气候平均值生成。",
    not_found_title: "找不到该城市",
    unavailable_title: "天气预报暂不可用",
    unavailable_body: "无法连接天气预报服务，请稍后再试。",
    bad_request_title: "操作未成功",
    back_home: "返回天气",
    login_title: "登录",
    cookie_note: "登录只会设置一个用于路由到测试版本的 Cookie，并不是身份认证。",
    weekdays: ["周一", "周二", "周三", "周四", "周五", "周六", "周日"],
    clothing: "穿衣",
    umbrella: "雨具",
    activity: "户外活动",
    sun: "防晒",
    air: "空气",
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
