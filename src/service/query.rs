//! Queries over a collection: filter, order, skip, page and count.
//!
//! Syntax is the edge's business (the REST edge parses OData's `$filter` and
//! `$orderby`); here a parsed query is checked against the entity's schema
//! (unknown properties and ill-typed literals are refused, never ignored) and
//! run against the store.
//!
//! Cost: without `$orderby` a page is read in id order straight from the
//! store, scanning only until the page is full: O(page / selectivity).
//! `$count` streams over the collection once more without keeping records;
//! `$orderby` reads and sorts every matching record, so such a page costs
//! O(collection) time and memory. Page tokens carry the position of the last
//! item (its id, and its sort values under `$orderby`), so paging stays
//! correct while the collection changes: nothing is returned twice, and
//! nothing that existed throughout is skipped.

use super::page::{encode_token, PageRequest};
use crate::error::{Error, Result};
use crate::model::{ComplianceStatus, DateTime, PropertyType, PropertyValue, Queryable, SortKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::cmp::Ordering;

/// Records read from the store per step of a scan.
const SCAN_CHUNK: usize = 1000;

/// A literal as written in a filter, before it is typed against the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written.
    Number(String),
    /// A quoted string (quotes removed, `''` unescaped).
    Str(String),
    /// An unquoted token such as a date-time `2017-01-01T00:00:00Z`.
    Bare(String),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `eq`.
    Eq,
    /// `ne`.
    Ne,
    /// `gt`.
    Gt,
    /// `ge`.
    Ge,
    /// `lt`.
    Lt,
    /// `le`.
    Le,
}

/// A filter expression over property names.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `property op literal`.
    Compare(String, CmpOp, Literal),
    /// `startswith(property, 'prefix')`.
    StartsWith(String, Literal),
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
    /// `not a`.
    Not(Box<Filter>),
}

/// One `$orderby` key.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    /// Property name.
    pub field: String,
    /// `desc`.
    pub descending: bool,
}

/// A query over one collection.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only records matching this.
    pub filter: Option<Filter>,
    /// Sort keys; the id is always the final tie-breaker.
    pub order_by: Vec<OrderKey>,
    /// Records to skip before the first page (ignored once a page token is given).
    pub skip: usize,
    /// Page size and token.
    pub page: PageRequest,
    /// Whether to count every matching record.
    pub count: bool,
}

/// A page of query results.
#[derive(Debug, Clone)]
pub struct QueryPage<T> {
    /// The records of this page.
    pub items: Vec<T>,
    /// Token of the next page, `None` on the last.
    pub next_token: Option<String>,
    /// The number of matching records, when asked for.
    pub count: Option<u64>,
}

/// A literal typed against the property it is compared with.
#[derive(Debug, Clone)]
enum Typed {
    Null,
    Str(String),
    Int(i64),
    DateTime(DateTime),
    Status(ComplianceStatus),
}

impl Typed {
    fn as_value(&self) -> PropertyValue<'_> {
        match self {
            Typed::Null => PropertyValue::Null,
            Typed::Str(s) => PropertyValue::Str(s),
            Typed::Int(i) => PropertyValue::Int(*i),
            Typed::DateTime(t) => PropertyValue::DateTime(*t),
            Typed::Status(s) => PropertyValue::Status(*s),
        }
    }
}

/// A filter checked against a schema.
#[derive(Debug, Clone)]
pub struct BoundFilter(Node);

#[derive(Debug, Clone)]
enum Node {
    Compare(String, CmpOp, Typed),
    StartsWith(String, String),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
}

const FILTER: &str = "$filter";

fn property_type(schema: &[(&str, PropertyType)], name: &str, option: &str) -> Result<PropertyType> {
    schema.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).ok_or_else(|| {
        let names: Vec<&str> = schema.iter().map(|(n, _)| *n).collect();
        Error::invalid(
            option,
            format!("'{name}' is not a property here; properties: {}", names.join(", ")),
        )
    })
}

fn type_literal(name: &str, ty: PropertyType, lit: &Literal) -> Result<Typed> {
    let bad = |what: &str| Error::invalid(FILTER, format!("{name} is {what}; cannot compare it with {lit:?}"));
    match (ty, lit) {
        (PropertyType::String { nullable: true }, Literal::Null) => Ok(Typed::Null),
        (PropertyType::String { .. }, Literal::Str(s)) => Ok(Typed::Str(s.clone())),
        (PropertyType::String { .. }, _) => Err(bad("a string (quote the literal: 'text')")),
        (PropertyType::Int32, Literal::Number(n)) => n
            .parse::<i32>()
            .map(|i| Typed::Int(i64::from(i)))
            .map_err(|_| Error::invalid(FILTER, format!("{name} is an Int32; '{n}' is not one"))),
        (PropertyType::Int32, _) => Err(bad("an Int32")),
        (PropertyType::DateTime, Literal::Bare(s) | Literal::Str(s)) => DateTime::parse(s)
            .map(Typed::DateTime)
            .map_err(|e| Error::invalid(FILTER, format!("'{s}' is not a date-time: {e}"))),
        (PropertyType::DateTime, _) => Err(bad("a date-time (write it unquoted: 2017-01-01T00:00:00Z)")),
        (PropertyType::ComplianceStatus, Literal::Str(s)) => {
            ComplianceStatus::from_graph_name(s).map(Typed::Status).ok_or_else(|| {
                Error::invalid(
                    FILTER,
                    format!("'{s}' is not a complianceStatus; values: {}", ComplianceStatus::names()),
                )
            })
        }
        (PropertyType::ComplianceStatus, _) => Err(bad("a complianceStatus (quote the value: 'compliant')")),
        (PropertyType::Opaque, _) => Err(Error::invalid(FILTER, format!("filtering on {name} is not supported"))),
    }
}

