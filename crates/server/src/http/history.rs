//! `GET /event/history?channel=/ns/a&since=<epoch>:<offset>|<ms>&limit=N` (Herald extension,
//! `docs/extensions.md`): a page of a channel's stored events, authorized like a subscription to
//! the channel. Bounded: at most `history.max_page_bytes` of events per page, and one of the
//! namespace's `history.max_concurrent_reads` (429 `LimitExceededError` when none is free),
//! held until the page's body is built.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use herald_history::{Position, ReadOutcome, Since};
use herald_protocol::reply::{self, HistoryItem};
use herald_protocol::{Channel, Pattern, WireError};

use super::request::header_fields;
use super::response::{Body, bad_request, json};
use crate::auth::{Action, Presented};
use crate::history::{reason, wire};
use crate::state::State;

/// Most events one request returns.
const PAGE_MAX: usize = 1000;
/// Events returned when the request names no `limit`.
const PAGE_DEFAULT: usize = 100;

/// What the query asks for.
struct Query {
    channel: String,
    since: Since,
    limit: usize,
}

fn parse_query(query: &str) -> Result<Query, WireError> {
    let bad_since = || bad_request("since: expected <epoch>:<offset> or a time in ms");
    let mut channel = None;
    let mut since = Since::Start;
    let mut limit = PAGE_DEFAULT;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "channel" => channel = Some(v.into_owned()),
            "since" if !v.is_empty() => {
                since = match v.split_once(':') {
                    Some((e, o)) => Since::After(Position {
                        epoch: e.parse().map_err(|_| bad_since())?,
                        offset: o.parse().map_err(|_| bad_since())?,
                    }),
                    None => Since::TimeMs(v.parse().map_err(|_| bad_since())?),
                }
            }
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .map_err(|_| bad_request("limit: expected a number"))?
                    .clamp(1, PAGE_MAX)
            }
            _ => {}
        }
    }
    let channel = channel.ok_or_else(|| {
        bad_request("channel is required: /event/history?channel=/namespace/channel")
    })?;
    Ok(Query {
        channel,
        since,
        limit,
    })
}

pub async fn history(state: &State, req: Request<Incoming>) -> Result<Response<Body>, WireError> {
    let (parts, _) = req.into_parts();
    let query = parse_query(parts.uri.query().unwrap_or_default())?;
    let channel = Channel::parse(&query.channel).map_err(|e| bad_request(e.to_string()))?;
    let fields = header_fields(&parts.headers);
    // SigV4 clients sign this GET itself, so it is verified as the real request.
    let credential = Presented::Http {
        parts: &parts,
        body: &[],
        fields: &fields,
    };
    let exact = Pattern::Exact(channel.clone());
    let action = Action::Subscribe {
        pattern: &exact,
        raw: channel.as_str(),
    };
    state
        .live()
        .access
        .authorize(action, credential, &state.metrics)
        .await?;
    let history = state.history_of(channel.namespace()).ok_or_else(|| {
        bad_request("this namespace keeps no history: set history in its [[namespaces]] entry")
    })?;
    let admitted = history.admit(channel.namespace())?;
    let body = match history
        .read(&admitted, &channel, query.since, query.limit)
        .await?
    {
        ReadOutcome::Events { events, top } => {
            let items: Vec<HistoryItem<'_>> = events
                .iter()
                .map(|e| HistoryItem {
                    event: &e.payload,
                    position: wire(e.position),
                    time_ms: e.time_ms,
                })
                .collect();
            reply::history_page(channel.as_str(), Ok(&items), wire(top))
        }
        ReadOutcome::Unrecoverable { reason: r, top } => {
            reply::history_page(channel.as_str(), Err(reason(r)), wire(top))
        }
    };
    drop(admitted);
    Ok(json(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_escapes_and_bound_the_limit() {
        let q = parse_query("channel=%2Fns%2Fa&since=5%3A7&limit=99999").unwrap();
        assert_eq!(q.channel, "/ns/a");
        assert_eq!(
            q.since,
            Since::After(Position {
                epoch: 5,
                offset: 7
            })
        );
        assert_eq!(q.limit, PAGE_MAX);
        assert!(parse_query("channel=/ns/a&since=x").is_err());
        assert!(parse_query("limit=3").is_err());
        let q = parse_query("channel=/ns/a&since=1700000000000").unwrap();
        assert_eq!(q.since, Since::TimeMs(1_700_000_000_000));
    }
}
