//! Reading and writing `timestamptz` values that chrono cannot hold.
//!
//! Postgres stores `infinity`, `-infinity` and years up to 294276; chrono stops at year
//! 262142, and sqlx's own decoder panics past it. A row written before `run_at` was checked
//! at enqueue (or by hand) must still be listable, cancellable and claimable, so every
//! timestamp the queue reads goes through [`StoredTime`], which saturates instead.
//!
//! New values are held to [`RUN_AT_MIN`]..[`run_at_max`] by [`check_run_at`] here and by
//! `rcjobs.check_run_at` in the database, with the same message.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

/// Earliest `run_at` the queue accepts: 1970-01-01T00:00:00Z.
pub const RUN_AT_MIN: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// Latest `run_at` the queue accepts (exclusive): 10000-01-01T00:00:00Z, the first instant
/// that RFC 3339 (four-digit years) and Moodle's integer columns stop agreeing on.
pub fn run_at_max() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(10000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Refuses a `run_at` outside the accepted range with the database's wording.
pub fn check_run_at(run_at: Option<DateTime<Utc>>) -> Result<(), String> {
    match run_at {
        Some(t) if t < RUN_AT_MIN || t >= run_at_max() => Err(format!(
            "rcjobs: run_at must be from 1970-01-01 to before 10000-01-01 UTC, got {}",
            t.to_rfc3339()
        )),
        _ => Ok(()),
    }
}

/// A stored `timestamptz`, saturated to chrono's range: `-infinity` and anything earlier
/// than chrono can hold read as [`DateTime::<Utc>::MIN_UTC`], `infinity` and anything later
/// as [`DateTime::<Utc>::MAX_UTC`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredTime(pub DateTime<Utc>);

/// Microseconds between the Unix epoch and Postgres's epoch (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

impl StoredTime {
    /// The instant Postgres's binary form `us` (microseconds since 2000-01-01) denotes.
    pub fn from_pg_micros(us: i64) -> StoredTime {
        let t = match us {
            i64::MAX => None,
            i64::MIN => None,
            _ => us
                .checked_add(PG_EPOCH_UNIX_MICROS)
                .and_then(DateTime::<Utc>::from_timestamp_micros),
        };
        StoredTime(t.unwrap_or(if us < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        }))
    }

    /// The instant Postgres's text form denotes (simple-protocol results).
    fn from_text(s: &str) -> StoredTime {
        StoredTime(match s {
            "infinity" => DateTime::<Utc>::MAX_UTC,
            "-infinity" => DateTime::<Utc>::MIN_UTC,
            _ => match DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z") {
                Ok(t) => t.with_timezone(&Utc),
                // what chrono cannot parse is past its range: saturate by era
                Err(_) if s.starts_with('-') || s.ends_with(" BC") => DateTime::<Utc>::MIN_UTC,
                Err(_) => DateTime::<Utc>::MAX_UTC,
            },
        })
    }

    /// Whether this is a saturated value (infinite or beyond chrono's range when stored).
    pub fn is_saturated(&self) -> bool {
        self.0 == DateTime::<Utc>::MIN_UTC || self.0 == DateTime::<Utc>::MAX_UTC
    }
}

/// Renders a time read through [`StoredTime`]: RFC 3339, or `infinity` / `-infinity` for a
/// saturated value (what Postgres would print for the real infinities).
pub fn display_time(t: &DateTime<Utc>) -> String {
    if *t == DateTime::<Utc>::MAX_UTC {
        "infinity".into()
    } else if *t == DateTime::<Utc>::MIN_UTC {
        "-infinity".into()
    } else {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

impl From<StoredTime> for DateTime<Utc> {
    fn from(t: StoredTime) -> Self {
        t.0
    }
}

impl Type<Postgres> for StoredTime {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for StoredTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let us = <i64 as Decode<Postgres>>::decode(value)?;
                Ok(StoredTime::from_pg_micros(us))
            }
            PgValueFormat::Text => Ok(StoredTime::from_text(value.as_str()?)),
        }
    }
}

impl Encode<'_, Postgres> for StoredTime {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn infinities_and_out_of_range_values_saturate() {
        assert_eq!(
            StoredTime::from_pg_micros(i64::MAX).0,
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            StoredTime::from_pg_micros(i64::MIN).0,
            DateTime::<Utc>::MIN_UTC
        );
        // year 287,000 (Moodle's timeend = 9e12 s): past chrono, inside Postgres
        let us = 9_000_000_000_000i64 * 1_000_000 - PG_EPOCH_UNIX_MICROS;
        assert_eq!(StoredTime::from_pg_micros(us).0, DateTime::<Utc>::MAX_UTC);
        assert!(StoredTime::from_pg_micros(us).is_saturated());
    }

    #[test]
    fn ordinary_values_round_trip() {
        let t = StoredTime::from_pg_micros(0);
        assert_eq!(t.0.to_rfc3339(), "2000-01-01T00:00:00+00:00");
        assert!(!t.is_saturated());
        assert_eq!(display_time(&t.0), "2000-01-01T00:00:00Z");
        assert_eq!(display_time(&DateTime::<Utc>::MAX_UTC), "infinity");
    }

    #[test]
    fn text_form_is_read_too() {
        let t = StoredTime::from_text("2026-12-04 10:00:00.5+00");
        assert_eq!(t.0.to_rfc3339(), "2026-12-04T10:00:00.500+00:00");
        assert!(StoredTime::from_text("infinity").is_saturated());
        assert_eq!(
            StoredTime::from_text("294276-01-01 00:00:00+00").0,
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn run_at_bounds() {
        assert!(check_run_at(None).is_ok());
        assert!(check_run_at(Some(Utc::now())).is_ok());
        let e = check_run_at(Some(run_at_max())).unwrap_err();
        assert!(e.starts_with("rcjobs: run_at must be"), "{e}");
        assert!(check_run_at(Some(RUN_AT_MIN - chrono::Duration::seconds(1))).is_err());
        assert!(check_run_at(Some(RUN_AT_MIN)).is_ok());
    }
}
