//! Credentials at the handshake: bearer tokens and HS256 JSON Web Tokens,
//! read from a header, a query parameter or a cookie.
//!
//! A token is a password: it is compared in constant time, it is never
//! logged, and it never appears in an answer to the client.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
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

/// A bearer token the server takes, and the name its holder goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The [identity](crate::Request::identity) of the connections the
    /// token opens: a word, with no spaces or control characters. `None`:
    /// `token <n>` for the n-th of [`Access::tokens`], a name that passes
    /// to another token when the list is reordered.
    pub name: Option<String>,
    /// What the client presents.
    pub secret: Secret,
}

impl Token {
    /// A token with no name of its own.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Token { name: None, secret: Secret::new(secret) }
    }

    /// A token whose connections go by `name`.
    pub fn named(name: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Token { name: Some(name.into()), secret: Secret::new(secret) }
    }
}

/// Whether `name` may name a token: a word, so that it reads as one in a
/// log line and never as another's `token <n>`.
pub(crate) fn is_token_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether two of `tokens` hold the same secret: the second's name could
/// never be given.
pub(crate) fn repeats_a_secret(tokens: &[Token]) -> bool {
    sorted(token_digests(tokens)).windows(2).any(|pair| pair[0] == pair[1])
}

/// The name of the query parameter and cookie that may carry a token.
const TOKEN_NAME: &str = "access_token";

/// The claim that names the user when [`Access::jwt_name_claim`] is not set.
const DEFAULT_NAME_CLAIM: &str = "sub";

/// How far a JWT's `exp` and `nbf` may be off, in seconds, for the clocks of
/// the issuer and of this server to disagree: a token is taken from 30 s
/// before its `nbf` to 30 s after its `exp`. Hosts kept by NTP agree to
/// well under a second, but one whose clock drifted, or a client that asks
/// for a token and connects in the same breath to a server a little behind,
/// would otherwise be turned away at random; 30 s covers that, and is small
/// beside the minutes to hours tokens live, so an expired token gains
/// little. (jsonwebtoken's default is 60 s; RFC 7519 asks for "no more than
/// a few minutes".)
const JWT_LEEWAY_SECS: u64 = 30;

/// A token's SHA-256. Its `Debug` output is redacted too: a weak token's
/// digest would help guess it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TokenDigest([u8; 32]);

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest([redacted])")
    }
}

/// The credentials an upgrade must present, built once from [`Access`].
pub(crate) struct Credentials {
    /// The SHA-256 of each configured token, made once at start. What the
    /// client presents is hashed and compared with these, rather than with
    /// the tokens themselves: `subtle` compares byte strings of one length
    /// in constant time, but answers at once when the lengths differ, so
    /// the time taken would tell a client how long a token is. Digests are
    /// always 32 bytes, whatever was presented. Beside each, the identity
    /// its holder goes by.
    token_digests: Vec<(TokenDigest, String)>,
    jwt: Option<Jwt>,
}

/// How a JWT is checked, and the claim that names its holder.
struct Jwt {
    /// The keys taken, the current one first, each with what the
    /// connections it admits stand on (see [`key_digest`]).
    keys: Vec<(DecodingKey, TokenDigest)>,
    validation: Validation,
    name_claim: String,
}

/// Who a client proved to be at the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proof {
    /// A JWT's `sub` (`jwt` without one), or a token's name: see
    /// [`Request::identity`].
    pub(crate) identity: String,
    /// The name a JWT vouches for, from its name claim; `None` for a bearer
    /// token, which names no one.
    pub(crate) verified_name: Option<String>,
    /// When a JWT stops being taken: its `exp` and the leeway. `None` for a
    /// bearer token (a JWT without `exp` is refused).
    pub(crate) expires: Option<SystemTime>,
    /// What the connection stands on: the digest of the bearer token
    /// presented, or of the JWT key that verified the token (see
    /// [`key_digest`]). The connection ends if a reload takes it away.
    pub(crate) credential: TokenDigest,
}

fn digest(token: &[u8]) -> TokenDigest {
    TokenDigest(Sha256::digest(token).into())
}

/// The digest that stands for the JWT key `secret` beside the bearer
/// tokens' (see [`credential_digests`]): a connection admitted with a JWT
/// holds it, so that replacing a leaked key ends the sessions its tokens
/// opened, as taking a token away does. The prefix keeps it apart from a
/// token's digest: only a token that spelled out the prefix and the key
/// together would share it.
fn key_digest(secret: &[u8]) -> TokenDigest {
    TokenDigest(Sha256::new().chain_update(b"jwt key\n").chain_update(secret).finalize().into())
}

