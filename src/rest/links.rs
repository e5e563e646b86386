//! The base URL of the links statusd writes into responses
//! (`@odata.context`, `@odata.nextLink`, `@odata.id`).
//!
//! Graph's links are absolute, so the server must know how clients reach it.
//! Taking that from the request's `Host` header as it comes would let a
//! client (or anything that can set a header on its way, such as a cache key
//! poisoning attempt) make the server emit links to another site:
//! `Host: a@attacker.test` turns `http://{host}/…` into a URL whose host is
//! `attacker.test`. So, in order:
//!
//! 1. `--public-url`, when configured (the right choice behind a proxy);
//! 2. the request's `Host` (or HTTP/2 `:authority`), only when it is a plain
//!    `host[:port]`: a DNS name, an IPv4 address or a bracketed IPv6
//!    address, and an optional numeric port;
//! 3. otherwise the address the server listens on.

use axum::http::{header, HeaderMap, Uri};
use std::net::SocketAddr;

/// Where links point.
#[derive(Debug, Clone)]
pub struct Links {
    /// `--public-url`, already checked and without a trailing slash.
    public_url: Option<String>,
    /// `http` or, when the listener serves TLS, `https`.
    scheme: &'static str,
    /// The listening address, for requests without a plain `Host`.
    listen: SocketAddr,
}

impl Links {
    /// Links based on `public_url` if given, else on the request's `Host`
    /// when plain, else on `listen`.
    pub fn new(public_url: Option<String>, listen: SocketAddr) -> Self {
        Links {
            public_url,
            scheme: "http",
            listen,
        }
    }

    /// Links without `--public-url` use `https` when the listener serves TLS:
    /// a link a client follows must reach the same listener it came from.
    pub fn over_tls(mut self, tls: bool) -> Self {
        self.scheme = if tls { "https" } else { "http" };
        self
    }

    /// The base URL (scheme and authority, no trailing slash) for a request.
    pub fn base(&self, headers: &HeaderMap, uri: &Uri) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        match host {
            Some(h) if is_plain_authority(h) => format!("{}://{h}", self.scheme),
            _ => format!("{}://{}", self.scheme, self.listen),
        }
    }
}

/// Whether `s` is `host[:port]` and nothing more: a DNS name or IPv4 address
/// (letters, digits, `-`, `.`), or an IPv6 address in brackets, then an
/// optional port of 1–5 digits (at most 65535). No user info, path, spaces
/// or percent-escapes.
pub fn is_plain_authority(s: &str) -> bool {
    let (host_ok, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let Some((v6, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after {
                "" => None,
                a => match a.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return false,
                },
            };
            (v6.parse::<std::net::Ipv6Addr>().is_ok(), port)
        }
        None => match s.split_once(':') {
            Some((h, p)) => (is_host_name(h), Some(p)),
            None => (is_host_name(s), None),
        },
    };
    host_ok
        && port.is_none_or(|p| {
            (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        })
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits and
/// inner hyphens, at most 253 bytes.
fn is_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_plain_authorities_pass() {
        for good in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "statusd.example.com",
            "graph-local.test:65535",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::7]:443",
        ] {
            assert!(is_plain_authority(good), "{good}");
        }
        for bad in [
            "",
            "a@attacker.test",
            "user:pw@attacker.test",
            "attacker.test/path",
            "attacker.test?x",
            "attacker.test#x",
            "host:",
            "host:65536",
            "host:80:80",
            "host:8x",
            "ho st",
            "%61ttacker.test",
            "[::1",
            "[::1]x",
            "[not-v6]:80",
            "-bad.test",
            "a..b",
            "exa_mple.test",
            ":80",
        ] {
            assert!(!is_plain_authority(bad), "{bad}");
        }
    }

    #[test]
    fn the_base_prefers_the_public_url_then_a_plain_host_then_the_listener() {
        let listen: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        let uri: Uri = "/v1.0/x".parse().unwrap();
        let with_host = |h: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_static(h));
            m
        };
        let public = Links::new(Some("https://statusd.example.com".into()), listen);
        assert_eq!(
            public.base(&with_host("localhost:1"), &uri),
            "https://statusd.example.com"
        );
        let plain = Links::new(None, listen);
        assert_eq!(plain.base(&with_host("localhost:1"), &uri), "http://localhost:1");
        assert_eq!(plain.base(&with_host("a@attacker.test"), &uri), "http://127.0.0.1:9999");
        assert_eq!(plain.base(&HeaderMap::new(), &uri), "http://127.0.0.1:9999");
        let h2: Uri = "http://h2.test:8080/v1.0/x".parse().unwrap();
        assert_eq!(plain.base(&HeaderMap::new(), &h2), "http://h2.test:8080");
        let tls = Links::new(None, listen).over_tls(true);
        assert_eq!(tls.base(&with_host("localhost:1"), &uri), "https://localhost:1");
        assert_eq!(tls.base(&with_host("a@attacker.test"), &uri), "https://127.0.0.1:9999");
    }
}
