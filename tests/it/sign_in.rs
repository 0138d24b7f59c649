//! The sign-in page and the browser redirect: pages served with a strict policy and every
//! typed value escaped; form posts that set HttpOnly cookies and go back only to this origin
//! or an allowed one; login CSRF refused; messages that do not tell which emails exist; and
//! routes with `sign_in_redirect` that send page loads (only) to the page.

use crate::harness::{PASSWORD, Resp, TestServer};

mod redirects;

const BROWSER: &str = r#"
[sign_in]
app_name = "Acme <Console>"
return_origins = ["https://app.example.com"]

[[routes]]
name = "app"
prefix = "/app"
sign_in_redirect = true
upstream = "http://{echo}"

[[routes]]
name = "app-admin"
prefix = "/console"
roles = ["admin"]
sign_in_redirect = true
upstream = "http://{echo}"
"#;

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `Name=value` pairs of the cookies a response sets, joined for a `Cookie` header.
fn cookies_of(r: &Resp) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .filter(|pair| !pair.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The text of the page's error or notice paragraph.
fn message(r: &Resp) -> String {
    let html = r.text();
    let start = html.find("class=\"message").expect("a message");
    let open = start + html[start..].find('>').unwrap() + 1;
    let close = open + html[open..].find("</p>").unwrap();
    html[open..close].to_string()
}

impl TestServer {
    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn post_form(&self, page: &str, origin: Option<&str>, pairs: &[(&str, &str)]) -> Resp {
        let mut req = self
            .post(&self.auth_path(page))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send().await
    }

    async fn sign_in_form(&self, email: &str, password: &str, return_to: &str) -> Resp {
        let origin = self.origin();
        let pairs = [
            ("email", email),
            ("password", password),
            ("return_to", return_to),
        ];
        self.post_form("/sign-in", Some(&origin), &pairs).await
    }

    async fn navigate(&self, path: &str, cookie: Option<&str>) -> Resp {
        let mut req = self
            .get(path)
            .header("sec-fetch-mode", "navigate")
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send().await
    }
}

#[tokio::test]
async fn the_page_is_self_contained_and_cannot_be_framed() {
    let srv = TestServer::start_with(BROWSER).await;
    let r = srv.get(&srv.auth_path("/sign-in")).send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("form-action 'self' https://app.example.com"),
        "{csp}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let html = r.text();
    // Labelled fields, the configured name escaped, nothing loaded from elsewhere.
    assert!(html.contains("<label for=\"email\">") && html.contains("<label for=\"password\">"));
    assert!(html.contains("Acme &lt;Console&gt;"), "{html}");
    assert!(!html.contains("<script") && !html.contains("//"), "{html}");
    assert!(html.contains("href=\"/api/v1/auth/sign-up?return_to=%2F\""));
    let css = srv.get(&srv.auth_path("/assets/sign-in.css")).send().await;
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(
        !css.text().contains("url("),
        "no external asset in the stylesheet"
    );

    // Disabled: the pages are not there.
    let srv = TestServer::start_with("[sign_in]\nenabled = false").await;
    assert_eq!(srv.get(&srv.auth_path("/sign-in")).send().await.status, 404);
}

#[tokio::test]
async fn signing_in_sets_http_only_cookies_and_goes_back() {
    let srv = TestServer::start_with(BROWSER).await;
    srv.register("page@example.com").await;
    let r = srv
        .sign_in_form("page@example.com", PASSWORD, "/app/orders?page=2")
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/app/orders?page=2"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    for name in ["access_token", "refresh_token"] {
        let c = r.set_cookie(name).unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
    }
    let back = srv
        .navigate("/app/orders?page=2", Some(&cookies_of(&r)))
        .await;
    assert_eq!(back.status, 200);
    assert_eq!(
        back.echoed_header("x-user-email").as_deref(),
        Some("page@example.com")
    );

    // Signed in already: the page sends the browser straight back.
    let again = srv
        .get(&srv.auth_path("/sign-in?return_to=%2Fapp%2Fx"))
        .header("cookie", &cookies_of(&r))
        .send()
        .await;
    assert_eq!(again.status, 303);
    assert_eq!(again.header("location"), Some("/app/x"));
}

