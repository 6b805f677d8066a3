//! The Redis URL as the log shows it: with every password in it replaced by `***`.
//!
//! The redis crate (1.2) reads a password from two places: the userinfo of
//! a TCP URL (`redis://user:pass@host`), and the `pass` query parameter of
//! a Unix-socket URL (`redis+unix:///run/redis.sock?db=0&user=app&pass=…`),
//! whose name it percent-decodes, as a form does (`p%61ss=` is `pass`).
//! What is redacted here is wider than that, so that another version of the
//! crate, or an operator who writes `?password=` or `?PASS=`, does not put
//! a password in the log: the userinfo password of any scheme, and the value
//! of every query parameter named `pass` or `password`, in any case.
//!
//! The URL is parsed with the crate's own parser, so that the redacted
//! parts are the ones the crate reads. A URL that does not parse is not
//! shown at all: there is no telling where a password would be in it.
//!
//! A password can also reach the log inside an error: a server's answer
//! to `AUTH` may quote what it was sent. [`Passwords::scrub`] takes every
//! password of the URL, as written and decoded, out of such text.

use std::borrow::Cow;

/// What a URL that does not parse is shown as.
const UNPARSEABLE: &str = "(a Redis URL that does not parse; not shown)";

/// Returns true if and only if a query parameter of this name, once
/// decoded, may hold a password.
pub(super) fn is_password_parameter(name: &str) -> bool {
    name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password")
}

/// A Redis URL as it may be shown in a log or an error: every password in
/// it (the userinfo's, and the `pass` or `password` query parameter's, in
/// any case) replaced by `***`. A URL that does not parse is not shown at
/// all, as there is no telling where a password would be in it.
///
/// ```
/// assert_eq!(switchboard::redact_redis_url("redis://app:hunter2@db:6379"), "redis://app:***@db:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(mut parsed) = redis::parse_redis_url(url) else {
        return UNPARSEABLE.to_owned();
    };
    if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
        return UNPARSEABLE.to_owned();
    }
    if let Some(query) = parsed.query() {
        let redacted: Vec<Cow<'_, str>> = query
            .split('&')
            .map(|pair| match form_urlencoded::parse(pair.as_bytes()).next() {
                Some((name, _)) if is_password_parameter(&name) => {
                    let raw_name = pair.split_once('=').map_or(pair, |(name, _)| name);
                    Cow::Owned(format!("{raw_name}=***"))
                }
                _ => Cow::Borrowed(pair),
            })
            .collect();
        let redacted = redacted.join("&");
        parsed.set_query(Some(&redacted));
    }
    parsed.into()
}

/// Every password a Redis URL holds, in each spelling a log line could
/// show it: as written, and decoded. Its `Debug` output shows how many.
#[derive(Default)]
pub(crate) struct Passwords(Vec<String>);

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passwords([{} redacted])", self.0.len())
    }
}

impl Passwords {
    /// The passwords in `url`, wherever [`redact_url`] would hide one.
    pub(crate) fn in_url(url: &str) -> Self {
        let mut found = Vec::new();
        if let Some(parsed) = redis::parse_redis_url(url) {
            if let Some(password) = parsed.password() {
                found.push(password.to_owned());
                found.extend(percent_decoded(password));
            }
            for pair in parsed.query().unwrap_or_default().split('&') {
                if let Some((name, value)) = form_urlencoded::parse(pair.as_bytes()).next() {
                    if is_password_parameter(&name) {
                        found.push(value.into_owned());
                        found.extend(pair.split_once('=').map(|(_, raw)| raw.to_owned()));
                    }
                }
            }
        }
        let mut passwords = Passwords(found);
        passwords.tidy();
        passwords
    }

    /// Adds a password given apart from the URL.
    pub(crate) fn add(&mut self, password: &str) {
        self.0.push(password.to_owned());
        self.tidy();
    }

    /// Drops empty and repeated passwords, and puts the longest first, so
    /// that a password holding another is hidden whole rather than left in
    /// pieces around the shorter one.
    fn tidy(&mut self) {
        self.0.retain(|password| !password.is_empty());
        self.0.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.0.dedup();
    }

    /// `text` with every password replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |text, password| text.replace(password.as_str(), "***"))
    }
}

