//! Path grammar: one canonical spelling of a request path, and whether a path lies under a
//! prefix. Routing, authorization and forwarding all use the output of `normalize`, so the
//! upstream receives exactly the path that was authorized; configuration uses the same rules
//! to check route prefixes. Paths that cannot be normalized unambiguously are errors, never
//! guesses. Depends on nothing else in the crate.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
/// Why a path has no one canonical spelling (400).
pub enum PathError {
    #[error("the request path must start with '/'")]
    /// Not starting with `/`.
    NotAbsolute,
    #[error("the request path has a malformed percent-encoding")]
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    #[error("the request path has an encoded '/' or '\\'")]
    /// `%2F` or `%5C`.
    EncodedSeparator,
    #[error("the request path has a backslash")]
    /// A raw `\\`.
    Backslash,
    #[error("the request path has a NUL or control character")]
    /// `%00`, another control character, or DEL.
    ControlByte,
    #[error("the request path has a ';' path parameter")]
    /// A `;` (raw or encoded).
    PathParameter,
    #[error("the request path has a raw non-ASCII byte")]
    /// A raw byte above 0x7F.
    NonAscii,
    #[error("the request path climbs above the root")]
    /// More `..` than segments.
    AboveRoot,
    #[error("the request path is percent-encoded twice")]
    /// `%25` followed by two hex digits.
    DoubleEncoding,
    #[error("the request path has a raw space, '#', '?', '<', '>' or '`'")]
    /// A byte that ends or cannot be in a request target: HTTP parsers never deliver one,
    /// but a path from a header (forward-auth) could carry it.
    NotInPath,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks one raw byte (outside percent-encodings).
fn check_raw(b: u8) -> Result<(), PathError> {
    match b {
        b'\\' => Err(PathError::Backslash),
        b';' => Err(PathError::PathParameter),
        b' ' | b'#' | b'?' | b'<' | b'>' | b'`' => Err(PathError::NotInPath),
        0..=0x1f | 0x7f => Err(PathError::ControlByte),
        0x80..=0xff => Err(PathError::NonAscii),
        _ => Ok(()),
    }
}

/// Whether `path` is already canonical: then no allocation is needed.
fn is_canonical(path: &[u8]) -> Result<bool, PathError> {
    let mut canonical = true;
    let mut segment_start = 1;
    for (i, &b) in path.iter().enumerate().skip(1) {
        check_raw(b)?;
        if b == b'%' {
            canonical = false;
        }
        if b == b'/' {
            let seg = &path[segment_start..i];
            if seg.is_empty() || seg == b"." || seg == b".." {
                canonical = false;
            }
            segment_start = i + 1;
        }
    }
    let last = &path[segment_start.min(path.len())..];
    if last == b"." || last == b".." {
        canonical = false;
    }
    Ok(canonical)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes percent-encoded unreserved characters, upper-cases the hex of the rest, and
/// refuses encodings that would change the path's structure.
fn decode_unreserved(path: &[u8]) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b != b'%' {
            check_raw(b)?;
            out.push(b as char);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            path.get(i + 1).copied().and_then(hex_value),
            path.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::BadPercentEncoding);
        };
        let v = hi << 4 | lo;
        match v {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            b';' => return Err(PathError::PathParameter),
            0..=0x1f | 0x7f => return Err(PathError::ControlByte),
            // `%25` then two hex digits: a second decoding (by the upstream, a framework, a
            // WAF) would read something else than what was authorized.
            b'%' if path.get(i + 3).copied().and_then(hex_value).is_some()
                && path.get(i + 4).copied().and_then(hex_value).is_some() =>
            {
                return Err(PathError::DoubleEncoding);
            }
            _ if is_unreserved(v) => out.push(v as char),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(hi)] as char);
                out.push(HEX[usize::from(lo)] as char);
            }
        }
        i += 3;
    }
    // Decoding can put hex digits right after a `%25` (`%25%32%65` becomes `%252e`): the
    // result is judged too, not only the input.
    let doubly = out
        .as_bytes()
        .windows(5)
        .any(|w| &w[..3] == b"%25" && hex_value(w[3]).is_some() && hex_value(w[4]).is_some());
    if doubly {
        return Err(PathError::DoubleEncoding);
    }
    Ok(out)
}

