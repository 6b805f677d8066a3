//! The binary's settings from a file (`--config`) and from `SWITCHBOARD_*`
//! variables: precedence, errors that name where a value came from, and
//! `--print-config` read back.

use std::path::PathBuf;

use crate::support::raw::upgrade_status;
use crate::support::{Process, run};

/// A configuration file of this test's own.
fn file(test: &str, contents: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("config-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, contents).unwrap();
    path
}

/// What `--print-config` prints with `args` and `env`.
fn printed(args: &[&str], env: &[(&str, &str)]) -> String {
    let (status, lines, stderr) = run(&[args, &["--print-config"]].concat(), env);
    assert!(status.success(), "{args:?} {env:?}: {stderr}");
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// The line that sets `key`, in a printed configuration.
fn setting<'a>(printed: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    printed
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{key} not set:\n{printed}"))
}

#[test]
fn flags_win_over_variables_which_win_over_the_file() {
    let path = file(
        "precedence",
        "max-connections = 400\nidle-timeout = \"2m\"\nmax-headers = 32\nallow-origin = [\"https://a\", \"https://b\"]\n",
    );
    let path = path.to_str().unwrap();
    let env = [("SWITCHBOARD_MAX_CONNECTIONS", "300"), ("SWITCHBOARD_IDLE_TIMEOUT", "90s")];
    let out = printed(&["--config", path, "--idle-timeout", "70s"], &env);
    assert_eq!(setting(&out, "idle-timeout"), "idle-timeout = \"70s\"");
    assert_eq!(setting(&out, "max-connections"), "max-connections = 300");
    assert_eq!(setting(&out, "max-headers"), "max-headers = 32");
    assert_eq!(setting(&out, "allow-origin"), "allow-origin = [\"https://a\", \"https://b\"]");
    assert!(out.contains("\n# max-head-size = 8192\n"), "{out}");
    // SWITCHBOARD_CONFIG names the file as well; a list in a variable is
    // comma-separated.
    let out =
        printed(&[], &[("SWITCHBOARD_CONFIG", path), ("SWITCHBOARD_ALLOW_ORIGIN", "https://c,https://d")]);
    assert_eq!(setting(&out, "max-headers"), "max-headers = 32");
    assert_eq!(setting(&out, "allow-origin"), "allow-origin = [\"https://c\", \"https://d\"]");
}

#[test]
fn what_print_config_prints_is_read_back_the_same() {
    let tokens = file("print-tokens", "0123456789abcdef0123456789abcdef\n");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--max-lifetime",
        "1h 30m",
        "--trust-proxy",
        "10.0.0.0/8",
        "--auth-token-file",
        tokens.to_str().unwrap(),
        "--redis",
        "redis://app:hunter2@db.example:6379/1",
    ];
    let first = printed(&args, &[("SWITCHBOARD_SUBPROTOCOL", "chat.v1"), ("SWITCHBOARD_SPARE_THREADS", "4")]);
    assert!(!first.contains("hunter2"), "{first}");
    assert_eq!(setting(&first, "redis"), "redis = \"redis://app:***@db.example:6379/1\"");
    let path = file("print-config", &first);
    let second = printed(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(second, first);
}

#[test]
fn an_empty_list_is_printed_empty_and_read_back_the_same() {
    let path = file("empty-lists", "allow-origin = []\ntrust-proxy = []\nsubprotocol = []\n");
    let first = printed(&["--config", path.to_str().unwrap()], &[]);
    for key in ["allow-origin", "trust-proxy", "subprotocol"] {
        assert_eq!(setting(&first, key), format!("{key} = []"));
    }
    let again = file("empty-lists-printed", &first);
    assert_eq!(printed(&["--config", again.to_str().unwrap()], &[]), first);
}

#[test]
fn a_server_takes_its_settings_from_the_file() {
    let tokens = file("serve-tokens", "from-the-file\n");
    let path =
        file("serve", &format!("auth-token-file = {:?}\nmax-connections = 50\n", tokens.to_str().unwrap()));
    let process = Process::start(&["--config", path.to_str().unwrap()]);
    let status = |token: &str| upgrade_status(process.addr, token);
    assert_eq!(status("from-the-file"), "101");
    assert_eq!(status("another"), "403");
}

#[test]
fn errors_name_the_key_and_the_file_or_the_variable() {
    let unknown = file("unknown-key", "max_connections = 4\n");
    let unknown = unknown.to_str().unwrap();
    let (status, _, stderr) = run(&["--config", unknown], &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{unknown}: unknown key `max_connections`")), "{stderr}");

    let wrong_type = file("wrong-type", "max-connections = \"many\"\n");
    let wrong_type = wrong_type.to_str().unwrap();
    let (status, _, stderr) = run(&["--config", wrong_type], &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("'max-connections in {wrong_type}'")), "{stderr}");

    let (status, _, stderr) = run(&[], &[("SWITCHBOARD_MAX_CONNECTIONS", "many")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("'SWITCHBOARD_MAX_CONNECTIONS (environment)'"), "{stderr}");

    // Values that parse, but do not go together, are named as they were given.
    let out_of_range = file("out-of-range", "ping-interval = \"2m\"\n");
    let out_of_range = out_of_range.to_str().unwrap();
    let (status, _, stderr) = run(&["--listen", "127.0.0.1:0", "--config", out_of_range], &[]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains(&format!("ping-interval = \"2m\" in {out_of_range}: must be less than --idle-timeout")),
        "{stderr}"
    );
    let (status, _, stderr) = run(&["--listen", "127.0.0.1:0"], &[("SWITCHBOARD_PING_INTERVAL", "2m")]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SWITCHBOARD_PING_INTERVAL=2m: must be less than --idle-timeout"), "{stderr}");

    let args = ["--listen", "127.0.0.1:0", "--message-burst", "0", "--max-messages-per-sec", "10"];
    let (status, _, stderr) = run(&args, &[]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--message-burst 0: must be at least 1 when --max-messages-per-sec 10 is set"),
        "{stderr}"
    );

    let (status, _, stderr) = run(&["--listen", "127.0.0.1:0"], &[("SWITCHBOARD_REDIS_PASSWORD", "hunter2")]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SWITCHBOARD_REDIS_PASSWORD is set: it needs --redis too"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_timeout_too_long_and_a_certificate_that_is_not_one_are_named_as_given() {
    let (status, _, stderr) = run(&["--listen", "127.0.0.1:0", "--idle-timeout", "31d"], &[]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--idle-timeout 31d: must be at most 30 days"), "{stderr}");

    let not_pem = file("not-a-certificate", "alice some-token\n");
    let not_pem = not_pem.to_str().unwrap();
    let (status, _, stderr) =
        run(&["--listen", "127.0.0.1:0", "--tls-cert", not_pem, "--tls-key", not_pem], &[]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let named = format!("--tls-cert {not_pem} and --tls-key {not_pem}: TLS: no certificate");
    assert!(stderr.contains(&named), "{stderr}");
}

#[test]
fn print_config_refuses_what_the_server_would_refuse() {
    for (args, said) in [
        (&["--tls-key", "key.pem"][..], "--tls-key key.pem: needs --tls-cert too"),
        (&["--ping-interval", "5m"][..], "--ping-interval 5m: must be less than --idle-timeout"),
        (
            &["--auth-token-file", "/nonexistent/tokens"][..],
            "--auth-token-file /nonexistent/tokens: cannot read",
        ),
    ] {
        let (status, lines, stderr) = run(&[args, &["--print-config"]].concat(), &[]);
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(lines.is_empty(), "{args:?} printed {lines:?}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
}

#[test]
fn list_variables_take_spaces_after_commas_and_refuse_names_no_client_could_send() {
    let env = [
        ("SWITCHBOARD_TRUST_PROXY", "10.0.0.0/8, 192.168.0.1"),
        ("SWITCHBOARD_ALLOW_ORIGIN", "https://a, https://b"),
        ("SWITCHBOARD_SUBPROTOCOL", "chat.v1, chat.v2"),
    ];
    let (status, _, stderr) = run(&["--print-config"], &env);
    assert!(status.success(), "{stderr}");
    for subprotocols in ["a b", "chat,,admin"] {
        let (status, _, stderr) =
            run(&["--listen", "127.0.0.1:0"], &[("SWITCHBOARD_SUBPROTOCOL", subprotocols)]);
        assert_eq!(status.code(), Some(1), "{stderr}");
        let said = format!("SWITCHBOARD_SUBPROTOCOL={subprotocols}: must each be an HTTP token");
        assert!(stderr.contains(&said), "{stderr}");
    }
}
