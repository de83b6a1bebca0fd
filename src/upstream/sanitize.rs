//! Cleans text that came from an upstream (or from an error about it) before a client sees
//! it: no key, no credentials in a URL, no unbounded length.

use crate::secret::Secret;

const MAX_MESSAGE_CHARS: usize = 1000;

/// Removes `key` wherever it appears, drops `user:pass@` from URLs and bounds the length.
pub fn sanitize(message: &str, key: &Secret) -> String {
    let mut text = if key.expose().len() >= 4 {
        message.replace(key.expose(), "*****")
    } else {
        message.to_owned()
    };
    let mut from = 0;
    while let Some(pos) = text[from..].find("://") {
        let start = from + pos + 3;
        let authority_end = text[start..]
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"')
            .map_or(text.len(), |e| start + e);
        if let Some(at) = text[start..authority_end].rfind('@') {
            text.replace_range(start..start + at + 1, "");
        }
        from = start;
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        text = text.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_url_credentials_never_survive() {
        let key = Secret::new("sk-abcdef");
        let out = sanitize(
            "bad key sk-abcdef at https://user:pw@api.example.com/v1 and http://x@h/",
            &key,
        );
        assert_eq!(
            out,
            "bad key ***** at https://api.example.com/v1 and http://h/"
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let out = sanitize(&"x".repeat(5000), &Secret::default());
        assert!(out.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }
}
