//! Bulk enqueue by `COPY`: the fastest way to add many plain jobs.
//!
//! Ids are reserved first (so they can be returned in input order), the jobs are checked
//! here exactly as `rcjobs.check_job` would check them (same messages; see
//! [`crate::jsonb_text_len`] for the one check that needs care), the rows are streamed with
//! `COPY … FROM STDIN` straight into the job table, and `rcjobs.copy_counted` adds their
//! counter deltas and wakes the workers, all in one transaction (a savepoint inside the
//! caller's own). An invalid job rejects the whole batch, naming its position. When a
//! payload's size can only be told by the database, `rcjobs.copy_finish` reads the batch
//! back and checks it there instead.

use crate::copy_check::{check, KindRule};
use crate::{NewJob, QueueError};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::io::Write as _;

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
    let (mut ids, rules): (Vec<i64>, Option<Json<HashMap<String, KindRule>>>) = sqlx::query_as(
        "SELECT rcjobs.reserve_job_ids($1),
                (SELECT jsonb_object_agg(name, jsonb_build_object('max_attempts', max_attempts,
                        'max_payload_bytes', max_payload_bytes, 'required_fields', required_fields))
                 FROM rcjobs.job_kind WHERE name = ANY ($2))",
    )
    .bind(n)
    .bind(&kinds)
    .fetch_one(&mut *tx)
    .await?;
    let rules = rules.map(|r| r.0).unwrap_or_default();
    if ids.len() != jobs.len() {
        return Err(QueueError::Conflict(format!(
            "reserved {} ids for {} jobs",
            ids.len(),
            jobs.len()
        )));
    }
    // one statement's nextval calls increase; in input order they keep FIFO among the batch
    ids.sort_unstable();

    // The checks rcjobs.check_job makes, here, so the database need not read the rows back.
    let mut sized = true;
    let now = chrono::Utc::now();
    let mut due = false;
    let mut counts: HashMap<(&str, &str), i64> = HashMap::new();
    // each job's attempt limit: its own, or its kind's
    let mut limits = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let rule = check(job, rules.get(&job.kind), &mut sized).map_err(|why| {
            QueueError::Rejected(format!("{why} (job {} of {})", i + 1, jobs.len()))
        })?;
        limits.push(job.max_attempts.unwrap_or(rule.max_attempts));
        *counts.entry((&job.queue, &job.kind)).or_default() += 1;
        due |= job.run_at.is_none_or(|t| t <= now);
    }

    // Jobs without a start time take the column default (the server's now()), so they go in
    // a COPY that leaves run_at out; delayed ones in a second.
    let mut copied = 0u64;
    let mut payload = Vec::new();
    for delayed in [false, true] {
        let mut buf: Vec<u8> = Vec::new();
        for ((job, id), max) in jobs.iter().zip(&ids).zip(&limits) {
            if job.run_at.is_some() != delayed {
                continue;
            }
            let _ = write!(buf, "{id}\t");
            push_field(&mut buf, job.kind.as_bytes());
            buf.push(b'\t');
            push_field(&mut buf, job.queue.as_bytes());
            let _ = write!(buf, "\t{}\t", job.priority);
            push_payload(&mut buf, &mut payload, &job.payload)?;
            let _ = write!(buf, "\t{max}");
            if let Some(t) = job.run_at {
                let _ = write!(buf, "\t{}", t.to_rfc3339());
            }
            buf.push(b'\n');
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
        if let Err(e) = copy.send(buf).await {
            let _ = copy.abort("rcjobs: send failed").await;
            return Err(e.into());
        }
        copied += copy.finish().await?;
    }
    if copied != jobs.len() as u64 {
        return Err(QueueError::Conflict(format!(
            "COPY stored {copied} of {} jobs",
            jobs.len()
        )));
    }
    if sized {
        let mut queues = Vec::with_capacity(counts.len());
        let mut kinds = Vec::with_capacity(counts.len());
        let mut ns = Vec::with_capacity(counts.len());
        for ((q, k), c) in counts {
            queues.push(q);
            kinds.push(k);
            ns.push(c);
        }
        sqlx::query("SELECT rcjobs.copy_counted($1, $2, $3, $4)")
            .bind(&queues)
            .bind(&kinds)
            .bind(&ns)
            .bind(due)
            .execute(&mut *tx)
            .await?;
    } else {
        // a payload whose size only the database can tell: it checks the whole batch
        sqlx::query("SELECT rcjobs.copy_finish($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(ids)
}

/// Appends `s` escaped for COPY's text format (backslash, tab, newline, carriage return).
fn push_field(buf: &mut Vec<u8>, s: &[u8]) {
    let mut from = 0;
    for (i, b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        buf.extend_from_slice(&s[from..i]);
        buf.extend_from_slice(esc);
        from = i + 1;
    }
    buf.extend_from_slice(&s[from..]);
}

fn push_payload(
    buf: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    payload: &Value,
) -> Result<(), QueueError> {
    scratch.clear();
    serde_json::to_writer(&mut *scratch, payload)
        .map_err(|e| QueueError::Rejected(format!("rcjobs: payload is not serialisable: {e}")))?;
    push_field(buf, scratch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::push_field;

    #[test]
    fn copy_text_escapes() {
        let mut b = Vec::new();
        push_field(&mut b, "a\\b\tc\nd\re".as_bytes());
        assert_eq!(b, b"a\\\\b\\tc\\nd\\re");
    }
}
