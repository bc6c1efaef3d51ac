//! The checks `rcjobs.check_job` makes, done in Rust for `enqueue_copy`, so that a COPY does
//! not have to read its rows back (that re-read was about a fifth of a bulk enqueue's cost).
//!
//! The messages are the database's, word for word, so a producer sees the same rejection
//! whichever path it took. The one check that needs the database's own rendering, the
//! payload size (`octet_length(payload::text)`), is computed here exactly for every payload
//! whose numbers Postgres prints as serde_json does; for the rest (numbers in exponent
//! notation, negative zero) [`jsonb_text_len`] answers `None` and the batch is checked by
//! the database instead.

use serde::Deserialize;
use serde_json::{Number, Value};

use crate::NewJob;

/// A kind's limits, as `rcjobs.job_kind` stores them.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct KindRule {
    pub max_attempts: i32,
    pub max_payload_bytes: i64,
    pub required_fields: Vec<String>,
}

/// The job's kind rule when the job is accepted, or why it is refused, with `check_job`'s
/// wording. `sized` turns false when the size could not be computed here (the database
/// must check it).
pub(crate) fn check<'r>(
    job: &NewJob,
    rule: Option<&'r KindRule>,
    sized: &mut bool,
) -> Result<&'r KindRule, String> {
    let kind = &job.kind;
    let Some(rule) = rule else {
        return Err(format!("rcjobs: unknown job kind \"{kind}\""));
    };
    let Value::Object(map) = &job.payload else {
        return Err(format!(
            "rcjobs: payload of a \"{kind}\" job must be a JSON object, got {}",
            jsonb_typeof(&job.payload)
        ));
    };
    match jsonb_text_len(&job.payload) {
        Some(size) if size as i64 > rule.max_payload_bytes => {
            return Err(format!(
                "rcjobs: payload of a \"{kind}\" job is {size} bytes, over the limit of {} bytes",
                rule.max_payload_bytes
            ));
        }
        Some(_) => {}
        None => *sized = false,
    }
    let missing: Vec<&str> = rule
        .required_fields
        .iter()
        .filter(|f| !map.contains_key(f.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "rcjobs: payload of a \"{kind}\" job is missing required field(s): {}",
            missing.join(", ")
        ));
    }
    let queue_chars = job.queue.chars().count();
    if queue_chars == 0 || queue_chars > 100 {
        return Err("rcjobs: queue name must be 1 to 100 characters".into());
    }
    if let Some(m) = job.max_attempts.filter(|m| *m < 1) {
        return Err(format!("rcjobs: max_attempts must be at least 1, got {m}"));
    }
    crate::stored_time::check_run_at(job.run_at)?;
    Ok(rule)
}

/// What Postgres's `jsonb_typeof` answers for a value (`"object"`, `"array"`, …): the word
/// the queue's messages use for a payload of the wrong type.
pub fn jsonb_typeof(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Length in bytes of Postgres's text form of `v` as jsonb (`octet_length(v::jsonb::text)`),
/// or `None` when a number would print differently there.
///
/// jsonb prints `{"k": v, "k2": v2}` and `[a, b]` (a space after every colon and comma),
/// escapes strings as serde_json does, and prints numbers as `numeric` does: the same text
/// for integers and plain decimals, but expanded digits for exponent notation.
pub fn jsonb_text_len(v: &Value) -> Option<usize> {
    Some(match v {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => number_len(n)?,
        Value::String(s) => string_len(s),
        Value::Array(a) => {
            let mut len = 2 + 2 * a.len().saturating_sub(1);
            for x in a {
                len += jsonb_text_len(x)?;
            }
            len
        }
        Value::Object(m) => {
            let mut len = 2 + 2 * m.len().saturating_sub(1);
            for (k, x) in m {
                len += string_len(k) + 2 + jsonb_text_len(x)?;
            }
            len
        }
    })
}

fn number_len(n: &Number) -> Option<usize> {
    if let Some(i) = n.as_i64() {
        return Some(decimal_digits(i.unsigned_abs()) + usize::from(i < 0));
    }
    if let Some(u) = n.as_u64() {
        return Some(decimal_digits(u));
    }
    let f = n.as_f64()?;
    let text = n.to_string();
    // numeric has no negative zero and expands exponents
    if text.contains(['e', 'E']) || (f == 0.0 && f.is_sign_negative()) {
        return None;
    }
    Some(text.len())
}

fn decimal_digits(mut u: u64) -> usize {
    let mut d = 1;
    while u >= 10 {
        u /= 10;
        d += 1;
    }
    d
}

/// Quoted and escaped as Postgres's `escape_json` does (and serde_json, byte for byte).
fn string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::jsonb_text_len;
    use serde_json::json;

    #[test]
    fn spaces_after_colons_and_commas() {
        assert_eq!(jsonb_text_len(&json!({"n": 1})), Some(r#"{"n": 1}"#.len()));
        assert_eq!(
            jsonb_text_len(&json!({"a": [1, -20, null, true, false], "b": {}})),
            Some(r#"{"a": [1, -20, null, true, false], "b": {}}"#.len())
        );
        assert_eq!(jsonb_text_len(&json!([])), Some(2));
    }

    #[test]
    fn escapes_count_as_postgres_prints_them() {
        assert_eq!(jsonb_text_len(&json!("a\"b\\c\n\u{1}")), Some(17));
        assert_eq!(jsonb_text_len(&json!("\u{e9}")), Some(4));
    }

    #[test]
    fn exponent_numbers_are_left_to_the_database() {
        assert_eq!(jsonb_text_len(&json!({"x": 1e300})), None);
        assert_eq!(jsonb_text_len(&json!({"x": -0.0})), None);
        assert_eq!(
            jsonb_text_len(&json!({"x": 2.5})),
            Some(r#"{"x": 2.5}"#.len())
        );
    }
}
