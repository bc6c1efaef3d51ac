//! Moodle XMLDB (`install.xml`) → PostgreSQL DDL, following Moodle's own Postgres generator
//! (`lib/ddl/sql_generator.php` + `lib/ddl/postgres_sql_generator.php`).
//!
//! Moodle never ships SQL: it generates DDL from XMLDB at install time. We do the same, once,
//! and commit the result (`sql/moodle_schema.sql`) so the project never needs the XML at run
//! time; `tests/ddl.rs` regenerates from the in-repo XML copies and compares.
//!
//! Mapping (as Moodle's generator): `int` LENGTH 1–4 → `SMALLINT`, 5–9 → `INTEGER`, ≥10 (or
//! none) → `BIGINT`; the `SEQUENCE` field → `BIGSERIAL` (`SERIAL` if LENGTH ≤ 9); `char(n)` →
//! `VARCHAR(n)` (255 without length), NOT NULL char without default gets `DEFAULT ''`;
//! `text` → `TEXT`; `number(l,d)` → `NUMERIC(l,d)`; `float` → `DOUBLE PRECISION` (`REAL` when
//! DECIMALS < 6); `binary` → `BYTEA`; `datetime` → `TIMESTAMP`. Keys: primary key inside the
//! table; unique / foreign-unique keys → unique indexes; foreign keys → plain indexes (no FK
//! constraints), unless an index with the same fields was already generated. Index hint
//! `varchar_pattern_ops` adds a `…_pattern` index. Names follow Moodle's `getNameForObject`
//! (4 letters per table-name word, 3 per field, suffix `pk`/`ix`/`uix`, numbered on clash).
//!
//! Deviations, on purpose: tables and indexes use `IF NOT EXISTS` so that creating the schema
//! is idempotent, and the table prefix is the placeholder [`PREFIX_PLACEHOLDER`].

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::collections::HashSet;
use std::fmt::Write as _;

/// Placeholder standing for the Moodle table prefix in generated SQL.
pub const PREFIX_PLACEHOLDER: &str = "{prefix}";

/// Longest object name (without the prefix) we allow, so that a prefix of up to
/// [`crate::MAX_PREFIX_LEN`] characters stays within Postgres' 63-byte identifier limit.
const MAX_NAME_WITHOUT_PREFIX: usize = 63 - crate::MAX_PREFIX_LEN;

/// Errors while reading XMLDB.
#[derive(Debug, thiserror::Error)]
pub enum XmldbError {
    /// The XML itself is malformed.
    #[error("xmldb: xml: {0}")]
    Xml(String),
    /// The XML is well formed but not valid XMLDB (missing attribute, unknown type…).
    #[error("xmldb: {0}")]
    Invalid(String),
    /// A requested table is in none of the files.
    #[error("xmldb: table {0} not found")]
    MissingTable(String),
}

/// One `<FIELD>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// XMLDB type: `int`, `char`, `text`, `number`, `float`, `binary`, `datetime`.
    pub ty: String,
    /// `LENGTH`, if given.
    pub length: Option<u32>,
    /// `DECIMALS`, if given.
    pub decimals: Option<u32>,
    /// `NOTNULL="true"`.
    pub notnull: bool,
    /// `SEQUENCE="true"`.
    pub sequence: bool,
    /// `DEFAULT`, if given.
    pub default: Option<String>,
}

/// One `<KEY>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// `primary`, `unique`, `foreign`, `foreign-unique`.
    pub ty: String,
    /// Column names.
    pub fields: Vec<String>,
}

/// One `<INDEX>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// `UNIQUE="true"`.
    pub unique: bool,
    /// Column names.
    pub fields: Vec<String>,
    /// `HINTS`, split on commas.
    pub hints: Vec<String>,
}

/// One `<TABLE>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Table name without prefix.
    pub name: String,
    /// Table comment.
    pub comment: Option<String>,
    /// Columns in order.
    pub fields: Vec<Field>,
    /// Keys in order.
    pub keys: Vec<Key>,
    /// Indexes in order.
    pub indexes: Vec<Index>,
}

fn attrs(e: &BytesStart<'_>) -> Result<Vec<(String, String)>, XmldbError> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| XmldbError::Xml(err.to_string()))?;
        let k = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let v = a
            .unescape_value()
            .map_err(|err| XmldbError::Xml(err.to_string()))?
            .into_owned();
        out.push((k, v));
    }
    Ok(out)
}

fn get<'a>(a: &'a [(String, String)], k: &str) -> Option<&'a str> {
    a.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn need<'a>(a: &'a [(String, String)], k: &str, what: &str) -> Result<&'a str, XmldbError> {
    get(a, k).ok_or_else(|| XmldbError::Invalid(format!("{what} without {k}")))
}

fn fields_of(s: &str) -> Vec<String> {
    s.split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

fn num(a: &[(String, String)], k: &str) -> Result<Option<u32>, XmldbError> {
    match get(a, k) {
        None | Some("") => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| XmldbError::Invalid(format!("{k}={v:?} is not a number"))),
    }
}

