//! The writes: each turns an API's stored record and a request body into the next record, after
//! checking the request as the AWS model constrains it. Pure: the caller builds the server's
//! settings from the new record (which compiles handler code and checks modes against the API's
//! providers), stores it, and swaps it in.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use herald_auth::AuthMode;

use super::definition::{EventConfigIn, StoredApi};
use super::error::ControlError;
use super::model::{AuthModeShape, HandlerConfigs};
use super::operation::Operation;
use super::store::{ApiRecord, StoredKey, StoredNamespace};

/// How long a key lives when `CreateApiKey` names no `expires` (AppSync: 7 days).
const DEFAULT_KEY_LIFETIME_SECS: i64 = 7 * 86_400;
/// The shortest and longest lifetime `expires` may give (AppSync: 1 to 365 days).
const MIN_KEY_LIFETIME_SECS: i64 = 86_400;
const MAX_KEY_LIFETIME_SECS: i64 = 365 * 86_400;
/// An expired key stays listed this long (AppSync: 60 days).
const KEY_DELETE_AFTER_SECS: i64 = 60 * 86_400;
/// The longest `codeHandlers` (the model's `Code` maximum).
const MAX_CODE_CHARS: usize = 32_768;

/// What bounds the stored resources (`[control_plane]`).
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    pub max_namespaces: usize,
    pub max_api_keys: usize,
    pub max_apis: usize,
}

/// What the file declares: the control plane never changes it.
pub struct FileOwned<'a> {
    pub namespaces: &'a HashSet<String>,
    pub api_keys: &'a HashSet<String>,
}

