//! Publishing over HTTP (`POST /event`), and the checks every publish gets before anything is
//! sent.

use serde_json::Value;

use crate::Inner;
use crate::error::{Error, ServerErrors, excerpt};
use crate::message::PublishReply;
use crate::socket::MAX_MESSAGE;

/// AppSync accepts 1 to 5 events per publish.
pub const MAX_EVENTS: usize = 5;

/// Each event must be one JSON value, and there must be 1 to 5 of them.
pub(crate) fn check(events: &[String]) -> Result<(), Error> {
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(Error::EventCount(events.len()));
    }
    for (i, event) in events.iter().enumerate() {
        if let Err(e) = serde_json::from_str::<&serde_json::value::RawValue>(event) {
            return Err(Error::InvalidEvent {
                number: i + 1,
                reason: e.to_string(),
                excerpt: excerpt(event),
            });
        }
    }
    Ok(())
}

pub(crate) fn serialize<E: serde::Serialize>(events: &[E]) -> Result<Vec<String>, Error> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::to_string(e).map_err(|e| Error::InvalidEvent {
                number: i + 1,
                reason: e.to_string(),
                excerpt: String::new(),
            })
        })
        .collect()
}

pub(crate) async fn http(
    inner: &Inner,
    channel: &str,
    events: &[String],
) -> Result<PublishReply, Error> {
    check(events)?;
    let body = crate::auth::publish_body(channel, events);
    let url = inner.endpoint.http();
    let http_error = |e: reqwest::Error| Error::Http {
        method: "POST",
        url: url.to_string(),
        source: Box::new(e),
    };
    let mut request = inner
        .http
        .post(url.clone())
        .header("content-type", "application/json");
    for (name, value) in inner.signer.http_headers(body.as_bytes()) {
        request = request.header(name, value);
    }
    let mut resp = request.body(body).send().await.map_err(http_error)?;
    let status = resp.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(http_error)? {
        if bytes.len() + chunk.len() > MAX_MESSAGE {
            return Err(Error::Protocol(format!(
                "the reply to POST {url} is larger than {MAX_MESSAGE} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&bytes);
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(reply)) if status.is_success() => {
            serde_json::from_value(Value::Object(reply)).map_err(|e| {
                Error::Protocol(format!("HTTP {}: {e}: {}", status.as_u16(), excerpt(&text)))
            })
        }
        Ok(Value::Object(reply)) if reply.contains_key("errors") => Err(Error::PublishRejected {
            status: Some(status.as_u16()),
            errors: ServerErrors::from_message(&reply),
        }),
        _ => Err(Error::Protocol(format!(
            "HTTP {}: {}",
            status.as_u16(),
            excerpt(&text)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_locally() {
        assert!(check(&["{\"a\":1}".into(), "2".into()]).is_ok());
        let err = check(&["1".into(), "hello".into()]).unwrap_err();
        assert!(err.to_string().starts_with("event 2 is not JSON"), "{err}");
        assert!(matches!(
            check(&vec!["1".to_string(); 6]),
            Err(Error::EventCount(6))
        ));
        assert!(matches!(check(&[]), Err(Error::EventCount(0))));
    }
}
