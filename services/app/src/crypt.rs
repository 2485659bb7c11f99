//! Encryption of the API keys tenants store for their models: AES-256-GCM with a key
//! derived (SHA-256) from MODELS_ENCRYPTION_KEY, a fresh random nonce per value, and the
//! model's id as associated data, so a ciphertext copied onto another row does not open.
//! Stored as the 12-byte nonce followed by the ciphertext and its tag.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const NONCE: usize = 12;

#[derive(Clone)]
pub struct Sealer {
    cipher: Option<Aes256Gcm>,
}

#[derive(Debug, PartialEq)]
pub enum SealError {
    /// MODELS_ENCRYPTION_KEY is not set.
    NoKey,
    /// The value was sealed with another key, or is damaged.
    CannotOpen,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SealError::NoKey => {
                "MODELS_ENCRYPTION_KEY is not set, so API keys cannot be stored or read: set it in .env \
                 (`cargo xtask start` adds a generated one) and restart the app"
            }
            SealError::CannotOpen => {
                "the stored API key cannot be decrypted: MODELS_ENCRYPTION_KEY is not the key it was stored \
                 with (restore that key from the .env of before, or enter the model's API key again)"
            }
        })
    }
}

impl Sealer {
    /// A sealer for `secret`; an empty secret seals nothing (every call says why).
    pub fn new(secret: &str) -> Sealer {
        let cipher = (!secret.is_empty()).then(|| {
            let key: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
            Aes256Gcm::new(&Key::<Aes256Gcm>::from(key))
        });
        Sealer { cipher }
    }

    pub fn seal(&self, owner: Uuid, plain: &str) -> Result<Vec<u8>, SealError> {
        let cipher = self.cipher.as_ref().ok_or(SealError::NoKey)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: plain.as_bytes(), aad: owner.as_bytes() })
            .map_err(|_| SealError::CannotOpen)?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(out)
    }

    pub fn open(&self, owner: Uuid, sealed: &[u8]) -> Result<String, SealError> {
        let cipher = self.cipher.as_ref().ok_or(SealError::NoKey)?;
        if sealed.len() <= NONCE {
            return Err(SealError::CannotOpen);
        }
        let (nonce, data) = sealed.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| SealError::CannotOpen)?;
        let plain = cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: data, aad: owner.as_bytes() })
            .map_err(|_| SealError::CannotOpen)?;
        String::from_utf8(plain).map_err(|_| SealError::CannotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_key_and_row() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let sealer = Sealer::new("correct horse battery staple");
        let sealed = sealer.seal(a, "sk-live-123").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"sk-live-123"), "the key is not in clear");
        assert_ne!(sealed, sealer.seal(a, "sk-live-123").unwrap(), "a fresh nonce each time");
        assert_eq!(sealer.open(a, &sealed).unwrap(), "sk-live-123");
        assert_eq!(sealer.open(b, &sealed), Err(SealError::CannotOpen), "bound to its row");
        assert_eq!(Sealer::new("another key").open(a, &sealed), Err(SealError::CannotOpen));
        assert_eq!(Sealer::new("").seal(a, "x"), Err(SealError::NoKey));
        assert_eq!(sealer.open(a, &sealed[..5]), Err(SealError::CannotOpen));
    }
}
