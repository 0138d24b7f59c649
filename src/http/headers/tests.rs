use std::net::SocketAddr;

use ipnet::IpNet;

use super::*;
use crate::http::client::client_ip;
use crate::identity::Role;
fn policy() -> HeaderPolicy {
    let cfg = crate::config::Config::from_toml("", Vec::new()).unwrap();
    HeaderPolicy::new(cfg.identity_headers)
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn conn(trusted: bool) -> ConnInfo {
    let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
    let nets: Vec<IpNet> = if trusted {
        vec!["10.0.0.0/8".parse().unwrap()]
    } else {
        vec![]
    };
    ConnInfo::new(peer, &nets)
}

/// Prepares `h` as it would be forwarded: the injected fields are written the way the
/// upstream request head gets them, then read back into `h`.
fn prepare(
    h: &mut HeaderMap,
    identity: Option<&Identity>,
    trusted: bool,
    forward_credentials: bool,
) {
    let c = conn(trusted);
    let rid = HeaderValue::from_static("rid-1");
    let policy = policy();
    let injected = policy.prepare_request(
        h,
        &Forwarding {
            conn: &c,
            identity: identity.map(|i| (i, AuthMethod::Jwt)),
            request_id: &rid,
            forward_credentials,
            upgrade: false,
            assertion: None,
        },
    );
    let mut buf = Vec::new();
    crate::proxy::write_extra_fields(&mut buf, &injected);
    let text = String::from_utf8(buf).unwrap();
    let lines = text.strip_suffix("\r\n").unwrap().split("\r\n");
    for line in lines {
        let (name, value) = line.split_once(": ").unwrap();
        assert!(
            !h.contains_key(name),
            "{name} is injected and was also left in the request"
        );
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
}

#[test]
fn spoofed_identity_headers_are_removed_under_every_spelling() {
    let spoofs = [
        "x-user-id",
        "X_User_Id",
        "x.user.id",
        "x-user_id",
        "X-USER-EMAIL",
        "x_user_role",
        "x-auth-method",
        "x.auth.key.id",
        "x-forwarded-for",
        "x_forwarded_host",
        "forwarded",
        "x-real-ip",
    ];
    let pairs: Vec<(&str, &str)> = spoofs.iter().map(|s| (*s, "evil")).collect();
    let mut h = map(&pairs);
    h.append("x-user-idx", HeaderValue::from_static("kept"));
    prepare(&mut h, None, false, false);
    for s in spoofs {
        let name = HeaderName::from_bytes(s.as_bytes()).unwrap();
        assert!(h.get_all(&name).iter().all(|v| v != "evil"), "{s} survived");
    }
    assert_eq!(h.get("x-user-idx").unwrap(), "kept");
    assert!(
        h.get("x-user-id").is_none(),
        "no identity injected on an anonymous request"
    );
    assert_eq!(h.get("x-forwarded-for").unwrap(), "10.1.2.3");
    assert_eq!(h.get("x-request-id").unwrap(), "rid-1");
}

#[test]
fn client_address_scheme_and_method_override_headers_are_removed() {
    let spoofs = [
        "True-Client-IP",
        "x_client_ip",
        "X-Cluster-Client-IP",
        "CF-Connecting-IP",
        "fastly.client.ip",
        "Client-IP",
        "X-Forwarded-Ssl",
        "x_forwarded_scheme",
        "X-Scheme",
        "X-Forwarded-Server",
        "X-Original-Host",
        "X-HTTP-Method-Override",
        "x_http_method",
        "X-Method-Override",
    ];
    let pairs: Vec<(&str, &str)> = spoofs.iter().map(|s| (*s, "evil")).collect();
    let mut h = map(&pairs);
    // Near names are not caught by the folding.
    h.append("x-http-methods", HeaderValue::from_static("kept"));
    h.append("x-client-ipv6", HeaderValue::from_static("kept"));
    prepare(&mut h, None, false, false);
    for s in spoofs {
        let name = HeaderName::from_bytes(s.as_bytes()).unwrap();
        assert!(h.get(&name).is_none(), "{s} survived");
    }
    assert_eq!(h.get("x-http-methods").unwrap(), "kept");
    assert_eq!(h.get("x-client-ipv6").unwrap(), "kept");
}

#[test]
fn identity_is_injected_after_stripping() {
    let id = Identity::new(
        "user_1".into(),
        "a@b.io".into(),
        Role::Admin,
        Some("s".into()),
        None,
    )
    .unwrap();
    let mut h = map(&[
        ("x-user-id", "evil"),
        ("x-user-role", "admin"),
        ("connection", "X-User-Id, x-user-role"),
    ]);
    prepare(&mut h, Some(&id), false, false);
    assert_eq!(
        h.get_all("x-user-id").iter().collect::<Vec<_>>(),
        vec!["user_1"]
    );
    assert_eq!(h.get("x-user-email").unwrap(), "a@b.io");
    assert_eq!(h.get("x-user-role").unwrap(), "admin");
    assert_eq!(h.get("x-auth-method").unwrap(), "jwt");
    assert!(h.get("x-auth-key-id").is_none());
    assert!(h.get("connection").is_none());
}

#[test]
fn connection_named_and_hop_by_hop_headers_are_removed_from_requests() {
    let mut h = map(&[
        ("connection", "keep-alive, X-Secret-Internal"),
        ("x-secret-internal", "1"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("proxy-authorization", "Basic x"),
        ("accept", "*/*"),
    ]);
    prepare(&mut h, None, false, false);
    for gone in [
        "connection",
        "x-secret-internal",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(!h.contains_key(gone), "{gone}: {h:?}");
    }
    assert!(h.contains_key("accept"));
}

#[test]
fn websocket_handshakes_are_recognised() {
    let h = map(&[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
    ]);
    assert!(is_websocket_upgrade(&http::Method::GET, &h));
    assert!(!is_websocket_upgrade(&http::Method::POST, &h));
    let h2c = map(&[("connection", "Upgrade"), ("upgrade", "h2c")]);
    assert!(!is_websocket_upgrade(&http::Method::GET, &h2c));
}

#[test]
fn credentials_are_not_forwarded_unless_the_route_opts_in() {
    let cookies = "theme=dark; access_token=abc; refresh_token=def; lang=en";
    let mut h = map(&[
        ("authorization", "Bearer x"),
        ("x-api-key", "k"),
        ("x_api_key", "k"),
        ("cookie", cookies),
    ]);
    prepare(&mut h, None, false, false);
    assert!(h.get("authorization").is_none());
    assert!(h.get("x-api-key").is_none());
    assert!(h.get("x_api_key").is_none());
    assert_eq!(h.get("cookie").unwrap(), "theme=dark; lang=en");
    let mut h = map(&[("authorization", "Bearer x"), ("cookie", cookies)]);
    prepare(&mut h, None, false, true);
    assert_eq!(h.get("authorization").unwrap(), "Bearer x");
    assert_eq!(h.get("cookie").unwrap(), cookies);
}

#[test]
fn forwarded_credentials_are_kept_out_of_http2_compression() {
    let mut h = map(&[
        ("authorization", "Bearer x"),
        ("x-api-key", "k1"),
        ("x-api-key", "k2"),
        ("x_api_key", "k3"),
        ("x-custom", "v"),
    ]);
    prepare(&mut h, None, false, true);
    for name in ["authorization", "x-api-key", "x_api_key"] {
        assert!(h.get_all(name).iter().all(|v| v.is_sensitive()), "{name}");
    }
    assert_eq!(h.get_all("x-api-key").iter().count(), 2);
    assert!(!h.get("x-custom").unwrap().is_sensitive());
}

#[test]
fn forwarded_for_is_trusted_only_from_trusted_proxies() {
    let mut h = map(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "a.io"),
        ("host", "inner"),
    ]);
    prepare(&mut h, None, true, false);
    assert_eq!(h.get("x-forwarded-for").unwrap(), "1.1.1.1, 10.1.2.3");
    assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    assert_eq!(h.get("x-forwarded-host").unwrap(), "a.io");
    let mut h = map(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-proto", "https"),
        ("host", "inner"),
    ]);
    prepare(&mut h, None, false, false);
    assert_eq!(h.get("x-forwarded-for").unwrap(), "10.1.2.3");
    assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
    assert_eq!(h.get("x-forwarded-host").unwrap(), "inner");
}

