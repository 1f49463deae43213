//! sha256 that is fast in every build profile.
//!
//! `sha2` is pure Rust: unoptimised (a user crate's default `dev` profile) it hashes about
//! 35 MB/s, seconds per disk image. `ring`'s sha256 is assembly with runtime CPU dispatch
//! (SHA-NI, AVX2, ...), so its speed does not depend on the caller's opt-level
//! (`cargo xtask bench hash` measures both; docs/benchmarks.md has the numbers).

/// An incremental sha256.
#[derive(Clone)]
pub struct Sha256(ring::digest::Context);

impl Sha256 {
    /// An empty hash.
    pub fn new() -> Self {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The 32-byte digest.
    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }

    /// The digest as 64 lower-case hex digits.
    pub fn finish_hex(self) -> String {
        to_hex(&self.finish())
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

/// `bytes` as lower-case hex digits, two per byte.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// The hex sha256 of `bytes`.
pub fn bytes_sha256(bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hasher.finish_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_per_byte() {
        assert_eq!(to_hex(&[]), "");
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        let all: Vec<u8> = (0..=255).collect();
        let hex = to_hex(&all);
        assert_eq!(hex.len(), 512);
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).unwrap();
            assert_eq!(u8::from_str_radix(pair, 16).unwrap(), i as u8);
            assert_eq!(pair, pair.to_lowercase());
        }
    }

    /// FIPS 180-2 vectors, and a hash split across `update` calls at odd offsets.
    #[test]
    fn known_vectors() {
        assert_eq!(
            bytes_sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            bytes_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            bytes_sha256(&million_a),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        let mut split = Sha256::new();
        for chunk in million_a.chunks(4093) {
            split.update(chunk);
        }
        assert_eq!(split.finish_hex(), bytes_sha256(&million_a));
    }
}
