//! The `portcullis` binary: `check-config` exit codes and messages, `keys generate`, and
//! `user create` feeding a server that then accepts the login.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::harness::TestServer;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

#[test]
fn check_config_names_the_bad_key_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"http://x\"\n\
         [[routes]]\nname = \"b\"\nprefix = \"/b\"\nupstream = \"http://x\"\n\
         [[routes]]\nname = \"c\"\nprefix = \"/c\"\nupstream = \"htp://x\"\n",
    )
    .unwrap();
    let out = bin().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[2].upstream: \"htp://x\" is not an http(s) URL"),
        "{stderr}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"http://x\"\n",
    )
    .unwrap();
    let out = bin().arg("check-config").arg(&good).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.path().join("portcullis-data").exists(),
        "check-config touches nothing"
    );

    // A route an earlier one makes unreachable: both are named.
    let shadowed = dir.path().join("shadowed.toml");
    std::fs::write(
        &shadowed,
        "[[routes]]\nname = \"api\"\nprefix = \"/api\"\nupstream = \"http://x\"\n\
         [[routes]]\nname = \"admin\"\nprefix = \"/api/admin\"\nroles = [\"admin\"]\nupstream = \"http://x\"\n",
    )
    .unwrap();
    let out = bin().arg("check-config").arg(&shadowed).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[1]: ")
            && stderr.contains("\"admin\"")
            && stderr.contains("\"api\""),
        "{stderr}"
    );
    // No routes at all, and an identity header that would reframe the request.
    for (name, text) in [
        ("empty.toml", "[server]\nlisten = \"127.0.0.1:0\"\n"),
        (
            "framing.toml",
            "[identity_headers]\nuser_id = \"Content-Length\"\n[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"http://x\"\n",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = bin().arg("check-config").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{name}");
    }

    let out = bin()
        .arg("check-config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn usage_errors_exit_64_and_name_the_variable() {
    for args in [
        &["bogus"][..],
        &["check-config"][..],
        &["serve", "--nope"][..],
    ] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
    }
    let out = bin().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = bin()
        .arg("check-config")
        .arg("config/example.toml")
        .env("PORTCULLIS_SERVER__LISTN", "0.0.0.0:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PORTCULLIS_SERVER__LISTN (server.listn): unknown field"),
        "{stderr}"
    );
}

/// `portcullis serve` on 127.0.0.1:0 with its data in `dir`, the configuration's `rest`,
/// the default log filter and stderr piped.
fn serve_in(dir: &std::path::Path, rest: &str) -> std::process::Child {
    let config = dir.join("serve.toml");
    let d = dir.display();
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndatabase_url = \"sqlite://{d}/p.db\"\n\
             [tokens]\nkey_dir = \"{d}\"\n{rest}"
        ),
    )
    .unwrap();
    bin()
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env_remove("PORTCULLIS_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `serve` logging to a pipe (a container's log collector): plain text, no colour codes.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_in(
        dir.path(),
        "[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:9\"\n",
    );
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.contains(" WARN ") || first.contains(" INFO "),
        "{first}"
    );
    assert!(!first.contains('\u{1b}'), "{first:?}");
}

