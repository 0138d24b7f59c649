//! Secret material: `Secret`, the newtype that keeps a secret out of logs, and the crate's
//! random identifiers and hashes (OS CSPRNG, SHA-256, constant-time comparison). Depends on
//! nothing else in the crate.

use aws_lc_rs::digest::{SHA256, digest};

/// The alphabet of random tokens and API keys.
pub(crate) const BASE62: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A secret value (password, token, key). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself, for the code that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `N` bytes from the system CSPRNG (secrets, and identifiers that must not be guessed).
/// Failure of the OS generator is not recoverable.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        // The process cannot mint any secret without randomness.
        std::process::abort();
    }
    buf
}

/// `N` (at most 64) bytes from the system CSPRNG for identifiers that must not be guessed
/// but guard nothing (request ids): each thread draws 256 bytes at a time and hands them
/// out in turn, so a request does not pay a generator call (2,300 instructions, most of
/// what minting its id cost). Bytes handed out are wiped from the pool. Secrets use
/// `random_bytes`, which keeps nothing.
pub(crate) fn id_bytes<const N: usize>() -> [u8; N] {
    const POOL: usize = 256;
    const { assert!(N <= 64, "id_bytes is for short identifiers") };
    thread_local! {
        static DRAWN: std::cell::RefCell<([u8; POOL], usize)> =
            const { std::cell::RefCell::new(([0; POOL], POOL)) };
    }
    DRAWN.with(|cell| {
        let Ok(mut drawn) = cell.try_borrow_mut() else {
            return random_bytes();
        };
        let (pool, used) = &mut *drawn;
        if POOL - *used < N {
            *pool = random_bytes();
            *used = 0;
        }
        let mut out = [0u8; N];
        let taken = &mut pool[*used..*used + N];
        out.copy_from_slice(taken);
        taken.fill(0);
        *used += N;
        out
    })
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut out = String::with_capacity(n * 2);
    let mut remaining = n;
    while remaining > 0 {
        let chunk: [u8; 32] = random_bytes();
        let take = remaining.min(32);
        out.push_str(&hex::encode(&chunk[..take]));
        remaining -= take;
    }
    out
}

/// `len` characters drawn uniformly from base62 (rejection sampling, no modulo bias).
pub fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let bytes: [u8; 64] = random_bytes();
        for b in bytes {
            // 248 = 4 * 62: values at or above it would bias the distribution.
            if b < 248 && out.len() < len {
                out.push(BASE62[usize::from(b % 62)] as char);
            }
        }
    }
    out
}

/// SHA-256 of a credential: the identity-cache key, and (hex) the stored form of API keys
/// and refresh tokens.
pub fn hash(credential: &str) -> [u8; 32] {
    let d = digest(&SHA256, credential.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Constant-time equality of two stored-hash strings.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_in_debug() {
        let s = Secret::new("hunter22".into());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(s.expose(), "hunter22");
    }

    #[test]
    fn id_bytes_are_never_handed_out_twice() {
        // 16-byte draws cross the 256-byte pool's refills many times; a pool that did not
        // advance, or wiped before copying, would repeat or hand out zeros.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id: [u8; 16] = id_bytes();
            assert_ne!(id, [0u8; 16]);
            assert!(seen.insert(id), "an id was handed out twice");
        }
        // Draws that do not divide the pool evenly start a fresh pool rather than run off
        // its end.
        for _ in 0..100 {
            let id: [u8; 60] = id_bytes();
            assert!(id.iter().any(|b| *b != 0));
        }
    }

    #[test]
    fn base62_is_uniform_enough() {
        let sample = random_base62(62_000);
        let mut counts = [0u32; 62];
        for b in sample.bytes() {
            counts[BASE62.iter().position(|c| *c == b).unwrap()] += 1;
        }
        // Each symbol expects 1000; a biased generator (b % 62 over 256) would skew the
        // first symbols by ~+25%.
        assert!(counts.iter().all(|c| (850..1150).contains(c)), "{counts:?}");
    }

    #[test]
    fn hash_comparison() {
        assert!(hashes_equal("abc", "abc"));
        assert!(!hashes_equal("abc", "abd"));
        assert!(!hashes_equal("abc", "abcd"));
    }
}