impl Filter {
    /// Checks property names and literal types against `schema`.
    pub fn bind(&self, schema: &[(&str, PropertyType)]) -> Result<BoundFilter> {
        self.bind_node(schema).map(BoundFilter)
    }

    fn bind_node(&self, schema: &[(&str, PropertyType)]) -> Result<Node> {
        Ok(match self {
            Filter::Compare(name, op, lit) => {
                let ty = property_type(schema, name, FILTER)?;
                let typed = type_literal(name, ty, lit)?;
                if matches!(typed, Typed::Null) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                    return Err(Error::invalid(FILTER, "null can only be compared with eq or ne"));
                }
                Node::Compare(name.clone(), *op, typed)
            }
            Filter::StartsWith(name, lit) => {
                let ty = property_type(schema, name, FILTER)?;
                match (ty, lit) {
                    (PropertyType::String { .. }, Literal::Str(prefix)) => {
                        Node::StartsWith(name.clone(), prefix.clone())
                    }
                    _ => {
                        return Err(Error::invalid(
                            FILTER,
                            format!("startswith needs a string property and a quoted string; got {name} and {lit:?}"),
                        ))
                    }
                }
            }
            Filter::And(a, b) => Node::And(Box::new(a.bind_node(schema)?), Box::new(b.bind_node(schema)?)),
            Filter::Or(a, b) => Node::Or(Box::new(a.bind_node(schema)?), Box::new(b.bind_node(schema)?)),
            Filter::Not(a) => Node::Not(Box::new(a.bind_node(schema)?)),
        })
    }
}

impl BoundFilter {
    /// Whether `record` matches.
    pub fn matches(&self, record: &impl Queryable) -> bool {
        self.0.matches(record)
    }
}

impl Node {
    fn matches(&self, r: &impl Queryable) -> bool {
        match self {
            Node::Compare(name, op, lit) => {
                let value = r.property(name).unwrap_or(PropertyValue::Null);
                let lit = lit.as_value();
                match op {
                    CmpOp::Eq => value == lit,
                    CmpOp::Ne => value != lit,
                    _ => match value.compare(&lit) {
                        None => false,
                        Some(o) => match op {
                            CmpOp::Gt => o == Ordering::Greater,
                            CmpOp::Ge => o != Ordering::Less,
                            CmpOp::Lt => o == Ordering::Less,
                            _ => o != Ordering::Greater,
                        },
                    },
                }
            }
            Node::StartsWith(name, prefix) => {
                matches!(r.property(name), Some(PropertyValue::Str(s)) if s.starts_with(prefix.as_str()))
            }
            Node::And(a, b) => a.matches(r) && b.matches(r),
            Node::Or(a, b) => a.matches(r) || b.matches(r),
            Node::Not(a) => !a.matches(r),
        }
    }
}

/// Where a page starts: after this id, or after this sort position.
enum Cursor {
    Start,
    AfterId(String),
    AfterPosition(Vec<SortKey>, String),
}

const ORDERED_TOKEN_PREFIX: &str = "o.";

fn decode_cursor(page: &PageRequest) -> Result<Cursor> {
    let Some(token) = page.token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(Cursor::Start);
    };
    if let Some(rest) = token.strip_prefix(ORDERED_TOKEN_PREFIX) {
        let bad = || Error::invalid("pageToken", "is not a token this server issued");
        let bytes = URL_SAFE_NO_PAD.decode(rest).map_err(|_| bad())?;
        let (keys, id): (Vec<SortKey>, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        return Ok(Cursor::AfterPosition(keys, id));
    }
    Ok(page.after()?.map_or(Cursor::Start, Cursor::AfterId))
}

