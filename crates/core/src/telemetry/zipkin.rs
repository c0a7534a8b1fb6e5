//! Export to Zipkin (`OTEL_TRACES_EXPORTER=zipkin`) through
//! `opentelemetry-zipkin`, which maps each span to Zipkin's JSON model and
//! posts the batch. Its 0.33 release gives a span no `localEndpoint.serviceName`
//! (it never reads the resource), which OpenTelemetry's specification requires
//! ("Zipkin service name MUST be set to the value of the resource attribute:
//! service.name") and without which Zipkin files every span under no service.
//! Each app has an exporter of its own here, so its HTTP client ([`Named`])
//! knows the app and fills in what the crate leaves out: the service name, and
//! the resource's other attributes (`service.version`, ...) as tags, as
//! OpenTelemetry's Zipkin mapping has them.

use std::fmt;

use async_trait::async_trait;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use serde_json::{Map, Value};

/// The exporter of app `service` to the collector at `url`, its resource's
/// other attributes as `tags`. The crate is deprecated upstream in favour of
/// OTLP, which the Zipkin server that can be had here does not take (its OTLP
/// module is not published on Maven Central): it stays until one does.
#[allow(deprecated)]
pub(super) fn exporter(
    url: String,
    service: &str,
    tags: Vec<(String, String)>,
) -> Result<opentelemetry_zipkin::ZipkinExporter, String> {
    opentelemetry_zipkin::ZipkinExporter::builder()
        .with_collector_endpoint(url)
        .with_http_client(Named::new(service, tags)?)
        .build()
        .map_err(|e| e.to_string())
}

/// A Zipkin collector client that names the app its spans come from.
pub(super) struct Named {
    inner: reqwest::blocking::Client,
    service: String,
    tags: Vec<(String, String)>,
}

impl fmt::Debug for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Named")
            .field("service", &self.service)
            .finish()
    }
}

impl Named {
    /// Must be built outside an async runtime (reqwest's blocking client).
    pub(super) fn new(service: &str, tags: Vec<(String, String)>) -> Result<Self, String> {
        let inner = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Named {
            inner,
            service: service.to_owned(),
            tags,
        })
    }
}

/// The batch as the crate wrote it, each span given `service` and the
/// resource's `tags` (a span's own tag of the same name wins).
fn name_spans(
    body: &[u8],
    service: &str,
    resource_tags: &[(String, String)],
) -> Result<Vec<u8>, serde_json::Error> {
    let mut spans: Vec<Value> = serde_json::from_slice(body)?;
    for span in spans.iter_mut().filter_map(Value::as_object_mut) {
        let local = span
            .entry("localEndpoint")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(local) = local.as_object_mut() {
            local.insert("serviceName".into(), Value::String(service.to_owned()));
        }
        let tags = span
            .entry("tags")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(tags) = tags.as_object_mut() {
            for (k, v) in resource_tags {
                tags.entry(k.clone())
                    .or_insert_with(|| Value::String(v.clone()));
            }
        }
    }
    serde_json::to_vec(&spans)
}

#[async_trait]
impl HttpClient for Named {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let named = name_spans(&body, &self.service, &self.tags)?;
        self.inner
            .send_bytes(Request::from_parts(parts, Bytes::from(named)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_span_is_given_its_service_and_the_resources_tags() {
        let tags = [
            ("service.version".to_owned(), "v2".to_owned()),
            ("component".to_owned(), "app".to_owned()),
        ];
        let name = |b: &[u8]| name_spans(b, "frontend", &tags);
        let batch = br#"[{"traceId":"a","id":"b","localEndpoint":{"ipv4":"127.0.0.1"},"tags":{"component":"proxy"}},{"traceId":"a","id":"c"}]"#;
        let out: Vec<Value> = serde_json::from_slice(&name(batch).unwrap()).unwrap();
        assert_eq!(out[0]["localEndpoint"]["serviceName"], "frontend");
        assert_eq!(out[0]["localEndpoint"]["ipv4"], "127.0.0.1");
        assert_eq!(out[0]["tags"]["service.version"], "v2");
        assert_eq!(
            out[0]["tags"]["component"], "proxy",
            "the span's own tag wins"
        );
        assert_eq!(out[1]["localEndpoint"]["serviceName"], "frontend");
        assert_eq!(out[1]["tags"]["component"], "app");
        assert!(name(b"not json").is_err());
    }
}
