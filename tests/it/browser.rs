//! Real Chromium (headless, through chromedriver) against a real Portcullis: a browser app
//! served from a second origin signs in with `credentials: "include"` (preflights and all),
//! reads `/me` by cookie alone and signs out, while an origin not on the list gets nothing;
//! and a person opening a protected page is sent to the sign-in page, signs in with the
//! form, and lands back on the page with their identity injected. Skipped, loudly, only
//! where Chromium is not installed and `PORTCULLIS_BROWSER_TESTS` is not `require`.

mod webdriver;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::harness::{PASSWORD, TestServer};
use webdriver::Browser;

/// The browser app: one page whose script calls the API the way the origin's frontend
/// does — `fetch` with `credentials: "include"`, JSON bodies, no token handling of its own.
const APP_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Second-origin app</title></head>
<body><h1>App</h1>
<script>
async function call(url, method, body) {
  try {
    const init = { method, credentials: "include", headers: {} };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(url, init);
    let data = null;
    try { data = await r.json(); } catch (_) {}
    return { status: r.status, data };
  } catch (e) {
    return { error: String(e) };
  }
}
</script></body></html>
"#;

/// Serves `APP_PAGE` at every path of `addr`'s listener.
async fn serve_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    let mut resp =
                        Response::new(Full::new(Bytes::from_static(APP_PAGE.as_bytes())));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `call(url, method, body)` in the page.
async fn call(browser: &Browser, url: &str, method: &str, body: Option<Value>) -> Value {
    let script = "const done = arguments[arguments.length - 1];\n\
                  call(arguments[0], arguments[1], arguments[2] ?? undefined).then(done);";
    browser.run_async(script, json!([url, method, body])).await
}

#[tokio::test]
async fn an_app_on_another_origin_signs_in_with_cookies() {
    let Some(browser) = Browser::start("an_app_on_another_origin_signs_in_with_cookies").await
    else {
        return;
    };
    // Two pages on other ports of the same host: other origins, the same site — the origin
    // frontend's own layout (:3000 calling :8000). Only the first is allowed.
    let app = serve_app().await;
    let stranger = serve_app().await;
    let srv =
        TestServer::start_with(&format!("[cors]\nallowed_origins = [\"http://{app}\"]\n")).await;
    let api = |rest: &str| format!("http://{}{}", srv.addr, srv.auth_path(rest));

    browser.goto(&format!("http://{app}/")).await;
    // JSON bodies make every call below preflighted.
    let registered = call(
        &browser,
        &api("/register"),
        "POST",
        Some(json!({"email": "browser@example.com", "password": PASSWORD, "full_name": "Browser"})),
    )
    .await;
    assert_eq!(registered["status"], 201, "{registered}");
    let credentials = json!({"email": "browser@example.com", "password": PASSWORD});
    let login = call(&browser, &api("/login"), "POST", Some(credentials.clone())).await;
    assert_eq!(login["status"], 200, "{login}");
    // The session cookie is HttpOnly: the page's script cannot read it.
    let visible = browser.eval("document.cookie").await;
    assert!(
        !visible.as_str().unwrap().contains("access_token"),
        "{visible}"
    );

    // /me with the cookie alone: the app never touches a token.
    let me = call(&browser, &api("/me"), "GET", None).await;
    assert_eq!(me["status"], 200, "{me}");
    assert_eq!(me["data"]["email"], "browser@example.com");

    // Signing out (a cookie-authenticated POST from an allowed origin passes the CSRF rule).
    let out = call(&browser, &api("/logout"), "POST", Some(json!({}))).await;
    assert_eq!(out["status"], 200, "{out}");
    let me = call(&browser, &api("/me"), "GET", None).await;
    assert_eq!(me["status"], 401, "{me}");

    // An origin not on the list: the preflight is refused, so the browser never sends the
    // login; and a simple GET's answer is withheld from the script.
    browser.goto(&format!("http://{stranger}/")).await;
    let login = call(&browser, &api("/login"), "POST", Some(credentials.clone())).await;
    assert!(
        login["error"]
            .as_str()
            .is_some_and(|e| e.contains("TypeError")),
        "{login}"
    );
    let me = call(&browser, &api("/me"), "GET", None).await;
    assert!(me["error"].is_string(), "{me}");
}

/// The identity the echo upstream saw, from the JSON page Chromium shows.
async fn echoed_email(browser: &Browser) -> Option<String> {
    let text = browser.eval("document.body.innerText").await;
    let text = text.as_str().unwrap_or_default();
    let json = &text[text.find('{')?..=text.rfind('}')?];
    let v: Value = serde_json::from_str(json).ok()?;
    v["headers"]["x-user-email"].as_str().map(str::to_string)
}

#[tokio::test]
async fn a_person_signs_in_through_the_page_and_comes_back() {
    let Some(browser) = Browser::start("a_person_signs_in_through_the_page_and_comes_back").await
    else {
        return;
    };
    let srv = TestServer::start_with(
        r#"
[sign_in]
app_name = "Acme Console"

[[routes]]
name = "app"
prefix = "/app"
sign_in_redirect = true
upstream = "http://{echo}"
"#,
    )
    .await;
    srv.register("person@example.com").await;
    let base = format!("http://{}", srv.addr);

    // A protected page: the browser is sent to sign in, carrying the page as return target.
    browser.goto(&format!("{base}/app/reports?year=2026")).await;
    let at = browser.wait_for_url(|u| u.contains("/sign-in")).await;
    assert_eq!(
        at,
        format!("{base}/api/v1/auth/sign-in?return_to=%2Fapp%2Freports%3Fyear%3D2026")
    );
    if let Ok(dir) = std::env::var("PORTCULLIS_SCREENSHOT_DIR") {
        std::fs::write(format!("{dir}/sign-in.png"), browser.screenshot().await).unwrap();
    }

    // A wrong password: the page again, with the error announced.
    browser.type_into("#email", "person@example.com").await;
    browser.type_into("#password", "not my password").await;
    browser.click("button[type=submit]").await;
    browser
        .wait_until("document.querySelector('[role=alert]')")
        .await;
    let alert = browser
        .eval("document.querySelector('[role=alert]')?.textContent ?? ''")
        .await;
    assert_eq!(alert, "Incorrect email or password.");
    if let Ok(dir) = std::env::var("PORTCULLIS_SCREENSHOT_DIR") {
        std::fs::write(
            format!("{dir}/sign-in-error.png"),
            browser.screenshot().await,
        )
        .unwrap();
    }

    // The right one: back on the page, with the identity injected upstream.
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for_url(|u| u.ends_with("/app/reports?year=2026"))
        .await;
    assert_eq!(
        echoed_email(&browser).await.as_deref(),
        Some("person@example.com")
    );
    let cookies = browser.cookies().await;
    let access = cookies
        .iter()
        .find(|c| c["name"] == "access_token")
        .expect("access_token cookie");
    assert_eq!(access["httpOnly"], true);

    // Signing out from the page ends it: the protected page sends the browser to sign in.
    browser.goto(&format!("{base}/api/v1/auth/sign-out")).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for_url(|u| u.ends_with("/sign-in?signed_out=1"))
        .await;
    browser.goto(&format!("{base}/app/reports")).await;
    browser
        .wait_for_url(|u| u.contains("/sign-in?return_to="))
        .await;
}
