//! Graph's error body and response headers.
//!
//! Every REST error is `{"error": {"code", "message", "innerError": {"date",
//! "request-id", "client-request-id"}}}` with the status Graph uses. Handlers
//! return a [`GraphError`]; the [`graph_headers`] middleware, which knows the
//! request ids, renders the body and adds `request-id`, `client-request-id`
//! and `OData-Version` to every response. Errors produced below the handlers
//! (axum's 413 for an oversized body, say) are rewritten into the same shape.

use crate::error::Error;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Content type of Graph's JSON responses.
pub const JSON: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// A REST error: status, Graph error code, message.
#[derive(Debug, Clone)]
pub struct GraphError {
    /// HTTP status.
    pub status: StatusCode,
    /// Graph's `error.code`.
    pub code: &'static str,
    /// Graph's `error.message`.
    pub message: String,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl GraphError {
    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        GraphError {
            status: StatusCode::BAD_REQUEST,
            code: "BadRequest",
            message: message.into(),
            allow: None,
        }
    }

    /// 405 for a method the path does not support.
    pub fn method_not_allowed(method: &str, allowed: &'static str) -> Self {
        GraphError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "MethodNotAllowed",
            message: format!("{method} is not supported on this resource; allowed: {allowed}."),
            allow: Some(allowed),
        }
    }

    /// 405 with the reason the method is not supported.
    pub fn method_not_allowed_because(method: &str, allowed: &'static str, why: &str) -> Self {
        GraphError {
            message: format!("{method} is not supported on this resource: {why}; allowed: {allowed}."),
            ..Self::method_not_allowed(method, allowed)
        }
    }
}

impl From<Error> for GraphError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::InvalidArgument { .. } => (StatusCode::BAD_REQUEST, "BadRequest"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound"),
            Error::AlreadyExists(_) => (StatusCode::CONFLICT, "Conflict"),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            Error::InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, "InsufficientStorage"),
            Error::OutOfRange(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            Error::ResourceExhausted(_) => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            Error::Unimplemented(_) => (StatusCode::NOT_IMPLEMENTED, "NotImplemented"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
        };
        let message = match e {
            Error::InvalidArgument { field, message } => match rest_field_name(&field) {
                option if option.starts_with('$') => format!("Invalid value for query option '{option}': {message}"),
                property => format!("Invalid value for property '{property}': {message}"),
            },
            other => other.to_string(),
        };
        GraphError {
            status,
            code,
            message,
            allow: None,
        }
    }
}

/// The REST name of a field the service names: paging is `pageSize` and
/// `pageToken` in the service (AIP-158's words, which gRPC renders as
/// `page_size` / `page_token`), but a REST client wrote `$top` and
/// `$skiptoken`, so its error must say those.
fn rest_field_name(field: &str) -> &str {
    match field {
        "pageSize" => "$top",
        "pageToken" => "$skiptoken",
        other => other,
    }
}

/// Carried from the handler to the middleware in the response extensions.
#[derive(Debug, Clone)]
struct Pending(GraphError);

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = self.status;
        resp.extensions_mut().insert(Pending(self));
        resp
    }
}

/// The body of a Graph error.
pub fn error_body(e: &GraphError, request_id: &str, client_request_id: &str) -> Vec<u8> {
    let date = crate::model::DateTime::now().to_string();
    let body = serde_json::json!({
        "error": {
            "code": e.code,
            "message": e.message,
            "innerError": {
                "date": &date[..19],
                "request-id": request_id,
                "client-request-id": client_request_id,
            }
        }
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn generic_error(status: StatusCode) -> GraphError {
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "RequestEntityTooLarge",
            "The request body is larger than the server accepts.",
        ),
        StatusCode::METHOD_NOT_ALLOWED => ("MethodNotAllowed", "The method is not supported on this resource."),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("UnsupportedMediaType", "The request body must be application/json."),
        s if s.is_server_error() => ("InternalServerError", "The server failed to process the request."),
        _ => ("BadRequest", "The request could not be processed."),
    };
    GraphError {
        status,
        code,
        message: message.to_owned(),
        allow: None,
    }
}

/// Request ids of one request.
pub struct RequestIds {
    /// Ours, fresh per request.
    pub request_id: String,
    /// The client's `client-request-id` if it sent a usable one, else ours.
    pub client_request_id: String,
}

impl RequestIds {
    /// Ids for a request with these headers: a fresh `request-id`.
    pub fn new(headers: &HeaderMap) -> Self {
        Self::with_id(headers, uuid::Uuid::new_v4().to_string())
    }

    /// Ids for a request whose `request-id` is `request_id` (the one the
    /// listener gave it, which its log lines carry); `client-request-id` is
    /// the client's if it sent a usable one, else the same.
    pub fn with_id(headers: &HeaderMap, request_id: String) -> Self {
        let client_request_id = headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .map_or_else(|| request_id.clone(), str::to_owned);
        RequestIds {
            request_id,
            client_request_id,
        }
    }

    /// The ids of `req`: its listener-given id when it has one.
    pub fn of(req: &Request) -> Self {
        match req.extensions().get::<crate::server::RequestId>() {
            Some(crate::server::RequestId(id)) => Self::with_id(req.headers(), id.clone()),
            None => Self::new(req.headers()),
        }
    }

    /// Adds the Graph headers, and renders a pending or foreign error body.
    pub fn finish(&self, mut resp: Response) -> Response {
        let pending = resp.extensions_mut().remove::<Pending>().map(|p| p.0);
        let status = resp.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            crate::metrics::refused("size");
        }
        let is_json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let error = match pending {
            Some(e) => Some(e),
            None if (status.is_client_error() || status.is_server_error()) && !is_json => Some(generic_error(status)),
            None => None,
        };
        if let Some(e) = error {
            let body = error_body(&e, &self.request_id, &self.client_request_id);
            let mut fresh = Response::new(Body::from(body));
            *fresh.status_mut() = e.status;
            if let Some(allow) = e.allow {
                fresh
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            } else if let Some(allow) = resp.headers().get(header::ALLOW) {
                fresh.headers_mut().insert(header::ALLOW, allow.clone());
            }
            fresh
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp = fresh;
        }
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert("request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.client_request_id) {
            headers.insert("client-request-id", v);
        }
        headers.insert("odata-version", HeaderValue::from_static("4.0"));
        resp
    }
}

/// Middleware: Graph headers on every REST response, Graph bodies on every error.
pub async fn graph_headers(req: Request, next: Next) -> Response {
    let ids = RequestIds::of(&req);
    let resp = next.run(req).await;
    ids.finish(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_errors_name_the_rest_options() {
        let e = GraphError::from(Error::invalid("pageSize", "must be at most 1000"));
        assert_eq!(e.message, "Invalid value for query option '$top': must be at most 1000");
        let e = GraphError::from(Error::invalid("pageToken", "is not a page token this server issued"));
        assert!(e.message.contains("'$skiptoken'"), "{}", e.message);
        let e = GraphError::from(Error::invalid("$orderby", "too many"));
        assert!(e.message.starts_with("Invalid value for query option '$orderby'"));
        let e = GraphError::from(Error::invalid("status", "bad"));
        assert_eq!(e.message, "Invalid value for property 'status': bad");
    }
}
