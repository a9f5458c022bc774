//! Peer keys: the secret that proves a client is a peer.
//!
//! Peer ids are public (`GET /peers` lists them), so an id alone proves
//! nothing. `connect` answers a key once; the broker keeps only its SHA-256
//! and compares digests in constant time. A key names its peer
//! (`pk_<id>_<secret>`), so one string is both the identity and its proof:
//! that is what lets an MCP client without transport sessions stay the same
//! peer by passing the key to every tool.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

const PREFIX: &str = "pk_";
/// 32 random bytes, URL-safe base64 without padding.
const SECRET_LEN: usize = 43;

/// The stored form of a key: its SHA-256 digest. Keys are 256 random bits,
/// so a fast hash is enough (nothing to brute-force as with passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash([u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

impl KeyHash {
    /// The digest of `key`.
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// True when `key` hashes to this digest; constant time in the digest.
    pub fn matches(&self, key: &str) -> bool {
        KeyHash::of(key).0.ct_eq(&self.0).into()
    }

    /// Hex, for the store.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads the store's hex form back; `None` when it is not 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<KeyHash> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(KeyHash(out))
    }
}

/// A new key for peer `id`.
pub fn new_key(id: Uuid) -> String {
    let secret: [u8; 32] = rand::random();
    format!(
        "{PREFIX}{}_{}",
        id.simple(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    )
}

/// The peer a key names, if it has the shape of a key. Says nothing about
/// whether the key is right.
pub fn key_peer(key: &str) -> Option<Uuid> {
    let rest = key.trim().strip_prefix(PREFIX)?;
    let (id, secret) = (rest.get(..32)?, rest.get(32..)?);
    let secret = secret.strip_prefix('_')?;
    if secret.len() != SECRET_LEN {
        return None;
    }
    Uuid::try_parse(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_peer_and_only_its_own_hash_matches() {
        let id = Uuid::now_v7();
        let key = new_key(id);
        assert_eq!(key_peer(&key), Some(id));
        let hash = KeyHash::of(&key);
        assert!(hash.matches(&key));
        assert!(!hash.matches(&new_key(id)));
        assert!(!hash.matches(""));
    }

    #[test]
    fn malformed_keys_name_no_peer() {
        let id = Uuid::now_v7();
        let key = new_key(id);
        for bad in [
            "",
            "pk_",
            &key[..key.len() - 1],
            &key.replace("pk_", "xx_"),
            "pk_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "pk_é",
        ] {
            assert_eq!(key_peer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_stored_form_round_trips() {
        let hash = KeyHash::of("pk_x");
        assert_eq!(KeyHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(KeyHash::from_hex("nothex"), None);
        assert_eq!(KeyHash::from_hex(&"é".repeat(32)), None);
    }
}
