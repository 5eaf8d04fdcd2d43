//! Per-request observation: the access log line, `X-Request-Id`, and per-route HTTP metrics.
//!
//! One middleware ([`layer`]) applied to every route of the router (axum applies a router's
//! layers after routing, so the matched route *template* is known):
//!
//! - **Request id**: an incoming `X-Request-Id` of 1–128 characters from `[A-Za-z0-9._:-]` is
//!   kept, anything else replaced by a fresh random id; the id is returned in the response's
//!   `X-Request-Id` and is a field of the `request` span, so every line a handler logs carries it.
//! - **Access log**: one line per request at `info` on the target `jobpulse::access`, written
//!   when the response body is finished (or abandoned): `method`, `route` (the template, e.g.
//!   `/api/v1/media/videos/{id}/progress/`; `unmatched` for a path no route has), `status`,
//!   `ms` (until the response head), `total_ms` (until the body's end — an event stream's
//!   lifetime), `bytes` (body bytes sent), `request_id`, and `tenant` once the request was
//!   authenticated. The raw path and the query string are never logged: ids stay out of
//!   labels, and tokens (`?access_token=…` of event streams) out of logs. Filter it with
//!   `RUST_LOG=…,jobpulse::access=off`.
//! - **Metrics**: `jobpulse_http_requests_total{method,route,status}` and the histogram
//!   `jobpulse_http_request_duration_seconds{method,route}` (time to the response head).
//!
//! The tenant is learnt from [`note_tenant`], which token verification calls: a task-local set
//! around the request's handler, so no handler needs to know about logging.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tracing::Instrument;

/// The request id header, read and written.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id accepted from a client.
const MAX_ID_LEN: usize = 128;

tokio::task_local! {
    static TENANT: Arc<AtomicI64>;
}

/// Records the authenticated tenant of the current request for its access log line and span
/// (a no-op outside a request).
pub fn note_tenant(tenant: i64) {
    let _ = TENANT.try_with(|t| t.store(tenant, Ordering::Relaxed));
    tracing::Span::current().record("tenant", tenant);
}

/// The middleware; apply with `Router::layer(axum::middleware::from_fn(observe::layer))`.
pub async fn layer(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route: Arc<str> = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| Arc::from("unmatched"), |m| Arc::from(m.as_str()));
    let id = request_id(req.headers().get(&REQUEST_ID));
    let tenant = Arc::new(AtomicI64::new(0));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method,
        route = %route,
        tenant = tracing::field::Empty,
    );
    let mut res = TENANT
        .scope(tenant.clone(), next.run(req))
        .instrument(span)
        .await;
    let head = start.elapsed();
    let status = res.status().as_u16();
    metrics::counter!(
        "jobpulse_http_requests_total",
        "method" => method,
        "route" => route.to_string(),
        "status" => status.to_string(),
    )
    .increment(1);
    metrics::histogram!(
        "jobpulse_http_request_duration_seconds",
        "method" => method,
        "route" => route.to_string(),
    )
    .record(head.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let mut line = AccessLine {
        start,
        head_ms: head.as_secs_f64() * 1e3,
        method,
        route,
        status,
        id,
        tenant,
        bytes: 0,
    };
    res.map(move |body| {
        Body::new(body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                // A method call: the closure owns the whole line, which logs when dropped.
                line.count(data.len());
            }
            frame
        }))
    })
}

/// The access log line, written when the response body is dropped (sent or abandoned).
struct AccessLine {
    start: Instant,
    head_ms: f64,
    method: &'static str,
    route: Arc<str>,
    status: u16,
    id: String,
    tenant: Arc<AtomicI64>,
    bytes: u64,
}

impl AccessLine {
    fn count(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }
}

impl Drop for AccessLine {
    fn drop(&mut self) {
        let tenant = match self.tenant.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        };
        tracing::info!(
            target: "jobpulse::access",
            method = self.method,
            route = %self.route,
            status = self.status,
            ms = (self.head_ms * 1000.0).round() / 1000.0,
            total_ms = (self.start.elapsed().as_secs_f64() * 1e6).round() / 1000.0,
            bytes = self.bytes,
            request_id = %self.id,
            tenant,
            "request"
        );
    }
}

/// A bounded label for the method (clients can send any token there).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The client's id when it is safe to log and echo, a fresh one otherwise.
fn request_id(given: Option<&HeaderValue>) -> String {
    if let Some(v) = given {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= MAX_ID_LEN
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
            && let Ok(s) = v.to_str()
        {
            return s.to_owned();
        }
    }
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_kept_only_when_safe() {
        let ok = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(request_id(Some(&ok)), "abc-123_x.y:z");
        for bad in ["", "has space", "new\"quote", "ü"] {
            let v = HeaderValue::from_bytes(bad.as_bytes()).expect("header value");
            let id = request_id(Some(&v));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32, "{id}");
        }
        let long = HeaderValue::from_str(&"a".repeat(MAX_ID_LEN + 1)).expect("header value");
        assert_eq!(request_id(Some(&long)).len(), 32);
        let generated = request_id(None);
        assert!(generated.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(generated, request_id(None), "fresh ids differ");
    }

    #[test]
    fn methods_outside_the_known_set_share_one_label() {
        let odd = Method::from_bytes(b"PROPFIND").expect("method");
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&Method::GET), "GET");
    }
}
