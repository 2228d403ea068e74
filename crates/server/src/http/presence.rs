//! `GET /event/presence?channel=/ns/a&countOnly=true&after=<connectionId>&limit=N` (Herald
//! extension, `docs/extensions.md#presence`): who is subscribed to a channel, authorized like a
//! subscription to it.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use herald_protocol::WireError;

use super::request::header_fields;
use super::response::{Body, bad_request, json};
use crate::auth::Presented;
use crate::presence::read::{Query, read};
use crate::state::State;

pub async fn presence(state: &State, req: Request<Incoming>) -> Result<Response<Body>, WireError> {
    let (parts, _) = req.into_parts();
    let mut channel = None;
    let (mut count_only, mut after, mut limit) = (false, None, None);
    for (k, v) in form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        match &*k {
            "channel" => channel = Some(v.into_owned()),
            "countOnly" => count_only = v == "true" || v == "1",
            "after" if !v.is_empty() => after = Some(v.into_owned()),
            "limit" => {
                limit = Some(
                    v.parse::<usize>()
                        .map_err(|_| bad_request("limit: expected a number"))?,
                )
            }
            _ => {}
        }
    }
    let channel = channel.ok_or_else(|| {
        bad_request("channel is required: /event/presence?channel=/namespace/channel")
    })?;
    let fields = header_fields(&parts.headers);
    // SigV4 clients sign this GET itself.
    let credential = Presented::Http {
        parts: &parts,
        body: &[],
        fields: &fields,
    };
    let query = Query {
        channel: &channel,
        count_only,
        after: after.as_deref(),
        limit,
    };
    let fields = read(state, &query, credential).await?;
    Ok(json(StatusCode::OK, Bytes::from(format!("{{{fields}"))))
}
