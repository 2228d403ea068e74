//! Reading a channel's presence, over HTTP (`GET /event/presence`) and the socket (`presence`):
//! authorized as a subscription to that channel (modes and access rules; no `onSubscribe`
//! handler, which decides whether to subscribe, not whether to look).

use bytes::Bytes;
use herald_protocol::{ErrorType, Pattern, WireError};

use crate::auth::{Action, Presented};
use crate::state::State;

/// What a read asks for.
pub struct Query<'a> {
    /// The channel or wildcard pattern, as the client wrote it.
    pub channel: &'a str,
    pub count_only: bool,
    pub after: Option<&'a str>,
    pub limit: Option<usize>,
}

/// Authorizes and reads; the answer's fields as JSON text after its opening brace:
/// `"channel":..,"count":..,"members":[..],"next":..}`.
pub async fn read(
    state: &State,
    query: &Query<'_>,
    credential: Presented<'_>,
) -> Result<String, WireError> {
    let pattern = Pattern::parse(query.channel)
        .map_err(|e| WireError::new(ErrorType::BadRequest, e.to_string()))?;
    let action = Action::Subscribe {
        pattern: &pattern,
        raw: query.channel,
    };
    state
        .live()
        .access
        .authorize(action, credential, &state.metrics)
        .await?;
    let Some(config) = state.presence.of(pattern.namespace()) else {
        return Err(WireError::new(
            ErrorType::BadRequest,
            "this namespace has no presence: set presence = {} in its [[namespaces]] entry",
        ));
    };
    let limit = query
        .limit
        .unwrap_or(config.max_members_listed)
        .clamp(1, config.max_members_listed);
    let channel = pattern.to_string();
    let view = state
        .presence
        .read(&channel, query.count_only, query.after, limit);
    let mut out = format!(r#""channel":"{channel}","count":{}"#, view.count);
    if !query.count_only {
        out.push_str(r#","members":["#);
        for (i, m) in view.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(m);
        }
        out.push(']');
        if let Some(next) = view.next {
            // Connection ids are `<hex>-<digits>`: nothing to escape.
            out.push_str(&format!(r#","next":"{next}""#));
        }
    }
    out.push('}');
    Ok(out)
}

/// The socket's answer: `{"type":"presence_result","id":..,<fields>}`.
pub fn result_frame(id: &str, fields: &str) -> Bytes {
    // Ids are checked to be [A-Za-z0-9-_+]: nothing to escape.
    Bytes::from(format!(
        r#"{{"type":"presence_result","id":"{id}",{fields}"#
    ))
}
