//! Live reload: routes, policies, identity-header names and CORS change without a restart;
//! a request in flight finishes on the configuration it started with; a file that does not
//! validate changes nothing; settings read only at start are named; and the binary reloads
//! on SIGHUP and, with `server.watch_config`, when a ConfigMap-style symlink swap lands.

use std::time::{Duration, Instant};

use http::Method;

use crate::harness::{TestServer, raw_get};

const OLD: &str = r#"
[[routes]]
name = "old"
prefix = "/old"
auth = "public"
upstream = "http://{echo}"
"#;

const NEW: &str = r#"
[identity_headers]
user_id = "X-Principal"

[cors]
allowed_origins = ["https://app.example.com"]

[[routes]]
name = "new"
prefix = "/new"
cors = "inherit"
upstream = "http://{echo}"
"#;

async fn metrics(srv: &TestServer) -> String {
    srv.state.metrics.render()
}

#[tokio::test]
async fn routes_policies_and_headers_change_while_requests_finish_on_theirs() {
    let srv = TestServer::start_with(OLD).await;
    let user = srv.register("reload@example.com").await;
    assert_eq!(srv.get("/new/x").send().await.status, 404);

    // A slow request on the old route, in flight across the reload.
    let slow = srv.get("/old/slow").header("x-echo-delay-ms", "700").send();
    let reload = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        srv.reload_with(NEW)
    };
    let (slow, waiting) = tokio::join!(slow, reload);
    assert!(waiting.is_empty(), "{waiting:?}");
    assert_eq!(
        slow.status, 200,
        "finished on the configuration it started with"
    );
    assert_eq!(srv.get("/old/x").send().await.status, 404);
    let r = srv.get("/new/x").bearer(&user.access).send().await;
    assert_eq!(r.status, 200);
    // The new identity-header name, and the old one refused from clients as before.
    assert!(
        r.echoed_header("x-principal")
            .is_some_and(|id| id.starts_with("user_"))
    );
    assert!(r.echoed_header("x-user-id").is_none());
    // CORS that did not exist before.
    let pre = srv
        .req(Method::OPTIONS, "/new/x")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await;
    assert_eq!(pre.status, 204);
    let text = metrics(&srv).await;
    assert!(text.contains("portcullis_config_reloads_total{result=\"applied\"} 1"));
    // Counters survive by name: the old route's 200 is still there.
    assert!(
        text.contains("portcullis_requests_total{route=\"old\",status=\"2xx\"} 1"),
        "{text}"
    );
    // The new route's: the request and the preflight.
    assert!(text.contains("portcullis_requests_total{route=\"new\",status=\"2xx\"} 2"));
}

#[tokio::test]
async fn a_bad_file_changes_nothing_and_says_why() {
    let srv = TestServer::start_with(OLD).await;
    let path = srv.dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"htp://x\"\n",
    )
    .unwrap();
    let err = srv.reloader.reload_file(&path).unwrap_err().to_string();
    assert!(err.starts_with("routes[0].upstream: "), "{err}");
    assert_eq!(
        srv.get("/old/x").send().await.status,
        200,
        "the last good one stays"
    );
    let text = metrics(&srv).await;
    assert!(text.contains("portcullis_config_reloads_total{result=\"refused\"} 1"));
    assert!(text.contains("portcullis_config_reloads_total{result=\"applied\"} 0"));
}

#[tokio::test]
async fn settings_read_at_start_are_named() {
    let srv = TestServer::start_with(OLD).await;
    let waiting = srv.reload_with(
        "[server]\nlisten = \"127.0.0.1:1\"\n[tokens]\naccess_ttl = \"5m\"\n[accounts]\nmount = \"/auth\"\n",
    );
    assert!(
        waiting.contains(&"server.listen / server.admin_listen"),
        "{waiting:?}"
    );
    assert!(waiting.contains(&"tokens"), "{waiting:?}");
    assert!(waiting.contains(&"accounts.mount"), "{waiting:?}");
    // The live part was applied all the same; the mount was not.
    assert_eq!(srv.get("/old/x").send().await.status, 404);
    assert_eq!(srv.post("/api/v1/auth/login").send().await.status, 415);
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config_file(dir: &std::path::Path, port: u16, watch: bool, with_new: bool) -> String {
    let d = dir.display();
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nwatch_config = {watch}\n\
         [store]\ndatabase_url = \"sqlite://{d}/p.db\"\n[tokens]\nkey_dir = \"{d}\"\n\
         [[routes]]\nname = \"old\"\nprefix = \"/old\"\nauth = \"public\"\nupstream = \"http://127.0.0.1:9\"\n"
    );
    if with_new {
        text.push_str(
            "[[routes]]\nname = \"new\"\nprefix = \"/new\"\nauth = \"public\"\nupstream = \"http://127.0.0.1:9\"\n",
        );
    }
    text
}

async fn status(port: u16, path: &str) -> u16 {
    raw_get(([127, 0, 0, 1], port).into(), path, "x", "")
        .await
        .0
}

/// Polls until `path` answers `want` (a route to a dead upstream answers 502, a missing
/// route 404).
async fn wait_status(port: u16, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = status(port, path).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{path}: {got}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &std::path::Path) -> Serving {
    Serving(
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test]
async fn the_binary_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config_file(dir.path(), port, false, false)).unwrap();
    let server = serve(&path);
    wait_status(port, "/old/x", 502).await;
    assert_eq!(status(port, "/new/x").await, 404);
    std::fs::write(&path, config_file(dir.path(), port, false, true)).unwrap();
    // Without a signal nothing changes (watch_config is off).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(port, "/new/x").await, 404);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_status(port, "/new/x", 502).await;
}

#[tokio::test]
async fn the_binary_follows_a_configmap_symlink_swap() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Kubernetes' layout: portcullis.toml -> ..data/portcullis.toml, ..data -> ..v1.
    let v1 = dir.path().join("..v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(
        v1.join("portcullis.toml"),
        config_file(dir.path(), port, true, false),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
    let path = dir.path().join("portcullis.toml");
    std::os::unix::fs::symlink("..data/portcullis.toml", &path).unwrap();
    let _server = serve(&path);
    wait_status(port, "/old/x", 502).await;
    assert_eq!(status(port, "/new/x").await, 404);

    // The update: a new directory, then an atomic swap of the ..data link.
    let v2 = dir.path().join("..v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v2.join("portcullis.toml"),
        config_file(dir.path(), port, true, true),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    wait_status(port, "/new/x", 502).await;

    // A broken update is refused; the server keeps serving the last good configuration.
    let v3 = dir.path().join("..v3");
    std::fs::create_dir(&v3).unwrap();
    std::fs::write(v3.join("portcullis.toml"), "[server\n").unwrap();
    std::os::unix::fs::symlink("..v3", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status(port, "/new/x").await, 502);
}
