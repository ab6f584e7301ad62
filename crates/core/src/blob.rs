//! Content addresses for photo and thumbnail blobs.
//!
//! A blob's id is the SHA-256 digest of exactly the bytes that are stored and sent. SHA-256 was
//! chosen over faster hashes because every platform another team might build a device on has it
//! in its standard crypto library.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// SHA-256 of a stored blob. Text form: 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The hash as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", self.to_hex())
    }
}

/// A blob hash text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a blob hash (expected 64 hex digits): {0:?}")]
pub struct ParseBlobHashError(pub String);

impl FromStr for BlobHash {
    type Err = ParseBlobHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| ParseBlobHashError(s.to_owned()))?;
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_of_empty_is_the_sha256_test_vector() {
        assert_eq!(
            BlobHash::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn text_round_trips_and_rejects_garbage() {
        let h = BlobHash::of(b"abc");
        assert_eq!(h.to_hex().parse::<BlobHash>(), Ok(h));
        assert!("xyz".parse::<BlobHash>().is_err());
        assert!(h.to_hex()[..62].parse::<BlobHash>().is_err());
    }
}
