//! OData system query options: `$top`, `$skip`, `$skiptoken`, `$filter`,
//! `$select`, `$orderby`, `$count`.
//!
//! This module is syntax only: it turns the query string into a
//! [`service::Query`](crate::service::Query) plus a `$select` list; the
//! service checks property names and literal types against the schema. An
//! option or construct we do not support is a 400 that says so, never a
//! silently different result.
//!
//! The query string is read as clients write it: `+` is a space (HTML form
//! encoding, which Python `requests` and many others use), `%XX` escapes
//! must decode to UTF-8, option names are case-insensitive (OData 4.01), and
//! under `/beta` (and the beta-shaped `/localtest`) the `$` is optional, as
//! Graph documents for its beta endpoint. Under `/v1.0` a system option
//! written without `$` is refused with a hint, not ignored: ignoring
//! `filter=…` would return the whole collection as if it were filtered. Any
//! other name without `$` is a custom option, which Graph ignores, and so do
//! we.
//!
//! `$filter` grammar (precedence low → high: `or`, `and`, `not`):
//! ```text
//! expr    = and ("or" and)*
//! and     = unary ("and" unary)*
//! unary   = "not" unary | "(" expr ")" | "startswith(" prop "," literal ")" | prop op literal
//! op      = eq | ne | gt | ge | lt | le
//! literal = 'string' ('' escapes a quote) | number | true | false | null
//!         | date-time (unquoted, 2017-01-01T00:00:00Z) | microsoft.graph.complianceStatus'compliant'
//! ```

use super::error::GraphError;
use super::path::ApiVersion;
use crate::service::{CmpOp, Filter, Literal, OrderKey, Query};
use percent_encoding::percent_decode_str;

/// Longest `$filter` accepted, in bytes.
const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses and `not` in a `$filter`.
const MAX_FILTER_DEPTH: usize = 32;

/// OData system query options (names without `$`, lowercase): statusd
/// supports the first seven; the others get a 400 saying so.
const SYSTEM_OPTIONS: [&str; 15] = [
    "top",
    "skip",
    "skiptoken",
    "count",
    "filter",
    "orderby",
    "select",
    "expand",
    "search",
    "format",
    "apply",
    "compute",
    "levels",
    "deltatoken",
    "index",
];

/// The parsed query options of a request.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// What the service runs.
    pub query: Query,
    /// `$select`, if given (and not `*`).
    pub select: Option<Vec<String>>,
    /// The system options as given (decoded; names normalised to `$name`),
    /// minus `$skiptoken`: kept for `@odata.nextLink`.
    pub passthrough: Vec<(String, String)>,
}

/// The system option a query parameter name stands for (lowercase, without
/// `$`), `None` for a custom option; under v1.0 a system option without its
/// `$` is an error.
fn option_name(key: &str, version: ApiVersion) -> Result<Option<String>, GraphError> {
    if let Some(name) = key.strip_prefix('$') {
        return Ok(Some(name.to_ascii_lowercase()));
    }
    let name = key.to_ascii_lowercase();
    if !SYSTEM_OPTIONS.contains(&name.as_str()) {
        return Ok(None); // A custom option: Graph ignores those.
    }
    if version.is_beta() {
        return Ok(Some(name));
    }
    Err(GraphError::bad_request(format!(
        "Query option '{key}' needs its '$' under v1.0: write '${name}' (only /beta accepts system query options without '$')."
    )))
}