#[test]
fn request_ids() {
    let good = map(&[("x-request-id", "abc-123:XYZ")]);
    assert_eq!(request_id(&good), "abc-123:XYZ");
    let bad = map(&[("x-request-id", "has space")]);
    let generated = request_id(&bad);
    assert_ne!(generated, "has space");
    // A UUIDv7: version 7, RFC 9562 variant, the current millisecond first.
    let text = generated.to_str().unwrap();
    assert_eq!(text.len(), 36);
    let groups: Vec<&str> = text.split('-').collect();
    assert_eq!(
        groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(groups[2].starts_with('7'));
    assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let millis = u64::from_str_radix(&format!("{}{}", groups[0], groups[1]), 16).unwrap();
    assert!(now.abs_diff(millis) < 5_000, "{millis} vs {now}");
    // Unpredictable: two ids in the same millisecond share no more than the time.
    let next = request_id(&bad);
    assert_ne!(generated, next, "ids are unique");
    assert_ne!(text[24..], next.to_str().unwrap()[24..], "random tail");
    let long = "a".repeat(129);
    assert_ne!(request_id(&map(&[("x-request-id", &long)])), long.as_str());
}

#[test]
fn client_ip_skips_trusted_hops() {
    let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let c = ConnInfo::new("10.0.0.9:1".parse().unwrap(), &nets);
    let h = map(&[("x-forwarded-for", "7.7.7.7, 203.0.113.5, 10.0.0.2")]);
    assert_eq!(client_ip(&c, &h, &nets), "203.0.113.5");
    let untrusted = ConnInfo::new("198.51.100.1:1".parse().unwrap(), &nets);
    assert_eq!(client_ip(&untrusted, &h, &nets), "198.51.100.1");
}
