//! The sign-in pages' HTML: server-rendered, no script, one stylesheet from the mount.
//! Every value that reaches the markup is escaped here; the responses carry a CSP that
//! allows nothing but this origin (`default-src 'self'`), cannot be framed
//! (`frame-ancestors 'none'`), and forms that post only here or to an allowed return origin.

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::config::SignInConfig;

/// The stylesheet, served at `{mount}/assets/sign-in.css`.
pub(super) const STYLESHEET: &str = include_str!("sign_in.css");

/// `text` with the five characters that matter in HTML text and quoted attributes escaped.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A message above the form: an error (announced at once) or a notice.
pub(super) enum Notice<'a> {
    None,
    Error(&'a str),
    Info(&'a str),
}

/// What every page needs: where the mount is, the configured name, where to go after.
pub(super) struct Page<'a> {
    pub mount: &'a str,
    pub config: &'a SignInConfig,
    /// The validated return target, carried through the forms.
    pub return_to: &'a str,
}

impl<'a> Page<'a> {
    /// The pages of the API `ctx` serves, returning to `return_to` afterwards.
    pub(super) fn new(ctx: &'a super::AccountCtx, return_to: &'a str) -> Page<'a> {
        Page {
            mount: &ctx.accounts.mount,
            config: &ctx.sign_in,
            return_to,
        }
    }

    fn query(&self) -> String {
        let encoded: String = form_urlencoded::byte_serialize(self.return_to.as_bytes()).collect();
        format!("?return_to={encoded}")
    }

    fn layout(&self, title: &str, notice: &Notice<'_>, body: &str) -> String {
        let notice = match notice {
            Notice::None => String::new(),
            Notice::Error(text) => format!(
                "<p class=\"message error\" id=\"form-error\" role=\"alert\">{}</p>\n",
                escape(text)
            ),
            Notice::Info(text) => format!(
                "<p class=\"message notice\" role=\"status\">{}</p>\n",
                escape(text)
            ),
        };
        format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"referrer\" content=\"no-referrer\">\n\
             <title>{title} · {app}</title>\n\
             <link rel=\"stylesheet\" href=\"{mount}/assets/sign-in.css\">\n</head>\n<body>\n\
             <main aria-labelledby=\"heading\">\n<p class=\"app\">{app}</p>\n\
             <h1 id=\"heading\">{title}</h1>\n{notice}{body}</main>\n</body>\n</html>\n",
            title = escape(title),
            app = escape(&self.config.app_name),
            mount = escape(self.mount),
        )
    }

    fn hidden_return(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"return_to\" value=\"{}\">\n",
            escape(self.return_to)
        )
    }

    /// The sign-in form. `email` is what was typed before (never the password).
    pub(super) fn sign_in(&self, email: &str, notice: &Notice<'_>, registration: bool) -> String {
        let invalid = matches!(notice, Notice::Error(_));
        let described = if invalid {
            " aria-invalid=\"true\" aria-describedby=\"form-error\""
        } else {
            ""
        };
        let sign_up = if registration {
            format!(
                "<p class=\"alt\">New here? <a href=\"{}/sign-up{}\">Create an account</a></p>\n",
                escape(self.mount),
                escape(&self.query())
            )
        } else {
            String::new()
        };
        let body = format!(
            "<form method=\"post\" action=\"{mount}/sign-in\">\n{hidden}\
             <label for=\"email\">Email</label>\n\
             <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" \
             required{email_focus} value=\"{email}\"{described}>\n\
             <label for=\"password\">Password</label>\n\
             <input id=\"password\" name=\"password\" type=\"password\" \
             autocomplete=\"current-password\" required{password_focus}{described}>\n\
             <button type=\"submit\">Sign in</button>\n</form>\n{sign_up}",
            mount = escape(self.mount),
            hidden = self.hidden_return(),
            email = escape(email),
            // Back with an email typed: the password is what is left to type.
            email_focus = if email.is_empty() { " autofocus" } else { "" },
            password_focus = if email.is_empty() { "" } else { " autofocus" },
        );
        self.layout("Sign in", notice, &body)
    }

    /// The registration form; `invalid` names the field an error is about.
    pub(super) fn sign_up(
        &self,
        form: &SignUpValues<'_>,
        notice: &Notice<'_>,
        invalid: Option<&str>,
        min_password: usize,
    ) -> String {
        let mark = |field: &str| {
            if invalid == Some(field) {
                " aria-invalid=\"true\" aria-describedby=\"form-error\""
            } else {
                ""
            }
        };
        let body = format!(
            "<form method=\"post\" action=\"{mount}/sign-up\">\n{hidden}\
             <label for=\"email\">Email</label>\n\
             <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" required \
             autofocus value=\"{email}\"{email_mark}>\n\
             <label for=\"full_name\">Full name</label>\n\
             <input id=\"full_name\" name=\"full_name\" type=\"text\" autocomplete=\"name\" \
             required maxlength=\"100\" value=\"{name}\"{name_mark}>\n\
             <label for=\"organization\">Organization <span class=\"hint\">(optional)</span></label>\n\
             <input id=\"organization\" name=\"organization\" type=\"text\" \
             autocomplete=\"organization\" maxlength=\"100\" value=\"{org}\"{org_mark}>\n\
             <label for=\"password\">Password</label>\n\
             <p class=\"hint\" id=\"password-hint\">At least {min_password} characters.</p>\n\
             <input id=\"password\" name=\"password\" type=\"password\" \
             autocomplete=\"new-password\" required minlength=\"{min_password}\" \
             aria-describedby=\"password-hint\"{pw_mark}>\n\
             <button type=\"submit\">Create account</button>\n</form>\n\
             <p class=\"alt\">Have an account? <a href=\"{mount}/sign-in{query}\">Sign in</a></p>\n",
            mount = escape(self.mount),
            hidden = self.hidden_return(),
            email = escape(form.email),
            name = escape(form.full_name),
            org = escape(form.organization),
            email_mark = mark("email"),
            name_mark = mark("full_name"),
            org_mark = mark("organization"),
            pw_mark = mark("password"),
            query = escape(&self.query()),
        );
        self.layout("Create an account", notice, &body)
    }

    /// The sign-out confirmation: signing out changes state, so it is a POST.
    pub(super) fn sign_out(&self) -> String {
        let body = format!(
            "<form method=\"post\" action=\"{mount}/sign-out\">\n\
             <button type=\"submit\">Sign out</button>\n</form>\n",
            mount = escape(self.mount),
        );
        self.layout("Sign out", &Notice::None, &body)
    }
}

