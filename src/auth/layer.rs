//! The middleware in front of the whole router: authenticate, authorise by
//! the [`Permissions`] table, audit every mutation.
//!
//! It runs before routing, so no handler sees a request it may not serve and
//! none sees a token: the handlers of both edges are unchanged by auth. It
//! speaks each edge's language for its refusals: a trailers-only gRPC status
//! (UNAUTHENTICATED, PERMISSION_DENIED) to gRPC callers, Graph's error body
//! (401 `InvalidAuthenticationToken` with `WWW-Authenticate: Bearer`, 403
//! `Authorization_RequestDenied`) with Graph's request-id headers to REST
//! callers.

use super::permissions::{Access, Permissions, Requirement};
use super::token::{Identity, Refusal};
use super::Auth;
use crate::rest::error::{GraphError, RequestIds};
use crate::rest::path::Route;
use crate::server::{grpc_status, is_grpc};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Target of the audit lines.
pub const AUDIT_TARGET: &str = "statusd::audit";

/// What a request is, for the table and the audit line.
struct Operation {
    requirement: Option<Requirement>,
    /// REST: the route (for the ids in the audit line).
    route: Option<Route>,
}

/// Middleware: see the module docs.
pub async fn authorize(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if Permissions::is_open(path) {
        return next.run(req).await;
    }
    // The path alone decides what is needed; the content type only decides
    // how a refusal is spoken. (Deciding by content type would let a REST
    // path sent as `application/grpc` miss the table.)
    let grpc = is_grpc(&req);
    let op = match auth.permissions.grpc(path) {
        Some(r) => Operation {
            requirement: Some(r),
            route: None,
        },
        None => match (Permissions::admin(path), Permissions::rest(req.method(), path)) {
            (Some(r), _) => Operation {
                requirement: Some(r),
                route: None,
            },
            (None, Some((r, route))) => Operation {
                requirement: Some(r),
                route: Some(route),
            },
            (None, None) => Operation {
                requirement: None,
                route: None,
            },
        },
    };
    let header = req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
    let identity = match auth.validator.authenticate(header).await {
        Ok(identity) => identity,
        Err(refusal) => {
            audit(&req, &op, None, &format!("unauthenticated: {refusal}"));
            return unauthenticated(grpc, &req, &refusal);
        }
    };
    // A path outside the table (an unknown gRPC method or Graph path) needs
    // a valid token only: it reaches no data, and the router refuses it.
    if let Some(requirement) = op.requirement {
        if !requirement.allows(identity.grants) {
            audit(&req, &op, Some(&identity), "denied");
            return denied(grpc, &req, requirement);
        }
    }
    let writes = op.requirement.is_some_and(|r| r.access == Access::Write);
    if !writes {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let uri_path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let outcome = outcome(grpc, &resp);
    audit_line(&method, &uri_path, &op, Some(&identity), &outcome);
    resp
}

/// The outcome of a served request: the HTTP status, or for gRPC the
/// status code. tonic answers a failed unary call trailers-only (the code in
/// the headers), so a 200 without `grpc-status` is a success whose OK code
/// follows in the trailers.
fn outcome(grpc: bool, resp: &Response) -> String {
    if !grpc {
        return resp.status().as_u16().to_string();
    }
    let code = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    format!("{:?}", tonic::Code::from(code))
}

/// Audits a refused mutation (reads are not audited).
fn audit(req: &Request, op: &Operation, who: Option<&Identity>, outcome: &str) {
    if op.requirement.is_some_and(|r| r.access == Access::Write) {
        audit_line(req.method(), req.uri().path(), op, who, outcome);
    }
}

/// One audit line: who, what, outcome. Never the token.
fn audit_line(method: &Method, path: &str, op: &Operation, who: Option<&Identity>, outcome: &str) {
    let none = Identity::default();
    let who = who.unwrap_or(&none);
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let collection = op.requirement.map_or("-", Requirement::collection);
    // A table entry from the REST side carries its route; one from the gRPC
    // table does not.
    let (edge, what) = if op.route.is_none() {
        ("grpc", path.rsplit('/').next().unwrap_or(path).to_owned())
    } else {
        ("rest", method.to_string())
    };
    let (parent_id, status_id) = op.route.as_ref().map_or((None, None), route_ids);
    // Ids are client-chosen: quoted and escaped, so a line cannot be forged.
    let quoted = |id: Option<String>| id.map_or_else(|| "-".to_owned(), |s| format!("{s:?}"));
    tracing::info!(
        target: AUDIT_TARGET,
        oid = %dash(&who.oid),
        appid = %dash(&who.appid),
        sub = %dash(&who.sub),
        edge,
        method = %what,
        collection,
        parent_id = %quoted(parent_id),
        status_id = %quoted(status_id),
        outcome,
        "mutation"
    );
}

/// The ids a REST route names (gRPC ids sit in the message body, which the
/// layer does not parse).
fn route_ids(route: &Route) -> (Option<String>, Option<String>) {
    match route {
        Route::Parents(_) | Route::ParentsCount(_) => (None, None),
        Route::Parent(pp)
        | Route::CertificateRef(pp)
        | Route::Statuses(_, pp)
        | Route::StatusesRef(_, pp)
        | Route::StatusesCount(_, pp)
        | Route::Overview(_, pp) => (Some(pp.id.clone()), None),
        Route::Status(_, pp, id) => (Some(pp.id.clone()), Some(id.clone())),
    }
}

/// 401 / UNAUTHENTICATED.
fn unauthenticated(grpc: bool, req: &Request, refusal: &Refusal) -> Response {
    crate::metrics::refused("unauthenticated");
    let message = refusal.to_string();
    if grpc {
        return grpc_status(tonic::Code::Unauthenticated, &message);
    }
    let error = GraphError {
        status: StatusCode::UNAUTHORIZED,
        code: "InvalidAuthenticationToken",
        message,
        allow: None,
    };
    let mut resp = RequestIds::new(req.headers()).finish(error.into_response());
    // RFC 6750 §3: no credentials get the bare challenge; bad ones say so.
    let challenge = match refusal {
        Refusal::Missing => "Bearer",
        _ => "Bearer error=\"invalid_token\"",
    };
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

/// 403 / PERMISSION_DENIED, naming the permission needed.
fn denied(grpc: bool, req: &Request, requirement: Requirement) -> Response {
    crate::metrics::refused("forbidden");
    let message = format!(
        "Insufficient privileges to complete the operation: it requires {}.",
        requirement.needed()
    );
    if grpc {
        return grpc_status(tonic::Code::PermissionDenied, &message);
    }
    let error = GraphError {
        status: StatusCode::FORBIDDEN,
        code: "Authorization_RequestDenied",
        message,
        allow: None,
    };
    RequestIds::new(req.headers()).finish(error.into_response())
}