/// `text` with its `%XX` escapes decoded, when that changes it and gives UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    // form_urlencoded also turns `+` into a space, which userinfo does not:
    // protect the pluses first, as `%2B`.
    let pair = format!("x={}", text.replace('+', "%2B"));
    let (_, decoded) = form_urlencoded::parse(pair.as_bytes()).next()?;
    (decoded != text).then(|| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_passwords_are_redacted() {
        assert_eq!(redact_url("redis://:hunter2@db:6379/0"), "redis://:***@db:6379/0");
        assert_eq!(redact_url("redis://app:hunter2@db"), "redis://app:***@db");
        assert_eq!(redact_url("redis://app:hun%40ter2@db"), "redis://app:***@db");
        assert_eq!(
            redact_url("unix://app:hunter2@localhost/run/redis.sock"),
            "unix://app:***@localhost/run/redis.sock"
        );
    }

    #[test]
    fn urls_without_passwords_are_shown_as_they_are() {
        assert_eq!(redact_url("redis://db:6379"), "redis://db:6379");
        assert_eq!(redact_url("redis://app@db:6379/2"), "redis://app@db:6379/2");
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1&user=app"),
            "redis+unix:///run/redis.sock?db=1&user=app"
        );
    }

    #[test]
    fn query_passwords_are_redacted_in_any_order_and_case() {
        let cases = [
            (
                "redis+unix:///p.sock?db=0&user=app&pass=hunter2",
                "redis+unix:///p.sock?db=0&user=app&pass=***",
            ),
            ("redis+unix:///p.sock?pass=hunter2&db=0", "redis+unix:///p.sock?pass=***&db=0"),
            ("unix:///p.sock?password=hunter2", "unix:///p.sock?password=***"),
            (
                "redis+unix:///p.sock?PASS=hunter2&Password=hunter3",
                "redis+unix:///p.sock?PASS=***&Password=***",
            ),
            ("redis+unix:///p.sock?p%61ss=hunter%32", "redis+unix:///p.sock?p%61ss=***"),
            ("redis+unix:///p.sock?pass=hunter2&pass=hunter3", "redis+unix:///p.sock?pass=***&pass=***"),
            ("redis+unix:///p.sock?pass=hun=ter2", "redis+unix:///p.sock?pass=***"),
            ("redis+unix:///p.sock?pass", "redis+unix:///p.sock?pass=***"),
            (
                "redis://db:6379/0?password=hunter2&protocol=resp3",
                "redis://db:6379/0?password=***&protocol=resp3",
            ),
            ("redis://:hunter2@db/?pass=hunter3", "redis://:***@db/?pass=***"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn what_redis_reads_is_what_is_redacted() {
        // The crate reads the password of a socket URL from `pass`, with the
        // name decoded; and these URLs are ones it takes.
        for url in
            ["redis+unix:///path.sock?db=0&user=app&pass=hunter2", "redis+unix:///path.sock?p%61ss=hunter2"]
        {
            let info = redis::IntoConnectionInfo::into_connection_info(url).unwrap();
            assert_eq!(info.redis_settings().password(), Some("hunter2"), "{url}");
            assert!(!redact_url(url).contains("hunter2"));
        }
        let info = redis::IntoConnectionInfo::into_connection_info("redis://app:hunter%32@db").unwrap();
        assert_eq!(info.redis_settings().password(), Some("hunter2"));
        assert!(!redact_url("redis://app:hunter%32@db").contains("hunter"));
    }

    #[test]
    fn unparseable_urls_are_not_shown() {
        assert_eq!(redact_url("redis://app:hunter2@[db"), UNPARSEABLE);
        assert_eq!(redact_url("http://app:hunter2@db"), UNPARSEABLE);
        assert_eq!(redact_url("hunter2"), UNPARSEABLE);
    }

    #[test]
    fn passwords_are_scrubbed_from_text_as_written_and_decoded() {
        let passwords = Passwords::in_url("redis://app:hunter%32+x@db/?password=s%65cret");
        let text = "ERR AUTH hunter%32+x hunter2+x failed; also secret and s%65cret";
        assert_eq!(passwords.scrub(text), "ERR AUTH *** *** failed; also *** and ***");
        let passwords = Passwords::in_url("redis+unix:///p.sock?db=0&user=app&pass=hunter2");
        assert_eq!(passwords.scrub("no such user app with hunter2"), "no such user app with ***");
        assert_eq!(Passwords::in_url("redis://db:6379").scrub("Connection refused"), "Connection refused");
        assert!(!format!("{passwords:?}").contains("hunter2"));
    }
}
