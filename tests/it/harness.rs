//! Starts a real Portcullis on 127.0.0.1:0 in front of an in-process echo upstream, each test
//! with its own temporary directory (SQLite file, generated keys), and drives it over real
//! sockets.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::echo::Echo;
use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::http::AppState;
use portcullis::{App, Config};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

mod endpoints;
mod requests;

pub use requests::{H2, Req, Resp, Tokens, raw_get, status_of};

pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    pub addr: SocketAddr,
    /// The operator listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: SocketAddr,
    pub echo: Echo,
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub state: Arc<AppState>,
    /// Applies a new configuration to the running server.
    pub reloader: portcullis::app::Reloader,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Merges `extra` into `base`: tables recursively, `routes` prepended (so they match first),
/// anything else replaced.
fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (k, v) in extra {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge(b, e),
            (Some(toml::Value::Array(b)), toml::Value::Array(mut e)) if k == "routes" => {
                e.append(b);
                *b = e;
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Listens on a free port of 127.0.0.1 and hands each accepted connection to `on_conn`, in
/// a task of its own, for as long as the test runs. Returns the address.
pub async fn serve_each<F, Fut>(on_conn: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(on_conn(tcp));
        }
    });
    addr
}

pub fn config_text(dir: &std::path::Path, echo: SocketAddr, extra: &str) -> String {
    let base = format!(
        r#"
[store]
database_url = "sqlite://{dir}/portcullis.db"
[tokens]
key_dir = "{dir}"
[password_hashing]
memory_kib = 1024
iterations = 1
max_concurrent = 2
[cookies]
secure = false
[log]
access_log = false

[[routes]]
name = "public"
prefix = "/public"
auth = "public"
upstream = "http://{echo}"

[[routes]]
name = "optional"
prefix = "/optional"
auth = "optional"
upstream = "http://{echo}"

[[routes]]
name = "admins"
prefix = "/admin-only"
roles = ["admin"]
upstream = "http://{echo}"

[[routes]]
name = "api"
prefix = "/api"
websocket = true
upstream = "http://{echo}"

[[routes]]
name = "stripped"
prefix = "/stripped"
strip_prefix = true
upstream = "http://{echo}/base"

[[routes]]
name = "creds"
prefix = "/creds"
forward_credentials = true
upstream = "http://{echo}"

[[routes]]
name = "slow"
prefix = "/slow"
auth = "public"
response_timeout = "300ms"
upstream = "http://{echo}"

[[routes]]
name = "dead"
prefix = "/dead"
auth = "public"
connect_timeout = "500ms"
upstream = "http://127.0.0.1:9"
"#,
        dir = dir.display()
    );
    let mut table: toml::Table = base.parse().unwrap();
    // `{echo}` in the extra text stands for the echo upstream's address.
    let extra = extra.replace("{echo}", &echo.to_string());
    merge(&mut table, extra.parse().unwrap());
    table.to_string()
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with("").await
    }

    pub async fn start_with(extra: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        TestServer::start_in(dir, extra).await
    }

    /// The base configuration plus a public route `/{name}` to the echo upstream that
    /// takes only `method`.
    pub async fn start_with_method_route(name: &str, method: &str) -> TestServer {
        TestServer::start_with(&format!(
            "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}\"\nauth = \"public\"\n\
             methods = [\"{method}\"]\nupstream = \"http://{{echo}}\"\n"
        ))
        .await
    }

    /// Starts in an existing directory (to restart over the same database and keys).
    pub async fn start_in(dir: tempfile::TempDir, extra: &str) -> TestServer {
        let echo = Echo::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let text = config_text(dir.path(), echo.addr, extra);
        let config = Config::from_toml(&text, Vec::new()).unwrap();
        let app = App::build(config.clone()).await.unwrap();
        let state = app.state.clone();
        let reloader = app.reloader();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run(listener, Some(admin_listener), async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            addr,
            admin,
            echo,
            dir,
            config,
            state,
            reloader,
            shutdown: Some(tx),
            task: Some(task),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Stops the server and hands back its directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn req(&self, method: Method, path: &str) -> Req<'_> {
        Req {
            server: self,
            method,
            path: path.to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    pub fn get(&self, path: &str) -> Req<'_> {
        self.req(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Req<'_> {
        self.req(Method::POST, path)
    }

    /// Reloads the server with the base configuration plus `extra` (as `start_with` takes
    /// it); returns the settings that wait for a restart.
    pub fn reload_with(&self, extra: &str) -> Vec<&'static str> {
        let text = config_text(self.dir.path(), self.echo.addr, extra);
        self.reloader
            .apply(Config::from_toml(&text, Vec::new()).unwrap())
            .unwrap()
    }

    pub fn auth_path(&self, rest: &str) -> String {
        format!("{}{rest}", self.config.accounts.mount)
    }

    /// Registers a user and returns the token response.
    pub async fn register(&self, email: &str) -> Tokens {
        let r = self.try_register(email).await;
        assert_eq!(r.status, 201, "{}", r.text());
        Tokens::from(&r)
    }

    /// `POST /register` with `PASSWORD`, whatever the answer.
    pub async fn try_register(&self, email: &str) -> Resp {
        self.post(&self.auth_path("/register"))
            .json(json!({"email": email, "password": PASSWORD, "full_name": "Test User"}))
            .send()
            .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.post(&self.auth_path("/login"))
            .json(json!({"email": email, "password": password}))
            .send()
            .await
    }

    /// Registers a user and makes them an admin directly in the store.
    pub async fn admin(&self, email: &str) -> Tokens {
        self.register(email).await;
        let user = self
            .state
            .store
            .user_by_email(email)
            .await
            .unwrap()
            .unwrap();
        let patch = portcullis::store::UserPatch {
            role: Some(portcullis::identity::Role::Admin),
            ..Default::default()
        };
        self.state
            .store
            .update_user(&user.user_id, &patch)
            .await
            .unwrap();
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status, 200);
        Tokens::from(&r)
    }

    /// Creates an API key for the holder of `access` and returns (key, key_id).
    pub async fn api_key(&self, access: &str, name: &str) -> (String, String) {
        let r = self
            .post(&self.auth_path("/api-keys"))
            .bearer(access)
            .json(json!({"name": name}))
            .send()
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let v = r.json();
        (
            v["api_key"].as_str().unwrap().to_string(),
            v["key_id"].as_str().unwrap().to_string(),
        )
    }

    /// Sends raw bytes and returns the whole response text (the request should say
    /// `Connection: close`).
    pub async fn raw(&self, request: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut out),
        )
        .await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Status of a raw `GET <target>`.
    pub async fn raw_get_status(&self, target: &str, extra_headers: &str) -> u16 {
        let text = self
            .raw(&format!(
                "GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}Connection: close\r\n\r\n"
            ))
            .await;
        status_of(&text)
    }

    /// An HTTP/2 connection made with the h2 crate, which sends exactly the fields a test
    /// gives it (`host` included); the task driving it ends when the server closes it.
    pub async fn h2(&self) -> H2 {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        H2 {
            client,
            driver: tokio::spawn(conn),
        }
    }

    pub fn signing_key_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("jwt-signing-eddsa.pem")).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
