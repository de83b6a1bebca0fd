//! Unguessable identifiers.

use std::fmt::Write;

/// `bytes` random bytes from the operating system's generator, as lowercase hex (URL-safe).
/// There is no fallback: an id that is a capability must never be guessable.
pub fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(buf
        .iter()
        .fold(String::with_capacity(bytes * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }))
}
