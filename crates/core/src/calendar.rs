//! Calendar arithmetic without a time-zone database, for log timestamps and
//! the forecast's dates: days are counted from 1970-01-01 (Howard Hinnant's
//! civil-from-days algorithm).

/// The proleptic Gregorian `(year, month, day)` of a day counted from
/// 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Appends `YYYY-MM-DD` (as `{y:04}-{m:02}-{d:02}` would, without the
/// formatter's cost on a hot path).
pub fn push_iso_date(out: &mut String, (y, m, d): (i64, u32, u32)) {
    if !(0..=9999).contains(&y) {
        use std::fmt::Write;
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
        return;
    }
    let y = y as u32;
    let digit = |n: u32| char::from(b'0' + (n % 10) as u8);
    for c in [
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        '-',
        digit(m / 10),
        digit(m),
        '-',
        digit(d / 10),
        digit(d),
    ] {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_since_the_epoch_are_gregorian_dates() {
        for (days, date) in [
            (0, (1970, 1, 1)),
            (-1, (1969, 12, 31)),
            (59, (1970, 3, 1)),
            (11_016, (2000, 2, 29)),
            (20_000, (2024, 10, 4)),
            (20_418, (2025, 11, 26)),
        ] {
            assert_eq!(civil_from_days(days), date, "{days}");
        }
    }

    #[test]
    fn iso_dates_are_written_as_the_formatter_writes_them() {
        for (y, m, d) in [
            (2026, 11, 5),
            (7, 1, 31),
            (1999, 12, 9),
            (-44, 3, 15),
            (12345, 6, 7),
        ] {
            let mut ours = String::new();
            push_iso_date(&mut ours, (y, m, d));
            assert_eq!(ours, format!("{y:04}-{m:02}-{d:02}"));
        }
    }
}