/// What the registration form re-shows after an error (never the password).
pub(super) struct SignUpValues<'a> {
    pub email: &'a str,
    pub full_name: &'a str,
    pub organization: &'a str,
}

/// The page's security headers: a CSP allowing only this origin, forms that post here or
/// to an allowed return origin (browsers apply `form-action` to the redirect after the
/// post), no framing, no caching, no referrer (the URL carries the return target).
fn page_headers(config: &SignInConfig) -> HeaderMap {
    let mut form_action = String::from("'self'");
    for source in config.return_origins.sources() {
        form_action.push(' ');
        form_action.push_str(&source);
    }
    let csp = format!(
        "default-src 'self'; form-action {form_action}; frame-ancestors 'none'; \
         base-uri 'none'; object-src 'none'"
    );
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(http::header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h
}

/// An HTML page response.
pub(super) fn html(config: &SignInConfig, status: StatusCode, body: String) -> Response {
    (status, page_headers(config), body).into_response()
}

/// A 303 to `location` (a validated return target, or a page under the mount).
pub(super) fn see_other(location: &str, mut headers: HeaderMap) -> Response {
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(http::header::LOCATION, v);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (StatusCode::SEE_OTHER, headers).into_response()
}

/// The stylesheet response.
pub(super) fn stylesheet() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        STYLESHEET,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_typed_is_escaped() {
        assert_eq!(
            escape("\"><script>alert('x')</script>&"),
            "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
        let config = crate::config::Config::from_toml("", Vec::new())
            .unwrap()
            .sign_in;
        let page = Page {
            mount: "/auth",
            config: &config,
            return_to: "/a\"><img src=x>",
        };
        let html = page.sign_in(
            "e\"><svg onload=alert(1)>@x.io",
            &Notice::Error("<b>"),
            true,
        );
        assert!(!html.contains("<svg") && !html.contains("<img") && !html.contains("<b>"));
        assert!(
            html.contains("value=\"/a&quot;&gt;&lt;img src=x&gt;\""),
            "{html}"
        );
        assert!(html.contains("aria-invalid=\"true\""));
    }
}
