//! The `x-weather-chain` response header (docs/architecture.md, Contracts 4): the serving
//! `app:version`, then whatever chain its downstream reported, comma separated.
//! A handler that called a downstream attaches [`Downstream`] to its response; the
//! middleware installed by the server bootstrap writes the header.

use axum::{
    http::{HeaderName, HeaderValue, Response},
    response::IntoResponseParts,
};

pub const CHAIN_HEADER: HeaderName = HeaderName::from_static("x-weather-chain");

/// The chain a downstream reported, carried from a handler to the chain middleware
/// as a response extension.
#[derive(Clone, Debug, Default)]
pub struct Downstream(pub Option<HeaderValue>);

impl Downstream {
    pub fn none() -> Self {
        Downstream(None)
    }
}

impl IntoResponseParts for Downstream {
    type Error = std::convert::Infallible;
    fn into_response_parts(
        self,
        mut res: axum::response::ResponseParts,
    ) -> Result<axum::response::ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

/// A service's own link of the chain, `app:version`.
pub fn link(app: &str, version: crate::AppVersion) -> HeaderValue {
    HeaderValue::try_from(format!("{app}:{version}")).expect("app names are ASCII")
}

/// The chain a response reports: `me`, followed by the downstream's chain when
/// there is a valid one. The header and a body that lists who served it both
/// use this, so they cannot differ.
pub fn served_by(me: &HeaderValue, downstream: Option<&HeaderValue>) -> HeaderValue {
    match downstream.filter(|d| valid_chain(d.as_bytes())) {
        Some(d) => {
            let mut v = Vec::with_capacity(me.len() + 1 + d.len());
            v.extend_from_slice(me.as_bytes());
            v.push(b',');
            v.extend_from_slice(d.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| me.clone())
        }
        None => me.clone(),
    }
}

/// Sets the chain header: `me`, followed by the downstream's chain when there is one.
pub fn stamp<B>(me: &HeaderValue, res: &mut Response<B>) {
    let downstream = res
        .extensions_mut()
        .remove::<Downstream>()
        .and_then(|d| d.0);
    let value = served_by(me, downstream.as_ref());
    res.headers_mut().insert(CHAIN_HEADER, value);
}

/// A downstream's chain is only echoed when it looks like one (`app:version`
/// entries), so a misbehaving upstream cannot inject arbitrary text.
fn valid_chain(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 512
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b',' | b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn stamped(downstream: Option<&'static str>) -> String {
        let me = HeaderValue::from_static("frontend:v2");
        let mut res = Response::new(Body::empty());
        if let Some(d) = downstream {
            res.extensions_mut()
                .insert(Downstream(Some(HeaderValue::from_static(d))));
        }
        stamp(&me, &mut res);
        res.headers()[CHAIN_HEADER].to_str().unwrap().to_owned()
    }

    #[test]
    fn alone_it_names_only_itself() {
        assert_eq!(stamped(None), "frontend:v2");
    }

    #[test]
    fn it_prepends_itself_to_the_downstream_chain() {
        assert_eq!(
            stamped(Some("forecast:v2,recommendation:v1")),
            "frontend:v2,forecast:v2,recommendation:v1"
        );
    }

    #[test]
    fn a_garbled_downstream_chain_is_dropped() {
        assert_eq!(stamped(Some("forecast:v2 <script>")), "frontend:v2");
    }
}