/// The digests of the credentials `access` takes, sorted to be searched:
/// each bearer token's, and its JWT key's.
pub(crate) fn credential_digests(access: &Access) -> Vec<TokenDigest> {
    let keys = jwt_keys(access).map(|secret| key_digest(secret.expose()));
    sorted(token_digests(&access.tokens).chain(keys))
}

/// The JWT keys `access` takes, the current one first: the previous ones
/// only beside a current one, which is what `Access::problem` allows.
fn jwt_keys(access: &Access) -> impl Iterator<Item = &Secret> {
    let previous = if access.jwt_secret.is_some() { &access.jwt_previous_secrets[..] } else { &[] };
    access.jwt_secret.iter().chain(previous)
}

fn token_digests(tokens: &[Token]) -> impl Iterator<Item = TokenDigest> + '_ {
    tokens.iter().map(|token| digest(token.secret.expose()))
}

fn sorted(digests: impl Iterator<Item = TokenDigest>) -> Vec<TokenDigest> {
    let mut digests: Vec<TokenDigest> = digests.collect();
    digests.sort_unstable();
    digests
}

impl Credentials {
    /// `None` when no credentials are configured: every upgrade may proceed.
    pub(crate) fn new(access: &Access) -> Option<Self> {
        if !access.requires_credentials() {
            return None;
        }
        let jwt = access.jwt_secret.is_some().then(|| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.leeway = JWT_LEEWAY_SECS;
            // Off by default in jsonwebtoken: a token before its `nbf` would
            // be taken. It is checked when present, and not required.
            validation.validate_nbf = true;
            // With no audience set, jsonwebtoken refuses a token that has
            // one: it was issued for some other service. With one, a token
            // must name it.
            if let Some(audience) = &access.jwt_audience {
                validation.set_audience(&[audience]);
                validation.set_required_spec_claims(&["exp", "aud"]);
            }
            Jwt {
                keys: jwt_keys(access)
                    .map(|secret| (DecodingKey::from_secret(secret.expose()), key_digest(secret.expose())))
                    .collect(),
                validation,
                name_claim: access.jwt_name_claim.clone().unwrap_or_else(|| DEFAULT_NAME_CLAIM.to_owned()),
            }
        });
        let token_digests = (access.tokens.iter().enumerate())
            .map(|(n, token)| {
                let name = token.name.clone().unwrap_or_else(|| format!("token {}", n + 1));
                (digest(token.secret.expose()), name)
            })
            .collect();
        Some(Credentials { token_digests, jwt })
    }

    /// Checks the request's token: who the caller is when it is good, 401
    /// when there is none, 403 when it is wrong, expired, not yet valid, or
    /// a JWT without a name in its name claim.
    pub(crate) fn check(&self, request: &Request) -> Result<Proof, Refusal> {
        let token = presented_token(request).ok_or_else(|| Refusal::unauthorized("credentials required"))?;
        let presented = digest(token.as_bytes());
        if let Some((_, name)) =
            self.token_digests.iter().find(|(d, _)| bool::from(d.0[..].ct_eq(&presented.0[..])))
        {
            return Ok(Proof {
                identity: name.clone(),
                verified_name: None,
                expires: None,
                credential: presented,
            });
        }
        let Some(jwt) = &self.jwt else {
            return Err(Refusal::forbidden("invalid credentials"));
        };
        let (claims, key_digest) = jwt.decode(&token)?;
        let name = claims.get(&jwt.name_claim).and_then(Value::as_str).filter(|name| !name.is_empty());
        let Some(name) = name else {
            return Err(Refusal::forbidden(format!(
                "the token's {:?} claim, which names the user, is missing or not a non-empty string",
                jwt.name_claim
            )));
        };
        let identity = claims.get("sub").and_then(Value::as_str).unwrap_or("jwt");
        let expires = claims.get("exp").and_then(whole_seconds).and_then(|exp| {
            // An `exp` past what a SystemTime holds (a signed token may say
            // anything) is no expiry at all, rather than an overflow.
            UNIX_EPOCH.checked_add(Duration::from_secs(exp.saturating_add(JWT_LEEWAY_SECS)))
        });
        Ok(Proof {
            identity: identity.to_owned(),
            verified_name: Some(name.to_owned()),
            expires,
            credential: key_digest,
        })
    }
}

