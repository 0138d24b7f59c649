//! Behind a real nginx (Debian's `nginx-light`): `auth_request` asks the verify endpoint,
//! `auth_request_set` + `proxy_set_header` copy the identity — and replace whatever the
//! client sent under those names, so a spoofed `X-User-*` never reaches the upstream.
//! Skipped, loudly, only where nginx is not installed and `PORTCULLIS_NGINX_TESTS` is not
//! `require` (`.ci/run` installs it and sets that).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{TestServer, raw_get};

const NGINX: &str = "/usr/sbin/nginx";

/// The nginx configuration the README shows, with this test's addresses.
fn config(dir: &std::path::Path, listen: u16, portcullis: &str, upstream: &str) -> String {
    let d = dir.display();
    format!(
        r#"
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{listen};
    location / {{
      auth_request /_portcullis_verify;
      auth_request_set $user_id $upstream_http_x_user_id;
      auth_request_set $user_email $upstream_http_x_user_email;
      auth_request_set $user_role $upstream_http_x_user_role;
      auth_request_set $auth_method $upstream_http_x_auth_method;
      proxy_set_header X-User-Id $user_id;
      proxy_set_header X-User-Email $user_email;
      proxy_set_header X-User-Role $user_role;
      proxy_set_header X-Auth-Method $auth_method;
      proxy_pass http://{upstream};
    }}
    location = /_portcullis_verify {{
      internal;
      proxy_pass http://{portcullis}/api/v1/auth/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
    }}
  }}
}}
"#
    )
}

struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_nginx(srv: &TestServer) -> Option<Nginx> {
    if !std::path::Path::new(NGINX).exists() {
        assert_ne!(
            std::env::var("PORTCULLIS_NGINX_TESTS").as_deref(),
            Ok("require"),
            "{NGINX} not installed but PORTCULLIS_NGINX_TESTS=require"
        );
        eprintln!(
            "\n!!!!! SKIPPED the nginx forward-auth test: {NGINX} not installed \
             (apt-get install nginx-light; .ci/run does this) !!!!!\n"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("nginx.conf");
    let text = config(
        dir.path(),
        port,
        &srv.addr.to_string(),
        &srv.echo.addr.to_string(),
    );
    std::fs::write(&conf, text).unwrap();
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "nginx did not start: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(Nginx {
        child,
        port,
        _dir: dir,
    })
}

/// A raw request through nginx; the status line's code.
async fn through(nginx: &Nginx, target: &str, headers: &str) -> u16 {
    let addr = ([127, 0, 0, 1], nginx.port).into();
    raw_get(addr, target, "app.example.com", headers).await.0
}

#[tokio::test]
async fn nginx_auth_request_passes_the_identity_and_never_a_spoofed_one() {
    let srv = TestServer::start_with(super::FORWARD_AUTH).await;
    let Some(nginx) = start_nginx(&srv).await else {
        return;
    };
    let user = srv.register("nginx@example.com").await;
    let spoof = "X-User-Id: user_admin\r\nX-User-Email: boss@example.com\r\nX-User-Role: admin\r\n";

    // Signed in: the identity Portcullis verified, not the one the client claimed.
    let auth = format!("Authorization: Bearer {}\r\n{spoof}", user.access);
    assert_eq!(through(&nginx, "/api/orders?x=1", &auth).await, 200);
    let seen = srv.echo.last().unwrap();
    assert_eq!(seen.target, "/api/orders?x=1");
    assert_eq!(seen.header_all("x-user-email"), ["nginx@example.com"]);
    assert_eq!(seen.header_all("x-user-role"), ["user"]);
    assert_eq!(seen.header_all("x-auth-method"), ["jwt"]);
    assert!(
        seen.header("x-user-id")
            .is_some_and(|id| id.starts_with("user_"))
    );

    // No credential: nginx answers 401 and the upstream sees nothing.
    srv.echo.clear();
    assert_eq!(through(&nginx, "/api/orders", spoof).await, 401);
    assert!(srv.echo.requests().is_empty());
    // Dot segments do not borrow the public route's policy.
    assert_eq!(through(&nginx, "/public/../api/orders", spoof).await, 401);
    assert!(srv.echo.requests().is_empty());

    // A public route: allowed, without an identity — and the spoofed one is gone.
    assert_eq!(through(&nginx, "/public/x", spoof).await, 200);
    let seen = srv.echo.last().unwrap();
    for name in ["x-user-id", "x-user-email", "x-user-role"] {
        assert!(seen.header(name).is_none(), "{name} reached the upstream");
    }
    // A role rule: 403 through nginx.
    let auth = format!("Authorization: Bearer {}\r\n", user.access);
    assert_eq!(through(&nginx, "/admin-only/x", &auth).await, 403);
}