/// `serve` with the default access log, in JSON: one line per request on stderr, written
/// by the log's own thread, with the path but never the query or a credential; a route with
/// `access_log = false` gets none.
#[test]
fn the_access_log_has_one_json_line_per_request() {
    use std::io::{BufRead as _, Read as _};
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_in(
        dir.path(),
        "[log]\nformat = \"json\"\n\
         [[routes]]\nname = \"a\"\nprefix = \"/a\"\nauth = \"public\"\n\
         upstream = \"http://127.0.0.1:9\"\n\
         [[routes]]\nname = \"quiet\"\nprefix = \"/quiet\"\nauth = \"public\"\n\
         upstream = \"http://127.0.0.1:9\"\naccess_log = false\n",
    );
    let (lines_tx, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
            if lines_tx.send(value).is_err() {
                return;
            }
        }
    });
    let next = || {
        lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap()
    };
    let port = loop {
        let line = next();
        if line["fields"]["message"] == "portcullis listening" {
            let listen = line["fields"]["listen"].as_str().unwrap().to_string();
            break listen.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        }
    };
    let get = |target: &str| {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let req = format!("GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    };
    // Not logged: the first access line below is the next request's.
    assert!(get("/quiet/x").starts_with("HTTP/1.1 502"));
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(
        b"GET /a/x?token=sekrit HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer sekrit\r\n\
          X-Request-Id: from-the-client\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let access = loop {
        let line = next();
        if line["target"] == "portcullis::access" {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let fields = &access["fields"];
    assert_eq!(fields["method"], "GET", "{access}");
    assert_eq!(fields["path"], "/a/x");
    assert_eq!(fields["status"], 502);
    assert_eq!(fields["route"], "a");
    assert!(fields["micros"].as_u64().is_some());
    assert!(
        fields["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(!access.to_string().contains("sekrit"), "{access}");
}

/// Each crate's features, as `cargo tree` resolves them with or without dev-dependencies.
fn resolved_features(edges: &str) -> std::collections::BTreeMap<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "--prefix",
            "none",
            "--no-dedupe",
        ])
        .args(["-e", edges, "-f", "{p}|{f}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut features = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((package, f)) = line.split_once('|') {
            let package = package.split(" (").next().unwrap_or(package).to_string();
            let entry: &mut String = features.entry(package).or_default();
            if f.len() > entry.len() {
                *entry = f.to_string();
            }
        }
    }
    features
}

/// The binary alone and the examples (which bring the dev-dependencies) resolve every
/// shared crate with the same features, so `cargo run --release` after the quickstart
/// reuses its artifacts instead of rebuilding for minutes (the pins in Cargo.toml).
#[test]
fn the_binary_and_the_examples_share_their_dependencies() {
    let alone = resolved_features("no-dev");
    let with_dev = resolved_features("normal,build,dev");
    let differ: Vec<String> = alone
        .iter()
        .filter(|(package, f)| with_dev.get(*package).is_some_and(|d| d != *f))
        .map(|(package, f)| format!("{package}: [{f}] vs [{}]", with_dev[package]))
        .collect();
    assert!(
        differ.is_empty(),
        "pin these in [dependencies]: {differ:#?}"
    );
}

#[test]
fn the_shipped_configs_are_valid() {
    for file in ["config/example.toml", "config/quickstart.toml"] {
        let out = bin().arg("check-config").arg(file).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn keys_generate_writes_a_private_pem() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["EdDSA", "ES256", "RS256"] {
        let out_path = dir.path().join(format!("{alg}.pem"));
        let out = bin()
            .args(["keys", "generate", "--algorithm", alg, "--out"])
            .arg(&out_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = std::fs::read_to_string(&out_path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{alg}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&out_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{alg}");
        }
    }
    // Never overwrites.
    let again = bin()
        .args(["keys", "generate", "--out"])
        .arg(dir.path().join("EdDSA.pem"))
        .output()
        .unwrap();
    assert!(!again.status.success());
}

#[tokio::test]
async fn user_create_then_login_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let echo = crate::echo::Echo::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, crate::harness::config_text(dir.path(), echo.addr, "")).unwrap();
    let mut child = bin()
        .args([
            "user",
            "create",
            "--email",
            "cli-admin@example.com",
            "--role",
            "admin",
            "--config",
        ])
        .arg(&cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin 123\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(user_id.starts_with("user_"));
    // A role that does not exist is a usage error (64), and nothing is created.
    let out = bin()
        .args([
            "user",
            "create",
            "--email",
            "x@example.com",
            "--role",
            "root",
            "--config",
        ])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));

    let srv = TestServer::start_in(dir, "").await;
    let r = srv.login("cli-admin@example.com", "from stdin 123").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = crate::harness::Tokens::from(&r);
    let seen = srv.get("/admin-only/x").bearer(&t.access).send().await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.echoed_header("x-user-id"), Some(user_id));
}
