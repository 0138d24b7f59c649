//! Tests of configuration validation: defaults, error messages naming keys, route rules.

use crate::config::Config;

fn load(text: &str) -> Result<Config, String> {
    Config::from_toml(text, Vec::new()).map_err(|e| e.to_string())
}

const ROUTE: &str =
    "[[routes]]\nname = \"api\"\nprefix = \"/api\"\nupstream = \"http://127.0.0.1:9000\"\n";

#[test]
fn defaults_apply_when_file_is_empty() {
    let c = load("").unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.accounts.mount, "/api/v1/auth");
    assert_eq!(c.tokens.access_ttl.as_secs(), 900);
    assert_eq!(c.tokens.refresh_ttl.as_secs(), 30 * 86400);
    assert_eq!(
        c.tokens.key_dir,
        std::path::PathBuf::from("portcullis-data")
    );
    assert!(c.routes.is_empty());
}

#[test]
fn route_defaults_to_authenticated() {
    let c = load(ROUTE).unwrap();
    assert_eq!(c.routes[0].policy, super::Policy::Authenticated);
    assert!(!c.routes[0].strip_prefix);
}

#[test]
fn errors_name_the_key() {
    let bad_upstream = format!(
        "{ROUTE}{}",
        ROUTE
            .replace("api", "b")
            .replace("http://127.0.0.1:9000", "htp://x")
    );
    assert_eq!(
        load(&bad_upstream).unwrap_err(),
        "routes[1].upstream: \"htp://x\" is not an http(s) URL"
    );
    let unknown = format!("{ROUTE}colour = \"red\"\n");
    let err = load(&unknown).unwrap_err();
    assert!(
        err.starts_with("routes[0].colour: unknown field `colour`"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    let err = load("[server]\nlisten = \"nope\"\n").unwrap_err();
    assert!(err.starts_with("server.listen: "), "{err}");
    let err = load("[tokens]\naccess_ttl = \"soon\"\n").unwrap_err();
    assert!(err.starts_with("tokens.access_ttl: "), "{err}");
    let err = load(&format!("{ROUTE}roles = [\"admn\"]\n")).unwrap_err();
    assert!(err.starts_with("routes[0].roles[0]: "), "{err}");
    let err = load(&format!("{ROUTE}{ROUTE}")).unwrap_err();
    assert!(err.starts_with("routes[1].name: "), "{err}");
    let err = load("[server]\nmax_connections = \"many\"\n").unwrap_err();
    assert!(err.starts_with("server.max_connections: "), "{err}");
    let err = load("[cookies]\ndomain = \"a.io; Path=/x\"\n").unwrap_err();
    assert!(err.starts_with("cookies.domain: "), "{err}");
    assert!(load("[cookies]\ndomain = \".example.com\"\n").is_ok());
}

#[test]
fn prefixes_must_be_normalized() {
    for p in ["/api/", "api", "/a//b", "/a/../b", "/a%2Fb"] {
        let text = ROUTE.replace("\"/api\"", &format!("{p:?}"));
        let err = load(&text).unwrap_err();
        assert!(err.starts_with("routes[0].prefix: "), "{p}: {err}");
    }
}

#[test]
fn roles_policy_parses() {
    let c = load(&format!("{ROUTE}roles = [\"admin\", \"researcher\"]\n")).unwrap();
    assert_eq!(
        c.routes[0].policy,
        super::Policy::Roles(vec![
            crate::identity::Role::Admin,
            crate::identity::Role::Researcher
        ])
    );
    let err = load(&format!("{ROUTE}auth = \"public\"\nroles = [\"admin\"]\n")).unwrap_err();
    assert!(err.starts_with("routes[0].roles: "), "{err}");
}

#[test]
fn hs256_requires_a_long_secret() {
    let err = load("[tokens]\nalgorithm = \"HS256\"\nhmac_secret = \"short\"\n").unwrap_err();
    assert!(err.starts_with("tokens.hmac_secret: "), "{err}");
    let ok = load(&format!(
        "[tokens]\nalgorithm = \"HS256\"\nhmac_secret = \"{}\"\n",
        "k".repeat(32)
    ));
    assert!(ok.is_ok());
}

#[test]
fn env_override_reaches_validation() {
    let c = Config::from_toml(
        "",
        vec![(
            "PORTCULLIS_ACCOUNTS__MOUNT".to_string(),
            "/auth".to_string(),
        )],
    )
    .unwrap();
    assert_eq!(c.accounts.mount, "/auth");
}

#[test]
fn a_route_that_can_never_match_is_an_error_naming_both() {
    let admin = "[[routes]]\nname = \"admin\"\nprefix = \"/api/admin\"\nroles = [\"admin\"]\nupstream = \"http://127.0.0.1:9000\"\n";
    // The broad route first makes the admin route dead.
    let err = load(&format!("{ROUTE}{admin}")).unwrap_err();
    assert!(err.starts_with("routes[1]: "), "{err}");
    assert!(
        err.contains("\"admin\"") && err.contains("\"api\""),
        "{err}"
    );
    // The other order is the intended one.
    assert!(load(&format!("{admin}{ROUTE}")).is_ok());
    // Same prefix twice, or a catch-all first.
    let dup = ROUTE.replace("name = \"api\"", "name = \"api2\"");
    assert!(
        load(&format!("{ROUTE}{dup}"))
            .unwrap_err()
            .starts_with("routes[1]: ")
    );
    let all = ROUTE
        .replace("\"/api\"", "\"/\"")
        .replace("name = \"api\"", "name = \"all\"");
    assert!(
        load(&format!("{all}{ROUTE}"))
            .unwrap_err()
            .starts_with("routes[1]: ")
    );
    // Case: an insensitive "/api" covers "/API/admin" too.
    let upper = admin.replace("/api/admin", "/API/admin");
    assert!(load(&format!("{ROUTE}{upper}")).is_err());
    // Narrower methods or a host on the earlier route leave the later one reachable.
    let get_only = format!("{ROUTE}methods = [\"GET\"]\n");
    assert!(load(&format!("{get_only}{admin}")).is_ok());
    let hosted = format!("{ROUTE}host = \"a.example.com\"\n");
    assert!(load(&format!("{hosted}{admin}")).is_ok());
    // Later methods within the earlier ones: still dead.
    let admin_get = format!("{admin}methods = [\"GET\"]\n");
    let get_post = format!("{ROUTE}methods = [\"GET\", \"POST\"]\n");
    assert!(load(&format!("{get_post}{admin_get}")).is_err());
    // A case-sensitive earlier route does not cover a case-insensitive later one.
    let strict = format!("{ROUTE}case_sensitive = true\n");
    assert!(load(&format!("{strict}{admin}")).is_ok());
    // Under the account API's mount.
    let mounted = ROUTE.replace("\"/api\"", "\"/api/v1/auth/extra\"");
    let err = load(&mounted).unwrap_err();
    assert!(err.starts_with("routes[0].prefix: "), "{err}");
}

#[test]
fn serving_needs_a_route() {
    let empty = load("").unwrap();
    let err = empty.check_serving().unwrap_err().to_string();
    assert!(err.starts_with("routes: "), "{err}");
    assert!(load(ROUTE).unwrap().check_serving().is_ok());
}

#[test]
fn identity_headers_cannot_take_framing_or_each_others_names() {
    for (key, value) in [
        ("user_id", "Content-Length"),
        ("email", "host"),
        ("role", "Connection"),
        ("auth_method", "Transfer_Encoding"),
        ("key_id", "cookie"),
        ("user_id", "X-Forwarded-For"),
        ("email", "x-user-id"),
    ] {
        let err = load(&format!("[identity_headers]\n{key} = \"{value}\"\n")).unwrap_err();
        assert!(
            err.starts_with(&format!("identity_headers.{key}: ")),
            "{key}={value}: {err}"
        );
    }
    assert!(load("[identity_headers]\nuser_id = \"X-Principal\"\n").is_ok());
}

#[test]
fn cors_mistakes_are_refused_naming_the_key() {
    let err = load(&format!("{ROUTE}cors = \"inherit\"\n")).unwrap_err();
    assert!(err.starts_with("routes[0].cors: "), "{err}");
    let err = load(&format!("{ROUTE}cors = \"everyone\"\n")).unwrap_err();
    assert!(err.starts_with("routes[0].cors: "), "{err}");
    let err = load("[cors]\nallowed_origins = [\"*\"]\n").unwrap_err();
    assert!(err.starts_with("cors.allowed_origins: "), "{err}");
    let err =
        load("[cors]\nallowed_origins = [\"https://a.example\", \"app.example\"]\n").unwrap_err();
    assert!(err.starts_with("cors.allowed_origins[1]: "), "{err}");
    let err = load(
        "[cors]\nallowed_origins = [\"https://a.example\"]\n[csrf]\nallowed_origins = [\"https://b.example\"]\n",
    )
    .unwrap_err();
    assert!(err.starts_with("csrf.allowed_origins: "), "{err}");
    let err = load(&format!(
        "{ROUTE}[routes.cors]\nallowed_origins = [\"https://a.example\"]\nallowed_methods = [\"GE T\"]\n"
    ))
    .unwrap_err();
    assert!(
        err.starts_with("routes[0].cors.allowed_methods[0]: "),
        "{err}"
    );
    let err = load("[cookies]\nsecure = false\nsame_site = \"none\"\n").unwrap_err();
    assert!(err.starts_with("cookies.same_site: "), "{err}");
    // Both spellings of one list: the CSRF rule sees what CORS allows.
    let c = load("[csrf]\nallowed_origins = [\"https://a.example\"]\n").unwrap();
    assert!(c.cors.unwrap().origins.allows("https://a.example"));
    assert!(c.csrf.allowed_origins.allows("https://a.example"));
}

#[test]
fn sign_in_mistakes_are_refused_naming_the_key() {
    let redirect = format!("{ROUTE}sign_in_redirect = true\n");
    assert!(load(&redirect).unwrap().routes[0].sign_in_redirect);
    let err = load(&format!("{redirect}[sign_in]\nenabled = false\n")).unwrap_err();
    assert!(err.starts_with("routes[0].sign_in_redirect: "), "{err}");
    let err = load(&format!("{redirect}auth = \"public\"\n")).unwrap_err();
    assert!(err.starts_with("routes[0].sign_in_redirect: "), "{err}");
    // An allow-list of everything is an open redirect.
    let err = load("[sign_in]\nreturn_origins = [\"*\"]\n").unwrap_err();
    assert!(err.starts_with("sign_in.return_origins: "), "{err}");
    let err = load("[sign_in]\nreturn_origins = [\"evil.example\"]\n").unwrap_err();
    assert!(err.starts_with("sign_in.return_origins[0]: "), "{err}");
    for bad in ["//evil.example", "https://evil.example", "app"] {
        let err = load(&format!("[sign_in]\ndefault_return = {bad:?}\n")).unwrap_err();
        assert!(err.starts_with("sign_in.default_return: "), "{err}");
    }
    let err = load("[sign_in]\napp_name = \"a\\nb\"\n").unwrap_err();
    assert!(err.starts_with("sign_in.app_name: "), "{err}");
}

#[test]
fn forward_auth_answers_only_trusted_proxies_and_hides_no_route() {
    let trusted = "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    assert!(
        load(&format!("{ROUTE}[forward_auth]\nenabled = true\n"))
            .is_err_and(|e| e.starts_with("forward_auth.enabled: "))
    );
    let c = load(&format!("{ROUTE}{trusted}[forward_auth]\nenabled = true\n")).unwrap();
    assert_eq!(c.forward_auth.unwrap().path, "/api/v1/auth/verify");
    let err = load(&format!(
        "{ROUTE}{trusted}[forward_auth]\nenabled = true\npath = \"/api/verify\"\n"
    ))
    .unwrap_err();
    assert!(
        err.starts_with("forward_auth.path: ") && err.contains("\"api\""),
        "{err}"
    );
    let err = load(&format!(
        "{ROUTE}{trusted}[forward_auth]\nenabled = true\npath = \"/a//b\"\n"
    ))
    .unwrap_err();
    assert!(err.starts_with("forward_auth.path: "), "{err}");
    let c = load(&format!(
        "{ROUTE}{trusted}[forward_auth]\nenabled = true\npath = \"/_verify\"\n"
    ))
    .unwrap();
    assert_eq!(c.forward_auth.unwrap().path, "/_verify");
    let err = load(&format!(
        "{ROUTE}{trusted}[forward_auth]\nenabled = true\npath = \"/api/v1/auth\"\n"
    ))
    .unwrap_err();
    assert!(err.starts_with("forward_auth.path: "), "{err}");
    assert!(load(ROUTE).unwrap().forward_auth.is_none());
}

#[test]
fn upstream_protocol_matches_the_scheme() {
    use crate::config::UpstreamProtocol;
    let with = |url: &str, extra: &str| {
        load(&format!(
            "{}{extra}",
            ROUTE.replace("http://127.0.0.1:9000", url)
        ))
    };
    let cfg = with("http://127.0.0.1:9000", "").unwrap();
    assert_eq!(cfg.routes[0].upstream.protocol, UpstreamProtocol::Http1);
    let cfg = with("http://127.0.0.1:9000", "upstream_protocol = \"h2c\"\n").unwrap();
    assert_eq!(cfg.routes[0].upstream.protocol, UpstreamProtocol::H2c);
    let cfg = with("https://127.0.0.1:9000", "upstream_protocol = \"h2\"\n").unwrap();
    assert_eq!(cfg.routes[0].upstream.protocol, UpstreamProtocol::H2);
    let cfg = with("https://127.0.0.1:9000", "upstream_protocol = \"auto\"\n").unwrap();
    assert_eq!(cfg.routes[0].upstream.protocol, UpstreamProtocol::Auto);
    for (url, extra) in [
        ("https://127.0.0.1:9000", "upstream_protocol = \"h2c\"\n"),
        ("http://127.0.0.1:9000", "upstream_protocol = \"h2\"\n"),
        ("http://127.0.0.1:9000", "upstream_protocol = \"auto\"\n"),
        ("http://127.0.0.1:9000", "upstream_protocol = \"h3\"\n"),
    ] {
        let err = with(url, extra).unwrap_err();
        assert!(err.starts_with("routes[0].upstream_protocol: "), "{err}");
    }
    let err = with(
        "http://127.0.0.1:9000",
        "upstream_protocol = \"h2c\"\nwebsocket = true\n",
    )
    .unwrap_err();
    assert!(err.starts_with("routes[0].websocket: "), "{err}");
    let err = with(
        "https://127.0.0.1:9000",
        "upstream_protocol = \"auto\"\nwebsocket = true\n",
    )
    .unwrap_err();
    assert!(err.starts_with("routes[0].websocket: "), "{err}");
}
