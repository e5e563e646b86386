//! Queries over a collection: filter, order, skip, page and count.
//!
//! Syntax is the edge's business (the REST edge parses OData's `$filter` and
//! `$orderby`); here a parsed query is checked against the entity's schema
//! (unknown properties and ill-typed literals are refused, never ignored) and
//! run against the store.
//!
//! Cost: without `$orderby` a page is read in id order straight from the
//! store, scanning only until the page is full: O(page / selectivity).
//! `$count` streams over the collection once more without keeping records,
//! and only for the first page (no page token): later pages would only repeat
//! the same O(collection) work for a number the client already has.
//! `$orderby` must read every matching record to sort them, so each of its
//! pages costs O(matches) time and memory; it is therefore bounded by
//! [`QueryLimits::max_orderby_matches`], and refused (stopping the scan as soon
//! as the bound is passed) when more records match.
//!
//! Scans yield to the runtime between chunks, so a long one shares the
//! threads with other requests and ends at the request's deadline instead of
//! running on unseen.
//!
//! Page tokens carry the position of the last item (its id, and its sort
//! values under `$orderby`), so paging stays correct while the collection
//! changes: nothing is returned twice, and nothing that existed throughout is
//! skipped. They are bound to the collection and query they continue (see
//! [`super::page`]).

use super::page::{decode_token, encode_token, PageRequest, TokenScope};
use crate::error::{Error, Result};
use crate::model::{ComplianceStatus, DateTime, PropertyType, PropertyValue, Queryable, SortKey};
use std::cmp::Ordering;

/// Records read from the store per step of a scan: a scan yields its thread
/// after each, so this bounds how long a heavy request holds a runtime thread
/// that light requests are waiting for (~0.3 ms for 256 records here).
const SCAN_CHUNK: usize = 256;

/// The default of [`QueryLimits::max_orderby_matches`]: sorting this many
/// status records takes some tens of MiB and well under a second.
pub const DEFAULT_MAX_ORDERBY_MATCHES: usize = 100_000;

/// Server-side bounds on what one query may cost.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Most records an `$orderby` query may match. Sorting needs every
    /// matching record in memory, on every page, so beyond this the query is
    /// refused (INVALID_ARGUMENT / 400) with advice to filter more narrowly
    /// or to page in id order, which has no such bound.
    pub max_orderby_matches: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_orderby_matches: DEFAULT_MAX_ORDERBY_MATCHES,
        }
    }
}

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

    /// The collection this source reads, as page tokens are bound to it
    /// ([`super::page::parents_scope`], [`super::page::statuses_scope`]).
    fn scope(&self) -> String;
}

/// Reads `source` in id order, a chunk at a time, handing each record to
/// `visit` until it returns `false` or the source is exhausted. The first
/// read asks for `first` records (a page needs no more), later ones for
/// [`SCAN_CHUNK`].
///
/// The store's reads complete without ever waiting, so without the
/// `yield_now` between chunks a scan of a large collection would hold its
/// runtime thread to the end: other requests on that thread would stall, and
/// the request deadline (a timer checked only when the request's future is
/// polled again) could not cut it off.
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
        tokio::task::yield_now().await;
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

/// A token that does not fit the query it came with, although its tag did
/// (only a forged token gets here).
fn foreign_position() -> Error {
    Error::invalid("pageToken", "does not continue this list")
}