fn encode_position(keys: Vec<SortKey>, id: &str) -> String {
    let json = serde_json::to_vec(&(keys, id)).unwrap_or_default();
    format!("{ORDERED_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
}

fn sort_keys(r: &impl Queryable, order: &[OrderKey]) -> Vec<SortKey> {
    order
        .iter()
        .map(|k| r.property(&k.field).unwrap_or(PropertyValue::Null).sort_key())
        .collect()
}

fn compare_position(a: (&[SortKey], &str), b: (&[SortKey], &str), order: &[OrderKey]) -> Ordering {
    for ((x, y), key) in a.0.iter().zip(b.0).zip(order) {
        let o = x.cmp(y);
        let o = if key.descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.1.cmp(b.1)
}

/// A collection that can be read in id order, a chunk at a time.
#[async_trait::async_trait]
pub trait Source<T>: Sync {
    /// Up to `limit` records after `after`, in id order.
    async fn fetch(&self, after: Option<String>, limit: usize) -> Result<Vec<T>>;
}

/// Reads `source` in id order, a chunk at a time, handing each record to
/// `visit` until it returns `false` or the source is exhausted. The first
/// read asks for `first` records (a page needs no more), later ones for
/// [`SCAN_CHUNK`].
async fn scan<T>(
    source: &dyn Source<T>,
    mut after: Option<String>,
    first: usize,
    mut visit: impl FnMut(T) -> bool,
) -> Result<()>
where
    T: Queryable + Send,
{
    let mut want = first.clamp(1, SCAN_CHUNK);
    loop {
        let chunk = source.fetch(after.clone(), want).await?;
        let done = chunk.len() < want;
        want = SCAN_CHUNK;
        for r in chunk {
            after = Some(r.id().to_owned());
            if !visit(r) {
                return Ok(());
            }
        }
        if done {
            return Ok(());
        }
    }
}

/// Binds a filter (if any) against the schema.
fn bind(schema: &[(&str, PropertyType)], filter: Option<&Filter>) -> Result<Option<BoundFilter>> {
    filter.map(|f| f.bind(schema)).transpose()
}

/// Counts the records of `source` that match `filter`, without keeping them.
pub async fn count<T: Queryable + Send>(
    schema: &[(&str, PropertyType)],
    filter: Option<&Filter>,
    source: &dyn Source<T>,
) -> Result<u64> {
    let filter = bind(schema, filter)?;
    let mut n = 0;
    scan(source, None, SCAN_CHUNK, |r| {
        if filter.as_ref().is_none_or(|f| f.matches(&r)) {
            n += 1;
        }
        true
    })
    .await?;
    Ok(n)
}

/// Runs `query` over `source`.
///
/// Without `$orderby` the page is read in id order straight from the source,
/// stopping once it is full; `$count` is a second, streaming pass. With
/// `$orderby` every matching record is read and sorted.
pub async fn run<T: Queryable + Send>(
    schema: &[(&str, PropertyType)],
    query: &Query,
    default_size: usize,
    source: &dyn Source<T>,
) -> Result<QueryPage<T>> {
    let filter = bind(schema, query.filter.as_ref())?;
    for key in &query.order_by {
        if property_type(schema, &key.field, "$orderby")? == PropertyType::Opaque {
            return Err(Error::invalid(
                "$orderby",
                format!("ordering by {} is not supported", key.field),
            ));
        }
    }
    let size = query.page.size(default_size)?;
    let cursor = decode_cursor(&query.page)?;
    let matches = |r: &T| filter.as_ref().is_none_or(|f| f.matches(r));
    let mut skip = if matches!(cursor, Cursor::Start) { query.skip } else { 0 };
    let count = match query.count {
        true => Some(count(schema, query.filter.as_ref(), source).await?),
        false => None,
    };
    let order = &query.order_by;

    if order.is_empty() {
        let after = match cursor {
            Cursor::Start => None,
            Cursor::AfterId(id) => Some(id),
            Cursor::AfterPosition(..) => {
                return Err(Error::invalid("pageToken", "belongs to a query with $orderby"));
            }
        };
        // Without a filter the first read is exactly what the page needs.
        let first = if filter.is_none() { size + 1 + skip } else { SCAN_CHUNK };
        let mut items = Vec::new();
        scan(source, after, first, |r| {
            if !matches(&r) {
                return true;
            }
            if skip > 0 {
                skip -= 1;
                return true;
            }
            items.push(r);
            items.len() <= size
        })
        .await?;
        let more = items.len() > size;
        items.truncate(size);
        let next_token = more.then(|| items.last().map(|r| encode_token(r.id()))).flatten();
        return Ok(QueryPage {
            items,
            next_token,
            count,
        });
    }

    // Ordered: every matching record, sorted by the keys, then by id.
    let mut keyed: Vec<(Vec<SortKey>, T)> = Vec::new();
    scan(source, None, SCAN_CHUNK, |r| {
        if matches(&r) {
            keyed.push((sort_keys(&r, order), r));
        }
        true
    })
    .await?;
    keyed.sort_by(|a, b| compare_position((&a.0, a.1.id()), (&b.0, b.1.id()), order));
    let start = match &cursor {
        Cursor::Start => 0,
        Cursor::AfterPosition(keys, id) if keys.len() == order.len() => {
            keyed.partition_point(|(k, r)| compare_position((k, r.id()), (keys, id), order) != Ordering::Greater)
        }
        _ => return Err(Error::invalid("pageToken", "belongs to a query with another $orderby")),
    };
    let mut page: Vec<(Vec<SortKey>, T)> = keyed.into_iter().skip(start + skip).take(size + 1).collect();
    let more = page.len() > size;
    page.truncate(size);
    let next_token = match page.last() {
        Some((keys, r)) if more => Some(encode_position(keys.clone(), r.id())),
        _ => None,
    };
    Ok(QueryPage {
        items: page.into_iter().map(|(_, r)| r).collect(),
        next_token,
        count,
    })
}
