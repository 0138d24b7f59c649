//! Signing-key material: loading PEM files, generating keys (for `keys generate` and for the
//! embedded default's first start), and the public half as JWKs with RFC 7638 thumbprints as
//! `kid`. Never signs or verifies a token itself.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};

use crate::config::TokenConfig;

#[derive(Debug, thiserror::Error)]
/// Why signing or verification keys could not be loaded or made.
pub enum KeyError {
    #[error("{path}: {message}")]
    /// A key file could not be read or written, or holds no usable key.
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    #[error("key generation failed")]
    /// The crypto library could not generate a key.
    Generate,
}

fn file_err(path: &Path, message: impl Into<String>) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The public half of a key, in the forms both JWKs and `DecodingKey` want.
#[derive(Debug, Clone)]
enum PublicKey {
    /// Raw 32-byte Ed25519 key.
    Ed(Vec<u8>),
    /// Uncompressed P-256 point (0x04 || x || y).
    Ec(Vec<u8>),
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// A verification key with its id and JWK.
pub struct VerifyingKey {
    /// The key's id (its RFC 7638 thumbprint).
    pub kid: String,
    /// The key that verifies signatures.
    pub key: DecodingKey,
    /// Its public JWK, for `/.well-known/jwks.json` (none for HS256).
    pub jwk: Option<Value>,
}

/// Everything needed to sign and verify tokens with the configured algorithm.
pub struct KeyMaterial {
    /// The one algorithm signed and accepted.
    pub algorithm: Algorithm,
    /// The key's id (its RFC 7638 thumbprint).
    pub kid: String,
    /// The key that signs.
    pub encoding: EncodingKey,
    /// The signing key's public half first, then any extra verification keys.
    pub verifying: Vec<VerifyingKey>,
}

impl KeyMaterial {
    /// The JWK Set served at `/.well-known/jwks.json` (empty for HS256: a shared secret is
    /// never published).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .verifying
            .iter()
            .filter_map(|k| k.jwk.clone())
            .collect();
        json!({ "keys": keys })
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::EdDSA => "EdDSA",
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        _ => "HS256",
    }
}

/// Loads the configured keys, or for the embedded default generates a signing key on first
/// start and keeps it in `tokens.key_dir`.
pub fn load(cfg: &TokenConfig) -> Result<KeyMaterial, KeyError> {
    if cfg.algorithm == Algorithm::HS256 {
        let secret = cfg
            .hmac_secret
            .as_ref()
            .map(|s| s.expose().as_bytes().to_vec())
            .unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &secret);
        let kid = format!("hs256-{}", &hex::encode(digest.as_ref())[..12]);
        return Ok(KeyMaterial {
            algorithm: Algorithm::HS256,
            kid: kid.clone(),
            encoding: EncodingKey::from_secret(&secret),
            verifying: vec![VerifyingKey {
                kid,
                key: DecodingKey::from_secret(&secret),
                jwk: None,
            }],
        });
    }
    let path = match &cfg.signing_key_path {
        Some(p) => p.clone(),
        None => ensure_generated_key(cfg)?,
    };
    let pem_text = std::fs::read(&path).map_err(|e| file_err(&path, e.to_string()))?;
    let (encoding, public) =
        private_key(cfg.algorithm, &pem_text).map_err(|m| file_err(&path, m))?;
    let signing = verifying_key(cfg.algorithm, &public);
    let kid = signing.kid.clone();
    let mut verifying = vec![signing];
    for extra in &cfg.verification_key_paths {
        let text = std::fs::read(extra).map_err(|e| file_err(extra, e.to_string()))?;
        let public = public_key(cfg.algorithm, &text).map_err(|m| file_err(extra, m))?;
        verifying.push(verifying_key(cfg.algorithm, &public));
    }
    Ok(KeyMaterial {
        algorithm: cfg.algorithm,
        kid,
        encoding,
        verifying,
    })
}

