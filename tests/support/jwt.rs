//! JSON Web Tokens for tests: HS256, signed with one key.

use serde_json::{Value, json};

/// The key every test server that takes JWTs is given.
pub const KEY: &str = "jwt-key";

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A token signed with [`KEY`], holding `claims` and an `exp` an hour
/// ahead unless `claims` has one.
pub fn jwt(claims: Value) -> String {
    let mut claims = claims;
    claims.as_object_mut().unwrap().entry("exp").or_insert(json!(now() + 3600));
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap()
}
