//! JSON batching: `POST /{v1.0|beta|localtest}/$batch`, as Graph defines it.
//!
//! A batch is up to [`MAX_REQUESTS`] requests `{id, method, url, headers,
//! body, dependsOn}`, with URLs relative to the version
//! (`/deviceManagement/…`). Each one is sent as a request of its own through
//! the whole application below this layer — auth, size limits, deadline,
//! the REST translation — with the batch's `Authorization` and `Host`, so its
//! sub-response is exactly what the same request alone gets. Requests run in
//! waves: every request whose dependencies have answered runs, concurrently
//! with the others of its wave; one whose dependency failed (not 2xx) is not
//! run and gets 424. A malformed batch (not JSON, no requests, more than 20,
//! duplicate or empty ids, an unknown method, a nested `$batch`, an unknown
//! or cyclic `dependsOn`) is a 400 for the whole batch, and nothing runs.
//!
//! Accepted from real clients: `depends_on` (msgraph-core for Python writes
//! it in snake case), absolute URLs and URLs that repeat the version, and
//! bodies given as base64 strings (Graph's form for non-JSON content).

use super::error::{GraphError, RequestIds};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tower::ServiceExt;

/// Most requests in one batch (Graph's limit).
pub const MAX_REQUESTS: usize = 20;

/// What the batch layer needs: the application it sends sub-requests to.
#[derive(Clone)]
pub struct Batch {
    /// The application below this layer.
    pub app: axum::Router,
    /// Largest batch body, in bytes (the server's message limit).
    pub body_limit: usize,
    /// Deadline of the whole batch.
    pub deadline: Duration,
}

/// Middleware: answers `POST /{version}/$batch`, passes everything else on.
pub async fn intercept(State(batch): State<Batch>, req: Request, next: Next) -> Response {
    let Some(version) = batch_version(req.method(), req.uri()) else {
        return next.run(req).await;
    };
    let ids = RequestIds::of(&req);
    let response = match tokio::time::timeout(batch.deadline, batch.handle(version, req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(_) => GraphError {
            status: StatusCode::GATEWAY_TIMEOUT,
            code: "RequestTimeout",
            message: format!("The batch did not finish within {} s.", batch.deadline.as_secs()),
            allow: None,
        }
        .into_response(),
    };
    ids.finish(response)
}

/// The version segment of a batch request, if `uri` is one.
fn batch_version(method: &Method, uri: &Uri) -> Option<&'static str> {
    if method != Method::POST {
        return None;
    }
    let path = uri.path();
    ["v1.0", "beta", "localtest"].into_iter().find(|v| {
        path.strip_prefix('/')
            .and_then(|p| p.strip_prefix(*v))
            .and_then(|p| p.strip_prefix('/'))
            .is_some_and(|rest| rest == "$batch" || rest.eq_ignore_ascii_case("%24batch"))
    })
}

#[derive(Deserialize)]
struct BatchIn {
    requests: Option<Vec<Value>>,
}

/// One request of a batch, checked.
struct Sub {
    id: String,
    method: Method,
    /// Path and query relative to the version, starting with `/`.
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Vec<u8>>,
    depends_on: Vec<usize>,
}

/// A sub-request's answer.
struct Answer {
    status: StatusCode,
    headers: Map<String, Value>,
    body: Option<Value>,
}

fn bad(message: impl Into<String>) -> GraphError {
    GraphError::bad_request(message)
}

