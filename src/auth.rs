//! Credentials at the handshake: bearer tokens and HS256 JSON Web Tokens,
//! read from a header, a query parameter or a cookie.
//!
//! A token is a password: it is compared in constant time, it is never
//! logged, and it never appears in an answer to the client.

use std::borrow::Cow;
use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::Access;
use crate::error::Refusal;
use crate::http::Request;

/// A token or a key. Its `Debug` output is redacted, so a logged
/// [`Config`](crate::Config) never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The name of the query parameter and cookie that may carry a token.
const TOKEN_NAME: &str = "access_token";

/// The credentials an upgrade must present, built once from [`Access`].
pub(crate) struct Credentials {
    tokens: Vec<Secret>,
    jwt: Option<(DecodingKey, Validation)>,
}

/// The claims read from a JWT; `exp` is required and checked by `Validation`.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
}

impl Credentials {
    /// `None` when no credentials are configured: every upgrade may proceed.
    pub(crate) fn new(access: &Access) -> Option<Self> {
        if access.tokens.is_empty() && access.jwt_secret.is_none() {
            return None;
        }
        let jwt = access.jwt_secret.as_ref().map(|secret| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.leeway = 0;
            (DecodingKey::from_secret(secret.expose()), validation)
        });
        Some(Credentials { tokens: access.tokens.clone(), jwt })
    }

    /// Checks the request's token: the caller's identity when it is good (a
    /// JWT's `sub`, or `token <n>` for the n-th configured token), 401 when
    /// there is none, 403 when it is wrong or expired.
    pub(crate) fn check(&self, request: &Request) -> Result<String, Refusal> {
        let token = presented_token(request).ok_or_else(|| Refusal::unauthorized("credentials required"))?;
        if let Some(n) = self.tokens.iter().position(|t| bool::from(t.expose().ct_eq(token.as_bytes()))) {
            return Ok(format!("token {}", n + 1));
        }
        let Some((key, validation)) = &self.jwt else {
            return Err(Refusal::forbidden("invalid credentials"));
        };
        match jsonwebtoken::decode::<Claims>(token.as_bytes(), key, validation) {
            Ok(data) => Ok(data.claims.sub.unwrap_or_else(|| "jwt".into())),
            Err(e) if *e.kind() == ErrorKind::ExpiredSignature => {
                Err(Refusal::forbidden("expired credentials"))
            }
            Err(_) => Err(Refusal::forbidden("invalid credentials")),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("tokens", &self.tokens.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

/// The token the client presents: `Authorization: Bearer`, else the
/// `access_token` query parameter, else the `access_token` cookie.
fn presented_token(request: &Request) -> Option<Cow<'_, str>> {
    let bearer = request.header("authorization").and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| Cow::Borrowed(token.trim()))
    });
    let query = || {
        form_urlencoded::parse(request.query()?.as_bytes())
            .find(|(name, _)| name == TOKEN_NAME)
            .map(|(_, value)| Cow::Owned(value.into_owned()))
    };
    let cookie = || {
        request.headers().filter(|(name, _)| name.eq_ignore_ascii_case("cookie")).find_map(|(_, value)| {
            value.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == TOKEN_NAME).then(|| Cow::Borrowed(value.trim_matches('"')))
            })
        })
    };
    bearer.or_else(query).or_else(cookie).filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::tests::request;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn credentials() -> Credentials {
        Credentials::new(&Access {
            tokens: vec![Secret::new("first"), Secret::new("s3cret")],
            jwt_secret: Some(Secret::new("jwt key")),
            ..Access::default()
        })
        .unwrap()
    }

    fn jwt(key: &str, exp_from_now: i64, sub: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let claims = serde_json::json!({ "sub": sub, "exp": now + exp_from_now });
        encode(&Header::default(), &claims, &EncodingKey::from_secret(key.as_bytes())).unwrap()
    }

    fn status(result: Result<String, Refusal>) -> u16 {
        result.map(|_| 200).unwrap_or_else(|r| r.status)
    }

    #[test]
    fn token_is_read_from_header_query_and_cookie() {
        let c = credentials();
        assert_eq!(c.check(&request("/ws/a", &[("Authorization", "Bearer s3cret")])).unwrap(), "token 2");
        assert_eq!(c.check(&request("/ws/a?x=1&access_token=s3cret", &[])).unwrap(), "token 2");
        assert_eq!(c.check(&request("/ws/a?access_token=s3cr%65t", &[])).unwrap(), "token 2");
        assert_eq!(
            c.check(&request("/ws/a", &[("Cookie", "theme=dark; access_token=first")])).unwrap(),
            "token 1"
        );
    }

    #[test]
    fn missing_is_401_and_wrong_is_403() {
        let c = credentials();
        assert_eq!(status(c.check(&request("/ws/a", &[]))), 401);
        assert_eq!(status(c.check(&request("/ws/a", &[("Authorization", "Basic abc")]))), 401);
        assert_eq!(status(c.check(&request("/ws/a", &[("Authorization", "Bearer nope")]))), 403);
    }

    #[test]
    fn jwt_is_checked_for_signature_and_expiry() {
        let c = credentials();
        let good = jwt("jwt key", 60, "alice");
        assert_eq!(c.check(&request(&format!("/ws/a?access_token={good}"), &[])).unwrap(), "alice");
        let expired = jwt("jwt key", -60, "alice");
        let refusal = c.check(&request(&format!("/ws/a?access_token={expired}"), &[])).unwrap_err();
        assert_eq!((refusal.status, refusal.reason.as_ref()), (403, "expired credentials"));
        let forged = jwt("other key", 60, "mallory");
        assert_eq!(status(c.check(&request(&format!("/ws/a?access_token={forged}"), &[]))), 403);
    }

    #[test]
    fn nothing_configured_means_no_credentials_needed() {
        assert!(Credentials::new(&Access::default()).is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret([redacted])");
        assert!(!format!("{:?}", credentials()).contains("s3cret"));
    }
}