/// Parses a raw (percent-encoded) query string of a request under `version`.
pub fn parse(raw: Option<&str>, version: ApiVersion) -> Result<Options, GraphError> {
    let mut o = Options::default();
    let mut seen: Vec<String> = Vec::new();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k)?;
        let value = decode(v)?;
        let Some(name) = option_name(&key, version)? else {
            continue;
        };
        if seen.contains(&name) {
            return Err(GraphError::bad_request(format!(
                "Query option '${name}' was given more than once."
            )));
        }
        seen.push(name.clone());
        match name.as_str() {
            "top" => o.query.page.size = Some(number("$top", &value)?),
            "skip" => o.query.skip = number("$skip", &value)?,
            "skiptoken" => {
                o.query.page.token = Some(value);
                continue;
            }
            "count" => {
                o.query.count = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(GraphError::bad_request("$count must be true or false.")),
                }
            }
            "filter" => o.query.filter = Some(parse_filter(&value)?),
            "orderby" => o.query.order_by = parse_orderby(&value)?,
            "select" => {
                let fields: Vec<String> = value.split(',').map(|s| s.trim().to_owned()).collect();
                if fields.iter().any(String::is_empty) {
                    return Err(GraphError::bad_request("$select has an empty property name."));
                }
                if !fields.iter().any(|f| f == "*") {
                    o.select = Some(fields);
                }
            }
            "expand" | "search" | "format" | "apply" | "compute" | "levels" | "deltatoken" | "index" => {
                return Err(GraphError::bad_request(format!(
                    "Query option '${name}' is not supported by statusd."
                )));
            }
            _ => {
                return Err(GraphError::bad_request(format!(
                    "Query option '${name}' is not a known OData option."
                )))
            }
        }
        o.passthrough.push((format!("${name}"), value));
    }
    if o.query.page.size == Some(0) {
        // $top=0 asks for no items; the service treats 0 as "default", so ask for one and drop it.
        return Err(GraphError::bad_request("$top must be at least 1."));
    }
    Ok(o)
}

/// Decodes one name or value: `+` is a space (form encoding; a literal `+`,
/// as in a date-time offset, is sent as `%2B`), then `%XX` escapes, which
/// must make UTF-8.
fn decode(s: &str) -> Result<String, GraphError> {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| GraphError::bad_request("The query string is not valid UTF-8."))
}

fn number(option: &str, v: &str) -> Result<usize, GraphError> {
    v.parse::<usize>()
        .map_err(|_| GraphError::bad_request(format!("{option} must be a non-negative integer, got '{v}'.")))
}

fn parse_orderby(v: &str) -> Result<Vec<OrderKey>, GraphError> {
    v.split(',')
        .map(|item| {
            let mut words = item.split_whitespace();
            let field = words
                .next()
                .ok_or_else(|| GraphError::bad_request("$orderby has an empty item."))?
                .to_owned();
            let descending = match words.next() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(GraphError::bad_request(format!(
                        "$orderby direction must be asc or desc, got '{other}'."
                    )))
                }
            };
            if words.next().is_some() {
                return Err(GraphError::bad_request(format!("$orderby item '{item}' is malformed.")));
            }
            Ok(OrderKey { field, descending })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Lit(Literal),
    Open,
    Close,
    Comma,
}

fn filter_error(msg: impl std::fmt::Display) -> GraphError {
    GraphError::bad_request(format!("Invalid $filter: {msg}"))
}

fn tokenize(s: &str) -> Result<Vec<Token>, GraphError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '\'' => {
                let (text, next) = quoted(&chars, i)?;
                out.push(Token::Lit(Literal::Str(text)));
                i = next;
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], ':' | '.' | '+' | '-'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let is_number = word
                    .strip_prefix('-')
                    .unwrap_or(&word)
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.');
                out.push(Token::Lit(if is_number {
                    Literal::Number(word)
                } else {
                    Literal::Bare(word)
                }));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '/')) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if chars.get(i) == Some(&'\'') {
                    // A typed literal such as microsoft.graph.complianceStatus'compliant'.
                    let (text, next) = quoted(&chars, i)?;
                    out.push(Token::Lit(Literal::Str(text)));
                    i = next;
                    continue;
                }
                out.push(match word.as_str() {
                    "null" => Token::Lit(Literal::Null),
                    "true" => Token::Lit(Literal::Bool(true)),
                    "false" => Token::Lit(Literal::Bool(false)),
                    _ => Token::Ident(word),
                });
            }
            other => return Err(filter_error(format!("unexpected character '{other}'"))),
        }
    }
    Ok(out)
}