impl Batch {
    async fn handle(&self, version: &'static str, req: Request) -> Result<Response, GraphError> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, self.body_limit)
            .await
            .map_err(|_| GraphError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "RequestEntityTooLarge",
                message: format!("The batch is larger than {} bytes.", self.body_limit),
                allow: None,
            })?;
        let subs = parse(&bytes, version)?;
        let waves = waves(&subs)?;
        let mut answers: Vec<Option<Answer>> = (0..subs.len()).map(|_| None).collect();
        for wave in waves {
            let runs = wave.iter().map(|&i| {
                let failed = subs[i]
                    .depends_on
                    .iter()
                    .find(|&&d| answers[d].as_ref().is_some_and(|a| !a.status.is_success()))
                    .map(|&d| subs[d].id.clone());
                let sub = &subs[i];
                let outer = &parts.headers;
                async move {
                    match failed {
                        Some(dep) => failed_dependency(&sub.id, &dep),
                        None => self.run(version, outer, sub).await,
                    }
                }
            });
            let done = futures::future::join_all(runs).await;
            for (&i, answer) in wave.iter().zip(done) {
                answers[i] = Some(answer);
            }
        }
        let responses: Vec<Value> = subs
            .iter()
            .zip(answers)
            .map(|(sub, answer)| {
                let a = answer.expect("every request is in a wave");
                let mut out = Map::new();
                out.insert("id".into(), Value::String(sub.id.clone()));
                out.insert("status".into(), Value::from(a.status.as_u16()));
                out.insert("headers".into(), Value::Object(a.headers));
                if let Some(body) = a.body {
                    out.insert("body".into(), body);
                }
                Value::Object(out)
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "responses": responses })).unwrap_or_default();
        let mut resp = Response::new(Body::from(body));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(super::error::JSON));
        Ok(resp)
    }

    /// Sends one sub-request through the application.
    async fn run(&self, version: &str, outer: &HeaderMap, sub: &Sub) -> Answer {
        let uri = format!("/{version}{}", sub.url);
        let mut builder = Request::builder().method(sub.method.clone()).uri(&uri);
        if let Some(headers) = builder.headers_mut() {
            for name in [header::AUTHORIZATION, header::HOST] {
                if let Some(v) = outer.get(&name) {
                    headers.insert(name, v.clone());
                }
            }
            for (name, value) in &sub.headers {
                headers.insert(name.clone(), value.clone());
            }
            if sub.body.is_some() && !headers.contains_key(header::CONTENT_TYPE) {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        let request = match builder.body(Body::from(sub.body.clone().unwrap_or_default())) {
            Ok(r) => r,
            Err(e) => return error_answer(&bad(format!("Request '{}': {e}", sub.id))),
        };
        let response = match self.app.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status();
        let mut headers = Map::new();
        for (name, value) in response.headers() {
            if matches!(
                name.as_str(),
                "content-length" | "date" | "connection" | "transfer-encoding" | "keep-alive"
            ) {
                continue;
            }
            if let Ok(v) = value.to_str() {
                headers.insert(name.as_str().to_owned(), Value::String(v.to_owned()));
            }
        }
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let body = if bytes.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes))),
            )
        };
        Answer { status, headers, body }
    }
}

/// The 424 of a request whose dependency failed.
fn failed_dependency(id: &str, dependency: &str) -> Answer {
    error_answer(&GraphError {
        status: StatusCode::FAILED_DEPENDENCY,
        code: "FailedDependency",
        message: format!("Request '{id}' was not run: request '{dependency}', which it depends on, failed."),
        allow: None,
    })
}

fn error_answer(e: &GraphError) -> Answer {
    let mut headers = Map::new();
    headers.insert("content-type".into(), Value::String("application/json".into()));
    Answer {
        status: e.status,
        headers,
        body: Some(serde_json::json!({
            "error": { "code": e.code, "message": e.message }
        })),
    }
}

/// Checks a batch body and turns it into its requests.
fn parse(bytes: &[u8], version: &str) -> Result<Vec<Sub>, GraphError> {
    let batch: BatchIn = serde_json::from_slice(bytes).map_err(|e| bad(format!("Invalid batch payload: {e}.")))?;
    let requests = batch
        .requests
        .ok_or_else(|| bad("Invalid batch payload: the 'requests' array is missing."))?;
    if requests.is_empty() {
        return Err(bad("Invalid batch payload: the 'requests' array is empty."));
    }
    if requests.len() > MAX_REQUESTS {
        return Err(bad(format!(
            "Number of batch requests exceeded the limit of {MAX_REQUESTS} (got {}).",
            requests.len()
        )));
    }
    let mut index = HashMap::new();
    let mut raw_deps = Vec::new();
    let mut subs = Vec::new();
    for (n, r) in requests.iter().enumerate() {
        let obj = r
            .as_object()
            .ok_or_else(|| bad(format!("Request {n} of the batch is not an object.")))?;
        let id = match obj.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(num)) => num.to_string(),
            _ => return Err(bad(format!("Request {n} of the batch has no 'id'."))),
        };
        if index.insert(id.clone(), n).is_some() {
            return Err(bad(format!("The batch has two requests with id '{id}'.")));
        }
        let method = match obj.get("method").and_then(Value::as_str).map(str::to_ascii_uppercase) {
            Some(m) if matches!(m.as_str(), "GET" | "POST" | "PATCH" | "PUT" | "DELETE") => {
                Method::from_bytes(m.as_bytes()).map_err(|_| bad(format!("Request '{id}': invalid method.")))?
            }
            Some(m) => {
                return Err(bad(format!(
                    "Request '{id}': method '{m}' is not supported in a batch."
                )))
            }
            None => return Err(bad(format!("Request '{id}' has no 'method'."))),
        };
        let url = obj
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("Request '{id}' has no 'url'.")))?;
        let url = relative_url(url, version).ok_or_else(|| bad(format!("Request '{id}': invalid url '{url}'.")))?;
        if url
            .split(['?', '#'])
            .next()
            .is_some_and(|p| p.contains("$batch") || p.contains("%24batch"))
        {
            return Err(bad(format!("Request '{id}': a batch cannot contain a $batch.")));
        }
        let mut headers = Vec::new();
        let mut json_body = true;
        if let Some(h) = obj.get("headers") {
            let h = h
                .as_object()
                .ok_or_else(|| bad(format!("Request '{id}': 'headers' must be an object.")))?;
            for (k, v) in h {
                // A string, or (as Kiota writes them) a list of strings.
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Array(items) if items.iter().all(Value::is_string) => {
                        items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
                    }
                    _ => return Err(bad(format!("Request '{id}': header '{k}' must be a string."))),
                };
                let v = v.as_str();
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| bad(format!("Request '{id}': invalid header name '{k}'.")))?;
                let value = HeaderValue::from_str(v)
                    .map_err(|_| bad(format!("Request '{id}': invalid value of header '{k}'.")))?;
                if name == header::CONTENT_TYPE {
                    json_body = v.to_ascii_lowercase().contains("json");
                }
                headers.push((name, value));
            }
        }
        let body = match obj.get("body") {
            None | Some(Value::Null) => None,
            // Graph's form for non-JSON content: base64.
            Some(Value::String(s)) if !json_body => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .unwrap_or_else(|_| s.clone().into_bytes()),
            ),
            Some(v) => Some(serde_json::to_vec(v).unwrap_or_default()),
        };
        let deps = match obj.get("dependsOn").or_else(|| obj.get("depends_on")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|d| match d {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(bad(format!("Request '{id}': 'dependsOn' must list request ids."))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad(format!("Request '{id}': 'dependsOn' must be an array."))),
        };
        raw_deps.push(deps);
        subs.push(Sub {
            id,
            method,
            url,
            headers,
            body,
            depends_on: Vec::new(),
        });
    }
    for (sub, deps) in subs.iter_mut().zip(raw_deps) {
        for d in deps {
            let i = *index.get(&d).ok_or_else(|| {
                bad(format!(
                    "Request '{}' depends on '{d}', which is not in the batch.",
                    sub.id
                ))
            })?;
            sub.depends_on.push(i);
        }
    }
    Ok(subs)
}