/// What a write produced, for its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Namespace(String),
    ApiKey(String),
    Deleted,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamespaceRequest {
    /// In the body for Create; in the path for Update.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    subscribe_auth_modes: Option<Vec<AuthModeShape>>,
    #[serde(default)]
    publish_auth_modes: Option<Vec<AuthModeShape>>,
    #[serde(default)]
    code_handlers: Option<String>,
    #[serde(default)]
    handler_configs: Option<HandlerConfigs>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyRequest {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    expires: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    owner_contact: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    event_config: Option<EventConfigIn>,
}

/// The API a `CreateApi` body describes, under a new id.
pub fn new_api(body: &[u8], api_id: String, now: i64) -> Result<StoredApi, ControlError> {
    let req: ApiRequest = parse(body)?;
    let tags = req.tags.unwrap_or_default();
    check_tags(&tags)?;
    Ok(StoredApi {
        api_id,
        name: api_name(req.name)?,
        owner_contact: req.owner_contact,
        tags,
        event_config: event_config(req.event_config)?,
        created: now,
    })
}

/// The API an `UpdateApi` body makes of `old`: name, owner and `eventConfig` replaced; id, tags
/// and creation time kept.
pub fn updated_api(body: &[u8], old: &StoredApi) -> Result<StoredApi, ControlError> {
    let req: ApiRequest = parse(body)?;
    Ok(StoredApi {
        name: api_name(req.name)?,
        owner_contact: req.owner_contact,
        event_config: event_config(req.event_config)?,
        ..old.clone()
    })
}

fn api_name(name: Option<String>) -> Result<String, ControlError> {
    let name = name.ok_or_else(|| ControlError::BadRequest("name is required".into()))?;
    super::definition::check_name(&name).map_err(ControlError::BadRequest)?;
    Ok(name)
}

fn event_config(config: Option<EventConfigIn>) -> Result<EventConfigIn, ControlError> {
    let config =
        config.ok_or_else(|| ControlError::BadRequest("eventConfig is required".into()))?;
    let empty = config.auth_providers.is_empty()
        || config.connection_auth_modes.is_empty()
        || config.default_publish_auth_modes.is_empty()
        || config.default_subscribe_auth_modes.is_empty();
    if empty {
        return Err(ControlError::BadRequest(
            "eventConfig needs authProviders, connectionAuthModes, defaultPublishAuthModes and defaultSubscribeAuthModes, each with at least one entry".into(),
        ));
    }
    Ok(config)
}

/// Applies a write to `record`; `Ok(None)` when `operation` is a read.
pub fn apply(
    operation: &Operation<'_>,
    body: &[u8],
    record: &ApiRecord,
    owned: &FileOwned<'_>,
    quotas: Quotas,
    now: i64,
    new_key: impl FnOnce() -> Result<String, ControlError>,
) -> Result<Option<(ApiRecord, Written)>, ControlError> {
    let mut next = record.clone();
    let written = match *operation {
        Operation::CreateChannelNamespace { .. } => {
            let req: NamespaceRequest = parse(body)?;
            let name = req
                .name
                .clone()
                .ok_or_else(|| ControlError::BadRequest("name is required".into()))?;
            check_name(&name)?;
            if owned.namespaces.contains(&name) || next.namespaces.iter().any(|n| n.name == name) {
                return Err(ControlError::Conflict(format!(
                    "channel namespace {name:?} already exists"
                )));
            }
            if next.namespaces.len() >= quotas.max_namespaces {
                return Err(ControlError::QuotaExceeded(format!(
                    "this API already has {} channel namespaces created through the control plane (control_plane.max_namespaces)",
                    next.namespaces.len()
                )));
            }
            let tags = req.tags.clone().unwrap_or_default();
            check_tags(&tags)?;
            let mut ns = StoredNamespace {
                name: name.clone(),
                subscribe_auth_modes: None,
                publish_auth_modes: None,
                code_handlers: None,
                handler_configs: None,
                tags,
                created: now,
                last_modified: now,
            };
            settle(&mut ns, req)?;
            next.namespaces.push(ns);
            Written::Namespace(name)
        }
        Operation::UpdateChannelNamespace { name, .. } => {
            let req: NamespaceRequest = parse(body)?;
            let ns = stored_namespace(&mut next, owned, name)?;
            // An update describes the namespace whole, as CloudFormation sends it: a member left
            // out returns to its default. Tags are not part of it.
            settle(ns, req)?;
            ns.last_modified = now;
            Written::Namespace(name.to_owned())
        }
        Operation::DeleteChannelNamespace { name, .. } => {
            stored_namespace(&mut next, owned, name)?;
            next.namespaces.retain(|n| n.name != name);
            Written::Deleted
        }
        Operation::CreateApiKey { .. } => {
            let req: KeyRequest = parse(body)?;
            let live = next.api_keys.iter().filter(|k| k.expires > now).count();
            if live >= quotas.max_api_keys {
                return Err(ControlError::ApiKeyLimitExceeded(format!(
                    "this API already has {live} unexpired keys created through the control plane (control_plane.max_api_keys)"
                )));
            }
            let expires = expiry(req.expires, now)?;
            let id = new_key()?;
            next.api_keys.push(StoredKey {
                id: id.clone(),
                description: check_description(req.description)?,
                expires,
                deletes: expires + KEY_DELETE_AFTER_SECS,
            });
            Written::ApiKey(id)
        }
        Operation::UpdateApiKey { id, .. } => {
            let req: KeyRequest = parse(body)?;
            let description = check_description(req.description)?;
            let expires = req.expires.map(|e| expiry(Some(e), now)).transpose()?;
            let key = stored_key(&mut next, owned, id)?;
            if description.is_some() {
                key.description = description;
            }
            if let Some(e) = expires {
                key.expires = e;
                key.deletes = e + KEY_DELETE_AFTER_SECS;
            }
            Written::ApiKey(id.to_owned())
        }
        Operation::DeleteApiKey { id, .. } => {
            stored_key(&mut next, owned, id)?;
            next.api_keys.retain(|k| k.id != id);
            Written::Deleted
        }
        _ => return Ok(None),
    };
    Ok(Some((next, written)))
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ControlError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ControlError::BadRequest(format!("the request body is not valid: {e}")))
}

/// Sets what a Create or Update request describes.
fn settle(ns: &mut StoredNamespace, req: NamespaceRequest) -> Result<(), ControlError> {
    let modes = |list: Option<Vec<AuthModeShape>>, what: &str| -> Result<_, ControlError> {
        match list {
            Some(l) if l.is_empty() => Err(ControlError::BadRequest(format!(
                "{what} must name at least one mode when present"
            ))),
            Some(l) => Ok(Some(
                l.into_iter()
                    .map(|m| m.auth_type)
                    .collect::<Vec<AuthMode>>(),
            )),
            None => Ok(None),
        }
    };
    if let Some(code) = &req.code_handlers
        && (code.is_empty() || code.chars().count() > MAX_CODE_CHARS)
    {
        return Err(ControlError::BadRequest(format!(
            "codeHandlers must be 1 to {MAX_CODE_CHARS} characters"
        )));
    }
    ns.subscribe_auth_modes = modes(req.subscribe_auth_modes, "subscribeAuthModes")?;
    ns.publish_auth_modes = modes(req.publish_auth_modes, "publishAuthModes")?;
    ns.code_handlers = req.code_handlers;
    ns.handler_configs = req.handler_configs;
    Ok(())
}

