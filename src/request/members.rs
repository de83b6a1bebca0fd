//! A JSON object read as its members' raw text, so that what the gateway does not act on goes
//! upstream as the client wrote it, without being built into `serde_json::Value`s (one map,
//! one string and one hash per member: an eighth of a request's instructions) and written out
//! again.
//!
//! The crate's own scanner (`crate::scan`) reads an ordinary body; serde_json reads what the
//! scanner does not take, so that both give the same members and every refusal keeps
//! serde_json's wording.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::scan::{Cursor, Scan, stop_byte};

/// Members up to which a repeated key is looked for by a scan rather than an index.
const SCAN_UP_TO: usize = 32;

/// Where each key is, once an object has more than [`SCAN_UP_TO`] members.
type KeyIndex<'a> = HashMap<Cow<'a, str>, usize>;

/// An object's members in order: keys decoded, values as their JSON text. A key given twice
/// keeps its first place and its last value, as `serde_json::Map` does.
#[derive(Debug, Default)]
pub struct Members<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Members<'a> {
    /// Reads `text` as an object; an error for anything else, JSON or not.
    pub fn parse(text: &'a [u8]) -> serde_json::Result<Self> {
        // The scanner the upstream's chunks are read with, a little cheaper than serde_json
        // here and, unlike it, able to read `messages` and its objects in one pass
        // (`objects`). What it does not take (text that is not UTF-8 or not an object, an
        // escaped key, nesting past 128 levels, which serde_json lets through in a raw value)
        // goes to serde_json, which then gives its members or the error the client is shown.
        match std::str::from_utf8(text).ok().and_then(scanned) {
            Some(members) => Ok(members),
            None => serde_json::from_slice(text),
        }
    }

    /// Adds a member read from the text; a key given before keeps its place and takes this
    /// value. Repeated keys are found by a scan while there are few members; past that, by an
    /// index, so that a 1 MiB body of 100,000 keys costs no 10^10 comparisons.
    fn add(&mut self, index: &mut Option<KeyIndex<'a>>, key: Cow<'a, str>, value: Cow<'a, str>) {
        let seen = match index {
            Some(index) => index.get(&key).copied(),
            None => self.0.iter().position(|(k, _)| *k == key),
        };
        if let Some(at) = seen {
            self.0[at].1 = value;
            return;
        }
        if let Some(index) = index {
            index.insert(key.clone(), self.0.len());
        }
        self.0.push((key, value));
        if index.is_none() && self.0.len() > SCAN_UP_TO {
            let built = self.0.iter().enumerate().map(|(i, (k, _))| (k.clone(), i));
            *index = Some(built.collect());
        }
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

/// The scanner's reading of an object: `None` for anything it leaves to serde_json.
fn scanned(text: &str) -> Option<Members<'_>> {
    let mut cursor = Cursor::new(text.as_bytes());
    let members = members_at(&mut cursor, text)?;
    cursor.end().ok()?;
    Some(members)
}

/// The object at the cursor in `text`, read by the scanner; `None` where it gives up.
fn members_at<'a>(cursor: &mut Cursor<'_>, text: &'a str) -> Option<Members<'a>> {
    let mut members = Members(Vec::with_capacity(8));
    let mut index = None;
    if cursor.open_object().ok()? {
        loop {
            let (key, escaped) = cursor.key_span().ok()?;
            if escaped {
                return None;
            }
            let key = text.get(key.start + 1..key.end - 1)?;
            let value = text.get(cursor.value().ok()?)?;
            members.add(&mut index, Cow::Borrowed(key), Cow::Borrowed(value));
            if !cursor.after_member().ok()? {
                break;
            }
        }
    }
    Some(members)
}

