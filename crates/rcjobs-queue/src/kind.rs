//! Job kind registry (`rcjobs.job_kind`).

use crate::QueueError;
use serde::{Deserialize, Serialize};

/// A job kind the database accepts. Enqueue rejects kinds that are not registered, payloads
/// missing one of `required_fields`, and payloads larger than `max_payload_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindSpec {
    /// Kind name, e.g. `sync_course` (Moodle `classname` in the `task_adhoc` view).
    pub name: String,
    /// Top-level payload fields every job of this kind must carry.
    pub required_fields: Vec<String>,
    /// Default attempts before a job goes dead (overridable per job).
    pub max_attempts: i32,
    /// Largest accepted payload (its JSON text), in bytes.
    pub max_payload_bytes: i32,
    /// Moodle-style component shown in the `task_adhoc` view.
    pub component: String,
    /// Free text for operators.
    pub description: String,
}

impl KindSpec {
    /// A kind with the defaults: no required fields, 12 attempts, 64 KiB payloads.
    pub fn new(name: impl Into<String>) -> KindSpec {
        KindSpec {
            name: name.into(),
            required_fields: Vec::new(),
            max_attempts: 12,
            max_payload_bytes: 64 * 1024,
            component: "rcjobs".into(),
            description: String::new(),
        }
    }

    /// Sets the required payload fields.
    pub fn required_fields<I, S>(mut self, fields: I) -> KindSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.required_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the default attempt limit.
    pub fn max_attempts(mut self, n: i32) -> KindSpec {
        self.max_attempts = n;
        self
    }

    /// Sets the payload size limit in bytes.
    pub fn max_payload_bytes(mut self, n: i32) -> KindSpec {
        self.max_payload_bytes = n;
        self
    }

    /// Sets the Moodle-style component name.
    pub fn component(mut self, c: impl Into<String>) -> KindSpec {
        self.component = c.into();
        self
    }

    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> KindSpec {
        self.description = d.into();
        self
    }
}

/// Registers or updates a kind (idempotent upsert). Applications call this from
/// `rcjobs migrate` for every kind they produce.
pub async fn register_kind<'e, E>(exec: E, spec: &KindSpec) -> Result<(), QueueError>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query(
        "INSERT INTO rcjobs.job_kind (name, required_fields, max_attempts, max_payload_bytes, component, description)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE SET required_fields = EXCLUDED.required_fields,
             max_attempts = EXCLUDED.max_attempts, max_payload_bytes = EXCLUDED.max_payload_bytes,
             component = EXCLUDED.component, description = EXCLUDED.description, updated_at = now()",
    )
    .bind(&spec.name)
    .bind(&spec.required_fields)
    .bind(spec.max_attempts)
    .bind(spec.max_payload_bytes)
    .bind(&spec.component)
    .bind(&spec.description)
    .execute(exec)
    .await?;
    Ok(())
}

/// Every registered kind, by name.
pub async fn list_kinds<'e, E>(exec: E) -> Result<Vec<KindSpec>, QueueError>
where
    E: sqlx::PgExecutor<'e>,
{
    let rows: Vec<(String, Vec<String>, i32, i32, String, String)> = sqlx::query_as(
        "SELECT name, required_fields, max_attempts, max_payload_bytes, component, description
         FROM rcjobs.job_kind ORDER BY name",
    )
    .fetch_all(exec)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, required_fields, max_attempts, max_payload_bytes, component, description)| {
                KindSpec {
                    name,
                    required_fields,
                    max_attempts,
                    max_payload_bytes,
                    component,
                    description,
                }
            },
        )
        .collect())
}
