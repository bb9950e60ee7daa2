//! JSON bodies, read strictly: an object that repeats a key is refused.
//!
//! RFC 8259 §4 leaves the meaning of repeated names to each reader, and readers disagree
//! (serde_json keeps the last value, others the first), so a proxy or filter that checked one
//! value could pass a body whose other value this server acts on. Every JSON body a surface
//! reads (the flows API, PingOne's flows, Ocient) goes through [`from_slice`].

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as one JSON value; a repeated key in any object, at any depth, is an error
/// (`duplicate key `…` at line 1 column 20`), as is any syntax error.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Unique>(bytes).map(|Unique(v)| v)
}

/// A `Value` whose objects had no repeated keys.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // serde_json's parser yields finite numbers only; `Null` is unreachable in practice.
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let Unique(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::from_slice;

    #[test]
    fn rfc8259_4_repeated_keys_are_refused_at_any_depth() {
        let e = from_slice(br#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate key `a`"), "{e}");
        assert!(from_slice(br#"{"x": [{"b": 1, "b": 1}]}"#).is_err());
        // Keys are compared after unescaping.
        assert!(from_slice(br#"{"a": 1, "\u0061": 2}"#).is_err());
    }

    #[test]
    fn anything_else_reads_as_serde_json_reads_it() {
        let text = br#"{"a": [1, -2, 2.5, "s", null, true, {"a": {}}], "b": "\u00e9"}"#;
        assert_eq!(
            from_slice(text).unwrap(),
            serde_json::from_slice::<serde_json::Value>(text).unwrap()
        );
        assert_eq!(from_slice(b" 7 ").unwrap(), json!(7));
        assert!(from_slice(b"{} x").is_err(), "trailing characters");
        assert!(from_slice(&[b'['; 1000]).is_err(), "nesting is limited");
        assert!(from_slice(b"").is_err());
    }
}