/// Parses every `<TABLE>` of one XMLDB file.
pub fn parse(xml: &str) -> Result<Vec<Table>, XmldbError> {
    let mut reader = Reader::from_str(xml);
    let mut tables = Vec::new();
    let mut cur: Option<Table> = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| XmldbError::Xml(e.to_string()))?;
        let (e, is_start) = match &ev {
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::End(e) => {
                if e.name().as_ref() == b"TABLE" {
                    if let Some(t) = cur.take() {
                        tables.push(t);
                    }
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let a = attrs(e)?;
        match e.name().as_ref() {
            b"TABLE" => {
                let t = Table {
                    name: need(&a, "NAME", "TABLE")?.to_string(),
                    comment: get(&a, "COMMENT").map(str::to_string),
                    fields: Vec::new(),
                    keys: Vec::new(),
                    indexes: Vec::new(),
                };
                if is_start {
                    cur = Some(t);
                } else {
                    tables.push(t);
                }
            }
            b"FIELD" => {
                let t = cur
                    .as_mut()
                    .ok_or_else(|| XmldbError::Invalid("FIELD outside TABLE".into()))?;
                t.fields.push(Field {
                    name: need(&a, "NAME", "FIELD")?.to_string(),
                    ty: need(&a, "TYPE", "FIELD")?.to_string(),
                    length: num(&a, "LENGTH")?,
                    decimals: num(&a, "DECIMALS")?,
                    notnull: get(&a, "NOTNULL") == Some("true"),
                    sequence: get(&a, "SEQUENCE") == Some("true"),
                    default: get(&a, "DEFAULT").map(str::to_string),
                });
            }
            b"KEY" => {
                let t = cur
                    .as_mut()
                    .ok_or_else(|| XmldbError::Invalid("KEY outside TABLE".into()))?;
                t.keys.push(Key {
                    ty: need(&a, "TYPE", "KEY")?.to_string(),
                    fields: fields_of(need(&a, "FIELDS", "KEY")?),
                });
            }
            b"INDEX" => {
                let t = cur
                    .as_mut()
                    .ok_or_else(|| XmldbError::Invalid("INDEX outside TABLE".into()))?;
                t.indexes.push(Index {
                    unique: get(&a, "UNIQUE") == Some("true"),
                    fields: fields_of(need(&a, "FIELDS", "INDEX")?),
                    hints: get(&a, "HINTS").map(fields_of).unwrap_or_default(),
                });
            }
            _ => {}
        }
    }
    Ok(tables)
}

/// Postgres words Moodle's generator quotes when used as column names.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "cross",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "new",
    "not",
    "notnull",
    "null",
    "off",
    "offset",
    "old",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "verbose",
    "when",
    "where",
    "with",
];

