//! Helpers for the crate's unit tests (compiled only for them).

use http::{HeaderMap, HeaderName, HeaderValue};

/// A header map from (name, value) pairs, in order, repeats kept.
pub(crate) fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}
