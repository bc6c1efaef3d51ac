//! Bulk enqueue by `COPY`: the fastest way to add many plain jobs.
//!
//! Ids are reserved first (so they can be returned in input order), the rows are streamed
//! with `COPY … FROM STDIN` straight into the job table, and `rcjobs.copy_finish` then
//! validates them exactly as `rcjobs.enqueue_many` would, adds their counter deltas and
//! wakes the workers, all in one transaction (a savepoint inside the caller's own). An
//! invalid job rejects the whole batch, naming its position.

use crate::{NewJob, QueueError};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Enqueues `jobs` by `COPY` and returns their ids in input order.
///
/// For large batches of plain jobs (no dedup or exclusion key: those need the per-row
/// checks of [`crate::enqueue_many`], and are refused here). Pass a connection, or
/// `&mut *tx` to enqueue inside your own transaction.
///
/// ```no_run
/// # async fn f(pool: sqlx::PgPool) -> Result<(), rcjobs_queue::QueueError> {
/// use rcjobs_queue::{enqueue_copy, NewJob};
/// let jobs: Vec<NewJob> = (0..10_000)
///     .map(|i| NewJob::new("enrolment", serde_json::json!({"courseid": 7, "userid": i})))
///     .collect();
/// let mut conn = pool.acquire().await?;
/// let ids = enqueue_copy(&mut conn, &jobs).await?;
/// assert_eq!(ids.len(), jobs.len());
/// # Ok(()) }
/// ```
pub async fn enqueue_copy(
    conn: &mut PgConnection,
    jobs: &[NewJob],
) -> Result<Vec<i64>, QueueError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(i) = jobs
        .iter()
        .position(|j| j.dedup_key.is_some() || j.exclusion_key.is_some())
    {
        return Err(QueueError::Rejected(format!(
            "rcjobs: COPY enqueue takes no dedup or exclusion keys; use enqueue_many (job {} of {})",
            i + 1,
            jobs.len()
        )));
    }
    let n = i32::try_from(jobs.len())
        .map_err(|_| QueueError::Rejected("rcjobs: too many jobs for one COPY".into()))?;
    let mut kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();

    let mut tx = conn.begin().await?;
    let (ids, defaults): (Vec<i64>, Option<sqlx::types::Json<HashMap<String, i32>>>) =
        sqlx::query_as(
            "SELECT rcjobs.reserve_job_ids($1),
                    (SELECT jsonb_object_agg(name, max_attempts) FROM rcjobs.job_kind WHERE name = ANY ($2))",
        )
        .bind(n)
        .bind(&kinds)
        .fetch_one(&mut *tx)
        .await?;
    let defaults = defaults.map(|d| d.0).unwrap_or_default();
    if ids.len() != jobs.len() {
        return Err(QueueError::Conflict(format!(
            "reserved {} ids for {} jobs",
            ids.len(),
            jobs.len()
        )));
    }

    // Jobs without a start time take the column default (the server's now()), so they go in
    // a COPY that leaves run_at out; delayed ones in a second.
    for delayed in [false, true] {
        let mut buf = String::new();
        for (job, id) in jobs.iter().zip(&ids) {
            if job.run_at.is_some() != delayed {
                continue;
            }
            // An unknown kind gets a placeholder limit: copy_finish rejects it by name.
            let max = job
                .max_attempts
                .or_else(|| defaults.get(&job.kind).copied())
                .unwrap_or(1);
            let _ = write!(buf, "{id}\t");
            push_field(&mut buf, &job.kind);
            buf.push('\t');
            push_field(&mut buf, &job.queue);
            let _ = write!(buf, "\t{}\t", job.priority);
            push_payload(&mut buf, &job.payload)?;
            let _ = write!(buf, "\t{max}");
            if let Some(t) = job.run_at {
                let _ = write!(buf, "\t{}", t.to_rfc3339());
            }
            buf.push('\n');
        }
        if buf.is_empty() {
            continue;
        }
        let stmt = if delayed {
            "COPY rcjobs.job (id, kind, queue, priority, payload, max_attempts, run_at) FROM STDIN"
        } else {
            "COPY rcjobs.job (id, kind, queue, priority, payload, max_attempts) FROM STDIN"
        };
        let mut copy = tx.copy_in_raw(stmt).await?;
        if let Err(e) = copy.send(buf.into_bytes()).await {
            let _ = copy.abort("rcjobs: send failed").await;
            return Err(e.into());
        }
        copy.finish().await?;
    }
    // raises unless every reserved id was copied and every job is valid
    sqlx::query("SELECT rcjobs.copy_finish($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ids)
}

/// Appends `s` escaped for COPY's text format (backslash, tab, newline, carriage return).
fn push_field(buf: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\t' => buf.push_str("\\t"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            c => buf.push(c),
        }
    }
}

fn push_payload(buf: &mut String, payload: &Value) -> Result<(), QueueError> {
    let text = serde_json::to_string(payload)
        .map_err(|e| QueueError::Rejected(format!("rcjobs: payload is not serialisable: {e}")))?;
    push_field(buf, &text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::push_field;

    #[test]
    fn copy_text_escapes() {
        let mut b = String::new();
        push_field(&mut b, "a\\b\tc\nd\re");
        assert_eq!(b, "a\\\\b\\tc\\nd\\re");
    }
}
