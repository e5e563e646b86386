//! The REST edge: Microsoft Graph's paths and JSON, translated onto the same
//! service calls the gRPC edge makes.
//!
//! A request goes: version prefix → [`path::parse`] → method → JSON or query
//! options ([`json`], [`odata`]) → one [`Service`] call → Graph JSON. The
//! [`error::graph_headers`] middleware gives every response Graph's headers and
//! every error Graph's body. Nothing here decides a domain rule.

pub mod batch;
pub mod error;
pub mod json;
pub mod links;
pub mod metadata;
pub mod odata;
pub mod openapi;
pub mod path;

pub use links::{is_plain_authority, Links};

use crate::error::Error;
use crate::model::{overview, Parent, ParentKind, Status, StatusKind};
use crate::service::{QueryPage, Service};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use error::{GraphError, JSON};
use futures::StreamExt;
use path::{ApiVersion, Certificate, ParentPath, Route};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

/// Intune's default page size for Graph lists.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// Characters left as they are in query values of `@odata.nextLink`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$');

/// State of the REST edge.
#[derive(Clone)]
pub struct Rest {
    service: Service,
    links: Links,
}

/// The REST router: `/v1.0`, `/beta` and `/localtest`, with Graph headers and
/// errors, request bodies limited to `body_limit` bytes (413 beyond), and
/// absolute links based on `links`.
pub fn router(service: Service, body_limit: usize, links: Links) -> Router {
    Router::new()
        .route("/v1.0/{*path}", any(handle))
        .route("/beta/{*path}", any(handle))
        .route("/localtest/{*path}", any(handle))
        .route(BACKUP_PATH, axum::routing::get(backup))
        .with_state(Rest { service, links })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(error::graph_headers))
}

/// Where `statusd backup` reads a backup from (not a Graph path).
pub const BACKUP_PATH: &str = "/admin/backup";

/// `GET /admin/backup[?maxRecordsPerSecond=N]`: a [`crate::backup`] file,
/// streamed, at most N records a second when asked (to leave the cores to
/// the writers while it runs).
async fn backup(State(rest): State<Rest>, uri: Uri) -> Response {
    let mut max_rate = None;
    for pair in uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (name, value.parse::<u64>()) {
            ("maxRecordsPerSecond", Ok(n)) if n > 0 => max_rate = Some(n),
            ("maxRecordsPerSecond", _) => {
                return GraphError::from(Error::invalid(
                    "maxRecordsPerSecond",
                    format!("'{value}' is not a positive whole number"),
                ))
                .into_response()
            }
            _ => {
                return GraphError::from(Error::invalid(
                    name,
                    "is not an option of /admin/backup (it takes maxRecordsPerSecond)",
                ))
                .into_response()
            }
        }
    }
    match rest.service.backup(max_rate).await {
        Ok(lines) => {
            let body = tokio_stream::wrappers::ReceiverStream::new(lines)
                .map(|chunk| chunk.map(Bytes::from).map_err(std::io::Error::other));
            (
                [
                    (header::CONTENT_TYPE, "application/x-ndjson"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                Body::from_stream(body),
            )
                .into_response()
        }
        Err(e) => GraphError::from(e).into_response(),
    }
}

async fn handle(State(rest): State<Rest>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut route = None;
    let mut resp = match rest.dispatch(&method, &uri, &headers, &body, &mut route).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // The route as parsed here, so the metrics layer need not parse it again.
    if let Some(label) = route {
        resp.extensions_mut().insert(crate::metrics::RouteLabel(label));
    }
    resp
}

/// What every handler needs to know about the request.
struct Ctx<'a> {
    version: ApiVersion,
    /// Scheme and authority of links, from [`Links::base`].
    base: String,
    uri: &'a Uri,
}

