//! Typed, versioned job payloads for every rcjobs job kind, and the enqueue API for Rust
//! callers.
//!
//! * [`Kind`]: the job kinds (named after mod_rocketchat's adhoc tasks).
//! * [`Job`]: one typed job; [`Job::parse`] accepts the stored shape **and** the plugin's
//!   customdata (whole user rows, member snapshots) and reduces it to ids, so password
//!   hashes never reach the queue.
//! * [`enqueue`] / [`enqueue_many`]: validate, choose dedup/exclusion keys, and insert on a
//!   pool or inside the caller's transaction.
//! * [`kind_specs`] / [`register_kinds`]: what `rcjobs migrate` registers in `rcjobs.job_kind`.
//!
//! This crate knows nothing of executing jobs.

#![forbid(unsafe_code)]

mod enqueue;
mod job;
mod kind;
mod lenient;
mod payload;

pub use enqueue::{
    enqueue, enqueue_many, enqueue_with, kind_specs, register_kinds, EnqueueError, EnqueueOptions,
    Enqueued,
};
pub use job::{
    periodic_sync_dedup_key, reconcile_dedup_key, room_lock_key, sync_dedup_key, Job, JobKeys,
    PayloadError,
};
pub use kind::{Kind, UnknownKind};
pub use payload::{
    contextlevel, BinAction, CleanHistory, ContextRef, EnrolRole, EnrolUserToGroup, Enrolment,
    Invalid, ReconcileAll, Recyclebin, Restore, SynchronizeGroup, UserScope, PAYLOAD_VERSION,
};

#[cfg(test)]
mod tests;