fn quoted(chars: &[char], open: usize) -> Result<(String, usize), GraphError> {
    let mut text = String::new();
    let mut i = open + 1;
    loop {
        match chars.get(i) {
            None => return Err(filter_error("a string literal is not closed")),
            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                text.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((text, i + 1)),
            Some(c) => {
                text.push(*c);
                i += 1;
            }
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// Parses a `$filter` expression.
pub fn parse_filter(s: &str) -> Result<Filter, GraphError> {
    if s.len() > MAX_FILTER_LEN {
        return Err(filter_error(format!("longer than {MAX_FILTER_LEN} bytes")));
    }
    let mut p = Parser {
        tokens: tokenize(s)?,
        pos: 0,
        depth: 0,
    };
    if p.tokens.is_empty() {
        return Err(filter_error("the expression is empty"));
    }
    let f = p.or()?;
    match p.tokens.get(p.pos) {
        None => Ok(f),
        Some(t) => Err(filter_error(format!("unexpected {t:?} after a complete expression"))),
    }
}

impl Parser {
    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Ident(w)) if w == word)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), GraphError> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(filter_error(format!("expected {what}, found {other:?}"))),
        }
    }

    fn or(&mut self) -> Result<Filter, GraphError> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, GraphError> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, GraphError> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(filter_error(format!("nested deeper than {MAX_FILTER_DEPTH} levels")));
        }
        let result = self.unary_inner();
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Filter, GraphError> {
        match self.next() {
            Some(Token::Ident(w)) if w == "not" => Ok(Filter::Not(Box::new(self.unary()?))),
            Some(Token::Open) => {
                let inner = self.or()?;
                self.expect(Token::Close, "')'")?;
                Ok(inner)
            }
            Some(Token::Ident(f)) if f == "startswith" => {
                self.expect(Token::Open, "'(' after startswith")?;
                let Some(Token::Ident(prop)) = self.next() else {
                    return Err(filter_error("startswith needs a property name first"));
                };
                self.expect(Token::Comma, "','")?;
                let Some(Token::Lit(lit)) = self.next() else {
                    return Err(filter_error("startswith needs a literal second"));
                };
                self.expect(Token::Close, "')'")?;
                Ok(Filter::StartsWith(prop, lit))
            }
            Some(Token::Ident(f)) if self.tokens.get(self.pos) == Some(&Token::Open) => Err(filter_error(format!(
                "the function '{f}' is not supported (supported: startswith)"
            ))),
            Some(Token::Ident(prop)) => {
                let op = match self.next() {
                    Some(Token::Ident(op)) => match op.as_str() {
                        "eq" => CmpOp::Eq,
                        "ne" => CmpOp::Ne,
                        "gt" => CmpOp::Gt,
                        "ge" => CmpOp::Ge,
                        "lt" => CmpOp::Lt,
                        "le" => CmpOp::Le,
                        "has" | "in" | "add" | "sub" | "mul" | "div" | "mod" => {
                            return Err(filter_error(format!("the operator '{op}' is not supported")))
                        }
                        other => return Err(filter_error(format!("expected a comparison operator, found '{other}'"))),
                    },
                    other => {
                        return Err(filter_error(format!(
                            "expected a comparison operator after {prop}, found {other:?}"
                        )))
                    }
                };
                match self.next() {
                    Some(Token::Lit(lit)) => Ok(Filter::Compare(prop, op, lit)),
                    other => Err(filter_error(format!(
                        "expected a literal after the operator, found {other:?}"
                    ))),
                }
            }
            Some(Token::Lit(l)) => Err(filter_error(format!(
                "expected a property name, found the literal {l:?} (write the property first: name eq 'value')"
            ))),
            other => Err(filter_error(format!("expected an expression, found {other:?}"))),
        }
    }
}

