//! Request parameters: the JSON body of a POST or the query string of a GET, as one object.

use serde_json::{Map, Value};

/// The parameters of one API call.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(pub Map<String, Value>);

impl Params {
    /// The raw value of `key`.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// `key` if it is a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// `key` if it is a string with something other than whitespace in it.
    pub fn nonblank(&self, key: &str) -> Option<&str> {
        self.str(key).filter(|s| !s.trim().is_empty())
    }

    /// `key` as a bool; GET query strings carry `"true"`/`"false"`.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.0.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    /// `key` as an integer (JSON number or numeric query string), like `parseInt`.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.0.get(key)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => {
                let t = s.trim();
                let end = t
                    .char_indices()
                    .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
                    .map_or(t.len(), |(i, _)| i);
                t[..end].parse().ok()
            }
            _ => None,
        }
    }
}
