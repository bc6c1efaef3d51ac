//! What the bot must be allowed to do for the enabled features, checked once at start-up
//! (and by `rcjobs status`): a missing permission is said plainly before any job runs into
//! it. Nothing is refused here; a sync that meets the missing permission records it on the
//! room and goes on.

use crate::engine::Engine;
use rcjobs_chat::{Capability, ChatBackend, ChatResult};

/// The server-wide capabilities the enabled features need: rooms, unarchiving and cleaning
/// history (course resets, the plugin's default) always, accounts with account creation on,
/// retention with retention handling on.
pub fn needed_capabilities(create_accounts: bool, retention: bool) -> Vec<Capability> {
    let mut v = vec![
        Capability::CreateRooms,
        Capability::UnarchiveRooms,
        Capability::CleanHistory,
    ];
    if create_accounts {
        v.push(Capability::CreateUsers);
    }
    if retention {
        v.push(Capability::EditRetention);
    }
    v
}

/// The setting without which `c` is not needed (`None`: always needed).
pub fn only_with(c: Capability) -> Option<&'static str> {
    match c {
        Capability::CreateUsers => Some("create_accounts"),
        Capability::EditRetention => Some("retention_feature"),
        Capability::CreateRooms | Capability::UnarchiveRooms | Capability::CleanHistory => None,
    }
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
/// The features are the replica's effective settings (Moodle's plugin settings unless the
/// file or a flag overrides them), read as of start-up.
pub async fn check_capabilities(engine: &Engine) -> Vec<Finding> {
    let needed = match engine.effective_settings().await {
        Ok(s) => needed_capabilities(s.create_accounts, s.retention_feature),
        // Moodle unreadable right now: judge by the configured values rather than not at all.
        Err(_) => needed_capabilities(
            engine.config().create_accounts,
            engine.config().retention_feature,
        ),
    };
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
    use super::{needed_capabilities, only_with, Finding};
    use rcjobs_chat::Capability;

    #[test]
    fn account_creation_needs_its_permission_only_when_on() {
        assert!(!needed_capabilities(false, false).contains(&Capability::CreateUsers));
        assert!(needed_capabilities(true, false).contains(&Capability::CreateUsers));
        assert!(needed_capabilities(false, false).contains(&Capability::UnarchiveRooms));
    }

    #[test]
    fn retention_needs_its_permission_only_when_on() {
        assert!(!needed_capabilities(true, false).contains(&Capability::EditRetention));
        assert!(needed_capabilities(false, true).contains(&Capability::EditRetention));
        for c in needed_capabilities(true, true) {
            let always = needed_capabilities(false, false).contains(&c);
            assert_eq!(only_with(c).is_none(), always, "{c:?}");
        }
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
