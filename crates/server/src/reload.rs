//! Live reload (SIGHUP, `POST /admin/reload`): read the configuration again, build it, and swap
//! the live settings without dropping connections; then every connection re-checks its
//! subscriptions. A configuration that fails its checks, or changes what needs a restart, is
//! refused and the running one kept.

use std::sync::Arc;

use crate::connection::outbox::Out;
use crate::settings::Settings;
use crate::state::State;

/// A reload that was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Invalid(#[from] crate::config::ConfigError),
    #[error("{0} cannot change without a restart; the running configuration is kept")]
    NeedsRestart(String),
    #[error("cannot read the configuration: {0}; the running configuration is kept")]
    Source(String),
    #[error("this server has no configuration source to reload from")]
    NoSource,
    #[error("the reload did not finish: {0}")]
    Interrupted(String),
}

/// Reloads from the configuration source. Building compiles handler code, so it runs on a
/// blocking thread, never on the reactor.
pub async fn reload(state: Arc<State>) -> Result<(), ReloadError> {
    tokio::task::spawn_blocking(move || reload_now(&state))
        .await
        .map_err(|e| ReloadError::Interrupted(e.to_string()))?
}

fn reload_now(state: &State) -> Result<(), ReloadError> {
    let source = state.reload_source().ok_or(ReloadError::NoSource)?;
    let config = source().map_err(ReloadError::Source)?;
    let settings = Settings::build(config)?;
    let changed = state.fixed.changed(&settings.fixed);
    if !changed.is_empty() {
        return Err(ReloadError::NeedsRestart(changed.join(", ")));
    }
    state.swap_live(settings.live);
    state.connections.broadcast(Out::Recheck);
    tracing::info!("configuration reloaded");
    Ok(())
}