#[tokio::test]
async fn failures_do_not_say_whether_an_email_exists() {
    let srv = TestServer::start_with(BROWSER).await;
    srv.register("known@example.com").await;
    let wrong = srv
        .sign_in_form("known@example.com", "not the password", "/app")
        .await;
    let unknown = srv
        .sign_in_form("nobody@example.com", "not the password", "/app")
        .await;
    assert_eq!((wrong.status, unknown.status), (400, 400));
    assert_eq!(message(&wrong), message(&unknown));
    assert!(wrong.set_cookie("access_token").is_none());
    // The typed email comes back (escaped), the password never does.
    assert!(wrong.text().contains("value=\"known@example.com\""));
    assert!(!wrong.text().contains("not the password"));

    // Registering a taken email: the same sentence as any other refusal…
    let taken = srv
        .post_form(
            "/sign-up",
            Some(&srv.origin()),
            &[
                ("email", "known@example.com"),
                ("full_name", "Someone"),
                ("password", "another long password"),
            ],
        )
        .await;
    assert_eq!(taken.status, 400);
    assert!(message(&taken).contains("could not create an account"));
    // …unless the password is the account's own: then it simply signs in.
    let own = srv
        .post_form(
            "/sign-up",
            Some(&srv.origin()),
            &[
                ("email", "known@example.com"),
                ("full_name", "Someone"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(own.status, 303);
    assert!(own.set_cookie("access_token").is_some());
}

#[tokio::test]
async fn forms_posted_from_another_site_are_refused() {
    let srv = TestServer::start_with(BROWSER).await;
    srv.register("csrf@example.com").await;
    let pairs = [("email", "csrf@example.com"), ("password", PASSWORD)];
    // Login CSRF: another site's form, an opaque origin, or no origin information at all.
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let r = srv.post_form("/sign-in", origin, &pairs).await;
        assert_eq!(r.status, 403, "{origin:?}");
        assert!(r.set_cookie("access_token").is_none(), "{origin:?}");
    }
    // A same-origin fetch metadata header is enough.
    let r = srv
        .post(&srv.auth_path("/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .body(form(&pairs))
        .send()
        .await;
    assert_eq!(r.status, 303);
    // A JSON body is not a form.
    let r = srv
        .post(&srv.auth_path("/sign-in"))
        .header("origin", &srv.origin())
        .json(serde_json::json!({"email": "csrf@example.com", "password": PASSWORD}))
        .send()
        .await;
    assert_eq!(r.status, 415);
}

#[tokio::test]
async fn sign_up_marks_the_field_and_signs_in() {
    let srv = TestServer::start_with(BROWSER).await;
    let page = srv
        .get(&srv.auth_path("/sign-up?return_to=%2Fapp"))
        .send()
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("name=\"return_to\" value=\"/app\""));
    let origin = srv.origin();
    let short = srv
        .post_form(
            "/sign-up",
            Some(&origin),
            &[
                ("email", "new@example.com"),
                ("full_name", "<b>New</b>"),
                ("password", "short"),
                ("return_to", "/app"),
            ],
        )
        .await;
    assert_eq!(short.status, 400);
    let html = short.text();
    assert!(
        html.contains("autocomplete=\"new-password\" required minlength=\"8\" aria-describedby=\"password-hint\" aria-invalid=\"true\""),
        "{html}"
    );
    assert!(html.contains("value=\"&lt;b&gt;New&lt;/b&gt;\"") && !html.contains("<b>New"));
    let ok = srv
        .post_form(
            "/sign-up",
            Some(&origin),
            &[
                ("email", "new@example.com"),
                ("full_name", "New"),
                ("password", PASSWORD),
                ("return_to", "/app"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.text());
    assert_eq!(ok.header("location"), Some("/app"));
    let me = srv
        .get("/app")
        .header("cookie", &cookies_of(&ok))
        .send()
        .await;
    assert_eq!(
        me.echoed_header("x-user-email").as_deref(),
        Some("new@example.com")
    );

    // Registration closed: no page, no link.
    let closed = TestServer::start_with("[accounts]\nallow_registration = false").await;
    assert_eq!(
        closed
            .get(&closed.auth_path("/sign-up"))
            .send()
            .await
            .status,
        404
    );
    let page = closed.get(&closed.auth_path("/sign-in")).send().await;
    assert!(!page.text().contains("sign-up"));
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let srv = TestServer::start_with(BROWSER).await;
    srv.register("out@example.com").await;
    let signed = srv.sign_in_form("out@example.com", PASSWORD, "/app").await;
    let cookies = cookies_of(&signed);
    assert_eq!(srv.navigate("/app", Some(&cookies)).await.status, 200);

    // A link cannot sign anyone out, and neither can another site's form.
    let confirm = srv
        .get(&srv.auth_path("/sign-out"))
        .header("cookie", &cookies)
        .send()
        .await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.text().contains("method=\"post\""));
    let forged = srv
        .post(&srv.auth_path("/sign-out"))
        .header("origin", "https://evil.example")
        .header("cookie", &cookies)
        .send()
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(srv.navigate("/app", Some(&cookies)).await.status, 200);

    let out = srv
        .post(&srv.auth_path("/sign-out"))
        .header("origin", &srv.origin())
        .header("cookie", &cookies)
        .send()
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(
        out.header("location"),
        Some("/api/v1/auth/sign-in?signed_out=1")
    );
    for name in ["access_token", "refresh_token"] {
        assert!(out.set_cookie(name).unwrap().contains("Max-Age=0"));
    }
    // The old cookies are dead even if a browser kept them: the access token's session
    // ended, and the refresh token cannot renew it.
    assert_eq!(srv.navigate("/app", Some(&cookies)).await.status, 303);
    let refresh = cookies
        .split("; ")
        .find(|c| c.starts_with("refresh_token="))
        .unwrap();
    let page = srv
        .get(&srv.auth_path("/sign-in"))
        .header("cookie", refresh)
        .send()
        .await;
    assert_eq!(page.status, 200);
    let page = srv
        .get(&srv.auth_path("/sign-in?signed_out=1"))
        .send()
        .await;
    assert_eq!(message(&page), "You have signed out.");
}

#[tokio::test]
async fn a_refresh_cookie_renews_the_session_without_the_form() {
    let srv = TestServer::start_with(BROWSER).await;
    srv.register("renew@example.com").await;
    let signed = srv
        .sign_in_form("renew@example.com", PASSWORD, "/app")
        .await;
    let cookies = cookies_of(&signed);
    let refresh = cookies
        .split("; ")
        .find(|c| c.starts_with("refresh_token="))
        .unwrap();
    // The access cookie has expired (gone); the refresh cookie travels to the mount.
    let r = srv
        .get(&srv.auth_path("/sign-in?return_to=%2Fapp%2Fback"))
        .header("cookie", refresh)
        .send()
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/app/back"));
    let renewed = cookies_of(&r);
    assert_eq!(
        srv.navigate("/app/back", Some(&renewed))
            .await
            .echoed_header("x-user-email")
            .as_deref(),
        Some("renew@example.com")
    );
    // The spent refresh token does not renew twice.
    let twice = srv
        .get(&srv.auth_path("/sign-in"))
        .header("cookie", refresh)
        .send()
        .await;
    assert_eq!(twice.status, 200);
}
