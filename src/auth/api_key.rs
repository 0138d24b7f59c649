//! API-key format: `pc_` + 43 base62 characters (256 bits of randomness) + a 6-character
//! base62 CRC-32 checksum. The checksum lets a mistyped or forged-looking key be refused
//! without any lookup; only the key's SHA-256 is ever stored.

use crate::secret::{BASE62, hash, random_base62};

/// What every key Portcullis mints starts with.
pub const PREFIX: &str = "pc_";
/// Keys imported from the origin gateway (`rpa_` + URL-safe base64). They carry no checksum;
/// only their shape is checked before the lookup.
pub const LEGACY_PREFIX: &str = "rpa_";
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// The length of a key Portcullis mints.
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;

fn checksum(prefix_and_body: &str) -> [u8; CHECKSUM_LEN] {
    let mut value = u64::from(crc32fast::hash(prefix_and_body.as_bytes()));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// A newly minted key. `key` is shown to its owner once and never stored.
#[derive(Debug)]
pub struct NewKey {
    /// The key itself.
    pub key: String,
    /// Its SHA-256, hex: what is stored.
    pub hash_hex: String,
    /// What listings show.
    pub hint: String,
}

/// Mints a key: 256 random bits in base62, then the checksum.
pub fn generate() -> NewKey {
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str(PREFIX);
    key.push_str(&random_base62(BODY_LEN));
    let sum = checksum(&key);
    key.extend(sum.iter().map(|b| *b as char));
    NewKey {
        hash_hex: hex::encode(hash(&key)),
        hint: hint(&key),
        key,
    }
}

/// What listings show: the prefix, four characters, and the last four.
pub fn hint(key: &str) -> String {
    let start = key.get(..PREFIX.len() + 4).unwrap_or(PREFIX);
    let end = key.get(key.len().saturating_sub(4)..).unwrap_or_default();
    format!("{start}...{end}")
}

/// Whether a secret is an API key (rather than an access token), by its prefix.
pub fn looks_like_key(secret: &str) -> bool {
    secret.starts_with(PREFIX) || secret.starts_with(LEGACY_PREFIX)
}

/// True if `candidate` has the exact shape and a correct checksum (or, for an imported
/// legacy key, the origin's shape).
pub fn is_well_formed(candidate: &str) -> bool {
    if let Some(body) = candidate.strip_prefix(LEGACY_PREFIX) {
        return (16..=128).contains(&body.len())
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    }
    let bytes = candidate.as_bytes();
    if bytes.len() != KEY_LEN || !candidate.starts_with(PREFIX) {
        return false;
    }
    let (body, sum) = bytes[PREFIX.len()..].split_at(BODY_LEN);
    if !body.iter().chain(sum).all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let expected = checksum(&candidate[..PREFIX.len() + BODY_LEN]);
    // Not secret (it is derived from the rest of the key), so a plain comparison is fine.
    expected == sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key, b.key);
        assert_eq!(a.key.len(), KEY_LEN);
        assert!(is_well_formed(&a.key));
        assert_eq!(a.hash_hex, hex::encode(hash(&a.key)));
        assert!(a.hint.starts_with("pc_") && a.hint.contains("..."));
        assert!(!a.hint.contains(&a.key[10..40]));
    }

    #[test]
    fn any_single_character_change_breaks_the_checksum() {
        let key = generate().key;
        for i in PREFIX.len()..key.len() {
            let mut bytes = key.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            assert!(!is_well_formed(&typo), "position {i}");
        }
        assert!(!is_well_formed(&key[..key.len() - 1]));
        assert!(!is_well_formed(&key.replacen("pc_", "pk_", 1)));
    }

    #[test]
    fn legacy_keys_are_checked_for_shape_only() {
        assert!(looks_like_key("rpa_abc") && looks_like_key("pc_x") && !looks_like_key("eyJ.x.y"));
        assert!(is_well_formed("rpa_Zm9vYmFyYmF6cXV4cXV1eC1fMTIz"));
        assert!(!is_well_formed("rpa_short"));
        assert!(!is_well_formed("rpa_has space in it 12345678"));
    }
}