impl Jwt {
    /// The claims of `token`, checked, and the digest of the key that
    /// signed it; else the refusal of the first key whose signature
    /// matches, or `invalid credentials` when none does.
    fn decode(&self, token: &str) -> Result<(Map<String, Value>, TokenDigest), Refusal> {
        for (key, digest) in &self.keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token.as_bytes(), key, &self.validation) {
                Ok(data) => return Ok((data.claims, *digest)),
                // Another key may have signed it.
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => {}
                Err(e) => return Err(refusal(e.kind(), token)),
            }
        }
        Err(refusal(&ErrorKind::InvalidSignature, token))
    }
}

/// Why a JWT whose signature, dates or audience fail is refused: 403, with
/// what an issuer needs to know to mend its tokens. A forged or garbled
/// token is told no more than that its credentials are invalid.
fn refusal(error: &ErrorKind, token: &str) -> Refusal {
    match error {
        ErrorKind::ExpiredSignature => Refusal::forbidden("expired credentials"),
        ErrorKind::ImmatureSignature => Refusal::forbidden("credentials not yet valid"),
        // `exp` always; `aud` when the server has an audience. jsonwebtoken
        // says a claim is missing when it is there but unreadable too (an
        // `exp` of -1 or 1e300), and has checked the signature by then, so
        // what the token holds may be told.
        ErrorKind::MissingRequiredClaim(claim) if holds_claim(token, claim) => {
            Refusal::forbidden(match claim.as_str() {
                "exp" => "the token's exp claim is not a date: seconds since 1970, from 0 to 2^64 - 1".into(),
                _ => format!("the token's {claim} claim is neither a string nor a list of strings"),
            })
        }
        ErrorKind::MissingRequiredClaim(claim) => {
            Refusal::forbidden(format!("the token has no {claim} claim"))
        }
        ErrorKind::InvalidAudience => Refusal::forbidden("the token is for another audience"),
        _ => Refusal::forbidden("invalid credentials"),
    }
}

/// Whether the payload of `token`, whose signature has been checked, has
/// `claim` at all.
fn holds_claim(token: &str, claim: &str) -> bool {
    jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(token)
        .is_ok_and(|data| data.claims.contains_key(claim))
}

