//! The OTLP exporter for the configured protocol: over HTTP with hookrelay's own
//! reqwest client, or over gRPC with tonic.

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanExporter as _;

use crate::config::telemetry::{Protocol, TelemetrySettings};

/// Builds the exporter; over gRPC it must run on the runtime.
pub fn exporter(
    settings: &TelemetrySettings,
    resource: &Resource,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let built = match settings.protocol {
        Protocol::HttpProtobuf => {
            let client = reqwest::Client::builder()
                .timeout(settings.export_timeout)
                .build()
                .map_err(|e| format!("cannot build the trace exporter's HTTP client: {e}"))?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(ExportClient(client))
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.export_timeout)
                .with_headers(settings.headers.clone().into_iter().collect())
                .build()
        }
        Protocol::Grpc => {
            let mut headers = http::HeaderMap::new();
            for (name, value) in &settings.headers {
                let name = http::HeaderName::try_from(name.as_str())
                    .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
                let value = http::HeaderValue::try_from(value.as_str())
                    .map_err(|e| format!("invalid value of header {name}: {e}"))?;
                headers.insert(name, value);
            }
            let metadata =
                opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.export_timeout)
                .with_metadata(metadata);
            if settings.endpoint.starts_with("https:") {
                builder = builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_webpki_roots(),
                );
            }
            builder.build()
        }
    };
    let mut exporter = built.map_err(|e| format!("invalid trace export settings: {e}"))?;
    exporter.set_resource(resource);
    Ok(exporter)
}

/// The OTLP exporter's HTTP client: hookrelay's own reqwest, on its runtime.
#[derive(Debug)]
pub struct ExportClient(pub reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut answer = http::Response::new(response.bytes().await?);
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}
