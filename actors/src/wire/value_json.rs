//! How a value travels in JSON (`/v1/scan`, `/v1/watch`, `cete scan`, `cete watch`): as text
//! under `"value"` when its bytes are UTF-8, else as standard base64 under `"value_base64"`.
//! JSON strings cannot hold arbitrary bytes, and replacing what is not UTF-8 would lose them;
//! text keeps the shape the Go server gave it.

use base64::Engine;
use serde_json::{Map, Value};

/// Adds `value` to `object` under `"value"` or `"value_base64"`, whichever keeps every byte.
pub fn insert_value(object: &mut Map<String, Value>, value: &[u8]) {
    match std::str::from_utf8(value) {
        Ok(text) => object.insert("value".into(), Value::String(text.to_string())),
        Err(_) => {
            object.insert("value_base64".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(value)))
        }
    };
}

/// `{"key":..,"value":..}` (or `"value_base64"`), keys first.
pub fn key_value(key: &str, value: &[u8]) -> Value {
    let mut pair = Map::new();
    pair.insert("key".into(), Value::String(key.to_string()));
    insert_value(&mut pair, value);
    Value::Object(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_text_and_other_bytes_go_as_base64() {
        assert_eq!(key_value("k", b"caf\xc3\xa9").to_string(), r#"{"key":"k","value":"café"}"#);
        assert_eq!(key_value("k", b"").to_string(), r#"{"key":"k","value":""}"#);
        assert_eq!(key_value("k", b"\xff\xd8\xff").to_string(), r#"{"key":"k","value_base64":"/9j/"}"#);
    }
}
