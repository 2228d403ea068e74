//! Event APIs: one server serves the API its configuration file describes and the APIs created
//! through the control plane (`CreateApi`), each apart from the others — its own namespaces,
//! keys, providers, handlers, connections, history and metrics — because each runs on its own
//! [`State`]. They share the port, the admission limits and the process.
//!
//! A request reaches an API by a path prefix, `/apis/{apiId}/event…` (so an Amplify endpoint
//! `http://host:port/apis/{apiId}/event` has its realtime URL at `…/event/realtime`), or by the
//! host name AppSync gives it, `{apiId}.appsync-api.{region}.amazonaws.com` and
//! `{apiId}.appsync-realtime-api.…`; anything else reaches the file's API.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::control::replicated::{Change, Records, ReplicatedError};
use crate::control::store::{self, ApiRecord};
use crate::settings::Settings;
use crate::state::State;

/// The APIs created through the control plane, by id (the file's is not among them).
#[derive(Default)]
pub struct Apis {
    created: RwLock<BTreeMap<String, Running>>,
    /// Whether any created API has a custom domain: requests skip the lookup when none has.
    domains: std::sync::atomic::AtomicBool,
}

pub use crate::control::definition::DOMAIN_TAG;

struct Running {
    state: Arc<State>,
    /// Its custom host name, lower-case (the `herald:domain` tag).
    domain: Option<String>,
    /// The API's keep-alive timer, stopped with it.
    ticker: tokio::task::JoinHandle<()>,
}

/// An API could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("API {api_id}: {error}")]
    Config {
        api_id: String,
        error: crate::config::ConfigError,
    },
    #[error("API {api_id}: {error}")]
    Backplane {
        api_id: String,
        error: crate::deployment::BackplaneError,
    },
    #[error("API {api_id}: {error}")]
    Stored {
        api_id: String,
        error: store::StoreError,
    },
    #[error("opening the API was interrupted")]
    Interrupted,
    #[error(transparent)]
    Replicated(#[from] ReplicatedError),
}

impl Apis {
    /// A created API.
    pub fn get(&self, api_id: &str) -> Option<Arc<State>> {
        self.read().get(api_id).map(|r| r.state.clone())
    }

    /// Every created API, by id.
    pub fn all(&self) -> Vec<Arc<State>> {
        self.read().values().map(|r| r.state.clone()).collect()
    }

    pub fn count(&self) -> usize {
        self.read().len()
    }

