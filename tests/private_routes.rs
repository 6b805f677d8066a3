//! Verifies that plain HTTP routes behind credentials ask for the same ones
//! as an upgrade, presented the same ways: `/rooms/` whenever credentials
//! are configured, `/metrics` and `/stats` with `private_metrics`; and that
//! the page, its files and `/healthz` stay open, so that a visitor can load
//! the page to give it a token.

use serde_json::json;
use switchboard::{Access, Config, Secret, Token};

use crate::support::{PATIENCE, Reply, TestServer, config, jwt, wait_until};

/// A token signed with the test key for `sub`, expiring `exp_from_now`
/// seconds from now.
fn jwt(sub: &str, exp_from_now: i64) -> String {
    jwt::jwt(json!({ "sub": sub, "exp": jwt::now() + exp_from_now }))
}

/// A server taking the bearer token `letmein` and JWTs signed with [`jwt::KEY`].
fn server(private_metrics: bool) -> TestServer {
    TestServer::start(Config {
        access: Access {
            tokens: vec![Token::new("letmein")],
            jwt_secret: Some(Secret::new(jwt::KEY)),
            private_metrics,
            ..Access::default()
        },
        ..config()
    })
}

/// `method path` with the extra header lines `headers` (each ending in CRLF).
fn request(server: &TestServer, method: &str, path: &str, headers: &str) -> Reply {
    server.http(&format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n"))
}

fn get(server: &TestServer, path: &str, headers: &str) -> Reply {
    request(server, "GET", path, headers)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Asserts that `reply` is the refusal an upgrade without credentials gets
/// (its body, unless it answers a HEAD).
fn assert_credentials_required(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply:?}");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{what}: {reply:?}");
    if !what.starts_with("HEAD") {
        assert_eq!(reply.body.trim(), "credentials required", "{what}");
    }
}

#[test]
fn rooms_ask_for_the_credentials_an_upgrade_asks_for() {
    let server = server(false);
    assert_credentials_required(&get(&server, "/rooms/lobby", ""), "no token");
    assert_credentials_required(&get(&server, "/rooms/lobby", "Authorization: Basic YTpi\r\n"), "Basic");
    assert_credentials_required(&request(&server, "HEAD", "/rooms/lobby", ""), "HEAD");
    // The upgrade is refused alike.
    let upgrade = server.http(&crate::support::raw::upgrade_request("/ws/lobby", ""));
    assert_credentials_required(&upgrade, "the upgrade");

    let wrong = get(&server, "/rooms/lobby", &bearer("nope"));
    assert_eq!((wrong.status, wrong.body.trim()), (403, "invalid credentials"));
    let expired = get(&server, "/rooms/lobby", &bearer(&jwt("alice", -120)));
    assert_eq!((expired.status, expired.body.trim()), (403, "expired credentials"));

    let _member = server.connect("/ws/lobby?access_token=letmein");
    let answered = |headers: &str, path: &str| {
        let reply = get(&server, path, headers);
        assert_eq!(reply.status, 200, "{path} {headers:?}: {reply:?}");
        serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()
    };
    assert!(wait_until(PATIENCE, || answered(&bearer("letmein"), "/rooms/lobby")["members"] == 1));
    // Every way an upgrade may present a token.
    for (headers, path) in [
        (bearer(&jwt("alice", 3600)), "/rooms/lobby"),
        (String::new(), "/rooms/lobby?access_token=letmein"),
        ("Cookie: theme=dark; access_token=letmein\r\n".to_owned(), "/rooms/lobby"),
    ] {
        assert_eq!(answered(&headers, path), json!({ "room": "lobby", "members": 1 }), "{headers:?} {path}");
    }
}

#[test]
fn every_path_under_rooms_asks_before_it_says_whether_it_exists() {
    let server = server(false);
    for path in ["/rooms", "/rooms/", "/rooms/a/b", &format!("/rooms/{}", "x".repeat(200))] {
        assert_credentials_required(&get(&server, path, ""), path);
        assert_eq!(get(&server, path, &bearer("nope")).status, 403, "{path}");
        assert_eq!(get(&server, path, &bearer("letmein")).status, 404, "{path}");
    }
}

#[test]
fn the_page_its_files_and_the_figures_stay_open_unless_made_private() {
    let server = server(false);
    for path in ["/", "/page.js", "/page.css", "/healthz", "/metrics", "/stats"] {
        assert_eq!(get(&server, path, "").status, 200, "{path}");
    }
}

#[test]
fn private_metrics_and_stats_ask_for_credentials_and_healthz_does_not() {
    let server = server(true);
    for path in ["/metrics", "/stats"] {
        assert_credentials_required(&get(&server, path, ""), path);
        assert_credentials_required(&request(&server, "HEAD", path, ""), &format!("HEAD {path}"));
        assert_eq!(get(&server, path, &bearer("nope")).status, 403, "{path}");
        assert_eq!(get(&server, path, &bearer(&jwt("scraper", -120))).status, 403, "{path}");
    }
    // As Prometheus sends it, with `authorization: { credentials_file: ... }`.
    let metrics = get(&server, "/metrics", &bearer("letmein"));
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("switchboard_http_responses_total{status=\"401\"}"), "{}", metrics.body);
    let stats = get(&server, "/stats", &bearer(&jwt("dashboard", 3600)));
    assert_eq!(stats.status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats.body).unwrap();
    assert_eq!(stats["connections_open"], 0, "{stats}");
    for path in ["/healthz", "/", "/page.js"] {
        assert_eq!(get(&server, path, "").status, 200, "{path}");
    }
}

#[test]
fn without_credentials_configured_rooms_answer_anyone() {
    let server = TestServer::start(config());
    let reply = get(&server, "/rooms/lobby", "");
    assert_eq!(reply.status, 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()["members"], 0);
    assert_eq!(get(&server, "/rooms/lobby", &bearer("anything")).status, 200);
}

#[test]
fn private_metrics_without_credentials_are_refused_at_start() {
    let config = Config { access: Access { private_metrics: true, ..Access::default() }, ..config() };
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("access.private_metrics"), "{err}");
}
