//! The official Rocket.Chat OpenAPI files (repo copies under `openapi/`) as JSON Schema
//! validators for requests and responses.
#![allow(dead_code, clippy::unwrap_used)]

use super::Resp;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// One of the three copied spec files.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum File {
    Auth,
    Rooms,
    Users,
}

fn load(file: File) -> Value {
    let name = match file {
        File::Auth => "authentication.yaml",
        File::Rooms => "rooms.yaml",
        File::Users => "user-management.yaml",
    };
    let path = format!("{}/openapi/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn docs() -> &'static HashMap<File, Value> {
    static DOCS: OnceLock<HashMap<File, Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        [File::Auth, File::Rooms, File::Users]
            .into_iter()
            .map(|f| (f, load(f)))
            .collect()
    })
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("external $ref {reference}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("dangling $ref {reference}"))
}

/// Inlines every `$ref` and turns OpenAPI 3.0's `nullable` into a JSON Schema type list.
fn inline(doc: &Value, v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                return inline(doc, resolve(doc, r));
            }
            let mut out: Map<String, Value> =
                m.iter().map(|(k, v)| (k.clone(), inline(doc, v))).collect();
            if out.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| inline(doc, x)).collect()),
        other => other.clone(),
    }
}

/// The operation object for `path` + `method`.
pub fn operation(file: File, path: &str, method: &str) -> Value {
    let doc = &docs()[&file];
    let op = doc["paths"][path][method].clone();
    assert!(op.is_object(), "{method} {path} is not in {file:?}");
    inline(doc, &op)
}

/// Adds `required` = every declared property (minus `exempt` names), at every depth, so a
/// missing field fails validation (the official schemas declare no `required` lists). An
/// exempt entry `"name.*"` leaves the whole subtree under property `name` as the spec has it
/// (for bags of optional settings).
pub fn strict(schema: &Value, exempt: &[&str]) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let value = if k == "properties" {
                    let props = v.as_object().cloned().unwrap_or_default();
                    let mut strict_props = Map::new();
                    for (name, sub) in props {
                        let lax = exempt.contains(&format!("{name}.*").as_str());
                        strict_props.insert(name, if lax { sub } else { strict(&sub, exempt) });
                    }
                    Value::Object(strict_props)
                } else {
                    strict(v, exempt)
                };
                out.insert(k.clone(), value);
            }
            if let Some(Value::Object(props)) = m.get("properties") {
                let required: Vec<Value> = props
                    .keys()
                    .filter(|k| {
                        !exempt.contains(&k.as_str())
                            && !exempt.contains(&format!("{k}.*").as_str())
                    })
                    .map(|k| json!(k))
                    .collect();
                if !required.is_empty() {
                    out.insert("required".into(), Value::Array(required));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| strict(x, exempt)).collect()),
        other => other.clone(),
    }
}

/// Validates `instance` against `schema` (draft 4, which OpenAPI 3.0 schemas follow).
pub fn validate(schema: &Value, instance: &Value) -> Result<(), Vec<String>> {
    let validator = jsonschema::draft4::new(schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// An endpoint of the official spec.
pub struct Endpoint {
    pub file: File,
    pub path: String,
    pub method: &'static str,
    op: Value,
}

impl Endpoint {
    pub fn new(file: File, name: &str, method: &'static str) -> Endpoint {
        let path = format!("/api/v1/{name}");
        let op = operation(file, &path, method);
        Endpoint {
            file,
            path,
            method,
            op,
        }
    }

    /// The documented response schema for a status, if the spec lists that status.
    pub fn response_schema(&self, status: u16) -> Option<Value> {
        let resp = self.op["responses"].get(status.to_string())?;
        Some(resp["content"]["application/json"]["schema"].clone())
    }

    /// Checks a request body (POST) against `requestBody`, or query names (GET) against
    /// the documented parameters.
    #[track_caller]
    pub fn check_request(&self, req: &Value) {
        if self.method == "get" {
            let documented: Vec<&str> = self.op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            for key in req.as_object().unwrap().keys() {
                assert!(
                    documented.contains(&key.as_str()),
                    "{} {}: query param {key} is not documented",
                    self.method,
                    self.path
                );
            }
        } else {
            let schema = &self.op["requestBody"]["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "{}: no request schema", self.path);
            if let Err(e) = validate(schema, req) {
                panic!("{} request {req} violates the spec: {e:#?}", self.path);
            }
        }
    }

    /// Checks a response against the documented schema for its status. 200 bodies are checked
    /// strictly (every declared property must be present unless in `exempt`, which each call
    /// site justifies); error bodies must match their schema and carry `success:false`+`error`.
    #[track_caller]
    pub fn check_response(&self, resp: &Resp, exempt: &[&str]) {
        let status = resp.status.as_u16();
        let schema = self.response_schema(status).unwrap_or_else(|| {
            panic!(
                "{} {}: status {status} is not documented ({:?})",
                self.method, self.path, resp.body
            )
        });
        let schema = if status == 200 {
            strict(&schema, exempt)
        } else {
            schema
        };
        if let Err(e) = validate(&schema, &resp.body) {
            panic!(
                "{} {} {status} body {} violates the spec: {e:#?}",
                self.method, self.path, resp.body
            );
        }
        if status == 400 || status == 403 {
            assert_eq!(resp.body["success"], json!(false));
            assert!(resp.body["error"].is_string());
        }
    }

    /// For a status the spec does not list: asserts it really is missing (so the call site's
    /// documented deviation stays true) and validates against `schema` instead.
    #[track_caller]
    pub fn check_undocumented(&self, resp: &Resp, schema: &Value) {
        let status = resp.status.as_u16();
        assert!(
            self.response_schema(status).is_none(),
            "{} {status} is documented now; use check_response",
            self.path
        );
        if let Err(e) = validate(schema, &resp.body) {
            panic!("{} {status} body {} fails: {e:#?}", self.path, resp.body);
        }
    }

    /// The first example of a documented response, for shape comparisons.
    pub fn example(&self, status: u16) -> Option<Value> {
        let content = &self.op["responses"][status.to_string()]["content"]["application/json"];
        content["examples"]
            .as_object()?
            .values()
            .next()
            .map(|e| e["value"].clone())
    }
}

/// The envelope every simulator error uses (schema written from rocketchat-api.md §3).
pub fn error_envelope() -> Value {
    json!({
        "type": "object",
        "required": ["success", "error"],
        "properties": {
            "success": { "enum": [false] },
            "error": { "type": "string" },
            "errorType": { "type": "string" },
        }
    })
}