/// Runs `query` over `source`.
///
/// Without `$orderby` the page is read in id order straight from the source,
/// stopping once it is full; `$count` is a second, streaming pass. With
/// `$orderby` every matching record is read (at most
/// `limits.max_orderby_matches`) and those after the token's position sorted.
/// `$skip` and `$count` apply to the first page only (the one without a
/// token): later pages continue after the token, and `count` is `None` there.
pub async fn run<T: Queryable + Send>(
    schema: &[(&str, PropertyType)],
    query: &Query,
    default_size: usize,
    limits: &QueryLimits,
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
    let collection = source.scope();
    let scope = TokenScope {
        collection: &collection,
        filter: query.filter.as_ref(),
        order_by: &query.order_by,
    };
    let position = decode_token(&scope, query.page.token.as_deref())?;
    let first_page = position.is_none();
    let skip = if first_page { query.skip } else { 0 };
    let want_count = query.count && first_page;
    let matches = |r: &T| filter.as_ref().is_none_or(|f| f.matches(r));
    let order = &query.order_by;

    if order.is_empty() {
        let after = match position {
            None => None,
            Some((keys, id)) if keys.is_empty() => Some(id),
            Some(_) => return Err(foreign_position()),
        };
        let count = match want_count {
            true => Some(count(schema, query.filter.as_ref(), source).await?),
            false => None,
        };
        // Without a filter the first read is exactly what the page needs
        // (saturating: `$skip` may be anything up to usize::MAX).
        let first = match filter {
            None => size.saturating_add(1).saturating_add(skip),
            Some(_) => SCAN_CHUNK,
        };
        let mut skip = skip;
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
        let next_token = match items.last() {
            Some(r) if more => Some(encode_token(&scope, &[], r.id())),
            _ => None,
        };
        return Ok(QueryPage {
            items,
            next_token,
            count,
        });
    }

    // Ordered: every matching record is visited (and counted against the
    // bound); those after the token's position are kept and sorted.
    let after = match position {
        None => None,
        Some((keys, id)) if keys.len() == order.len() => Some((keys, id)),
        Some(_) => return Err(foreign_position()),
    };
    let limit = limits.max_orderby_matches;
    let mut matched: usize = 0;
    let mut keyed: Vec<(Vec<SortKey>, T)> = Vec::new();
    scan(source, None, SCAN_CHUNK, |r| {
        if !matches(&r) {
            return true;
        }
        matched += 1;
        if matched > limit {
            return false;
        }
        let keys = sort_keys(&r, order);
        let later = after
            .as_ref()
            .is_none_or(|(k, id)| compare_position((&keys, r.id()), (k, id), order) == Ordering::Greater);
        if later {
            keyed.push((keys, r));
        }
        true
    })
    .await?;
    if matched > limit {
        return Err(Error::invalid(
            "$orderby",
            format!(
                "more than {limit} records match, the most $orderby sorts (the server's \
                 --max-orderby-matches); narrow the $filter, or leave out $orderby to page \
                 through any number of records in id order"
            ),
        ));
    }
    keyed.sort_by(|a, b| compare_position((&a.0, a.1.id()), (&b.0, b.1.id()), order));
    let mut page: Vec<(Vec<SortKey>, T)> = keyed.into_iter().skip(skip).take(size.saturating_add(1)).collect();
    let more = page.len() > size;
    page.truncate(size);
    let next_token = match page.last() {
        Some((keys, r)) if more => Some(encode_token(&scope, keys, r.id())),
        _ => None,
    };
    Ok(QueryPage {
        items: page.into_iter().map(|(_, r)| r).collect(),
        next_token,
        count: want_count.then_some(matched as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A record with an id and one integer property `n`.
    struct Rec {
        id: String,
        n: i64,
    }

    impl Queryable for Rec {
        fn id(&self) -> &str {
            &self.id
        }

        fn property(&self, name: &str) -> Option<PropertyValue<'_>> {
            match name {
                "id" => Some(PropertyValue::Str(&self.id)),
                "n" => Some(PropertyValue::Int(self.n)),
                _ => None,
            }
        }
    }

    const SCHEMA: [(&str, PropertyType); 2] = [
        ("id", PropertyType::String { nullable: false }),
        ("n", PropertyType::Int32),
    ];

    /// `len` records `r0000000…` with `n` = their index; counts fetches and
    /// notes whether `flag` was already set at the last one.
    struct Synthetic {
        len: usize,
        fetches: AtomicUsize,
        flag: Arc<AtomicBool>,
        flag_seen_at_fetch: AtomicUsize,
    }

    impl Synthetic {
        fn new(len: usize) -> Self {
            Synthetic {
                len,
                fetches: AtomicUsize::new(0),
                flag: Arc::new(AtomicBool::new(false)),
                flag_seen_at_fetch: AtomicUsize::new(0),
            }
        }
    }

    #[async_trait::async_trait]
    impl Source<Rec> for Synthetic {
        async fn fetch(&self, after: Option<String>, limit: usize) -> Result<Vec<Rec>> {
            let n = self.fetches.fetch_add(1, AtomicOrdering::SeqCst) + 1;
            if self.flag.load(AtomicOrdering::SeqCst) && self.flag_seen_at_fetch.load(AtomicOrdering::SeqCst) == 0 {
                self.flag_seen_at_fetch.store(n, AtomicOrdering::SeqCst);
            }
            let start = after.map_or(0, |a| a[1..].parse::<usize>().unwrap_or(0) + 1);
            Ok((start..self.len.min(start + limit))
                .map(|i| Rec {
                    id: format!("r{i:09}"),
                    n: i as i64,
                })
                .collect())
        }

        fn scope(&self) -> String {
            "synthetic".into()
        }
    }

    fn nothing_matches() -> Option<Filter> {
        Some(Filter::Compare("n".into(), CmpOp::Eq, Literal::Number("-1".into())))
    }

    fn order_by_n() -> Vec<OrderKey> {
        vec![OrderKey {
            field: "n".into(),
            descending: true,
        }]
    }

    async fn run_on(source: &Synthetic, query: &Query, limits: &QueryLimits) -> Result<QueryPage<Rec>> {
        run(&SCHEMA, query, 10, limits, source).await
    }

    /// The store's reads never wait, so only the scan's own yield lets the
    /// single runtime thread go elsewhere: another task runs while the scan is
    /// still fetching, and a deadline cuts the scan off.
    #[tokio::test(flavor = "current_thread")]
    async fn a_long_scan_yields_to_other_tasks_and_to_its_deadline() {
        let source = Synthetic::new(50 * SCAN_CHUNK);
        let flag = source.flag.clone();
        tokio::spawn(async move { flag.store(true, AtomicOrdering::SeqCst) });
        let query = Query {
            filter: nothing_matches(),
            ..Query::default()
        };
        let page = run_on(&source, &query, &QueryLimits::default()).await.unwrap();
        assert!(page.items.is_empty());
        let fetches = source.fetches.load(AtomicOrdering::SeqCst);
        let seen = source.flag_seen_at_fetch.load(AtomicOrdering::SeqCst);
        assert!(
            seen > 0 && seen < fetches,
            "the other task ran at fetch {seen} of {fetches}"
        );

        let endless = Synthetic::new(2000 * SCAN_CHUNK);
        let cut = tokio::time::timeout(
            Duration::from_millis(20),
            run_on(&endless, &query, &QueryLimits::default()),
        )
        .await;
        assert!(cut.is_err(), "the deadline passed, so the scan must have been cut off");
        assert!(endless.fetches.load(AtomicOrdering::SeqCst) < 2000);
    }

    #[tokio::test]
    async fn orderby_is_refused_past_its_bound_and_stops_scanning_there() {
        let limits = QueryLimits {
            max_orderby_matches: 10,
        };
        let source = Synthetic::new(5 * SCAN_CHUNK);
        let query = Query {
            order_by: order_by_n(),
            ..Query::default()
        };
        let e = run_on(&source, &query, &limits).await.err().unwrap();
        match e {
            Error::InvalidArgument { field, message } => {
                assert_eq!(field, "$orderby");
                assert!(
                    message.contains("more than 10") && message.contains("$filter") && message.contains("id order"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            source.fetches.load(AtomicOrdering::SeqCst),
            1,
            "stopped in the first chunk"
        );
        // Exactly at the bound is fine, and a filter can bring a query under it.
        let small = Synthetic::new(10);
        assert_eq!(run_on(&small, &query, &limits).await.unwrap().items[0].n, 9);
        let narrowed = Query {
            filter: Some(Filter::Compare("n".into(), CmpOp::Lt, Literal::Number("10".into()))),
            ..query.clone()
        };
        assert_eq!(run_on(&source, &narrowed, &limits).await.unwrap().items.len(), 10);
    }

    #[tokio::test]
    async fn count_is_computed_for_the_first_page_only() {
        for order_by in [vec![], order_by_n()] {
            let source = Synthetic::new(25);
            let mut query = Query {
                order_by,
                count: true,
                ..Query::default()
            };
            let first = run_on(&source, &query, &QueryLimits::default()).await.unwrap();
            assert_eq!(first.count, Some(25));
            query.page.token = first.next_token;
            let before = source.fetches.load(AtomicOrdering::SeqCst);
            let second = run_on(&source, &query, &QueryLimits::default()).await.unwrap();
            assert_eq!(second.items.len(), 10);
            assert_eq!(second.count, None);
            // One scan for the page: no second, counting pass.
            assert_eq!(source.fetches.load(AtomicOrdering::SeqCst) - before, 1);
        }
    }

    #[tokio::test]
    async fn a_huge_skip_saturates_instead_of_overflowing() {
        for order_by in [vec![], order_by_n()] {
            let source = Synthetic::new(30);
            let query = Query {
                order_by,
                skip: usize::MAX,
                ..Query::default()
            };
            let page = run_on(&source, &query, &QueryLimits::default()).await.unwrap();
            assert!(page.items.is_empty() && page.next_token.is_none());
        }
    }

    #[tokio::test]
    async fn a_token_continues_only_its_own_query() {
        let source = Synthetic::new(25);
        let filtered = Query {
            filter: Some(Filter::Compare("n".into(), CmpOp::Ge, Literal::Number("3".into()))),
            ..Query::default()
        };
        let first = run_on(&source, &filtered, &QueryLimits::default()).await.unwrap();
        let token = first.next_token.unwrap();
        let mut same = filtered.clone();
        same.page.token = Some(token.clone());
        let second = run_on(&source, &same, &QueryLimits::default()).await.unwrap();
        assert_eq!(second.items[0].n, 13);
        for other in [
            Query::default(),
            Query {
                order_by: order_by_n(),
                ..filtered.clone()
            },
            Query {
                filter: nothing_matches(),
                ..Query::default()
            },
        ] {
            let q = Query {
                page: PageRequest {
                    size: None,
                    token: Some(token.clone()),
                },
                ..other
            };
            let e = run_on(&source, &q, &QueryLimits::default()).await.err().unwrap();
            assert!(
                matches!(&e, Error::InvalidArgument { field, .. } if field == "pageToken"),
                "{e:?}"
            );
        }
    }
}
