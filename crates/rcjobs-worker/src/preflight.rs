//! What the bot must be allowed to do for the enabled features, checked once at start-up
//! (and by `rcjobs status`): a missing permission is said plainly before any job runs into
//! it. Nothing is refused here; a sync that meets the missing permission records it on the
//! room and goes on.

use crate::engine::Engine;
use rcjobs_chat::{Capability, ChatBackend, ChatResult};

/// The server-wide capabilities the configured features need.
pub fn needed_capabilities(create_accounts: bool) -> Vec<Capability> {
    let mut v = vec![Capability::CreateRooms, Capability::UnarchiveRooms];
    if create_accounts {
        v.push(Capability::CreateUsers);
    }
    v
}

/// A permission the bot lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What the worker cannot do without it.
    pub capability: Capability,
    /// The chat server's name for the permission to grant (`create-user`).
    pub permission: String,
}

impl Finding {
    /// The sentence the worker logs and `rcjobs status` prints.
    pub fn message(&self) -> String {
        format!(
            "the bot lacks `{}`, needed for {}: grant it to the bot's role; until then the rooms concerned record `permission_missing`",
            self.permission,
            self.capability.purpose()
        )
    }
}

/// Of `needed`, the permissions `chat`'s bot lacks.
pub async fn missing_permissions(
    chat: &dyn ChatBackend,
    needed: &[Capability],
) -> ChatResult<Vec<Finding>> {
    Ok(chat
        .missing_capabilities(needed)
        .await?
        .into_iter()
        .map(|(capability, permission)| Finding {
            capability,
            permission,
        })
        .collect())
}

/// Asks the chat server which needed capabilities the bot lacks and logs each one with the
/// permission to grant. Returns them (empty when all is well or the server would not say).
pub async fn check_capabilities(engine: &Engine) -> Vec<Finding> {
    let needed = needed_capabilities(engine.config().create_accounts);
    match missing_permissions(engine.chat.as_ref(), &needed).await {
        Ok(missing) => {
            for f in &missing {
                tracing::warn!(permission = %f.permission, "{}", f.message());
            }
            if missing.is_empty() {
                tracing::info!("the bot holds every permission the enabled features need");
            }
            missing
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the bot's permissions; not checked");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{needed_capabilities, Finding};
    use rcjobs_chat::Capability;

    #[test]
    fn account_creation_needs_its_permission_only_when_on() {
        assert!(!needed_capabilities(false).contains(&Capability::CreateUsers));
        assert!(needed_capabilities(true).contains(&Capability::CreateUsers));
        assert!(needed_capabilities(false).contains(&Capability::UnarchiveRooms));
    }

    #[test]
    fn the_message_names_the_permission_and_what_it_is_for() {
        let f = Finding {
            capability: Capability::CreateUsers,
            permission: "create-user".into(),
        };
        let m = f.message();
        assert!(m.contains("`create-user`"), "{m}");
        assert!(m.contains(Capability::CreateUsers.purpose()), "{m}");
    }
}