/// A sub-request's URL relative to the version: `/deviceManagement/…`.
/// Also accepted: no leading slash, an absolute URL, or a URL that repeats
/// the batch's version.
fn relative_url(url: &str, version: &str) -> Option<String> {
    let url = url.trim();
    let path = match url.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => url,
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path
        .strip_prefix(version)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or(path);
    if path.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(format!("/{path}"))
}

/// The requests in waves: each wave only depends on earlier ones. A cycle
/// (or a request depending on itself) is a 400.
fn waves(subs: &[Sub]) -> Result<Vec<Vec<usize>>, GraphError> {
    let mut done: HashSet<usize> = HashSet::new();
    let mut waves = Vec::new();
    while done.len() < subs.len() {
        let wave: Vec<usize> = (0..subs.len())
            .filter(|i| !done.contains(i) && subs[*i].depends_on.iter().all(|d| done.contains(d)))
            .collect();
        if wave.is_empty() {
            let stuck: Vec<&str> = (0..subs.len())
                .filter(|i| !done.contains(i))
                .map(|i| subs[i].id.as_str())
                .collect();
            return Err(bad(format!(
                "The batch's dependsOn form a cycle among requests {}.",
                stuck.join(", ")
            )));
        }
        done.extend(&wave);
        waves.push(wave);
    }
    Ok(waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_made_relative_to_the_version() {
        assert_eq!(
            relative_url("/deviceManagement/x", "v1.0").unwrap(),
            "/deviceManagement/x"
        );
        assert_eq!(
            relative_url("deviceManagement/x?$top=1", "beta").unwrap(),
            "/deviceManagement/x?$top=1"
        );
        assert_eq!(
            relative_url("https://graph.microsoft.com/v1.0/deviceManagement/x", "v1.0").unwrap(),
            "/deviceManagement/x"
        );
        assert_eq!(
            relative_url("/beta/deviceManagement/x", "beta").unwrap(),
            "/deviceManagement/x"
        );
        assert!(relative_url("", "v1.0").is_none());
        assert!(relative_url("/a b", "v1.0").is_none());
    }

    #[test]
    fn the_batch_version_is_recognised() {
        let uri: Uri = "/v1.0/$batch".parse().unwrap();
        assert_eq!(batch_version(&Method::POST, &uri), Some("v1.0"));
        let uri: Uri = "/beta/%24batch".parse().unwrap();
        assert_eq!(batch_version(&Method::POST, &uri), Some("beta"));
        assert_eq!(batch_version(&Method::GET, &uri), None);
        let uri: Uri = "/v1.0/deviceManagement/$batch".parse().unwrap();
        assert_eq!(batch_version(&Method::POST, &uri), None);
    }
}