/// A NumericDate claim in whole seconds since the epoch, rounded down (up
/// to a second sooner than the check at the door, which rounds): RFC 7519
/// lets it have a fraction (`1764541234.5`, as issuers that read a
/// floating-point clock write it), and the check at the door takes it.
/// `None` for no date at all (negative, or not a number).
fn whole_seconds(date: &Value) -> Option<u64> {
    match date.as_u64() {
        Some(seconds) => Some(seconds),
        // Casting a float to an integer rounds toward zero and saturates.
        None => date.as_f64().filter(|seconds| *seconds >= 0.0).map(|seconds| seconds as u64),
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("tokens", &self.token_digests.len())
            .field("jwt", &self.jwt.as_ref().map(|jwt| &jwt.name_claim))
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
        // Form encoding reads `+` as a space, but a token never holds a
        // space (RFC 6750's b64token) and base64 tokens hold `+`: a client
        // that puts one in the URL as it is means the `+` itself.
        let query = request.query()?.replace('+', "%2B");
        form_urlencoded::parse(query.as_bytes())
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
    // An empty one is no token: the next place may hold one.
    let given = |token: &Cow<'_, str>| !token.is_empty();
    bearer.filter(given).or_else(|| query().filter(given)).or_else(|| cookie().filter(given))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::tests::request;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn credentials() -> Credentials {
        Credentials::new(&Access {
            tokens: vec![Token::new("first"), Token::new("s3cret")],
            jwt_secret: Some(Secret::new("jwt key")),
            ..Access::default()
        })
        .unwrap()
    }

    fn now() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
    }

    /// A token signed with `key` holding `claims`, and an `exp` an hour
    /// ahead unless `claims` has one.
    fn signed(key: &str, claims: serde_json::Value) -> String {
        let mut claims = claims;
        claims.as_object_mut().unwrap().entry("exp").or_insert(serde_json::json!(now() + 3600));
        encode(&Header::default(), &claims, &EncodingKey::from_secret(key.as_bytes())).unwrap()
    }

    fn jwt(key: &str, exp_from_now: i64, sub: &str) -> String {
        signed(key, serde_json::json!({ "sub": sub, "exp": now() + exp_from_now }))
    }

    /// What `c` says of `token` presented in the query string.
    fn check_query(c: &Credentials, token: &str) -> Result<Proof, Refusal> {
        c.check(&request(&format!("/ws/a?access_token={token}"), &[]))
    }

    fn identity(result: Result<Proof, Refusal>) -> String {
        result.unwrap().identity
    }

    fn status(result: Result<Proof, Refusal>) -> u16 {
        result.map(|_| 200).unwrap_or_else(|r| r.status)
    }

    #[test]
    fn token_is_read_from_header_query_and_cookie() {
        let c = credentials();
        assert_eq!(identity(c.check(&request("/ws/a", &[("Authorization", "Bearer s3cret")]))), "token 2");
        assert_eq!(identity(c.check(&request("/ws/a?x=1&access_token=s3cret", &[]))), "token 2");
        assert_eq!(identity(c.check(&request("/ws/a?access_token=s3cr%65t", &[]))), "token 2");
        assert_eq!(
            identity(c.check(&request("/ws/a", &[("Cookie", "theme=dark; access_token=first")]))),
            "token 1"
        );
    }

    #[test]
    fn a_named_token_keeps_its_name_wherever_it_stands() {
        let c = Credentials::new(&Access {
            tokens: vec![Token::new("first"), Token::named("prometheus", "scrape"), Token::new("third")],
            ..Access::default()
        })
        .unwrap();
        assert_eq!(identity(check_query(&c, "scrape")), "prometheus");
        assert_eq!(identity(check_query(&c, "third")), "token 3", "an unnamed one goes by its place");
        let c = Credentials::new(&Access {
            tokens: vec![Token::named("prometheus", "scrape")],
            ..Access::default()
        })
        .unwrap();
        assert_eq!(identity(check_query(&c, "scrape")), "prometheus");
    }

    #[test]
    fn a_token_name_is_a_word_and_a_secret_is_held_once() {
        for good in ["alice", "prometheus-eu", "ops@example.com", "Zoë"] {
            assert!(is_token_name(good), "{good:?}");
        }
        for bad in ["", "token 1", "tab\there", "bell\u{7}"] {
            assert!(!is_token_name(bad), "{bad:?}");
        }
        let twice = [Token::named("a", "same"), Token::new("other"), Token::named("b", "same")];
        assert!(repeats_a_secret(&twice));
        assert!(!repeats_a_secret(&twice[..2]));
    }

    #[test]
    fn a_plus_in_the_query_is_a_plus_encoded_or_not() {
        let c =
            Credentials::new(&Access { tokens: vec![Token::new("a+b/c==")], ..Access::default() }).unwrap();
        assert_eq!(identity(check_query(&c, "a+b/c==")), "token 1");
        assert_eq!(identity(check_query(&c, "a%2Bb%2Fc%3D%3D")), "token 1");
        assert_eq!(status(check_query(&c, "a%20b/c==")), 403, "a space is no plus");
    }

    #[test]
    fn missing_is_401_and_wrong_is_403() {
        let c = credentials();
        assert_eq!(status(c.check(&request("/ws/a", &[]))), 401);
        assert_eq!(status(c.check(&request("/ws/a", &[("Authorization", "Basic abc")]))), 401);
        assert_eq!(status(c.check(&request("/ws/a", &[("Authorization", "Bearer nope")]))), 403);
    }

    #[test]
    fn a_token_of_another_length_is_refused_and_an_equal_one_accepted() {
        let c = credentials();
        for other in ["s3cre", "s3crett", "S3CRET", "s3cret-and-then-some", "x"] {
            assert_eq!(status(check_query(&c, other)), 403, "{other:?}");
        }
        assert_eq!(
            check_query(&c, "s3cret").unwrap(),
            Proof {
                identity: "token 2".into(),
                verified_name: None,
                expires: None,
                credential: digest(b"s3cret")
            }
        );
    }

    #[test]
    fn jwt_is_checked_for_signature_and_expiry() {
        let c = credentials();
        let good = jwt("jwt key", 60, "alice");
        assert_eq!(identity(check_query(&c, &good)), "alice");
        let expired = jwt("jwt key", -60, "alice");
        let refusal = check_query(&c, &expired).unwrap_err();
        assert_eq!((refusal.status, refusal.reason.as_ref()), (403, "expired credentials"));
        let forged = jwt("other key", 60, "mallory");
        assert_eq!(status(check_query(&c, &forged)), 403);
    }

    /// The status and reason of a refusal.
    fn refused(result: Result<Proof, Refusal>) -> (u16, String) {
        let refusal = result.unwrap_err();
        (refusal.status, refusal.reason.into_owned())
    }

    #[test]
    fn a_jwt_must_have_an_exp() {
        let claims = serde_json::json!({ "sub": "alice" });
        let forever = encode(&Header::default(), &claims, &EncodingKey::from_secret(b"jwt key")).unwrap();
        assert_eq!(
            refused(check_query(&credentials(), &forever)),
            (403, "the token has no exp claim".into())
        );
    }

    #[test]
    fn a_jwt_signed_with_a_previous_key_is_taken_and_stands_on_that_key() {
        let c = Credentials::new(&Access {
            jwt_secret: Some(Secret::new("new key")),
            jwt_previous_secrets: vec![Secret::new("old key")],
            ..Access::default()
        })
        .unwrap();
        let new = check_query(&c, &jwt("new key", 60, "alice")).unwrap();
        let old = check_query(&c, &jwt("old key", 60, "bob")).unwrap();
        assert_eq!((new.identity.as_str(), old.identity.as_str()), ("alice", "bob"));
        assert_eq!(new.credential, key_digest(b"new key"));
        assert_eq!(old.credential, key_digest(b"old key"));
        // Told what is wrong with it by the key that signed it.
        assert_eq!(
            refused(check_query(&c, &jwt("old key", -3600, "bob"))),
            (403, "expired credentials".into())
        );
        assert_eq!(
            refused(check_query(&c, &jwt("other key", 60, "eve"))),
            (403, "invalid credentials".into())
        );
    }

    #[test]
    fn a_jwt_whose_exp_is_not_a_date_is_told_so() {
        let not_a_date = "the token's exp claim is not a date: seconds since 1970, from 0 to 2^64 - 1";
        for exp in [serde_json::json!(-1), serde_json::json!(1e300), serde_json::json!("tomorrow")] {
            let token = signed("jwt key", serde_json::json!({ "sub": "alice", "exp": exp }));
            assert_eq!(refused(check_query(&credentials(), &token)), (403, not_a_date.into()), "exp {exp}");
            // Told nothing of its claims unless signed with the key.
            let forged = signed("other key", serde_json::json!({ "sub": "alice", "exp": exp }));
            assert_eq!(refused(check_query(&credentials(), &forged)), (403, "invalid credentials".into()));
        }
    }

    #[test]
    fn a_jwt_with_an_audience_must_name_the_servers() {
        let for_us = signed("jwt key", serde_json::json!({ "sub": "alice", "aud": "switchboard" }));
        let among = signed("jwt key", serde_json::json!({ "sub": "alice", "aud": ["api", "switchboard"] }));
        let for_others = signed("jwt key", serde_json::json!({ "sub": "alice", "aud": "api" }));
        let for_anyone = jwt("jwt key", 60, "alice");
        let elsewhere = (403, "the token is for another audience".to_owned());
        // A server that names no audience takes only tokens that name none.
        let c = credentials();
        assert_eq!(refused(check_query(&c, &for_us)), elsewhere);
        assert_eq!(identity(check_query(&c, &for_anyone)), "alice");
        let c = Credentials::new(&Access {
            jwt_secret: Some(Secret::new("jwt key")),
            jwt_audience: Some("switchboard".into()),
            ..Access::default()
        })
        .unwrap();
        assert_eq!(identity(check_query(&c, &for_us)), "alice");
        assert_eq!(identity(check_query(&c, &among)), "alice");
        assert_eq!(refused(check_query(&c, &for_others)), elsewhere);
        assert_eq!(refused(check_query(&c, &for_anyone)), (403, "the token has no aud claim".into()));
        let garbled = signed("jwt key", serde_json::json!({ "sub": "alice", "aud": 7 }));
        assert_eq!(
            refused(check_query(&c, &garbled)),
            (403, "the token's aud claim is neither a string nor a list of strings".into())
        );
    }

    #[test]
    fn an_empty_bearer_token_lets_the_cookie_speak() {
        let request = request("/ws/a", &[("Authorization", "Bearer "), ("Cookie", "access_token=s3cret")]);
        assert_eq!(identity(credentials().check(&request)), "token 2");
    }

    #[test]
    fn jwt_before_its_nbf_is_refused_beyond_the_leeway() {
        let c = credentials();
        let leeway = JWT_LEEWAY_SECS as i64;
        let tomorrow = signed("jwt key", serde_json::json!({ "sub": "alice", "nbf": now() + 86_400 }));
        let refusal = check_query(&c, &tomorrow).unwrap_err();
        assert_eq!((refusal.status, refusal.reason.as_ref()), (403, "credentials not yet valid"));
        let just_past = signed("jwt key", serde_json::json!({ "sub": "alice", "nbf": now() + leeway + 60 }));
        assert_eq!(status(check_query(&c, &just_past)), 403);
        let skewed = signed("jwt key", serde_json::json!({ "sub": "alice", "nbf": now() + 5 }));
        assert_eq!(identity(check_query(&c, &skewed)), "alice");
        let started = signed("jwt key", serde_json::json!({ "sub": "alice", "nbf": now() - 60 }));
        assert_eq!(identity(check_query(&c, &started)), "alice");
    }

    #[test]
    fn a_jwt_is_good_until_its_exp_and_the_leeway() {
        let c = credentials();
        let exp = now() + 60;
        let token = signed("jwt key", serde_json::json!({ "sub": "alice", "exp": exp }));
        let until = UNIX_EPOCH + Duration::from_secs((exp + JWT_LEEWAY_SECS as i64) as u64);
        assert_eq!(check_query(&c, &token).unwrap().expires, Some(until));
        assert_eq!(check_query(&c, "s3cret").unwrap().expires, None, "a bearer token does not expire");
    }

    #[test]
    fn a_jwt_whose_exp_has_a_fraction_expires_too() {
        let c = credentials();
        let exp = now() + 60;
        for date in [serde_json::json!(exp as f64 + 0.5), serde_json::json!(exp as f64)] {
            let token = signed("jwt key", serde_json::json!({ "sub": "alice", "exp": date }));
            let until = UNIX_EPOCH + Duration::from_secs((exp + JWT_LEEWAY_SECS as i64) as u64);
            assert_eq!(check_query(&c, &token).unwrap().expires, Some(until), "exp {date}");
        }
    }

    #[test]
    fn jwt_with_an_exp_past_any_clock_is_admitted_without_an_expiry() {
        let c = credentials();
        let token = signed("jwt key", serde_json::json!({ "sub": "alice", "exp": u64::MAX }));
        assert_eq!(check_query(&c, &token).unwrap().expires, None);
    }

    #[test]
    fn jwt_expiry_has_the_same_leeway() {
        let c = credentials();
        let leeway = JWT_LEEWAY_SECS as i64;
        assert_eq!(identity(check_query(&c, &jwt("jwt key", -5, "alice"))), "alice");
        assert_eq!(status(check_query(&c, &jwt("jwt key", -leeway - 60, "alice"))), 403);
    }

    #[test]
    fn jwt_vouches_for_the_name_in_its_name_claim() {
        let c = credentials();
        let proof = check_query(&c, &jwt("jwt key", 60, "alice")).unwrap();
        assert_eq!((proof.identity.as_str(), proof.verified_name.as_deref()), ("alice", Some("alice")));

        let by_name = Credentials::new(&Access {
            jwt_secret: Some(Secret::new("jwt key")),
            jwt_name_claim: Some("preferred_username".into()),
            ..Access::default()
        })
        .unwrap();
        let token = signed("jwt key", serde_json::json!({ "sub": "u-17", "preferred_username": "Alice" }));
        let proof = check_query(&by_name, &token).unwrap();
        assert_eq!((proof.identity.as_str(), proof.verified_name.as_deref()), ("u-17", Some("Alice")));
    }

    #[test]
    fn jwt_without_its_name_claim_as_a_string_is_403() {
        let c = credentials();
        for claims in [
            serde_json::json!({}),
            serde_json::json!({ "sub": 17 }),
            serde_json::json!({ "sub": "" }),
            serde_json::json!({ "name": "alice" }),
        ] {
            let refusal = check_query(&c, &signed("jwt key", claims.clone())).unwrap_err();
            assert_eq!(refusal.status, 403, "{claims}");
            assert!(refusal.reason.contains("\"sub\" claim"), "{claims}: {}", refusal.reason);
        }
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
