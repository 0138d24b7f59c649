//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium through
//! its `chromedriver`: open pages, type into fields, click, run a script in the page, read
//! cookies and take screenshots. WebDriver is JSON over plain HTTP, so the tests' own
//! hyper client is the whole transport.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key W3C WebDriver uses for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether the browser tests must run: `.ci/run` sets this once Chromium is installed, so a
/// missing browser there fails instead of skipping.
const REQUIRE: &str = "PORTCULLIS_BROWSER_TESTS";

/// A headless Chromium session; the driver (and with it the browser) ends on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: Client<HttpConnector, Full<Bytes>>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or says loudly why the test is skipped
    /// (only allowed when `PORTCULLIS_BROWSER_TESTS` is not `require`).
    pub async fn start(test: &str) -> Option<Browser> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|p| !PathBuf::from(p).exists())
            .collect();
        if !missing.is_empty() {
            assert_ne!(
                std::env::var(REQUIRE).as_deref(),
                Ok("require"),
                "{test}: {missing:?} not installed but {REQUIRE}=require"
            );
            eprintln!(
                "\n!!!!! SKIPPED {test}: {missing:?} not installed (apt-get install chromium \
                 chromium-driver; .ci/run does this) !!!!!\n"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            _profile: profile,
        };
        browser.wait_ready().await;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                    "--window-size=720,760",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }}});
        let session = browser.call(Method::POST, "/session", Some(caps)).await;
        browser.session = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_string();
        Some(browser)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let req = Request::get(format!("{}/status", self.base))
                .body(Full::new(Bytes::new()))
                .unwrap();
            if let Ok(resp) = self.client.request(req).await {
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                if v["value"]["ready"] == json!(true) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One WebDriver command; its `value`, or a panic naming the error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = if path == "/session" {
            path.to_string()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.unwrap_or_else(|| json!({})).to_string(),
            )))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(60), self.client.request(req))
            .await
            .unwrap_or_else(|_| panic!("WebDriver {path} timed out"))
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(status.is_success(), "WebDriver {path}: {v}");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits (up to 15 s) until the page's URL satisfies `ok`, and returns it.
    pub async fn wait_for_url(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.url().await;
            if ok(&url) {
                return url;
            }
            assert!(Instant::now() < deadline, "still at {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    /// Types into the field `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(Method::POST, &format!("/element/{id}/click"), None)
            .await;
    }

    /// Runs `script` in the page; it ends by calling its last argument with the result.
    pub async fn run_async(&self, script: &str, args: Value) -> Value {
        self.call(
            Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The value of a JavaScript expression in the page.
    pub async fn eval(&self, expression: &str) -> Value {
        let script = format!("return ({expression});");
        self.call(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Waits (up to 15 s) until a JavaScript expression is truthy in the page: a click that
    /// submits a form returns before the next page has loaded.
    pub async fn wait_until(&self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.eval(&format!("!!({expression})")).await != json!(true) {
            assert!(Instant::now() < deadline, "never true: {expression}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The cookies the browser holds for the current page's URL.
    pub async fn cookies(&self) -> Vec<Value> {
        self.call(Method::GET, "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.call(Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    /// Ends the session — which closes the browser — even when a test panics: a blocking
    /// `DELETE`, since drop cannot wait for a future. Then the driver is stopped.
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        let addr = self.base.trim_start_matches("http://").to_string();
        if !self.session.is_empty()
            && let Ok(mut stream) = std::net::TcpStream::connect(&addr)
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            // The answer comes once the browser has closed (the driver keeps the
            // connection open after it, so read its start only).
            let mut answer = [0u8; 512];
            let _ = stream.write_all(request.as_bytes());
            let _ = stream.read(&mut answer);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