impl Ctx<'_> {
    fn metadata(&self) -> String {
        format!("{}/{}/$metadata#", self.base, self.version.segment())
    }

    fn parents_context(&self, kind: ParentKind) -> String {
        format!("{}{}/{}", self.metadata(), kind.root(), kind.collection())
    }

    fn statuses_context(&self, kind: StatusKind, parent_id: &str) -> String {
        self.navigation_context(kind.parent, parent_id, kind.segment())
    }

    /// `…/$metadata#{root}/{collection}('{parent_id}')/{segment}`.
    fn navigation_context(&self, parent: ParentKind, parent_id: &str, segment: &str) -> String {
        format!(
            "{}{}/{}('{}')/{}",
            self.metadata(),
            parent.root(),
            parent.collection(),
            parent_id.replace('\'', "''"),
            segment
        )
    }

    fn configuration_url(&self, id: &str) -> String {
        format!(
            "{}/{}/deviceManagement/deviceConfigurations('{}')",
            self.base,
            self.version.segment(),
            utf8_percent_encode(&id.replace('\'', "''"), QUERY_VALUE)
        )
    }

    /// The request's query options, with every property they name checked
    /// against `visible` (the entity's properties under this version).
    fn options(&self, visible: &[&str]) -> Result<odata::Options, GraphError> {
        let opts = odata::parse(self.uri.query(), self.version)?;
        check_names(&opts, visible)?;
        Ok(opts)
    }

    /// The absolute `@odata.nextLink`: this URL's options, `$skiptoken` set.
    fn next_link(&self, opts: &odata::Options, token: &str) -> String {
        let mut query: Vec<String> = opts
            .passthrough
            .iter()
            .filter(|(k, _)| k != "$skip")
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, QUERY_VALUE),
                    utf8_percent_encode(v, QUERY_VALUE)
                )
            })
            .collect();
        query.push(format!("$skiptoken={}", utf8_percent_encode(token, QUERY_VALUE)));
        format!("{}{}?{}", self.base, self.uri.path(), query.join("&"))
    }
}

fn serialized(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    resp
}

fn parent_entity(
    status: StatusCode,
    context: &str,
    kind: ParentKind,
    p: &Parent,
    select: Option<&[String]>,
) -> Response {
    serialized(
        status,
        &json::ParentView {
            kind,
            parent: p,
            select,
            context: Some(context),
        },
    )
}

fn status_entity(
    status: StatusCode,
    context: &str,
    ctx: &Ctx<'_>,
    kind: StatusKind,
    s: &Status,
    select: Option<&[String]>,
) -> Response {
    serialized(
        status,
        &json::StatusView {
            kind,
            version: ctx.version,
            status: s,
            select,
            context: Some(context),
        },
    )
}