fn stored_namespace<'r>(
    record: &'r mut ApiRecord,
    owned: &FileOwned<'_>,
    name: &str,
) -> Result<&'r mut StoredNamespace, ControlError> {
    if owned.namespaces.contains(name) {
        return Err(ControlError::FileOwned(format!(
            "channel namespace {name:?} is declared in the configuration file; change it there"
        )));
    }
    record
        .namespaces
        .iter_mut()
        .find(|n| n.name == name)
        .ok_or_else(|| ControlError::NotFound(format!("channel namespace {name:?} not found")))
}

fn stored_key<'r>(
    record: &'r mut ApiRecord,
    owned: &FileOwned<'_>,
    id: &str,
) -> Result<&'r mut StoredKey, ControlError> {
    if owned.api_keys.contains(id) {
        return Err(ControlError::FileOwned(
            "this API key is declared in the configuration file; change it there".into(),
        ));
    }
    record
        .api_keys
        .iter_mut()
        .find(|k| k.id == id)
        .ok_or_else(|| ControlError::NotFound("API key not found".into()))
}

/// The model's `Namespace` pattern: 1-50 of A-Z, a-z, 0-9 and '-', not starting or ending with
/// '-'.
fn check_name(name: &str) -> Result<(), ControlError> {
    let ok = (1..=50).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ControlError::BadRequest(format!(
            "name {name:?} must be 1-50 characters of A-Z, a-z, 0-9 and '-', not starting or ending with '-'"
        )))
    }
}

/// The model's `TagMap`: at most 50; keys 1-128 characters, not starting with `aws:`; values at
/// most 256.
fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ControlError> {
    let bad = tags.len() > 50
        || tags.iter().any(|(k, v)| {
            k.is_empty()
                || k.chars().count() > 128
                || k.starts_with("aws:")
                || v.chars().count() > 256
        });
    if bad {
        return Err(ControlError::BadRequest(
            "tags: at most 50, keys 1-128 characters not starting with 'aws:', values at most 256 characters".into(),
        ));
    }
    Ok(())
}

fn check_description(d: Option<String>) -> Result<Option<String>, ControlError> {
    match d {
        Some(d) if d.chars().count() > 256 => Err(ControlError::BadRequest(
            "description must be at most 256 characters".into(),
        )),
        d => Ok(d),
    }
}

