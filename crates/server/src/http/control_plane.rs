//! The AppSync control plane over HTTP (`/v2/apis…`, `/v1/apis…`): reads the request, checks
//! its SigV4 signature, and answers with the `control` module's JSON or its AWS error
//! (`x-amzn-ErrorType` and `{"message": …}`, where botocore and the AWS SDKs read them).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::request::read_body;
use super::response::{Body, json};
use crate::api::Apis;
use crate::control::operation::{self, Operation};
use crate::control::store::{self, ApiRecord};
use crate::control::{ControlError, change, model};
use crate::settings::Live;
use crate::state::State;

/// Largest control-plane request body read (a namespace's code is at most 32 KiB).
const MAX_BODY_BYTES: usize = 256 * 1024;

pub use crate::control::operation::is_control_path;

/// Answers one control-plane request. `file` is the configuration file's API, whose
/// `[control_plane]` keys authenticate every request; `apis` are the created ones.
pub async fn serve(file: &Arc<State>, apis: &Arc<Apis>, req: Request<Incoming>) -> Response<Body> {
    let live = file.live();
    let Some(control) = live.control.as_ref() else {
        return reply_error(&ControlError::Off);
    };
    let (parts, body) = req.into_parts();
    // The signature covers the body, so it is read whole first.
    let body = match read_body(file, body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    if let Err(e) = control.authenticate(&parts, &body, SystemTime::now()) {
        file.metrics.unauthorized.inc();
        return reply_error(&e);
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| file.fixed.listen.to_string());
    let op = match operation::route(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
    ) {
        Ok(op) => op,
        Err(e) => return reply_error(&e),
    };
    let answer = match op {
        Operation::ListApis(page) => {
            let mut all = vec![control.api_at(&host)];
            all.extend(
                apis.all()
                    .iter()
                    .filter_map(|s| Some(s.live().control.as_ref()?.api_at(&host))),
            );
            let (items, next_token) = page.slice(&all);
            json_of(&model::ListApis {
                apis: items,
                next_token,
            })
        }
        Operation::CreateApi => create_api(file, apis, body, &host).await,
        Operation::DeleteApi { api_id } => delete_api(file, apis, api_id).await,
        Operation::UpdateApi { api_id } => update_api(file, apis, api_id, body, &host).await,
        _ => {
            let target = match of_api(file, apis, op.api_id().unwrap_or_default()) {
                Ok(t) => t,
                Err(e) => return reply_error(&e),
            };
            if op.is_write() {
                write(&target, &parts, body).await
            } else {
                match target.live().control.as_ref() {
                    Some(c) => c.answer(op, &host),
                    None => Err(ControlError::Internal),
                }
            }
        }
    };
    match answer {
        Ok(reply) => json(StatusCode::OK, Bytes::from(reply)),
        Err(e) => reply_error(&e),
    }
}

/// The state of the API `api_id` names.
fn of_api(file: &Arc<State>, apis: &Apis, api_id: &str) -> Result<Arc<State>, ControlError> {
    if file.live().api_id() == api_id {
        return Ok(file.clone());
    }
    apis.get(api_id)
        .ok_or_else(|| ControlError::ApiNotFound(api_id.to_owned()))
}

fn json_of(reply: &impl serde::Serialize) -> Result<Vec<u8>, ControlError> {
    serde_json::to_vec(reply).map_err(|_| ControlError::Internal)
}

/// `CreateApi`: a new API under a new id, serving at once and stored.
async fn create_api(
    file: &Arc<State>,
    apis: &Arc<Apis>,
    body: Bytes,
    host: &str,
) -> Result<Vec<u8>, ControlError> {
    let _turn = file.reconfiguring.lock().await;
    let live = file.live();
    let max = live.control.as_ref().map_or(0, |c| c.max_apis());
    if apis.count() >= max {
        return Err(ControlError::QuotaExceeded(format!(
            "this server already serves {max} APIs created through the control plane (control_plane.max_apis)"
        )));
    }
    let api_id = crate::id::api_id().map_err(|e| {
        tracing::error!(error = %e, "no API id generated");
        ControlError::Internal
    })?;
    let api = change::new_api(&body, api_id.clone(), crate::time::now_unix())?;
    let record = ApiRecord {
        api: Some(api),
        ..ApiRecord::default()
    };
    let state = apis
        .open(file, record.clone())
        .await
        .map_err(|e| ControlError::Invalid(e.to_string()))?;
    if let Err(e) = crate::reload::store_record(&state, &state.live(), &record).await {
        apis.remove(&api_id);
        return Err(e);
    }
    api_reply(&state.live(), host)
}

/// `{"api": …}` as the settings' control plane shows it at `host`.
fn api_reply(live: &Live, host: &str) -> Result<Vec<u8>, ControlError> {
    let control = live.control.as_ref().ok_or(ControlError::Internal)?;
    json_of(&model::GetApi {
        api: control.api_at(host),
    })
}

/// `UpdateApi`: a created API's name and `eventConfig`, applied like any change.
async fn update_api(
    file: &Arc<State>,
    apis: &Arc<Apis>,
    api_id: &str,
    body: Bytes,
    host: &str,
) -> Result<Vec<u8>, ControlError> {
    let target = of_api(file, apis, api_id)?;
    if Arc::ptr_eq(&target, file) {
        return Err(ControlError::FileOwned(
            "this API is the configuration file's: change it there".into(),
        ));
    }
    let applied = crate::reload::apply_record(target, move |live| {
        let old = live.record.api.as_ref().ok_or(ControlError::Internal)?;
        let api = change::updated_api(&body, old)?;
        let record = ApiRecord {
            api: Some(api),
            ..(*live.record).clone()
        };
        Ok(Some((record, ())))
    })
    .await?;
    let (live, ()) = applied.ok_or(ControlError::Internal)?;
    api_reply(&live, host)
}

/// `DeleteApi`: a created API stops serving (its connections closed) and its record is removed.
async fn delete_api(
    file: &Arc<State>,
    apis: &Arc<Apis>,
    api_id: &str,
) -> Result<Vec<u8>, ControlError> {
    let target = of_api(file, apis, api_id)?;
    if Arc::ptr_eq(&target, file) {
        return Err(ControlError::FileOwned(
            "this API is the configuration file's: it cannot be deleted".into(),
        ));
    }
    let _turn = file.reconfiguring.lock().await;
    let removed = match &file.records {
        Some(records) => records.delete(api_id).await.map_err(|e| e.to_string()),
        None => store::remove(&file.fixed.data_dir, api_id).map_err(|e| e.to_string()),
    };
    removed.map_err(|e| {
        tracing::error!(error = %e, "deleted API's record not removed");
        ControlError::NotStored(e)
    })?;
    apis.remove(api_id);
    Ok(b"{}".to_vec())
}

/// Applies a write and answers from the settings it built.
async fn write(
    state: &Arc<State>,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<Vec<u8>, ControlError> {
    let (method, path, query) = (
        parts.method.to_string(),
        parts.uri.path().to_owned(),
        parts.uri.query().unwrap_or("").to_owned(),
    );
    let applied = crate::reload::apply_record(state.clone(), move |live| {
        let control = live.control.as_ref().ok_or(ControlError::Off)?;
        let op = operation::route(&method, &path, &query)?;
        control.change(&op, &body, &live.record)
    })
    .await?;
    let (live, written) = applied.ok_or(ControlError::Internal)?;
    live.control
        .as_ref()
        .ok_or(ControlError::Off)?
        .written(&written)
}

fn reply_error(error: &ControlError) -> Response<Body> {
    tracing::debug!(%error, "control plane error");
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json(status, Bytes::from(error.body()));
    r.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_static(error.error_type()),
    );
    r
}