fn count_response(n: u64) -> Response {
    let mut resp = Response::new(Body::from(n.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=utf-8"),
    );
    resp
}

fn no_content() -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

fn not_allowed(method: &Method, allowed: &'static str) -> GraphError {
    GraphError::method_not_allowed(method.as_str(), allowed)
}

/// Refuses `$select`/`$filter`/`$orderby` names that the entity does not have
/// under this version (so `platform` under v1.0 is a 400, as in Graph).
fn check_names(opts: &odata::Options, visible: &[&str]) -> Result<(), GraphError> {
    let mut named: Vec<(&str, String)> = Vec::new();
    if let Some(sel) = &opts.select {
        named.extend(sel.iter().map(|s| ("$select", s.clone())));
    }
    if let Some(f) = &opts.query.filter {
        let mut props = Vec::new();
        odata::filter_properties(f, &mut props);
        named.extend(props.into_iter().map(|p| ("$filter", p)));
    }
    named.extend(opts.query.order_by.iter().map(|k| ("$orderby", k.field.clone())));
    for (option, name) in named {
        if !visible.contains(&name.as_str()) {
            return Err(GraphError::bad_request(format!(
                "Could not find a property named '{name}' ({option}); properties: {}.",
                visible.join(", ")
            )));
        }
    }
    Ok(())
}

impl Rest {
    async fn dispatch(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        label: &mut Option<String>,
    ) -> Result<Response, GraphError> {
        let full = uri.path().trim_start_matches('/');
        let (prefix, rest) = full.split_once('/').unwrap_or((full, ""));
        let version = ApiVersion::from_segment(prefix)
            .ok_or_else(|| GraphError::bad_request(format!("Invalid version '{prefix}'.")))?;
        let route = path::parse(version, rest)?;
        *label = Some(format!("{prefix}/{}", route.label()));
        let ctx = Ctx {
            version,
            base: self.links.base(headers, uri),
            uri,
        };
        match route {
            Route::Parents(kind) => match *method {
                Method::GET => self.list_parents(&ctx, kind).await,
                Method::POST => self.create_parent(&ctx, kind, body).await,
                _ => Err(not_allowed(method, "GET, POST")),
            },
            Route::ParentsCount(kind) => match *method {
                Method::GET => self.count_parents(&ctx, kind).await,
                _ => Err(not_allowed(method, "GET")),
            },
            Route::Parent(pp) => match *method {
                Method::GET => self.get_parent(&ctx, &pp).await,
                Method::PATCH => self.update_parent(&ctx, &pp, body).await,
                Method::DELETE if pp.via.is_empty() => self.delete_parent(pp.kind, &pp.id).await,
                Method::DELETE => Err(GraphError::bad_request(
                    "To remove a certificate reference, DELETE its $ref; to delete the configuration, DELETE it by id.",
                )),
                _ => Err(not_allowed(method, "GET, PATCH, DELETE")),
            },
            Route::CertificateRef(pp) => self.certificate_ref(&ctx, method, pp, body).await,
            Route::Statuses(kind, pp) => match *method {
                Method::GET => self.list_statuses(&ctx, kind, &pp).await,
                Method::POST => self.create_status(&ctx, kind, &pp, body, false).await,
                _ => Err(not_allowed(method, "GET, POST")),
            },
            Route::StatusesRef(kind, pp) => match *method {
                Method::POST => self.create_status(&ctx, kind, &pp, body, true).await,
                _ => Err(not_allowed(method, "POST")),
            },
            Route::StatusesCount(kind, pp) => match *method {
                Method::GET => self.count_statuses(&ctx, kind, &pp).await,
                _ => Err(not_allowed(method, "GET")),
            },
            Route::Status(kind, pp, id) => match *method {
                Method::GET => self.get_status(&ctx, kind, &pp, &id).await,
                Method::PATCH => self.update_status(&ctx, kind, &pp, &id, body).await,
                Method::DELETE => self.delete_status(kind, &pp, &id).await,
                _ => Err(not_allowed(method, "GET, PATCH, DELETE")),
            },
            Route::Overview(kind, pp) => match *method {
                Method::GET => self.get_overview(&ctx, kind, &pp).await,
                _ => Err(GraphError::method_not_allowed_because(
                    method.as_str(),
                    "GET",
                    "the overview is computed from the statuses; change them instead",
                )),
            },
        }
    }

    /// The id a parent path names, following certificate references.
    async fn resolve(&self, pp: &ParentPath) -> Result<String, GraphError> {
        let mut id = pp.id.clone();
        for cert in &pp.via {
            let p = self.service.get_parent(ParentKind::DeviceConfiguration, &id).await?;
            let next = match cert {
                Certificate::Root => p.root_certificate_id,
                Certificate::Identity => p.identity_certificate_id,
            };
            id = next.ok_or_else(|| {
                GraphError::from(Error::NotFound(format!(
                    "{} is not set on deviceConfiguration '{id}'",
                    cert.name()
                )))
            })?;
        }
        Ok(id)
    }

    async fn list_parents(&self, ctx: &Ctx<'_>, kind: ParentKind) -> Result<Response, GraphError> {
        let opts = ctx.options(&json::parent_properties(kind))?;
        let page = self.service.query_parents(kind, &opts.query, DEFAULT_PAGE_SIZE).await?;
        let sel = opts.select.as_deref();
        Ok(list_response(
            ctx,
            &opts,
            ctx.parents_context(kind),
            &page,
            |p: &Parent| json::ParentView {
                kind,
                parent: p,
                select: sel,
                context: None,
            },
        ))
    }

    async fn count_parents(&self, ctx: &Ctx<'_>, kind: ParentKind) -> Result<Response, GraphError> {
        let opts = ctx.options(&json::parent_properties(kind))?;
        let n = self.service.count_parents(kind, opts.query.filter.as_ref()).await?;
        Ok(count_response(n))
    }

    async fn create_parent(&self, ctx: &Ctx<'_>, kind: ParentKind, body: &[u8]) -> Result<Response, GraphError> {
        let obj = json::object(body)?;
        let (parent, _) = json::parent_from_json(kind, ctx.version, &obj)?;
        let created = self.service.create_parent(kind, parent).await?;
        let context = format!("{}/$entity", ctx.parents_context(kind));
        Ok(parent_entity(StatusCode::CREATED, &context, kind, &created, None))
    }

    async fn get_parent(&self, ctx: &Ctx<'_>, pp: &ParentPath) -> Result<Response, GraphError> {
        let opts = ctx.options(&json::parent_properties(pp.kind))?;
        let id = self.resolve(pp).await?;
        let p = self.service.get_parent(pp.kind, &id).await?;
        let context = format!("{}/$entity", ctx.parents_context(pp.kind));
        Ok(parent_entity(
            StatusCode::OK,
            &context,
            pp.kind,
            &p,
            opts.select.as_deref(),
        ))
    }

    async fn update_parent(&self, ctx: &Ctx<'_>, pp: &ParentPath, body: &[u8]) -> Result<Response, GraphError> {
        let id = self.resolve(pp).await?;
        let obj = json::object(body)?;
        let (input, fields) = json::parent_from_json(pp.kind, ctx.version, &obj)?;
        check_same_id(&input.id, &id)?;
        let updated = self.service.update_parent(pp.kind, &id, &input, &fields).await?;
        let context = format!("{}/$entity", ctx.parents_context(pp.kind));
        Ok(parent_entity(StatusCode::OK, &context, pp.kind, &updated, None))
    }

    async fn delete_parent(&self, kind: ParentKind, id: &str) -> Result<Response, GraphError> {
        self.service.delete_parent(kind, id).await?;
        Ok(no_content())
    }

    /// `…/rootCertificate/$ref`: GET reads the reference, PUT (or POST) sets
    /// it from `{"@odata.id": url}`, DELETE clears it.
    async fn certificate_ref(
        &self,
        ctx: &Ctx<'_>,
        method: &Method,
        mut pp: ParentPath,
        body: &[u8],
    ) -> Result<Response, GraphError> {
        let Some(cert) = pp.via.pop() else {
            return Err(GraphError::bad_request("$ref needs a certificate navigation."));
        };
        let owner = self.resolve(&pp).await?;
        let kind = ParentKind::DeviceConfiguration;
        let field = match cert {
            Certificate::Root => "rootCertificateId",
            Certificate::Identity => "identityCertificateId",
        };
        let set = |target: Option<String>| {
            let mut input = Parent::empty();
            match cert {
                Certificate::Root => input.root_certificate_id = target,
                Certificate::Identity => input.identity_certificate_id = target,
            }
            input
        };
        match *method {
            Method::GET => {
                let p = self.service.get_parent(kind, &owner).await?;
                let target = match cert {
                    Certificate::Root => p.root_certificate_id,
                    Certificate::Identity => p.identity_certificate_id,
                };
                let target = target.ok_or_else(|| {
                    GraphError::from(Error::NotFound(format!(
                        "{} is not set on deviceConfiguration '{owner}'",
                        cert.name()
                    )))
                })?;
                // A reference whose target was deleted reads as 404, as its
                // navigation does.
                self.service.get_parent(kind, &target).await?;
                let mut m = Map::new();
                m.insert(
                    "@odata.context".into(),
                    Value::String(format!("{}$ref", ctx.metadata())),
                );
                m.insert("@odata.id".into(), Value::String(ctx.configuration_url(&target)));
                Ok(serialized(StatusCode::OK, &m))
            }
            Method::PUT | Method::POST => {
                let obj = json::object(body)?;
                let url = obj.get("@odata.id").ok_or_else(|| {
                    Error::invalid(
                        "@odata.id",
                        "is required: {\"@odata.id\": \".../deviceConfigurations('{id}')\"}",
                    )
                })?;
                let url = url
                    .as_str()
                    .ok_or_else(|| Error::invalid("@odata.id", "must be a string"))?;
                let target = json::bound_id("@odata.id", url)?;
                self.service
                    .update_parent(kind, &owner, &set(Some(target)), &[field.to_owned()])
                    .await?;
                Ok(no_content())
            }
            Method::DELETE => {
                self.service
                    .update_parent(kind, &owner, &set(None), &[field.to_owned()])
                    .await?;
                Ok(no_content())
            }
            _ => Err(not_allowed(method, "GET, PUT, DELETE")),
        }
    }

    async fn list_statuses(&self, ctx: &Ctx<'_>, kind: StatusKind, pp: &ParentPath) -> Result<Response, GraphError> {
        let opts = ctx.options(&json::status_properties(kind.shape, ctx.version))?;
        let parent_id = self.resolve(pp).await?;
        let page = self
            .service
            .query_statuses(kind, &parent_id, &opts.query, DEFAULT_PAGE_SIZE)
            .await?;
        let sel = opts.select.as_deref();
        let version = ctx.version;
        Ok(list_response(
            ctx,
            &opts,
            ctx.statuses_context(kind, &parent_id),
            &page,
            |s: &Status| json::StatusView {
                kind,
                version,
                status: s,
                select: sel,
                context: None,
            },
        ))
    }

    async fn count_statuses(&self, ctx: &Ctx<'_>, kind: StatusKind, pp: &ParentPath) -> Result<Response, GraphError> {
        let opts = ctx.options(&json::status_properties(kind.shape, ctx.version))?;
        let parent_id = self.resolve(pp).await?;
        let n = self
            .service
            .count_statuses(kind, &parent_id, opts.query.filter.as_ref())
            .await?;
        Ok(count_response(n))
    }

    async fn create_status(
        &self,
        ctx: &Ctx<'_>,
        kind: StatusKind,
        pp: &ParentPath,
        body: &[u8],
        via_ref: bool,
    ) -> Result<Response, GraphError> {
        let obj = json::object(body)?;
        if via_ref && obj.contains_key("@odata.id") {
            return Err(GraphError::bad_request(format!(
                "{} are contained in their parent and cannot be linked by reference: \
                 POST the {} entity itself (to …/{} or …/{}/$ref).",
                kind.segment(),
                kind.entity_name(),
                kind.segment(),
                kind.segment()
            )));
        }
        let (status, _) = json::status_from_json(kind, ctx.version, &obj)?;
        let parent_id = self.resolve(pp).await?;
        let created = self.service.create_status(kind, &parent_id, status).await?;
        let context = format!("{}/$entity", ctx.statuses_context(kind, &parent_id));
        Ok(status_entity(StatusCode::CREATED, &context, ctx, kind, &created, None))
    }

    async fn get_overview(&self, ctx: &Ctx<'_>, kind: StatusKind, pp: &ParentPath) -> Result<Response, GraphError> {
        let schema = ctx.version.overview_schema();
        let props = overview::overview_schema(kind.shape, schema);
        let names: Vec<&str> = props.iter().map(|(n, _)| *n).collect();
        let opts = ctx.options(&names)?;
        let parent_id = self.resolve(pp).await?;
        let overview = self.service.get_overview(kind, &parent_id, schema).await?;
        let context = format!(
            "{}/$entity",
            ctx.navigation_context(kind.parent, &parent_id, kind.overview_segment())
        );
        Ok(serialized(
            StatusCode::OK,
            &json::OverviewView {
                overview: &overview,
                select: opts.select.as_deref(),
                context: &context,
            },
        ))
    }

    async fn get_status(
        &self,
        ctx: &Ctx<'_>,
        kind: StatusKind,
        pp: &ParentPath,
        id: &str,
    ) -> Result<Response, GraphError> {
        let opts = ctx.options(&json::status_properties(kind.shape, ctx.version))?;
        let parent_id = self.resolve(pp).await?;
        let s = self.service.get_status(kind, &parent_id, id).await?;
        let context = format!("{}/$entity", ctx.statuses_context(kind, &parent_id));
        Ok(status_entity(
            StatusCode::OK,
            &context,
            ctx,
            kind,
            &s,
            opts.select.as_deref(),
        ))
    }

    async fn update_status(
        &self,
        ctx: &Ctx<'_>,
        kind: StatusKind,
        pp: &ParentPath,
        id: &str,
        body: &[u8],
    ) -> Result<Response, GraphError> {
        let obj = json::object(body)?;
        let (input, fields) = json::status_from_json(kind, ctx.version, &obj)?;
        check_same_id(&input.id, id)?;
        let parent_id = self.resolve(pp).await?;
        let updated = self
            .service
            .update_status(kind, &parent_id, id, &input.body, &fields)
            .await?;
        let context = format!("{}/$entity", ctx.statuses_context(kind, &parent_id));
        Ok(status_entity(StatusCode::OK, &context, ctx, kind, &updated, None))
    }

    async fn delete_status(&self, kind: StatusKind, pp: &ParentPath, id: &str) -> Result<Response, GraphError> {
        let parent_id = self.resolve(pp).await?;
        self.service.delete_status(kind, &parent_id, id).await?;
        Ok(no_content())
    }
}

fn check_same_id(body_id: &str, path_id: &str) -> Result<(), GraphError> {
    if body_id.is_empty() || body_id == path_id {
        Ok(())
    } else {
        Err(Error::invalid(
            "id",
            format!("'{body_id}' differs from the id in the path ('{path_id}'); ids cannot change"),
        )
        .into())
    }
}

/// A Graph collection response, serialised straight from the records.
struct ListBody<V> {
    context: String,
    count: Option<u64>,
    value: Vec<V>,
    next_link: Option<String>,
}

impl<V: serde::Serialize> serde::Serialize for ListBody<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("@odata.context", &self.context)?;
        if let Some(n) = self.count {
            m.serialize_entry("@odata.count", &n)?;
        }
        m.serialize_entry("value", &self.value)?;
        if let Some(link) = &self.next_link {
            m.serialize_entry("@odata.nextLink", link)?;
        }
        m.end()
    }
}

fn list_response<'a, T, V: serde::Serialize>(
    ctx: &Ctx<'_>,
    opts: &odata::Options,
    context: String,
    page: &'a QueryPage<T>,
    to_view: impl Fn(&'a T) -> V,
) -> Response {
    let body = ListBody {
        context,
        count: page.count,
        value: page.items.iter().map(to_view).collect(),
        next_link: page.next_token.as_ref().map(|t| ctx.next_link(opts, t)),
    };
    serialized(StatusCode::OK, &body)
}
