//! Days already made, with their JSON. A city's day is the same all day long
//! ([`crate::generate`]), so each (city, date) is drawn and written once and
//! then served as written: drawing and writing five days on every answer was
//! half of forecast's cost (README, "Benchmarks"). A city's own JSON never
//! changes and is written once too.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, RwLock},
};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::{
    cities::{CITIES, City},
    date::Date,
    generate::{self, Day},
};

/// A day and its JSON.
#[derive(Debug)]
pub struct Made {
    pub day: Day,
    json: Box<RawValue>,
}

impl Serialize for Made {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

/// The days made so far, by city index and date. Bounded: past
/// [`Days::LIMIT`] entries (a fortnight of every city) it starts over.
#[derive(Debug, Default)]
pub struct Days {
    made: RwLock<HashMap<(usize, i64), Arc<Made>>>,
}

impl Days {
    pub const LIMIT: usize = CITIES.len() * 14;

    /// `n` days of `city` from `start`, as [`generate::days`] draws them.
    pub fn get(&self, city: &'static City, start: Date, n: usize) -> Vec<Arc<Made>> {
        let index = index(city);
        let mut out = Vec::with_capacity(n);
        if let Ok(made) = self.made.read() {
            for i in 0..n as i64 {
                match made.get(&(index, start.0 + i)) {
                    Some(m) => out.push(m.clone()),
                    None => break,
                }
            }
        }
        for i in out.len() as i64..n as i64 {
            let day = generate::day(city, start.add_days(i));
            let made = match serde_json::value::to_raw_value(&day) {
                Ok(json) => Arc::new(Made { day, json }),
                // A Day is numbers and plain strings: it always writes.
                Err(_) => continue,
            };
            if let Ok(mut all) = self.made.write() {
                if all.len() >= Self::LIMIT {
                    all.clear();
                }
                all.insert((index, start.0 + i), made.clone());
            }
            out.push(made);
        }
        out
    }
}

fn index(city: &'static City) -> usize {
    CITIES
        .iter()
        .position(|c| std::ptr::eq(c, city))
        .unwrap_or(usize::MAX)
}

/// A city as its answers write it, written once.
#[derive(Debug)]
pub struct Written {
    city: &'static City,
    /// Its place in [`CITIES`], found once.
    index: usize,
}

impl Written {
    pub fn new(city: &'static City) -> Self {
        Written {
            city,
            index: index(city),
        }
    }
}

impl Serialize for Written {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        static CITY_JSON: LazyLock<Vec<Option<Box<RawValue>>>> = LazyLock::new(|| {
            CITIES
                .iter()
                .map(|c| serde_json::value::to_raw_value(c).ok())
                .collect()
        });
        match CITY_JSON.get(self.index) {
            Some(Some(json)) => json.serialize(s),
            _ => self.city.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_days_are_the_generated_days_written_as_they_write() {
        let days = Days::default();
        let beijing = crate::cities::find("beijing").unwrap();
        let start = Date::from_ymd(2026, 11, 25);
        for _ in 0..2 {
            let made = days.get(beijing, start, 7);
            let drawn = generate::days(beijing, start, 7);
            assert_eq!(made.len(), 7);
            for (m, d) in made.iter().zip(&drawn) {
                assert_eq!(&m.day, d);
                assert_eq!(
                    serde_json::to_value(&**m).unwrap(),
                    serde_json::to_value(d).unwrap()
                );
            }
        }
        // A shorter window reads the same days back.
        let three = days.get(beijing, start.add_days(2), 3);
        assert_eq!(three[0].day, generate::day(beijing, start.add_days(2)));
    }

    #[test]
    fn the_cache_stays_within_its_limit() {
        let days = Days::default();
        for (i, c) in CITIES.iter().enumerate() {
            for d in 0..20 {
                days.get(c, Date(20_000 + d + i as i64), 1);
            }
        }
        assert!(days.made.read().unwrap().len() <= Days::LIMIT);
    }

    #[test]
    fn a_city_is_written_as_it_writes() {
        for c in CITIES.iter() {
            assert_eq!(
                serde_json::to_value(Written::new(c)).unwrap(),
                serde_json::to_value(c).unwrap()
            );
        }
    }
}