fn quoted(name: &str) -> String {
    if RESERVED.contains(&name) {
        format!("\"{name}\"")
    } else {
        name.to_string()
    }
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn type_sql(f: &Field) -> Result<String, XmldbError> {
    Ok(match f.ty.as_str() {
        "int" => match f.length.unwrap_or(10) {
            0..=4 => "SMALLINT".into(),
            5..=9 => "INTEGER".into(),
            _ => "BIGINT".into(),
        },
        "number" => match (f.length, f.decimals) {
            (Some(l), Some(d)) if l > 0 && d > 0 => format!("NUMERIC({l},{d})"),
            (Some(l), _) if l > 0 => format!("NUMERIC({l})"),
            _ => "NUMERIC".into(),
        },
        "float" => match f.decimals {
            Some(d) if d > 0 && d < 6 => "REAL".into(),
            _ => "DOUBLE PRECISION".into(),
        },
        "char" => format!("VARCHAR({})", f.length.filter(|l| *l > 0).unwrap_or(255)),
        "text" => "TEXT".into(),
        "binary" => "BYTEA".into(),
        "datetime" => "TIMESTAMP".into(),
        other => {
            return Err(XmldbError::Invalid(format!(
                "field {} has unknown type {other}",
                f.name
            )))
        }
    })
}

fn field_sql(f: &Field) -> Result<String, XmldbError> {
    if f.sequence {
        let seq = if f.length.is_some_and(|l| l <= 9) {
            "SERIAL"
        } else {
            "BIGSERIAL"
        };
        return Ok(format!("{} {seq}", quoted(&f.name)));
    }
    let mut s = format!("{} {}", quoted(&f.name), type_sql(f)?);
    if f.notnull {
        s.push_str(" NOT NULL");
    }
    match &f.default {
        Some(d) if f.ty == "char" || f.ty == "text" => {
            let _ = write!(s, " DEFAULT {}", sql_str(d));
        }
        Some(d) => {
            let _ = write!(s, " DEFAULT {d}");
        }
        None if f.ty == "char" && f.notnull => s.push_str(" DEFAULT ''"),
        None => {}
    }
    Ok(s)
}

/// Moodle's `getNameForObject` (without the prefix, which the caller prepends).
struct Namer {
    used: HashSet<String>,
}

impl Namer {
    fn name(&mut self, table: &str, fields: &[String], suffix: &str) -> Result<String, XmldbError> {
        let mut base: String = table
            .split('_')
            .map(|w| w.trim().chars().take(4).collect::<String>())
            .collect();
        base.push('_');
        for f in fields {
            base.extend(f.trim().chars().take(3));
        }
        let mut candidate = format!("{base}_{suffix}");
        let mut counter = 1;
        while self.used.contains(&candidate) {
            candidate = format!("{base}{counter}_{suffix}");
            counter += 1;
        }
        if candidate.len() > MAX_NAME_WITHOUT_PREFIX {
            return Err(XmldbError::Invalid(format!(
                "object name {candidate} too long"
            )));
        }
        self.used.insert(candidate.clone());
        Ok(candidate)
    }
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn emit_index(
    out: &mut String,
    namer: &mut Namer,
    indexed: &mut Vec<Vec<String>>,
    table: &str,
    fields: &[String],
    unique: bool,
    hints: &[String],
) -> Result<(), XmldbError> {
    let p = PREFIX_PLACEHOLDER;
    indexed.push(fields.to_vec());
    let iname = namer.name(table, fields, if unique { "uix" } else { "ix" })?;
    let cols = fields
        .iter()
        .map(|f| quoted(f))
        .collect::<Vec<_>>()
        .join(", ");
    let uq = if unique { "UNIQUE " } else { "" };
    let _ = writeln!(
        out,
        "CREATE {uq}INDEX IF NOT EXISTS {p}{iname} ON {p}{table} ({cols});"
    );
    if fields.len() == 1 && hints.iter().any(|h| h == "varchar_pattern_ops") {
        let _ = writeln!(
            out,
            "CREATE INDEX IF NOT EXISTS {p}{iname}_pattern ON {p}{table} USING btree ({cols} varchar_pattern_ops);"
        );
    }
    Ok(())
}

/// Generates the DDL for `wanted` tables (in that order) from the given XMLDB files.
///
/// Statements are separated by `;\n`; the table prefix is [`PREFIX_PLACEHOLDER`].
pub fn generate(xml_files: &[&str], wanted: &[&str]) -> Result<String, XmldbError> {
    let mut all = Vec::new();
    for x in xml_files {
        all.extend(parse(x)?);
    }
    let p = PREFIX_PLACEHOLDER;
    let mut namer = Namer {
        used: HashSet::new(),
    };
    let mut out = String::from(
        "-- Moodle tables (PostgreSQL), generated from Moodle XMLDB by rcjobs_moodle::xmldb.\n\
         -- Do not edit: regenerate with `cargo run -p rcjobs-moodle --example gen_moodle_ddl`.\n\
         -- {prefix} is replaced by the validated Moodle table prefix at run time.\n\n",
    );
    for name in wanted {
        let t = all
            .iter()
            .find(|t| t.name == *name)
            .ok_or_else(|| XmldbError::MissingTable((*name).to_string()))?;
        let _ = writeln!(out, "-- table {}", t.name);
        let mut body: Vec<String> = Vec::new();
        for f in &t.fields {
            body.push(format!("    {}", field_sql(f)?));
        }
        for k in t.keys.iter().filter(|k| k.ty == "primary") {
            let pk = namer.name(&t.name, &k.fields, "pk")?;
            body.push(format!(
                "CONSTRAINT {p}{pk} PRIMARY KEY ({})",
                k.fields.join(", ")
            ));
        }
        let _ = write!(
            out,
            "CREATE TABLE IF NOT EXISTS {p}{} (\n{}\n);\n",
            t.name,
            body.join(",\n")
        );
        if let Some(c) = t.comment.as_deref().filter(|c| !c.is_empty()) {
            let _ = writeln!(
                out,
                "COMMENT ON TABLE {p}{} IS {};",
                t.name,
                sql_str(truncate_bytes(c, 250))
            );
        }
        let mut indexed: Vec<Vec<String>> = Vec::new();
        for i in &t.indexes {
            emit_index(
                &mut out,
                &mut namer,
                &mut indexed,
                &t.name,
                &i.fields,
                i.unique,
                &i.hints,
            )?;
        }
        for k in &t.keys {
            let unique = match k.ty.as_str() {
                "primary" => continue,
                "unique" | "foreign-unique" => true,
                "foreign" => false,
                other => {
                    return Err(XmldbError::Invalid(format!(
                        "key type {other} on {}",
                        t.name
                    )))
                }
            };
            if indexed.contains(&k.fields) {
                continue;
            }
            emit_index(
                &mut out,
                &mut namer,
                &mut indexed,
                &t.name,
                &k.fields,
                unique,
                &[],
            )?;
        }
        out.push('\n');
    }
    Ok(out)
}
