//! The Origin check: which web pages may open a WebSocket here.
//!
//! A browser attaches the visitor's cookies to a WebSocket upgrade whatever
//! page starts it, and tells the server which page that is in `Origin`.
//! Checking it is what stops another site from talking to this server as
//! the visitor (cross-site WebSocket hijacking). Clients that are not
//! browsers send no `Origin` and are not affected.

use crate::error::Refusal;
use crate::http::Request;

/// Allows the request when it has no `Origin`, when `allowed` lists its
/// origin (or `*`), or, with an empty list, when it is the same origin as
/// the `Host` it connects to.
pub(crate) fn check(request: &Request, allowed: &[String]) -> Result<(), Refusal> {
    let Some(origin) = request.header("origin").map(str::trim) else {
        return Ok(());
    };
    let permitted = if allowed.is_empty() {
        same_origin(origin, request.header("host").unwrap_or_default())
    } else {
        let origin = as_sent(origin);
        allowed.iter().any(|a| a == "*" || as_sent(a).eq_ignore_ascii_case(origin))
    };
    if permitted { Ok(()) } else { Err(Refusal::forbidden("origin not allowed")) }
}

/// Returns true if and only if `origin` can be listed as allowed: `*`, or
/// an origin as a browser sends it (`scheme://host[:port]`, a `/` at the
/// end forgiven). Anything else (no scheme, a path, a space, a wildcard in
/// the name) could never match one.
pub(crate) fn is_listable(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, authority)) = origin.strip_suffix('/').unwrap_or(origin).split_once("://") else {
        return false;
    };
    let scheme_char = |c: char| c.is_ascii_alphanumeric() || "+-.".contains(c);
    let authority_char = |c: char| c.is_ascii_graphic() && !"/?#@*".contains(c);
    !scheme.is_empty()
        && scheme.chars().all(scheme_char)
        && !authority.is_empty()
        && authority.chars().all(authority_char)
}

/// Returns true if and only if `origin` (`scheme://host[:port]`) names the
/// same host and port as `host` (`host[:port]`). A `Host` without a port
/// matches the origin's default port for its scheme, since a proxy in front
/// may speak a different scheme than the page did.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let Some(default_port) = default_port(scheme) else {
        return false;
    };
    let (origin_host, origin_port) = split_port(authority);
    let (host_host, host_port) = split_port(host.trim());
    let origin_port = origin_port.unwrap_or(default_port);
    origin_host.eq_ignore_ascii_case(host_host)
        && host_port.is_none_or(|port| port == origin_port)
        && (host_port.is_some() || origin_port == default_port)
}

/// An origin as a browser sends it: no `/` at the end, and no port where
/// it is the scheme's default, so that `https://app.example:443` listed
/// matches the `https://app.example` a page there sends.
fn as_sent(origin: &str) -> &str {
    let origin = origin.trim_end_matches('/');
    let Some(port) = origin.split_once("://").and_then(|(scheme, _)| default_port(scheme)) else {
        return origin;
    };
    origin.strip_suffix(port).and_then(|rest| rest.strip_suffix(':')).unwrap_or(origin)
}

/// The port a scheme's origins have when they name none.
fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    }
}

/// `host:port` into its parts, minding IPv6 literals such as `[::1]:9001`.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let port_at = match authority.rfind(']') {
        Some(end) => authority[end..].find(':').map(|i| end + i),
        None => authority.rfind(':'),
    };
    match port_at {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::tests::request;

    fn status(origin: &str, host: &str, allowed: &[&str]) -> u16 {
        let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        let request = request("/ws/a", &[("Origin", origin), ("Host", host)]);
        check(&request, &allowed).map(|()| 200).unwrap_or_else(|r| r.status)
    }

    #[test]
    fn same_origin_is_allowed_by_default() {
        assert_eq!(status("http://localhost:9001", "localhost:9001", &[]), 200);
        assert_eq!(status("https://chat.example.com", "chat.example.com", &[]), 200);
        assert_eq!(status("http://[::1]:9001", "[::1]:9001", &[]), 200);
        assert_eq!(status("HTTP://LocalHost:9001", "localhost:9001", &[]), 200);
    }

    #[test]
    fn other_origins_are_refused_by_default() {
        assert_eq!(status("http://evil.example", "localhost:9001", &[]), 403);
        assert_eq!(status("http://localhost:9002", "localhost:9001", &[]), 403);
        assert_eq!(status("http://localhost:8080", "localhost", &[]), 403);
        assert_eq!(status("null", "localhost:9001", &[]), 403);
    }

    #[test]
    fn no_origin_is_not_a_browser_and_is_allowed() {
        let request = request("/ws/a", &[("Host", "localhost:9001")]);
        assert!(check(&request, &[]).is_ok());
    }

    #[test]
    fn only_what_a_browser_could_send_can_be_listed() {
        for listable in ["*", "https://app.example", "https://app.example/", "http://[::1]:9001", "app://x"] {
            assert!(is_listable(listable), "{listable:?}");
        }
        for never in [
            "chat.example.com",
            "https://app.example/chat",
            "https://*.example.com",
            " https://b.example",
            "https://",
            "://app.example",
            "https://user@app.example",
            "",
        ] {
            assert!(!is_listable(never), "{never:?}");
        }
    }

    #[test]
    fn listed_origins_and_star() {
        assert_eq!(status("https://app.example", "ws.example", &["https://app.example"]), 200);
        assert_eq!(status("https://other.example", "ws.example", &["https://app.example"]), 403);
        assert_eq!(status("https://anything.example", "ws.example", &["*"]), 200);
    }

    #[test]
    fn a_listed_origin_matches_with_or_without_its_default_port() {
        assert_eq!(status("https://app.example", "ws.example", &["https://app.example:443"]), 200);
        assert_eq!(status("http://app.example", "ws.example", &["http://app.example:80/"]), 200);
        assert_eq!(status("https://app.example:443", "ws.example", &["https://app.example"]), 200);
        assert_eq!(status("https://app.example", "ws.example", &["https://app.example:8443"]), 403);
        assert_eq!(status("https://app.example", "ws.example", &["http://app.example:443"]), 403);
        assert_eq!(status("https://[::1]", "ws.example", &["https://[::1]:443"]), 200);
    }
}
