//! Raw endpoint methods, one per REST call, grouped by API family. They return the server's
//! refusals as errors; the idempotent behaviour lives in [`crate::RocketChatBackend`].

mod groups;
mod rooms;
mod server;
mod users;

pub(crate) use groups::is_batch_unsupported;
pub(crate) use users::is_user_not_found;
