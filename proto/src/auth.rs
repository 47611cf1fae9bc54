//! Proof of the shared cluster secret by HMAC challenge and response, so the secret itself
//! never travels. See `AuthHello` in `client.proto` for the exchange.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;
/// A secret shorter than this is refused at startup: it would be guessable.
pub const SECRET_BYTES_MIN: usize = 16;

const ACCEPT_LABEL: &[u8] = b"paxkv-accept";
const CONNECT_LABEL: &[u8] = b"paxkv-connect";

/// The cluster secret, kept out of `Debug` output and logs.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the cluster secret has {0} bytes; use at least {SECRET_BYTES_MIN}")]
    TooShort(usize),
}

impl ClusterSecret {
    /// Takes a secret as written in a file or variable; surrounding whitespace is ignored.
    pub fn new(raw: &[u8]) -> Result<ClusterSecret, SecretError> {
        let text = String::from_utf8_lossy(raw);
        let trimmed = text.trim().as_bytes().to_vec();
        if trimmed.len() < SECRET_BYTES_MIN {
            return Err(SecretError::TooShort(trimmed.len()));
        }
        Ok(ClusterSecret(trimmed))
    }

    /// The secret's bytes, for a node that talks to its cluster as a client (a joining node).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// HMAC-SHA256 under the secret over the label and both nonces (the first one
    /// length-prefixed, so the split between them is unambiguous).
    fn keyed(&self, label: &[u8], first: &[u8], second: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.update(&(first.len() as u32).to_le_bytes());
        mac.update(first);
        mac.update(second);
        mac
    }

    fn mac(&self, label: &[u8], first: &[u8], second: &[u8]) -> Vec<u8> {
        self.keyed(label, first, second)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Constant-time comparison of a received proof.
    fn verify(&self, label: &[u8], first: &[u8], second: &[u8], proof: &[u8]) -> bool {
        self.keyed(label, first, second).verify_slice(proof).is_ok()
    }

    /// The accepting side's proof over (hello nonce, challenge nonce).
    pub fn accept_proof(&self, hello_nonce: &[u8], challenge_nonce: &[u8]) -> Vec<u8> {
        self.mac(ACCEPT_LABEL, hello_nonce, challenge_nonce)
    }

    pub fn verify_accept_proof(
        &self,
        hello_nonce: &[u8],
        challenge_nonce: &[u8],
        proof: &[u8],
    ) -> bool {
        self.verify(ACCEPT_LABEL, hello_nonce, challenge_nonce, proof)
    }

    /// The connecting side's proof over (challenge nonce, hello nonce).
    pub fn connect_proof(&self, challenge_nonce: &[u8], hello_nonce: &[u8]) -> Vec<u8> {
        self.mac(CONNECT_LABEL, challenge_nonce, hello_nonce)
    }

    pub fn verify_connect_proof(
        &self,
        challenge_nonce: &[u8],
        hello_nonce: &[u8],
        proof: &[u8],
    ) -> bool {
        self.verify(CONNECT_LABEL, challenge_nonce, hello_nonce, proof)
    }
}

/// A fresh random nonce from the operating system.
pub fn nonce() -> Vec<u8> {
    let mut bytes = vec![0u8; NONCE_BYTES];
    getrandom::getrandom(&mut bytes).expect("the operating system provides randomness");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_nonces() {
        let secret = ClusterSecret::new(b"  a-secret-of-enough-length \n").unwrap();
        let other = ClusterSecret::new(b"another-secret-of-enough-length").unwrap();
        let (hello, challenge) = (nonce(), nonce());
        let proof = secret.accept_proof(&hello, &challenge);
        assert!(secret.verify_accept_proof(&hello, &challenge, &proof));
        assert!(!other.verify_accept_proof(&hello, &challenge, &proof));
        assert!(!secret.verify_accept_proof(&challenge, &hello, &proof));
        let connect = secret.connect_proof(&challenge, &hello);
        assert!(
            !secret.verify_accept_proof(&hello, &challenge, &connect),
            "labels differ"
        );
        assert!(secret.verify_connect_proof(&challenge, &hello, &connect));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            ClusterSecret::new(b"short"),
            Err(SecretError::TooShort(5))
        ));
        assert_eq!(
            format!("{:?}", ClusterSecret::new(b"0123456789abcdef").unwrap()),
            "ClusterSecret(..)"
        );
    }
}
