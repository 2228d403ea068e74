//! Live reload (SIGHUP, `POST /admin/reload`): read the configuration again, build it, and swap
//! the live settings without dropping connections; then every connection re-checks its
//! subscriptions. A configuration that fails its checks, or changes what needs a restart, is
//! refused and the running one kept.
//!
//! A control-plane write is applied the same way ([`apply_record`]): the running file
//! configuration with the new stored resources, built, stored, swapped. Reloads and writes take
//! turns, so neither undoes the other.

use std::sync::Arc;

use crate::connection::outbox::Out;
use crate::control::ControlError;
use crate::control::store::{self, ApiRecord};
use crate::settings::{Live, Settings};
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
    let held = state.clone();
    let _turn = held.reconfiguring.lock().await;
    tokio::task::spawn_blocking(move || reload_now(&state))
        .await
        .map_err(|e| ReloadError::Interrupted(e.to_string()))?
}

fn reload_now(state: &State) -> Result<(), ReloadError> {
    let source = state.reload_source().ok_or(ReloadError::NoSource)?;
    let config = source().map_err(ReloadError::Source)?;
    let record = (*state.live().record).clone();
    let settings = Settings::build_with(config, record)?;
    let changed = state.fixed.changed(&settings.fixed);
    if !changed.is_empty() {
        return Err(ReloadError::NeedsRestart(changed.join(", ")));
    }
    state.swap_live(settings.live);
    state.connections.broadcast(Out::Recheck);
    tracing::info!("configuration reloaded");
    Ok(())
}

/// Applies a control-plane write: builds the running file configuration with `change`'s
/// record, stores the record (in the data directory, or the cluster's bucket), then swaps the
/// settings in; a change that does not build, or cannot be stored, leaves everything as it was.
/// Returns the new settings, whose control plane answers.
pub async fn apply_record<T: Send + 'static>(
    state: Arc<State>,
    change: impl FnOnce(&Live) -> Result<Option<(ApiRecord, T)>, ControlError> + Send + 'static,
) -> Result<Option<(Arc<Live>, T)>, ControlError> {
    let _turn = state.reconfiguring.lock().await;
    let Some((live, record, settings, written)) = build(&state, change).await? else {
        return Ok(None);
    };
    store_record(&state, &live, &record).await?;
    state.swap_live(settings.live);
    state.connections.broadcast(Out::Recheck);
    tracing::info!(
        api_id = live.api_id(),
        "configuration changed through the control plane"
    );
    Ok(Some((state.live(), written)))
}

/// Applies a record another node stored (cluster mode); nothing when it is the one in force.
pub async fn adopt_record(state: Arc<State>, record: ApiRecord) -> Result<(), ControlError> {
    let _turn = state.reconfiguring.lock().await;
    let built = build(&state, move |live| {
        Ok((*live.record != record).then_some((record, ())))
    })
    .await?;
    if let Some((live, _, settings, ())) = built {
        state.swap_live(settings.live);
        state.connections.broadcast(Out::Recheck);
        tracing::info!(
            api_id = live.api_id(),
            "configuration changed on another node"
        );
    }
    Ok(())
}

type Built<T> = Option<(Arc<Live>, ApiRecord, Settings, T)>;

/// Builds the settings a change makes, on a blocking thread (handler code compiles).
async fn build<T: Send + 'static>(
    state: &Arc<State>,
    change: impl FnOnce(&Live) -> Result<Option<(ApiRecord, T)>, ControlError> + Send + 'static,
) -> Result<Built<T>, ControlError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let live = state.live();
        let Some((record, written)) = change(&live)? else {
            return Ok(None);
        };
        let settings = Settings::build_with((*live.file).clone(), record.clone())
            .map_err(|e| ControlError::Invalid(e.problems.join("; ")))?;
        if !state.fixed.changed(&settings.fixed).is_empty() {
            return Err(ControlError::Invalid(
                "the change needs a restart of the server".into(),
            ));
        }
        Ok(Some((live, record, settings, written)))
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "control plane change interrupted");
        ControlError::Internal
    })?
}

/// Stores an API's record: in the cluster's bucket, else in the server's data directory.
pub async fn store_record(
    state: &State,
    live: &Live,
    record: &ApiRecord,
) -> Result<(), ControlError> {
    let stored = match &state.records {
        Some(records) => records
            .put(live.api_id(), record)
            .await
            .map_err(|e| e.to_string()),
        None => {
            let (dir, id, record) = (
                live.file.data_dir.clone(),
                live.api_id().to_owned(),
                record.clone(),
            );
            tokio::task::spawn_blocking(move || store::save(&dir, &id, &record))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        }
    };
    stored.map_err(|e| {
        tracing::error!(error = %e, "control plane change not stored");
        ControlError::NotStored(e)
    })
}
