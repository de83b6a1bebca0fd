//! The value types settings are parsed into, each saying what it expects when a value is bad.

use std::num::NonZeroU64;

use crate::secret::Secret;

/// A type a setting's text can be parsed into.
pub trait SettingValue: Sized {
    /// Completes "expected …" in the start-up error.
    const EXPECTED: &'static str;
    /// Shown in `--help` after the flag.
    const VALUE_NAME: &'static str;
    fn parse(raw: &str) -> Option<Self>;
}

impl SettingValue for String {
    const EXPECTED: &'static str = "text";
    const VALUE_NAME: &'static str = "TEXT";
    fn parse(raw: &str) -> Option<Self> {
        Some(raw.to_owned())
    }
}

macro_rules! whole_number {
    ($($ty:ty => $expected:literal),+) => {$(
        impl SettingValue for $ty {
            const EXPECTED: &'static str = $expected;
            const VALUE_NAME: &'static str = "N";
            fn parse(raw: &str) -> Option<Self> {
                raw.parse().ok()
            }
        }
    )+};
}

whole_number!(
    u16 => "a whole number from 0 to 65535",
    u32 => "a whole number from 0 to 4294967295",
    u64 => "a whole number",
    usize => "a whole number",
    NonZeroU64 => "a whole number, at least 1"
);

impl SettingValue for bool {
    const EXPECTED: &'static str = "true or false";
    const VALUE_NAME: &'static str = "BOOL";
    fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" | "" => Some(false),
            _ => None,
        }
    }
}

impl SettingValue for Secret {
    const EXPECTED: &'static str = "text";
    const VALUE_NAME: &'static str = "KEY";
    fn parse(raw: &str) -> Option<Self> {
        Some(Secret::new(raw))
    }
}

/// A comma-separated list; blanks around items and empty items are dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct List(pub Vec<String>);

impl SettingValue for List {
    const EXPECTED: &'static str = "a comma-separated list";
    const VALUE_NAME: &'static str = "A,B";
    fn parse(raw: &str) -> Option<Self> {
        Some(List(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }
}

/// A comma-separated list of secret keys.
#[derive(Clone, Debug, Default)]
pub struct Keys(pub Vec<Secret>);

impl SettingValue for Keys {
    const EXPECTED: &'static str = "a comma-separated list of keys";
    const VALUE_NAME: &'static str = "KEY,KEY";
    fn parse(raw: &str) -> Option<Self> {
        List::parse(raw).map(|l| Keys(l.0.into_iter().map(Secret::new).collect()))
    }
}

/// The origins CORS lets in. An entry is compared with the browser's `Origin` header, so it
/// is normalised as browsers send it (lowercase host, no default port, no trailing slash).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Origins {
    /// No CORS headers at all: only pages the gateway serves itself can read answers.
    #[default]
    SameOrigin,
    Any,
    List(Vec<String>),
}

impl SettingValue for Origins {
    const EXPECTED: &'static str = "*, or a comma-separated list of origins such as https://app.example.com (scheme://host[:port], no path)";
    const VALUE_NAME: &'static str = "ORIGIN,ORIGIN";
    fn parse(raw: &str) -> Option<Self> {
        let items = List::parse(raw)?.0;
        if items.is_empty() {
            return Some(Origins::SameOrigin);
        }
        if items.iter().any(|i| i == "*") {
            return (items.len() == 1).then_some(Origins::Any);
        }
        items
            .iter()
            .map(|item| {
                let url = reqwest::Url::parse(item).ok()?;
                // A path (even a trailing `/`) would never match: an Origin header has none.
                let bare = url.path() == "/" && !item.ends_with('/');
                let plain = url.query().is_none() && url.fragment().is_none();
                let web = matches!(url.scheme(), "http" | "https") && url.host_str().is_some();
                (bare && plain && web && url.username().is_empty())
                    .then(|| url.origin().ascii_serialization())
            })
            .collect::<Option<Vec<_>>>()
            .map(Origins::List)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl SettingValue for LogFormat {
    const EXPECTED: &'static str = "text or json";
    const VALUE_NAME: &'static str = "text|json";
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// The upstream's base URL, or `None` for the built-in mock model.
#[derive(Clone, Debug, Default)]
pub struct UpstreamUrl(pub Option<reqwest::Url>);

impl SettingValue for UpstreamUrl {
    const EXPECTED: &'static str =
        "an http:// or https:// URL such as https://api.openai.com/v1, or empty for the mock model";
    const VALUE_NAME: &'static str = "URL";
    fn parse(raw: &str) -> Option<Self> {
        if raw.is_empty() {
            return Some(UpstreamUrl(None));
        }
        let url = reqwest::Url::parse(raw).ok()?;
        let usable = matches!(url.scheme(), "http" | "https") && url.host_str().is_some();
        usable.then_some(UpstreamUrl(Some(url)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_as_browsers_send_them() {
        assert_eq!(Origins::parse(""), Some(Origins::SameOrigin));
        assert_eq!(Origins::parse(" * "), Some(Origins::Any));
        assert_eq!(
            Origins::parse("https://App.Example.com:443, http://localhost:5173"),
            Some(Origins::List(vec![
                "https://app.example.com".to_owned(),
                "http://localhost:5173".to_owned()
            ]))
        );
    }

    #[test]
    fn origins_that_could_never_match_are_refused() {
        for bad in [
            "https://app.example.com/",
            "https://app.example.com/chat",
            "app.example.com",
            "ftp://app.example.com",
            "*, https://app.example.com",
            "https://user@app.example.com",
        ] {
            assert_eq!(Origins::parse(bad), None, "{bad}");
        }
    }
}
