//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; also compiled for the
//! unit tests, which run each on its seed corpus, so they cannot rot). Each takes arbitrary
//! bytes and drives one parser to its end, asserting what must hold whatever the input: a
//! fuzzer reports a panic, a hang or a failed assertion as a finding.

use std::sync::OnceLock;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::auth::{api_key, credentials, jwt::JwtKeys};
use crate::proxy::codec::{self, Chunked, Step};

/// Path normalization: never panics; a normalized path normalizes to itself and keeps no
/// empty or dot segment.
pub fn path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = crate::path::normalize(text) {
        assert!(n.starts_with('/') && !n.contains("//"), "{text:?} -> {n:?}");
        assert!(
            !n[1..].split('/').any(|s| s == "." || s == ".."),
            "{text:?} -> {n:?}"
        );
        assert_eq!(crate::path::normalize(&n).as_deref(), Ok(&*n));
        let _ = crate::path::is_local_target(text);
    }
}

/// The upstream response-head parser, for a GET and a HEAD, consuming interim responses as
/// the client does: consumes at most what it was given.
pub fn response_head(data: &[u8]) {
    for method in [Method::GET, Method::HEAD] {
        let mut buf = BytesMut::from(data);
        let mut fields = Vec::new();
        for _ in 0..8 {
            let before = buf.len();
            match codec::parse_response_head(&mut buf, &method, &mut fields) {
                Ok(Some(head)) if head.status.is_informational() => {
                    assert!(buf.len() < before);
                }
                Ok(_) | Err(_) => break,
            }
        }
    }
}

/// The chunked decoder on the input, handed over whole and then a byte at a time: it
/// decodes or errors, never spins, and never yields more than it was given.
pub fn chunked(data: &[u8]) {
    for step in [data.len().max(1), 1] {
        let mut state = Chunked::Size;
        let mut buf = BytesMut::new();
        let (mut fed, mut out) = (0, 0);
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 4 * data.len() + 16, "the decoder spins");
            match codec::decode_chunked(&mut state, &mut buf) {
                Ok(Step::Data(d)) => out += d.len(),
                Ok(Step::Progress) => {}
                Ok(Step::NeedMore) if fed < data.len() => {
                    let n = step.min(data.len() - fed);
                    buf.extend_from_slice(&data[fed..fed + n]);
                    fed += n;
                }
                Ok(Step::NeedMore | Step::End(_)) | Err(_) => break,
            }
        }
        assert!(out <= data.len());
    }
}

/// Credential extraction from request headers (`name: value` lines): `Authorization`,
/// `X-API-Key`, cookies, and the query-string check.
pub fn credentials(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            headers.append(n, v);
        }
    }
    if let Ok(Some(cred)) = credentials::extract(&headers) {
        assert!(!cred.secret.is_empty());
    }
    let _ = credentials::cookie(&headers, credentials::REFRESH_COOKIE);
    let _ = credentials::cookies(&headers).count();
    if let Ok(query) = std::str::from_utf8(data) {
        let _ = credentials::query_has_credential(query);
    }
}

/// API-key parsing: a key that is well formed has the hint of one.
pub fn api_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if api_key::is_well_formed(text) {
        assert!(api_key::looks_like_key(text));
        let _ = api_key::hint(text);
    }
}

#[allow(
    clippy::expect_used,
    reason = "a fixed configuration: failing here is a bug in the harness"
)]
fn hs256_keys() -> &'static JwtKeys {
    static KEYS: OnceLock<JwtKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let text = "[tokens]\nalgorithm = \"HS256\"\n\
                    hmac_secret = \"a fuzzing secret of at least thirty-two bytes\"\n";
        let cfg = crate::config::Config::from_toml(text, Vec::new())
            .expect("fixed configuration")
            .tokens;
        let material = crate::auth::signing_keys::load(&cfg).expect("fixed key");
        JwtKeys::new(material, &cfg)
    })
}

/// JWT pre-parsing and verification: header and claims are read from untrusted bytes before
/// any signature is known good. Nothing unsigned by the key is ever accepted.
pub fn jwt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert!(hs256_keys().verify(text).is_err(), "{text:?} verified");
}

/// Configuration parsing and validation of arbitrary text.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::from_toml(text, Vec::new());
    }
}

#[cfg(test)]
mod tests {
    /// Every target on every committed seed: the seeds stay valid inputs for their target,
    /// and the targets keep compiling.
    #[test]
    fn every_target_takes_its_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 7] = [
            ("path", super::path),
            ("response_head", super::response_head),
            ("chunked", super::chunked),
            ("credentials", super::credentials),
            ("api_key", super::api_key),
            ("jwt", super::jwt),
            ("config", super::config),
        ];
        for (name, target) in targets {
            let dir = root.join(name);
            let seeds: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.expect("seed").path())
                .collect();
            assert!(!seeds.is_empty(), "{name} has no seeds");
            for seed in seeds {
                target(&std::fs::read(&seed).expect("readable seed"));
            }
        }
    }
}
