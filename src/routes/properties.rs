//! Properties of normalization and routing, checked on generated paths full of the
//! ambiguous spellings attackers use (dot segments plain and encoded, empty segments,
//! encoded slashes and backslashes, `%25`, path parameters, non-ASCII): a normalized path
//! normalizes to itself, holds no `//` and no dot segment in any spelling, and the path
//! forwarded upstream is exactly the one the route table matched.

use http::Method;
use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::path::{normalize, under_prefix_ignoring_case};

/// One piece of a segment; pieces are also glued together, so encodings meet their
/// neighbours (`%25` then `%32%65` spells `%252e` once decoded).
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("%25".to_owned()),
        Just("%32".to_owned()),
        Just("%65".to_owned()),
        Just("%41%7e".to_owned()),
        Just(";p=1".to_owned()),
        Just("API".to_owned()),
        Just("api".to_owned()),
        Just("files".to_owned()),
        "[a-zA-Z0-9._~-]{1,6}",
        any::<String>().prop_map(|s| s.chars().take(3).collect()),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        piece(),
        prop::collection::vec(piece(), 2..4).prop_map(|p| p.concat()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..8).prop_map(|s| format!("/{}", s.join("/")))
}

/// A segment as an upstream reads it: `%2e` is a dot.
fn is_dot_segment(seg: &str) -> bool {
    matches!(
        seg.to_ascii_lowercase().replace("%2e", ".").as_str(),
        "." | ".."
    )
}

fn table() -> RouteTable {
    let text = "[[routes]]\nname = \"api\"\nprefix = \"/api\"\nstrip_prefix = true\nupstream = \"http://127.0.0.1:2\"\n\
                [[routes]]\nname = \"files\"\nprefix = \"/files/static\"\nupstream = \"http://127.0.0.1:3/base\"\n\
                [[routes]]\nname = \"rest\"\nprefix = \"/\"\nupstream = \"http://127.0.0.1:4\"\n";
    let config = Config::from_toml(text, Vec::new()).expect("valid routes");
    RouteTable::new(config.routes, &Metrics::new(Vec::new())).expect("route table")
}

proptest! {
    #[test]
    fn normalization_is_idempotent_and_leaves_no_dot_or_empty_segment(p in path()) {
        if let Ok(n) = normalize(&p) {
            prop_assert!(n.starts_with('/'), "{n}");
            prop_assert!(!n.contains("//"), "{p} -> {n}");
            prop_assert!(!n[1..].split('/').any(is_dot_segment), "{p} -> {n}");
            let doubly = n.as_bytes().windows(5).any(|w| {
                w[..3].eq_ignore_ascii_case(b"%25") && w[3..].iter().all(u8::is_ascii_hexdigit)
            });
            prop_assert!(!doubly, "{p} -> {n} can be decoded twice");
            let again = normalize(&n).expect("a normalized path normalizes");
            prop_assert_eq!(&again, &n);
        }
    }

    #[test]
    fn the_forwarded_path_is_the_matched_path(p in path()) {
        let table = table();
        let Ok(n) = normalize(&p) else { return Ok(()) };
        let (_, route) = table.match_route(&Method::GET, None, &n).expect("`/` matches all");
        let prefix = route.rule.prefix.as_str();
        prop_assert!(under_prefix_ignoring_case(&n, prefix));
        let forwarded = forwarded_path(&route.rule, &n);
        let uri = crate::proxy::upstream_target(route.upstream.base_path(), forwarded, None)
            .expect("a normalized path is a valid target");
        let sent = uri.path();
        // What the upstream receives reads back as itself: nothing left to reinterpret.
        let reread = normalize(sent);
        prop_assert_eq!(reread.as_deref().ok(), Some(sent));
        let base = route.upstream.base_path();
        prop_assert!(sent.starts_with(base));
        let after_base = &sent[base.len()..];
        if route.rule.strip_prefix {
            let restored = if after_base == "/" && n.len() == prefix.len() {
                n[..prefix.len()].to_owned()
            } else {
                format!("{}{after_base}", &n[..prefix.len()])
            };
            prop_assert_eq!(restored, n.as_ref());
        } else {
            prop_assert_eq!(after_base, n.as_ref());
        }
    }
}
