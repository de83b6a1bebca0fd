//! A JSON object read as its members' raw text, so that what the gateway does not act on goes
//! upstream as the client wrote it, without being built into `serde_json::Value`s (one map,
//! one string and one hash per member: an eighth of a request's instructions) and written out
//! again.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Members up to which a repeated key is looked for by a scan rather than an index.
const SCAN_UP_TO: usize = 32;

/// An object's members in order: keys decoded, values as their JSON text. A key given twice
/// keeps its first place and its last value, as `serde_json::Map` does.
#[derive(Debug, Default)]
pub struct Members<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Members<'a> {
    /// Reads `text` as an object; an error for anything else, JSON or not.
    pub fn parse(text: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(text)
    }

    /// The JSON text of member `name`, `null` included.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }

    /// The JSON text of member `name`; JSON `null` counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|value| !is_null(value))
    }

    /// Whether `name` is there at all, `null` included.
    pub fn contains(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// Takes member `name` out, `null` included.
    pub fn remove(&mut self, name: &str) -> Option<Cow<'a, str>> {
        let at = self.0.iter().position(|(key, _)| key == name)?;
        Some(self.0.remove(at).1)
    }

    /// Sets member `name` to the JSON text `value`, in its place if it was there, else last.
    pub fn set(&mut self, name: &'a str, value: Cow<'a, str>) {
        match self.0.iter_mut().find(|(key, _)| key == name) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((Cow::Borrowed(name), value)),
        }
    }

    /// The object as JSON text.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write(&mut out, |_, _, _| {});
        // Keys written by serde_json, values taken from &str: UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the object out; `on_member` learns where each value landed in `out`.
    pub fn write(&self, out: &mut Vec<u8>, mut on_member: impl FnMut(&str, usize, usize)) {
        out.push(b'{');
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(out, key);
            out.push(b':');
            let start = out.len();
            out.extend_from_slice(value.as_bytes());
            on_member(key, start, out.len());
        }
        out.push(b'}');
    }
}

pub fn is_null(json: &str) -> bool {
    json == "null"
}

/// The string `json` holds, decoded; `None` when it is not a string.
pub fn string(json: &str) -> Option<Cow<'_, str>> {
    decode_string(json).ok()
}

/// The string `json` holds, decoded. Reading a member's raw text checked its escapes' form but
/// not what they encode; this says, for example, that one is a lone surrogate.
pub fn decode_string(json: &str) -> serde_json::Result<Cow<'_, str>> {
    serde_json::from_str::<Text>(json).map(|t| t.0)
}

/// `text` as a JSON string.
pub fn json_string(text: &str) -> String {
    // Serialising a str cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// `text` as a JSON string, written to `out`.
fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// A JSON string, borrowed from the input where it has no escapes (serde's `Cow<str>` always
/// copies).
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Members(Vec::with_capacity(map.size_hint().unwrap_or(8)));
                // Repeated keys are found by a scan while there are few members; past that, by
                // an index, so that a 1 MiB body of 100,000 keys costs no 10^10 comparisons.
                let mut index: Option<HashMap<Cow<'de, str>, usize>> = None;
                while let Some((Text(key), value)) = map.next_entry::<Text, &RawValue>()? {
                    let value = Cow::Borrowed(value.get());
                    let seen = match &mut index {
                        Some(index) => index.get(&key).copied(),
                        None => members.0.iter().position(|(k, _)| *k == key),
                    };
                    if let Some(at) = seen {
                        members.0[at].1 = value;
                        continue;
                    }
                    if let Some(index) = &mut index {
                        index.insert(key.clone(), members.0.len());
                    }
                    members.0.push((key, value));
                    if index.is_none() && members.0.len() > SCAN_UP_TO {
                        let built = members
                            .0
                            .iter()
                            .enumerate()
                            .map(|(i, (k, _))| (k.clone(), i));
                        index = Some(built.collect());
                    }
                }
                Ok(members)
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(members: &Members) -> String {
        let mut out = Vec::new();
        members.write(&mut out, |_, _, _| {});
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_keep_their_text_and_keys_are_decoded() {
        let m = Members::parse(br#" { "a\u0062" : 1.50e3 , "c":[ 1, "x" ] ,"n":null} "#).unwrap();
        assert_eq!(m.get("ab"), Some("1.50e3"));
        assert_eq!(m.get("c"), Some(r#"[ 1, "x" ]"#));
        assert_eq!(m.get("n"), None);
        assert!(m.contains("n"));
        assert_eq!(written(&m), r#"{"ab":1.50e3,"c":[ 1, "x" ],"n":null}"#);
    }

    #[test]
    fn a_repeated_key_keeps_its_place_and_its_last_value() {
        let m = Members::parse(br#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(written(&m), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn repeated_keys_are_found_past_the_scan_too() {
        let mut text = String::from("{");
        for i in 0..100 {
            text.push_str(&format!("\"k{i}\":{i},"));
        }
        text.push_str(r#""k3":"last","k70":"last","k100":100}"#);
        let m = Members::parse(text.as_bytes()).unwrap();
        assert_eq!(m.0.len(), 101);
        assert_eq!(m.0[3], ("k3".into(), r#""last""#.into()));
        assert_eq!(m.0[70], ("k70".into(), r#""last""#.into()));
        assert_eq!(m.get("k100"), Some("100"));
    }

    #[test]
    fn set_replaces_in_place_or_appends() {
        let mut m = Members::parse(br#"{"a":1,"b":2}"#).unwrap();
        m.set("a", "true".into());
        m.set("z", r#""q\"""#.into());
        assert_eq!(m.remove("b").as_deref(), Some("2"));
        let mut at = Vec::new();
        let mut out = Vec::new();
        m.write(&mut out, |key, start, end| {
            at.push((key.to_owned(), start, end))
        });
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            r#"{"a":true,"z":"q\""}"#
        );
        let (_, start, end) = &at[1];
        assert_eq!(&out[*start..*end], br#""q\"""#);
    }

    #[test]
    fn anything_but_an_object_is_refused() {
        for text in ["[]", "1", "\"a\"", "null", "{", "{\"a\":}", "{} x"] {
            assert!(Members::parse(text.as_bytes()).is_err(), "{text}");
        }
    }

    #[test]
    fn strings_are_decoded_and_others_are_not_strings() {
        assert_eq!(string(r#""a\nb""#).as_deref(), Some("a\nb"));
        assert!(matches!(string(r#""plain""#), Some(Cow::Borrowed("plain"))));
        assert_eq!(string("5"), None);
        assert_eq!(string("null"), None);
    }
}
