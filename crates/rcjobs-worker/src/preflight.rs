//! What the bot must be allowed to do for the enabled features, checked once at start-up:
//! a missing permission is said plainly before any job runs into it. Nothing is refused
//! here; a sync that meets the missing permission records it on the room and goes on.

use crate::engine::Engine;
use rcjobs_chat::Capability;

/// The server-wide capabilities the configured features need.
pub fn needed_capabilities(create_accounts: bool) -> Vec<Capability> {
    let mut v = vec![Capability::CreateRooms, Capability::UnarchiveRooms];
    if create_accounts {
        v.push(Capability::CreateUsers);
    }
    v
}

/// Asks the chat server which needed capabilities the bot lacks and logs each one with the
/// permission to grant. Returns them (empty when all is well or the server would not say).
pub async fn check_capabilities(engine: &Engine) -> Vec<(Capability, String)> {
    let needed = needed_capabilities(engine.config().create_accounts);
    match engine.chat.missing_capabilities(&needed).await {
        Ok(missing) => {
            for (c, permission) in &missing {
                tracing::warn!(
                    permission = %permission,
                    "the bot lacks `{permission}`, needed for {}: grant it to the bot's role; until then the rooms concerned record `permission_missing`",
                    c.purpose()
                );
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
    use super::needed_capabilities;
    use rcjobs_chat::Capability;

    #[test]
    fn account_creation_needs_its_permission_only_when_on() {
        assert!(!needed_capabilities(false).contains(&Capability::CreateUsers));
        assert!(needed_capabilities(true).contains(&Capability::CreateUsers));
        assert!(needed_capabilities(false).contains(&Capability::UnarchiveRooms));
    }
}
