//! Query strings, read with axum's `Query` and serde: a handler names the
//! parameters it takes as a struct of optional strings and validates each
//! with its own clear message. What serde cannot read (a parameter given
//! twice) is a 400 in the APIs' JSON error shape, not axum's plain text.

use axum::{extract::FromRequestParts, http::request::Parts};
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// The query string as `T`; a 400 [`AppError`] when it cannot be read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(AppError::BadRequest(format!(
                "the query string cannot be read: {}",
                e.body_text()
                    .trim_start_matches("Failed to deserialize query string: ")
            ))),
        }
    }
}

/// A number within `min..=max` from an optional parameter, or a 400 that
/// names the parameter and its range. Absent or blank is `None`.
pub fn number(
    name: &str,
    value: Option<&str>,
    min: f64,
    max: f64,
) -> Result<Option<f64>, AppError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                AppError::BadRequest(format!("`{name}` must be a number from {min} to {max}"))
            }),
    }
}

/// Like [`number`], but the parameter must be there.
pub fn required_number(
    name: &str,
    value: Option<&str>,
    min: f64,
    max: f64,
) -> Result<f64, AppError> {
    number(name, value, min, max)?
        .ok_or_else(|| AppError::BadRequest(format!("`{name}` is required")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Page {
        city: Option<String>,
        days: Option<String>,
    }

    async fn read(uri: &str) -> Result<Page, AppError> {
        let (mut parts, ()) = Request::get(uri).body(()).unwrap().into_parts();
        Query::<Page>::from_request_parts(&mut parts, &())
            .await
            .map(|q| q.0)
    }

    #[tokio::test]
    async fn parameters_are_percent_decoded_and_unknown_ones_ignored() {
        let p = read("/?city=new-york&q=%3Cb%3E+x&days=3").await.unwrap();
        assert_eq!(
            p,
            Page {
                city: Some("new-york".into()),
                days: Some("3".into())
            }
        );
        let p = read("/?city=%zz%&&=&days").await.unwrap();
        assert_eq!(
            p,
            Page {
                city: Some("%zz%".into()),
                days: Some(String::new())
            }
        );
    }

    #[tokio::test]
    async fn a_parameter_given_twice_is_a_clear_400() {
        let e = read("/?city=a&city=b").await.unwrap_err();
        assert_eq!(
            e,
            AppError::BadRequest("the query string cannot be read: duplicate field `city`".into())
        );
    }

    #[test]
    fn numbers_are_range_checked_with_a_message_naming_the_parameter() {
        assert_eq!(number("a", Some("3.5"), 0.0, 10.0), Ok(Some(3.5)));
        assert_eq!(number("e", Some(" "), 0.0, 10.0), Ok(None));
        assert_eq!(number("z", None, 0.0, 10.0), Ok(None));
        for bad in ["abc", "99", "NaN", "inf"] {
            assert_eq!(
                number("b", Some(bad), 0.0, 10.0),
                Err(AppError::BadRequest(
                    "`b` must be a number from 0 to 10".into()
                ))
            );
        }
        assert_eq!(
            required_number("z", None, 0.0, 1.0),
            Err(AppError::BadRequest("`z` is required".into()))
        );
    }
}
