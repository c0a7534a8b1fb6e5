//! Calendar dates without a time-zone database: a city's local date is UTC plus its
//! standard offset, and days are counted from 1970-01-01
//! ([`weather_core::calendar`]).

use std::fmt;

/// A day, as the number of days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i64);

impl Date {
    pub fn from_ymd(y: i64, m: u32, d: u32) -> Date {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m as i64 + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Date(era * 146_097 + doe - 719_468)
    }

    pub fn ymd(self) -> (i64, u32, u32) {
        weather_core::calendar::civil_from_days(self.0)
    }

    /// `YYYY-MM-DD`, as the answers carry it.
    pub fn iso(self) -> String {
        let mut s = String::with_capacity(10);
        weather_core::calendar::push_iso_date(&mut s, self.ymd());
        s
    }

    pub fn add_days(self, n: i64) -> Date {
        Date(self.0 + n)
    }

    /// 0 = Monday ... 6 = Sunday.
    pub fn weekday(self) -> u32 {
        // 1970-01-01 was a Thursday.
        ((self.0 + 3).rem_euclid(7)) as u32
    }

    /// Day of the year, 0-based.
    pub fn day_of_year(self) -> i64 {
        let (y, _, _) = self.ymd();
        self.0 - Date::from_ymd(y, 1, 1).0
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.iso())
    }
}

/// A moment in a city's local time: its date and the hour of the day.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalTime {
    pub date: Date,
    /// Hours since local midnight, fractional.
    pub hour: f64,
}

impl LocalTime {
    pub fn from_unix(unix_secs: i64, utc_offset_minutes: i32) -> LocalTime {
        let local = unix_secs + i64::from(utc_offset_minutes) * 60;
        LocalTime {
            date: Date(local.div_euclid(86_400)),
            hour: local.rem_euclid(86_400) as f64 / 3600.0,
        }
    }

    pub fn now(utc_offset_minutes: i32) -> LocalTime {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        LocalTime::from_unix(secs, utc_offset_minutes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(Date(0).ymd(), (1970, 1, 1));
        assert_eq!(Date::from_ymd(2000, 2, 29).to_string(), "2000-02-29");
        assert_eq!(Date::from_ymd(2026, 11, 25).to_string(), "2026-11-25");
        assert_eq!(Date::from_ymd(2026, 11, 25).weekday(), 2); // a Wednesday
        assert_eq!(Date::from_ymd(2024, 12, 31).day_of_year(), 365);
        assert_eq!(Date::from_ymd(1969, 12, 31), Date(-1));
    }

    #[test]
    fn round_trips_over_centuries() {
        for n in (-100_000..100_000).step_by(7) {
            let (y, m, d) = Date(n).ymd();
            assert_eq!(Date::from_ymd(y, m, d), Date(n));
        }
    }

    #[test]
    fn local_time_applies_the_offset() {
        // 2026-11-25 20:00 UTC is already the 26th, 04:00, in Beijing.
        let utc = Date::from_ymd(2026, 11, 25).0 * 86_400 + 20 * 3600;
        let bj = LocalTime::from_unix(utc, 8 * 60);
        assert_eq!(bj.date.to_string(), "2026-11-26");
        assert_eq!(bj.hour, 4.0);
        let ny = LocalTime::from_unix(utc, -5 * 60);
        assert_eq!(ny.date.to_string(), "2026-11-25");
        assert_eq!(ny.hour, 15.0);
    }
}