fn ensure_generated_key(cfg: &TokenConfig) -> Result<PathBuf, KeyError> {
    let name = format!(
        "jwt-signing-{}.pem",
        alg_name(cfg.algorithm).to_ascii_lowercase()
    );
    let path = cfg.key_dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&cfg.key_dir).map_err(|e| file_err(&cfg.key_dir, e.to_string()))?;
    let pem_text = generate_pem(cfg.algorithm)?;
    write_private_file(&path, pem_text.as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        algorithm = alg_name(cfg.algorithm),
        "generated a new token signing key; keep this file to keep issued tokens valid across restarts"
    );
    Ok(path)
}

/// Writes a file readable only by its owner, refusing to overwrite.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| file_err(path, e.to_string()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| file_err(path, e.to_string()))
}

/// A new private key as PKCS#8 PEM (or, for HS256, a random 256-bit secret in base64url).
pub fn generate_pem(alg: Algorithm) -> Result<String, KeyError> {
    let rng = SystemRandom::new();
    let der: Vec<u8> = match alg {
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(|_| KeyError::Generate)?
            .as_ref()
            .to_vec(),
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Generate)?
            .as_ref()
            .to_vec(),
        Algorithm::RS256 => {
            use aws_lc_rs::encoding::AsDer as _;
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeyError::Generate)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der =
                pair.as_der().map_err(|_| KeyError::Generate)?;
            der.as_ref().to_vec()
        }
        _ => {
            let mut secret = [0u8; 32];
            aws_lc_rs::rand::fill(&mut secret).map_err(|_| KeyError::Generate)?;
            return Ok(format!("{}\n", B64.encode(secret)));
        }
    };
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
}

fn private_key(alg: Algorithm, pem_bytes: &[u8]) -> Result<(EncodingKey, PublicKey), String> {
    let parsed = pem::parse(pem_bytes).map_err(|e| format!("not a PEM file: {e}"))?;
    let der = parsed.contents();
    let tag = parsed.tag();
    let wrong = || format!("is not a PKCS#8 {} private key", alg_name(alg));
    match alg {
        Algorithm::EdDSA if tag == "PRIVATE KEY" => {
            let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| wrong())?;
            let public = PublicKey::Ed(pair.public_key().as_ref().to_vec());
            Ok((EncodingKey::from_ed_der(der), public))
        }
        Algorithm::ES256 if tag == "PRIVATE KEY" => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map_err(|_| wrong())?;
            let public = PublicKey::Ec(pair.public_key().as_ref().to_vec());
            Ok((EncodingKey::from_ec_der(der), public))
        }
        Algorithm::RS256 if tag == "PRIVATE KEY" || tag == "RSA PRIVATE KEY" => {
            let pair = if tag == "PRIVATE KEY" {
                aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
            } else {
                aws_lc_rs::rsa::KeyPair::from_der(der)
            }
            .map_err(|_| wrong())?;
            if pair.public_modulus_len() < 256 {
                return Err("RSA keys must be at least 2048 bits".into());
            }
            let (n, e) = rsa_components(pair.public_key().as_ref()).ok_or_else(wrong)?;
            let encoding = EncodingKey::from_rsa_pem(pem_bytes).map_err(|_| wrong())?;
            Ok((encoding, PublicKey::Rsa { n, e }))
        }
        _ => Err(wrong()),
    }
}

fn public_key(alg: Algorithm, pem_bytes: &[u8]) -> Result<PublicKey, String> {
    let wrong = |_| format!("is not a {} public key (PEM \"PUBLIC KEY\")", alg_name(alg));
    match alg {
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem_bytes)
            .map(|k| PublicKey::Ed(k.as_bytes().to_vec()))
            .map_err(wrong),
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem_bytes)
            .map(|k| PublicKey::Ec(k.as_bytes().to_vec()))
            .map_err(wrong),
        _ => {
            let key = DecodingKey::from_rsa_pem(pem_bytes).map_err(wrong)?;
            let (n, e) = rsa_components(key.as_bytes())
                .ok_or_else(|| "is not an RSA public key".to_string())?;
            Ok(PublicKey::Rsa { n, e })
        }
    }
}