/// `expires` rounded down to the hour, as AppSync does, within 1 to 365 days from now.
fn expiry(expires: Option<i64>, now: i64) -> Result<i64, ControlError> {
    let at = expires.unwrap_or(now + DEFAULT_KEY_LIFETIME_SECS);
    let at = at - at.rem_euclid(3600);
    if at < now + MIN_KEY_LIFETIME_SECS || at > now + MAX_KEY_LIFETIME_SECS {
        return Err(ControlError::KeyValidityOutOfBounds);
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const QUOTAS: Quotas = Quotas {
        max_namespaces: 2,
        max_api_keys: 1,
        max_apis: 1,
    };

    fn run(
        op: Operation<'_>,
        body: &str,
        record: &ApiRecord,
    ) -> Result<(ApiRecord, Written), ControlError> {
        let file_ns: HashSet<String> = ["default".to_owned()].into();
        let file_keys: HashSet<String> = ["da2-file".to_owned()].into();
        let owned = FileOwned {
            namespaces: &file_ns,
            api_keys: &file_keys,
        };
        apply(&op, body.as_bytes(), record, &owned, QUOTAS, NOW, || {
            Ok("da2-new".to_owned())
        })
        .map(|r| r.expect("a write"))
    }

    #[test]
    fn namespaces_are_created_updated_and_deleted() {
        let create = Operation::CreateChannelNamespace { api_id: "a" };
        let body = r#"{"name":"chat","publishAuthModes":[{"authType":"API_KEY"}],"codeHandlers":"x","tags":{"team":"web"}}"#;
        let (r, w) = run(create.clone(), body, &ApiRecord::default()).unwrap();
        assert_eq!(w, Written::Namespace("chat".into()));
        assert_eq!(
            r.namespaces[0].publish_auth_modes,
            Some(vec![AuthMode::ApiKey])
        );
        assert!(matches!(
            run(create.clone(), body, &r),
            Err(ControlError::Conflict(_))
        ));
        assert!(matches!(
            run(create.clone(), r#"{"name":"default"}"#, &r),
            Err(ControlError::Conflict(_))
        ));
        for bad in [
            r#"{"name":"-x"}"#,
            r#"{"name":"a/b"}"#,
            r#"{}"#,
            "[",
            r#"{"name":"y","codeHandlers":""}"#,
        ] {
            assert!(
                matches!(
                    run(create.clone(), bad, &r),
                    Err(ControlError::BadRequest(_))
                ),
                "{bad}"
            );
        }
        let (r2, _) = run(create.clone(), r#"{"name":"two"}"#, &r).unwrap();
        assert!(matches!(
            run(create, r#"{"name":"three"}"#, &r2),
            Err(ControlError::QuotaExceeded(_))
        ));

        let update = Operation::UpdateChannelNamespace {
            api_id: "a",
            name: "chat",
        };
        let (r3, _) = run(
            update,
            r#"{"subscribeAuthModes":[{"authType":"AWS_IAM"}]}"#,
            &r2,
        )
        .unwrap();
        let chat = &r3.namespaces[0];
        assert_eq!(
            chat.publish_auth_modes, None,
            "an update describes the namespace whole"
        );
        assert_eq!(chat.code_handlers, None);
        assert_eq!(chat.tags.get("team").map(String::as_str), Some("web"));
        let file = Operation::UpdateChannelNamespace {
            api_id: "a",
            name: "default",
        };
        assert!(matches!(
            run(file, "{}", &r3),
            Err(ControlError::FileOwned(_))
        ));

        let delete = Operation::DeleteChannelNamespace {
            api_id: "a",
            name: "chat",
        };
        let (r4, w) = run(delete.clone(), "", &r3).unwrap();
        assert_eq!(w, Written::Deleted);
        assert_eq!(r4.namespaces.len(), 1);
        assert!(matches!(
            run(delete, "", &r4),
            Err(ControlError::NotFound(_))
        ));
    }

    #[test]
    fn keys_expire_within_bounds_on_the_hour() {
        let create = Operation::CreateApiKey { api_id: "a" };
        let (r, w) = run(
            create.clone(),
            r#"{"description":"ci"}"#,
            &ApiRecord::default(),
        )
        .unwrap();
        assert_eq!(w, Written::ApiKey("da2-new".into()));
        let key = &r.api_keys[0];
        assert_eq!(key.expires % 3600, 0);
        assert!(key.expires > NOW + 6 * 86_400 && key.expires <= NOW + 7 * 86_400);
        assert_eq!(key.deletes, key.expires + 60 * 86_400);
        assert!(matches!(
            run(create.clone(), "{}", &r),
            Err(ControlError::ApiKeyLimitExceeded(_))
        ));
        for e in [NOW + 3600, NOW + 400 * 86_400] {
            let body = format!(r#"{{"expires":{e}}}"#);
            assert!(matches!(
                run(create.clone(), &body, &ApiRecord::default()),
                Err(ControlError::KeyValidityOutOfBounds)
            ));
        }

        let update = Operation::UpdateApiKey {
            api_id: "a",
            id: "da2-new",
        };
        let later = NOW + 30 * 86_400 + 1234;
        let (r2, _) = run(update, &format!(r#"{{"expires":{later}}}"#), &r).unwrap();
        assert_eq!(
            r2.api_keys[0].expires,
            later - 1234,
            "rounded down to the hour"
        );
        assert_eq!(r2.api_keys[0].description.as_deref(), Some("ci"));
        let file = Operation::UpdateApiKey {
            api_id: "a",
            id: "da2-file",
        };
        assert!(matches!(
            run(file, "{}", &r2),
            Err(ControlError::FileOwned(_))
        ));
        let delete = Operation::DeleteApiKey {
            api_id: "a",
            id: "da2-new",
        };
        assert!(run(delete, "", &r2).unwrap().0.api_keys.is_empty());
    }
}