/// The members of each object in the JSON array `json`, read in one pass: `None` if it is
/// anything else or the scanner gives up, and then [`elements`] and [`Members::parse`] say
/// exactly what is wrong.
pub fn objects(json: &str) -> Option<Vec<Members<'_>>> {
    let mut objects = Vec::new();
    each_element(json, |cursor| match members_at(cursor, json) {
        Some(members) => {
            objects.push(members);
            Ok(())
        }
        None => Err(cursor.error_here("left to serde_json")),
    })?;
    Some(objects)
}

/// The texts of the elements of the JSON array `json`; `None` when it is not an array. As for
/// [`Members::parse`], serde_json reads what the scanner does not take.
pub fn elements(json: &str) -> Option<Vec<&str>> {
    scanned_elements(json).or_else(|| {
        let raw: Vec<&RawValue> = serde_json::from_str(json).ok()?;
        Some(raw.into_iter().map(RawValue::get).collect())
    })
}

fn scanned_elements(json: &str) -> Option<Vec<&str>> {
    let mut spans = Vec::new();
    each_element(json, |cursor| cursor.value().map(|span| spans.push(span)))?;
    spans.into_iter().map(|span| json.get(span)).collect()
}

/// Calls `element` with the cursor at each element of the JSON array `json`; `None` if `json`
/// is not an array with nothing after it, or `element` fails.
fn each_element<'j>(json: &'j str, element: impl FnMut(&mut Cursor<'j>) -> Scan<()>) -> Option<()> {
    let mut cursor = Cursor::new(json.as_bytes());
    cursor.array(element).ok()?;
    cursor.end().ok()
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
    // Most strings hold no escape: then the text between the quotes is the string.
    if let Some(inner) = json.strip_prefix('"').and_then(|j| j.strip_suffix('"'))
        && stop_byte(inner.as_bytes(), 0) == inner.len()
    {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<Text>(json).map(|t| t.0)
}

/// The length in bytes of the string `json` holds, decoded. Counted without decoding when
/// every escape stands for one character (`\n`, `\"`, …), as in the prose and code of chat
/// messages; decoded otherwise, so that a lone surrogate is refused as serde_json refuses it.
pub fn decoded_len(json: &str) -> serde_json::Result<usize> {
    if let Some(inner) = json.strip_prefix('"').and_then(|j| j.strip_suffix('"')) {
        let inner = inner.as_bytes();
        let (mut len, mut at) = (0, 0);
        loop {
            let stop = stop_byte(inner, at);
            len += stop - at;
            match inner.get(stop..stop + 2) {
                None if stop == inner.len() => return Ok(len),
                Some(
                    [
                        b'\\',
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't',
                    ],
                ) => {
                    len += 1;
                    at = stop + 2;
                }
                _ => break,
            }
        }
    }
    decode_string(json).map(|text| text.len())
}

/// `text` as a JSON string.
pub fn json_string(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    write_string(&mut out, text);
    // Written from a str, escapes in ASCII: UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// `text` as a JSON string, written to `out`.
fn write_string(out: &mut Vec<u8>, text: &str) {
    // A key or model name rarely needs an escape: then it is copied between quotes.
    if stop_byte(text.as_bytes(), 0) == text.len() {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
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
                let mut index = None;
                while let Some((Text(key), value)) = map.next_entry::<Text, &RawValue>()? {
                    members.add(&mut index, key, Cow::Borrowed(value.get()));
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
    fn serde_json_reads_what_the_scanner_leaves_with_the_same_rules() {
        // An escaped key and nesting past 128 levels are left to serde_json.
        let escaped = br#"{"a":1,"\u0062":2,"a":3}"#;
        assert!(scanned(std::str::from_utf8(escaped).unwrap()).is_none());
        assert_eq!(
            written(&Members::parse(escaped).unwrap()),
            r#"{"a":3,"b":2}"#
        );
        let deep = format!(r#"{{"x":{}{},"y":1}}"#, "[".repeat(200), "]".repeat(200));
        assert!(scanned(&deep).is_none());
        assert_eq!(Members::parse(deep.as_bytes()).unwrap().get("y"), Some("1"));
        // Not UTF-8: refused by serde_json, with its message.
        assert!(Members::parse(b"{\"a\":\"\xff\"}").is_err());
    }

    #[test]
    fn objects_reads_each_message_or_leaves_the_array_to_the_element_reader() {
        let all = objects(r#"[{"role":"user","content":"a"}, {"a":[1,{"b":2}]} ]"#).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].get("a"), Some(r#"[1,{"b":2}]"#));
        for text in [
            r#"[{"a":1},2]"#,
            r#"{"a":1}"#,
            r#"[{"\u0061":1}]"#,
            "[",
            "[] x",
        ] {
            assert!(objects(text).is_none(), "{text}");
        }
        assert_eq!(elements(r#"[{"\u0061":1}, 2]"#).unwrap().len(), 2);
    }

    #[test]
    fn strings_are_decoded_and_others_are_not_strings() {
        assert_eq!(string(r#""a\nb""#).as_deref(), Some("a\nb"));
        assert!(matches!(string(r#""plain""#), Some(Cow::Borrowed("plain"))));
        assert_eq!(string("5"), None);
        assert_eq!(string("null"), None);
    }

    use proptest::prelude::*;

    /// JSON texts near what clients send: objects with string-heavy members, compact or
    /// pretty, and now and then one byte changed, dropped or added.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let key = prop_oneof![
            3 => prop::sample::select(&["role", "content", "model", "a", ""][..]).prop_map(str::to_owned),
            1 => any::<String>(),
        ];
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            any::<String>().prop_map(Value::String),
            "[a-z\\n\"\\\\ ]{0,80}".prop_map(Value::String),
        ];
        scalar.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    fn text() -> impl Strategy<Value = Vec<u8>> {
        (
            value(),
            any::<bool>(),
            prop::option::of((any::<prop::sample::Index>(), 0u8..3, any::<u8>())),
        )
            .prop_map(|(value, pretty, edit)| {
                let mut text = if pretty {
                    serde_json::to_vec_pretty(&value).unwrap()
                } else {
                    serde_json::to_vec(&value).unwrap()
                };
                if let Some((at, how, byte)) = edit {
                    let at = at.index(text.len() + 1);
                    match how {
                        0 if at < text.len() => text[at] = byte,
                        1 if at < text.len() => {
                            text.remove(at);
                        }
                        _ => text.insert(at, byte),
                    }
                }
                text
            })
    }

    proptest! {
        #[test]
        fn the_scanner_reads_an_object_as_serde_json_does(text in text()) {
            let by_serde: serde_json::Result<Members> = serde_json::from_slice(&text);
            let by_scan = std::str::from_utf8(&text).ok().and_then(scanned);
            if let Some(members) = &by_scan {
                let by_serde = by_serde.as_ref().map_err(|e| e.to_string());
                prop_assert_eq!(&by_serde.map(|m| &m.0), &Ok(&members.0));
            }
            // The scanner takes every object serde_json takes, bar escaped keys.
            if by_serde.is_ok() && !text.contains(&b'\\') {
                prop_assert!(by_scan.is_some());
            }
        }

        #[test]
        fn objects_reads_an_array_as_element_by_element(text in text()) {
            let Ok(json) = std::str::from_utf8(&text) else { return Ok(()) };
            if let Some(all) = objects(json) {
                let one_by_one: Vec<_> = elements(json)
                    .unwrap()
                    .into_iter()
                    .map(|e| Members::parse(e.as_bytes()).unwrap().0)
                    .collect();
                prop_assert_eq!(all.into_iter().map(|m| m.0).collect::<Vec<_>>(), one_by_one);
            }
        }

        #[test]
        fn a_string_is_measured_as_decoded(text in text()) {
            let Ok(json) = std::str::from_utf8(&text) else { return Ok(()) };
            let decoded = decode_string(json).map(|t| t.len()).map_err(|e| e.to_string());
            prop_assert_eq!(decoded_len(json).map_err(|e| e.to_string()), decoded);
        }
    }
}