fn verifying_key(alg: Algorithm, public: &PublicKey) -> VerifyingKey {
    let (key, members) = match public {
        PublicKey::Ed(raw) => (
            DecodingKey::from_ed_der(raw),
            json!({"crv": "Ed25519", "kty": "OKP", "x": B64.encode(raw)}),
        ),
        PublicKey::Ec(point) => {
            let (x, y) = point
                .get(1..)
                .unwrap_or_default()
                .split_at(point.len().saturating_sub(1) / 2);
            (
                DecodingKey::from_ec_der(point),
                json!({"crv": "P-256", "kty": "EC", "x": B64.encode(x), "y": B64.encode(y)}),
            )
        }
        PublicKey::Rsa { n, e } => (
            DecodingKey::from_rsa_raw_components(n, e),
            json!({"e": B64.encode(e), "kty": "RSA", "n": B64.encode(n)}),
        ),
    };
    // RFC 7638: the thumbprint is over the required members in lexicographic order, which
    // is how serde_json (without preserve_order) serializes a map.
    let canonical = members.to_string();
    let kid = B64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ));
    let mut jwk = members;
    if let Value::Object(map) = &mut jwk {
        map.insert("kid".into(), Value::String(kid.clone()));
        map.insert("alg".into(), Value::String(alg_name(alg).into()));
        map.insert("use".into(), Value::String("sig".into()));
    }
    VerifyingKey {
        kid,
        key,
        jwk: Some(jwk),
    }
}

/// Reads `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (DER).
fn rsa_components(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    fn read_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (len_bytes, after) = rest.split_at(n);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b))
        };
        if rest.len() < len {
            return None;
        }
        Some(rest.split_at(len))
    }
    let strip = |v: &[u8]| {
        let start = v
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(v.len().saturating_sub(1));
        v[start..].to_vec()
    };
    let (seq, _) = read_tlv(der, 0x30)?;
    let (n, rest) = read_tlv(seq, 0x02)?;
    let (e, _) = read_tlv(rest, 0x02)?;
    Some((strip(n), strip(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(alg: Algorithm, dir: &Path) -> TokenConfig {
        let text = format!(
            "[tokens]\nalgorithm = \"{}\"\nkey_dir = \"{}\"\n",
            alg_name(alg),
            dir.display()
        );
        crate::config::Config::from_toml(&text, Vec::new())
            .unwrap()
            .tokens
    }

    #[test]
    fn generated_keys_load_and_publish_a_jwk() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(alg, dir.path());
            let first = load(&cfg).unwrap();
            let again = load(&cfg).unwrap();
            assert_eq!(first.kid, again.kid, "{alg:?}: key persisted and reused");
            let jwks = first.jwks();
            assert_eq!(jwks["keys"][0]["kid"], Value::String(first.kid.clone()));
            assert_eq!(jwks["keys"][0]["alg"], Value::String(alg_name(alg).into()));
            assert!(
                jwks["keys"][0].get("d").is_none(),
                "no private member in the JWK"
            );
        }
    }

    #[test]
    fn ed25519_thumbprint_matches_rfc8037_example() {
        // RFC 8037 appendix A.3: the thumbprint of the example Ed25519 public key.
        let x = B64
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let vk = verifying_key(Algorithm::EdDSA, &PublicKey::Ed(x));
        assert_eq!(vk.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn wrong_key_type_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ec.pem");
        std::fs::write(&path, generate_pem(Algorithm::ES256).unwrap()).unwrap();
        let mut cfg = config(Algorithm::EdDSA, dir.path());
        cfg.signing_key_path = Some(path.clone());
        let err = load(&cfg).err().unwrap().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }
}
