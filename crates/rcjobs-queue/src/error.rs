//! The crate's error type.

/// Everything the queue API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database refused a job or an argument (SQLSTATE 22023, message starting `rcjobs:`):
    /// unknown kind, payload not an object, payload too large, missing required field, …
    #[error("{0}")]
    Rejected(String),
    /// The database schema is missing or older than this binary needs.
    #[error("{0}")]
    Schema(String),
    /// No job with that id (neither pending nor in history).
    #[error("job {0} not found")]
    NotFound(i64),
    /// The operation does not apply to the job in its current state.
    #[error("{0}")]
    Conflict(String),
    /// Applying the migrations failed.
    // The cause is in the message and deliberately not a `source`: error reports that walk
    // the chain (`{:#}`) printed it twice.
    #[error("migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// Any other database error (connection lost, …). The cause is in the message, not a
    /// `source` (see `Migrate`).
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::migrate::MigrateError> for QueueError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        QueueError::Migrate(e)
    }
}

impl QueueError {
    /// Whether retrying the same call later could succeed (connection trouble, deadlock,
    /// serialization failure) as opposed to a rejected input.
    pub fn is_transient(&self) -> bool {
        match self {
            QueueError::Database(e) => match e.as_database_error().and_then(|d| d.code()) {
                Some(code) => {
                    code.starts_with("08")
                        || code == "40001"
                        || code == "40P01"
                        || code.starts_with("57P")
                }
                None => true,
            },
            _ => false,
        }
    }
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(db) = e.as_database_error() {
            if db.code().as_deref() == Some("22023") && db.message().starts_with("rcjobs:") {
                return QueueError::Rejected(db.message().to_string());
            }
            if db.code().as_deref() == Some("3F000") || db.code().as_deref() == Some("42883") {
                // schema or function missing: almost always "not migrated"
                return QueueError::Schema(format!(
                    "the rcjobs schema is missing or incomplete ({}); run `rcjobs migrate`",
                    db.message()
                ));
            }
        }
        QueueError::Database(e)
    }
}

#[cfg(test)]
mod tests {
    use super::QueueError;

    #[test]
    fn a_reported_chain_names_the_cause_once() {
        let e = QueueError::Database(sqlx::Error::PoolTimedOut);
        // what `anyhow`'s `{:#}` prints: every error of the chain, joined by ": "
        let mut parts = vec![e.to_string()];
        let mut next = std::error::Error::source(&e);
        while let Some(s) = next {
            parts.push(s.to_string());
            next = s.source();
        }
        let report = parts.join(": ");
        let cause = sqlx::Error::PoolTimedOut.to_string();
        assert_eq!(report.matches(cause.as_str()).count(), 1, "{report}");
    }
}
