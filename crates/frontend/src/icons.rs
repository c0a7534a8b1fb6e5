//! Weather pictograms as inline SVG: they need no image request, no web font and
//! no emoji font, so they look the same on every machine.

use weather_core::Condition;

const SUN: &str = r##"<circle cx="12" cy="12" r="4.5" fill="#f9ab00"/><g stroke="#f9ab00" stroke-width="1.8" stroke-linecap="round"><path d="M12 2.5v2.2M12 19.3v2.2M2.5 12h2.2M19.3 12h2.2M5.3 5.3l1.6 1.6M17.1 17.1l1.6 1.6M5.3 18.7l1.6-1.6M17.1 6.9l1.6-1.6"/></g>"##;
const SMALL_SUN: &str = r##"<circle cx="8.5" cy="8" r="3.6" fill="#f9ab00"/><g stroke="#f9ab00" stroke-width="1.5" stroke-linecap="round"><path d="M8.5 1.8v1.6M2.3 8h1.6M4.1 3.6l1.1 1.1M12.9 3.6l-1.1 1.1"/></g>"##;
const MOON: &str =
    r##"<path d="M15.5 3.5a8.5 8.5 0 1 0 5 12.8A7 7 0 0 1 15.5 3.5z" fill="#b0bec5"/>"##;
const SMALL_MOON: &str =
    r##"<path d="M10 2.5a5.5 5.5 0 1 0 3.6 8.3A4.5 4.5 0 0 1 10 2.5z" fill="#b0bec5"/>"##;
const CLOUD: &str = r##"<path d="M7 18.5h10.5a4 4 0 0 0 .4-8 5.5 5.5 0 0 0-10.6 1.4A3.3 3.3 0 0 0 7 18.5z" fill="#90a4ae"/>"##;
const HIGH_CLOUD: &str = r##"<path d="M7 15h10.5a4 4 0 0 0 .4-8 5.5 5.5 0 0 0-10.6 1.4A3.3 3.3 0 0 0 7 15z" fill="#78909c"/>"##;

fn svg(body: &[&str]) -> String {
    let mut s = String::from(
        r#"<svg class="wx" viewBox="0 0 24 24" width="1em" height="1em" aria-hidden="true" focusable="false">"#,
    );
    for part in body {
        s.push_str(part);
    }
    s.push_str("</svg>");
    s
}

/// The pictogram of the sky now: clear skies show the moon at night.
pub fn icon_at(c: Condition, night: bool) -> &'static str {
    static NIGHT: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let night_icons = NIGHT.get_or_init(|| [svg(&[MOON]), svg(&[SMALL_MOON, CLOUD])]);
    match (c, night) {
        (Condition::Sunny, true) => &night_icons[0],
        (Condition::PartlyCloudy, true) => &night_icons[1],
        _ => icon(c),
    }
}

/// The pictogram of a condition, as SVG markup (trusted, static), built once.
pub fn icon(c: Condition) -> &'static str {
    static ALL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = ALL.get_or_init(|| Condition::ALL.iter().map(|&c| build(c)).collect());
    let i = Condition::ALL.iter().position(|&x| x == c).unwrap_or(0);
    &all[i]
}

fn build(c: Condition) -> String {
    const DROPS_2: &str = r##"<g stroke="#1a73e8" stroke-width="1.8" stroke-linecap="round"><path d="M9 17.5l-.8 2M14 17.5l-.8 2"/></g>"##;
    const DROPS_3: &str = r##"<g stroke="#1a73e8" stroke-width="1.8" stroke-linecap="round"><path d="M8 17l-1 2.6M12 17l-1 2.6M16 17l-1 2.6"/></g>"##;
    const DROPS_5: &str = r##"<g stroke="#1a73e8" stroke-width="1.8" stroke-linecap="round"><path d="M7 17l-1.2 3.5M10 17l-1.2 3.5M13 17l-1.2 3.5M16 17l-1.2 3.5M19 17l-1.2 3.5"/></g>"##;
    const BOLT: &str =
        r##"<path d="M12.5 15l-3 4.5h2.6l-1.3 3.8 4.2-5.3h-2.6l1.6-3z" fill="#f9ab00"/>"##;
    const FLAKES: &str = r##"<g stroke="#4f8fbf" stroke-width="1.5" stroke-linecap="round"><path d="M8 17.5v3M6.7 18.2l2.6 1.6M6.7 19.8l2.6-1.6M15 17.5v3M13.7 18.2l2.6 1.6M13.7 19.8l2.6-1.6"/></g>"##;
    const SLEET: &str = r##"<g stroke="#1a73e8" stroke-width="1.8" stroke-linecap="round"><path d="M9 17.5l-.8 2.4"/></g><g stroke="#4f8fbf" stroke-width="1.5" stroke-linecap="round"><path d="M15 17.5v3M13.7 18.2l2.6 1.6M13.7 19.8l2.6-1.6"/></g>"##;
    const FOG: &str = r##"<g stroke="#90a4ae" stroke-width="2" stroke-linecap="round"><path d="M4 9h16M6 13h14M4 17h12M8 21h10"/></g>"##;
    const HAZE: &str = r##"<circle cx="12" cy="9" r="4.5" fill="#d9a441"/><g stroke="#a1887f" stroke-width="2" stroke-linecap="round"><path d="M3 14h18M5 17.5h14M7 21h10"/></g>"##;
    match c {
        Condition::Sunny => svg(&[SUN]),
        Condition::PartlyCloudy => svg(&[SMALL_SUN, CLOUD]),
        Condition::Cloudy => svg(&[CLOUD]),
        Condition::Fog => svg(&[FOG]),
        Condition::Haze => svg(&[HAZE]),
        Condition::Drizzle => svg(&[HIGH_CLOUD, DROPS_2]),
        Condition::Rain => svg(&[HIGH_CLOUD, DROPS_3]),
        Condition::HeavyRain => svg(&[HIGH_CLOUD, DROPS_5]),
        Condition::Thunderstorm => svg(&[HIGH_CLOUD, BOLT]),
        Condition::Sleet => svg(&[HIGH_CLOUD, SLEET]),
        Condition::Snow => svg(&[HIGH_CLOUD, FLAKES]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_has_a_self_contained_svg() {
        for c in Condition::ALL {
            let s = icon(c);
            assert!(s.starts_with("<svg") && s.ends_with("</svg>"), "{c:?}");
            assert!(!s.contains("href"), "{c:?} must load nothing");
        }
    }
}