/// Returns the canonical form of an origin-form request path (no query string): dot
/// segments resolved, duplicate slashes merged, encoded unreserved characters decoded.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(bytes)? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in decoded[1..].split('/') {
        trailing_slash = false;
        match seg {
            "" | "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Whether `path` is `prefix` or lies below it on a segment boundary, comparing letters
/// exactly.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Like `under_prefix`, but ASCII letters match in either case: `/API/Admin` is under
/// `/api/admin`, as upstreams that route case-insensitively (Express, ASP.NET) would read
/// it. Normalized paths are ASCII, so the matched part has the prefix's length.
pub fn under_prefix_ignoring_case(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let (p, pre) = (path.as_bytes(), prefix.as_bytes());
    p.len() >= pre.len()
        && p[..pre.len()].eq_ignore_ascii_case(pre)
        && (p.len() == pre.len() || p[pre.len()] == b'/')
}

/// Whether `target` is a path on the page's own origin that no browser reads as another
/// origin — the only kind of return URL followed without an allow-list. It must start with
/// exactly one `/`; a second `/` or a `\` there makes it protocol-relative (`//evil.example`,
/// `/\evil.example`). Backslashes (read as `/`), spaces and control bytes (tabs and newlines
/// are dropped by URL parsers) and non-ASCII bytes are refused anywhere as written; after
/// each of up to three percent-decodings (`/%2F%2Fevil`, `/%252F%252Fevil`) the path part
/// must still start with one `/` and hold no `\` or control byte (a decoded space or UTF-8
/// letter is fine). Nor may dot segments, resolved as a browser resolves them (`%2e` is a
/// dot to it), leave a path that starts with `//` (`/.//evil.example`, `/x/..//evil.example`):
/// the browser stays on this origin, but an upstream that redirects such a path would send it
/// on to `//evil.example`.
pub fn is_local_target(target: &str) -> bool {
    fn plain(bytes: &[u8]) -> bool {
        bytes.first() == Some(&b'/')
            && bytes.get(1).is_none_or(|b| *b != b'/')
            && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\')
            && !resolves_protocol_relative(bytes)
    }
    // What a decoding reveals may hold spaces or UTF-8 (`/a%20b`, `/caf%C3%A9`), but
    // nothing that turns it into another origin or hides from a later check.
    fn safe_decoded(bytes: &[u8]) -> bool {
        bytes.first() == Some(&b'/')
            && bytes.get(1).is_none_or(|b| *b != b'/' && *b != b'\\')
            && bytes
                .iter()
                .all(|b| *b >= 0x20 && *b != 0x7f && *b != b'\\')
            && !resolves_protocol_relative(bytes)
    }
    // RFC 3986 §5.2.4 on the path's segments: whether what is left starts with an empty
    // segment followed by another, i.e. with `//`.
    fn resolves_protocol_relative(bytes: &[u8]) -> bool {
        let end = bytes
            .iter()
            .position(|b| *b == b'?' || *b == b'#')
            .unwrap_or(bytes.len());
        let mut kept: Vec<&[u8]> = Vec::new();
        for segment in bytes[..end].split(|b| *b == b'/').skip(1) {
            match segment {
                b"." => {}
                b".." => {
                    kept.pop();
                }
                _ => kept.push(segment),
            }
        }
        kept.len() > 1 && kept[0].is_empty()
    }
    fn decode(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let pair = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            );
            match (bytes[i], pair) {
                (b'%', (Some(hi), Some(lo))) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }
    if target.len() > 2048 || !plain(target.as_bytes()) {
        return false;
    }
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let mut path = target.as_bytes()[..end].to_vec();
    for _ in 0..3 {
        let decoded = decode(&path);
        if decoded == path {
            return true;
        }
        if !safe_decoded(&decoded) {
            return false;
        }
        path = decoded;
    }
    // Still changing after three decodings: nothing legitimate is encoded that deep.
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_targets_cannot_leave_the_origin() {
        for ok in [
            "/",
            "/app",
            "/app/x?next=%2Fy&q=a%20b#top",
            "/a%20b",
            "/caf%C3%A9",
            "/x/..%2Fy",
            "/x/../y",
            "/./y",
            "/a//b",
        ] {
            assert!(is_local_target(ok), "{ok}");
        }
        for bad in [
            "",
            "app",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%252F%252Fevil.example",
            "/%25252F%25252Fevil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/caf\u{e9}",
            "/%00",
            // Dot segments that resolve to a protocol-relative path, also encoded.
            "/.//evil.example",
            "/..//evil.example",
            "/x/..//evil.example",
            "/x/.././/evil.example?a",
            "/%2e//evil.example",
            "/%2E%2E//evil.example",
            "/%252e//evil.example",
        ] {
            assert!(!is_local_target(bad), "{bad:?}");
        }
        assert!(!is_local_target(&format!("/{}", "a".repeat(2048))));
    }

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in ["/", "/api", "/api/x/", "/a.b/c..d/.e"] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn resolves_dots_and_merges_slashes() {
        assert_eq!(n("//api//x").unwrap(), "/api/x");
        assert_eq!(n("/api/./x").unwrap(), "/api/x");
        assert_eq!(n("/a/../api/x").unwrap(), "/api/x");
        assert_eq!(n("/api/x/..").unwrap(), "/api/");
        assert_eq!(n("/api/.").unwrap(), "/api/");
        assert_eq!(n("/a/b/../../").unwrap(), "/");
        assert_eq!(n("/api//").unwrap(), "/api/");
    }

    #[test]
    fn decodes_unreserved_only() {
        assert_eq!(n("/%61pi/%7e%2D").unwrap(), "/api/~-");
        assert_eq!(n("/a%20b/%c3%a9").unwrap(), "/a%20b/%C3%A9");
        assert_eq!(n("/a/%2e%2e/b").unwrap(), "/b");
        assert_eq!(n("/%25").unwrap(), "/%25");
        assert_eq!(n("/%25zz").unwrap(), "/%25zz");
        assert_eq!(n("/100%25").unwrap(), "/100%25");
        // idempotent
        assert_eq!(n(&n("/a%20b/%c3%a9").unwrap()).unwrap(), "/a%20b/%C3%A9");
    }

    #[test]
    fn rejects_ambiguous_paths() {
        assert_eq!(n("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a\\b"), Err(PathError::Backslash));
        assert_eq!(n("/a%00"), Err(PathError::ControlByte));
        assert_eq!(n("/a%0a"), Err(PathError::ControlByte));
        assert_eq!(n("/a\tb"), Err(PathError::ControlByte));
        assert_eq!(n("/a;jsessionid=1"), Err(PathError::PathParameter));
        assert_eq!(n("/a%3bb"), Err(PathError::PathParameter));
        assert_eq!(n("/%2e%2e/etc"), Err(PathError::AboveRoot));
        assert_eq!(n("/api/%2e%2e/%2e%2e/x"), Err(PathError::AboveRoot));
        assert_eq!(n("/../x"), Err(PathError::AboveRoot));
        assert_eq!(
            n("/public/%252e%252e/admin"),
            Err(PathError::DoubleEncoding)
        );
        assert_eq!(n("/a/%252F"), Err(PathError::DoubleEncoding));
        assert_eq!(n("/a/%2541"), Err(PathError::DoubleEncoding));
        // Found by fuzzing: decoding `%32` and `%65` made `%25%32%65` the `%252e` refused
        // above, and a path that normalized to something it would itself refuse.
        assert_eq!(
            n("/public/%25%32%65%25%32%65/admin"),
            Err(PathError::DoubleEncoding)
        );
        assert_eq!(n("/ic/%258%327x"), Err(PathError::DoubleEncoding));
        assert_eq!(n("/a/%25%7a").as_deref(), Ok("/a/%25z"));
        assert_eq!(n("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(n("/a%4"), Err(PathError::BadPercentEncoding));
        assert_eq!(n("/é"), Err(PathError::NonAscii));
        // Found by the routing properties: a raw `#` stayed in the path and was cut by the
        // upstream URI, so the upstream saw another path than the one matched.
        assert_eq!(n("/#a"), Err(PathError::NotInPath));
        assert_eq!(n("/a b"), Err(PathError::NotInPath));
        assert_eq!(n("/a?b"), Err(PathError::NotInPath));
        assert_eq!(n("/`a"), Err(PathError::NotInPath));
        assert_eq!(n("/a%23b").as_deref(), Ok("/a%23b"));
        assert_eq!(n("api"), Err(PathError::NotAbsolute));
        assert_eq!(n(""), Err(PathError::NotAbsolute));
    }
}