/// The property names a filter mentions.
pub fn filter_properties(f: &Filter, out: &mut Vec<String>) {
    match f {
        Filter::Compare(p, ..) | Filter::StartsWith(p, _) => out.push(p.clone()),
        Filter::And(a, b) | Filter::Or(a, b) => {
            filter_properties(a, out);
            filter_properties(b, out);
        }
        Filter::Not(a) => filter_properties(a, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precedence_and_literals() {
        let f =
            parse_filter("status eq 'compliant' or not (devicesCount gt 3 and startswith(userPrincipalName,'a''b'))")
                .unwrap();
        let Filter::Or(a, b) = f else { panic!() };
        assert_eq!(
            *a,
            Filter::Compare("status".into(), CmpOp::Eq, Literal::Str("compliant".into()))
        );
        let Filter::Not(inner) = *b else { panic!() };
        let Filter::And(x, y) = *inner else { panic!() };
        assert_eq!(
            *x,
            Filter::Compare("devicesCount".into(), CmpOp::Gt, Literal::Number("3".into()))
        );
        assert_eq!(
            *y,
            Filter::StartsWith("userPrincipalName".into(), Literal::Str("a'b".into()))
        );
        let f = parse_filter("lastReportedDateTime ge 2017-01-01T00:00:00.5+03:00").unwrap();
        assert_eq!(
            f,
            Filter::Compare(
                "lastReportedDateTime".into(),
                CmpOp::Ge,
                Literal::Bare("2017-01-01T00:00:00.5+03:00".into())
            )
        );
        let f = parse_filter("status eq microsoft.graph.complianceStatus'error'").unwrap();
        assert_eq!(
            f,
            Filter::Compare("status".into(), CmpOp::Eq, Literal::Str("error".into()))
        );
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for bad in [
            "",
            "status eq",
            "contains(userName,'a')",
            "'a' eq userName",
            "devicesCount add 1 eq 2",
            "(status eq 'error'",
            "status eq 'error')",
            "userName eq 'open",
            "a eq 1 b",
            &"(".repeat(100),
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_are_decoded_and_checked() {
        let o = parse(
            Some("%24top=5&%24filter=status%20eq%20%27error%27&%24count=true&other=1"),
            ApiVersion::V1,
        )
        .unwrap();
        assert_eq!(o.query.page.size, Some(5));
        assert!(o.query.count && o.query.filter.is_some());
        for bad in [
            "$expand=x",
            "$top=-1",
            "$top=a",
            "$unknown=1",
            "$top=1&$top=2",
            "$count=yes",
        ] {
            assert!(parse(Some(bad), ApiVersion::V1).is_err(), "{bad}");
        }
    }

    #[test]
    fn plus_is_a_space_and_percent_2b_a_plus() {
        let o = parse(
            Some("%24filter=status+eq+%27error%27+and+lastReportedDateTime+ge+2017-01-01T00:00:00%2B01:00"),
            ApiVersion::V1,
        )
        .unwrap();
        let Some(Filter::And(a, b)) = o.query.filter else {
            panic!("{:?}", o.query.filter)
        };
        assert_eq!(
            *a,
            Filter::Compare("status".into(), CmpOp::Eq, Literal::Str("error".into()))
        );
        assert_eq!(
            *b,
            Filter::Compare(
                "lastReportedDateTime".into(),
                CmpOp::Ge,
                Literal::Bare("2017-01-01T00:00:00+01:00".into())
            )
        );
        let o = parse(Some("$select=id,+status"), ApiVersion::V1).unwrap();
        assert_eq!(o.select, Some(vec!["id".to_owned(), "status".to_owned()]));
    }

    #[test]
    fn the_dollar_is_optional_under_beta_and_required_under_v1() {
        for version in [ApiVersion::Beta, ApiVersion::LocalTest] {
            let o = parse(
                Some("top=2&filter=status eq 'error'&orderby=id desc&select=id&count=true&skip=1&skiptoken=t&x=1"),
                version,
            )
            .unwrap();
            assert_eq!(o.query.page.size, Some(2));
            assert!(o.query.filter.is_some() && o.query.count);
            assert_eq!(o.query.order_by.len(), 1);
            assert_eq!(o.select, Some(vec!["id".to_owned()]));
            assert_eq!((o.query.skip, o.query.page.token.as_deref()), (1, Some("t")));
            let names: Vec<&str> = o.passthrough.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(names, ["$top", "$filter", "$orderby", "$select", "$count", "$skip"]);
            // Given twice, with and without '$'.
            assert!(parse(Some("$top=1&top=2"), version).is_err());
            assert!(parse(Some("expand=x"), version).is_err());
        }
        for ok in ["x=1", "api-version=2", "$Top=3"] {
            assert!(parse(Some(ok), ApiVersion::V1).is_ok(), "{ok}");
        }
        for bad in [
            "filter=status eq 'error'",
            "top=1",
            "Select=id",
            "skiptoken=x",
            "expand=x",
        ] {
            let e = parse(Some(bad), ApiVersion::V1).unwrap_err();
            assert!(e.message.contains("needs its '$'"), "{bad}: {}", e.message);
        }
    }
}