    /// The created API whose custom domain is `host` (its port ignored).
    pub fn by_host(&self, host: &str) -> Option<Arc<State>> {
        if !self.domains.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
        self.read()
            .values()
            .find(|r| {
                r.domain
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case(name))
            })
            .map(|r| r.state.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Running>> {
        self.created.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Running>> {
        self.created.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds and starts a created API from its record, beside `file` (the file's API, whose
    /// server-wide settings it shares), and serves it.
    pub async fn open(
        &self,
        file: &Arc<State>,
        record: ApiRecord,
    ) -> Result<Arc<State>, OpenError> {
        let api_id = record
            .api
            .as_ref()
            .map(|a| a.api_id.clone())
            .unwrap_or_default();
        let domain = record
            .api
            .as_ref()
            .and_then(|a| a.tags.get(DOMAIN_TAG))
            .map(|d| d.to_ascii_lowercase());
        let base = (*file.live().file).clone();
        let id = api_id.clone();
        let settings = tokio::task::spawn_blocking(move || Settings::build_with(base, record))
            .await
            .map_err(|_| OpenError::Interrupted)?
            .map_err(|error| OpenError::Config { api_id: id, error })?;
        let backplane = crate::deployment::start(&settings.fixed)
            .await
            .map_err(|error| OpenError::Backplane {
                api_id: api_id.clone(),
                error,
            })?;
        let mut state = State::new(
            settings.fixed,
            settings.live,
            backplane.broker,
            backplane.history,
            backplane.outbound,
        );
        // One port, one set of per-address limits, whichever API a client asks for.
        state.admission = file.admission.clone();
        state.records = file.records.clone();
        state.metrics.api_label = Some(api_id.clone());
        let state = Arc::new(state);
        let ticker = tokio::spawn(keepalive(state.clone()));
        if domain.is_some() {
            self.domains
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let replaced = self.write().insert(
            api_id.clone(),
            Running {
                state: state.clone(),
                domain,
                ticker,
            },
        );
        if let Some(old) = replaced {
            close(old);
        }
        tracing::info!(api_id, "API serving");
        Ok(state)
    }

    /// Opens every API the control plane created and stored in `file`'s data directory.
    pub async fn open_stored(&self, file: &Arc<State>) -> Result<(), OpenError> {
        let now = crate::time::now_unix();
        let records =
            store::load_created(&file.fixed.data_dir).map_err(|error| OpenError::Stored {
                api_id: "?".into(),
                error,
            })?;
        for record in records {
            match self.open(file, record.without_deleted_keys(now)).await {
                Ok(_) => {}
                // One API no longer building (its AWS_IAM provider left the file, say) must not
                // keep the others down: it is left unserved, and says why.
                Err(e @ OpenError::Config { .. }) => {
                    tracing::error!(error = %e, "a created API is not served; fix the configuration file or delete the API's document under control-plane/")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Stops serving a created API: its connections are closed as the server's are at shutdown.
    pub fn remove(&self, api_id: &str) -> bool {
        let removed = self.write().remove(api_id);
        match removed {
            Some(r) => {
                close(r);
                true
            }
            None => false,
        }
    }
}

fn close(running: Running) {
    running.ticker.abort();
    running.state.connections.close_all(
        crate::transport::ws::close::GOING_AWAY,
        "this API was deleted",
    );
}

/// Cluster mode: serves every API the cluster's records hold, now and as they change on any
/// node. The file's API takes its record; the others are opened, rebuilt and removed.
pub async fn follow(
    file: &Arc<State>,
    apis: &Arc<Apis>,
    records: Arc<Records>,
) -> Result<(), OpenError> {
    // Changes first, so none falls between the snapshot and the watch; applying the snapshot's
    // records twice changes nothing.
    let changes = records.changes().await?;
    for (api_id, record) in records.all().await? {
        apply(file, apis, Change::Put(api_id, Box::new(record))).await;
    }
    let (file, apis) = (file.clone(), apis.clone());
    tokio::spawn(async move {
        tokio::pin!(changes);
        while let Some(change) = futures_util::StreamExt::next(&mut changes).await {
            apply(&file, &apis, change).await;
        }
        tracing::error!(
            "the control plane's watch of NATS ended; changes made on other nodes are not applied until a restart"
        );
    });
    Ok(())
}

async fn apply(file: &Arc<State>, apis: &Apis, change: Change) {
    let now = crate::time::now_unix();
    match change {
        Change::Put(api_id, record) => {
            let record = record.without_deleted_keys(now);
            let target = if file.live().api_id() == api_id {
                Some(file.clone())
            } else {
                apis.get(&api_id)
            };
            let result = match target {
                Some(state) => crate::reload::adopt_record(state, record)
                    .await
                    .map_err(|e| e.to_string()),
                None if record.api.is_some() => apis
                    .open(file, record)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => Ok(()),
            };
            if let Err(error) = result {
                tracing::error!(api_id, %error, "a change from another node is not applied");
            }
        }
        Change::Deleted(api_id) => {
            if apis.remove(&api_id) {
                tracing::info!(api_id, "API deleted on another node");
            }
        }
    }
}

/// One timer for every connection of an API: keep-alives and the maximum lifetime.
pub async fn keepalive(state: Arc<State>) {
    let ws = &state.fixed.websocket;
    let period = Duration::from_millis(ws.keepalive_interval_ms);
    let max_age = Duration::from_secs(ws.max_lifetime_secs);
    let ka = bytes::Bytes::from_static(herald_protocol::reply::KA.as_bytes());
    let mut interval = tokio::time::interval(period);
    interval.tick().await;
    loop {
        interval.tick().await;
        state.connections.tick(&ka, max_age);
    }
}

/// Where a request goes.
pub enum Route<'a> {
    /// The API named by id, and the path within it; `prefixed` when the path named it (an
    /// unknown id is then an error, where an unknown host name is the file's API).
    Api {
        api_id: &'a str,
        path: &'a str,
        prefixed: bool,
    },
    /// The file's API (or the server itself: the control plane), at this path.
    Default,
}

/// Which API a request names by its path prefix or host.
pub fn route<'a>(host: Option<&'a str>, path: &'a str) -> Route<'a> {
    if let Some(rest) = path.strip_prefix("/apis/") {
        let (api_id, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !api_id.is_empty() {
            return Route::Api {
                api_id,
                path: tail,
                prefixed: true,
            };
        }
    }
    if let Some(host) = host {
        let name = host.split(':').next().unwrap_or(host);
        if let Some((api_id, domain)) = name.split_once('.')
            && (domain.starts_with("appsync-api.") || domain.starts_with("appsync-realtime-api."))
        {
            return Route::Api {
                api_id,
                path,
                prefixed: false,
            };
        }
    }
    Route::Default
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api<'a>(host: Option<&'a str>, path: &'a str) -> Option<(&'a str, &'a str)> {
        match route(host, path) {
            Route::Api { api_id, path, .. } => Some((api_id, path)),
            Route::Default => None,
        }
    }

    #[test]
    fn requests_name_their_api_by_path_or_host() {
        assert_eq!(api(None, "/apis/abc/event"), Some(("abc", "/event")));
        assert_eq!(
            api(Some("localhost:8080"), "/apis/abc/event/realtime"),
            Some(("abc", "/event/realtime"))
        );
        assert_eq!(api(None, "/apis/abc"), Some(("abc", "")));
        assert_eq!(api(None, "/apis/"), None);
        assert_eq!(api(None, "/event"), None);
        assert_eq!(
            api(Some("abc.appsync-api.us-east-1.amazonaws.com"), "/event"),
            Some(("abc", "/event"))
        );
        assert_eq!(
            api(
                Some("abc.appsync-realtime-api.eu-west-1.amazonaws.com:443"),
                "/event/realtime"
            ),
            Some(("abc", "/event/realtime"))
        );
        assert_eq!(api(Some("example.com"), "/event"), None);
        // The control plane stays the server's.
        assert_eq!(api(Some("localhost"), "/v2/apis/abc"), None);
    }
}
