//! Which control-plane operation a request is: its method and path as the AWS model's
//! `requestUri`s define them, and the paging parameters of the list operations. Pure: no I/O.

use super::error::ControlError;

/// Whether a path belongs to the control plane (`/v1/apis…`, `/v2/apis…`). The data plane's
/// paths (`/event…`, `/console`, `/metrics`, `/admin/…`) never start so.
pub fn is_control_path(path: &str) -> bool {
    ["/v1/apis", "/v2/apis"].iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// An operation the control plane serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation<'a> {
    /// `GET /v2/apis`
    ListApis(Page),
    /// `GET /v2/apis/{apiId}`
    GetApi { api_id: &'a str },
    /// `GET /v2/apis/{apiId}/channelNamespaces`
    ListChannelNamespaces { api_id: &'a str, page: Page },
    /// `GET /v2/apis/{apiId}/channelNamespaces/{name}`
    GetChannelNamespace { api_id: &'a str, name: &'a str },
    /// `GET /v1/apis/{apiId}/apikeys`
    ListApiKeys { api_id: &'a str, page: Page },
    /// `POST /v2/apis/{apiId}/channelNamespaces`
    CreateChannelNamespace { api_id: &'a str },
    /// `POST /v2/apis/{apiId}/channelNamespaces/{name}`
    UpdateChannelNamespace { api_id: &'a str, name: &'a str },
    /// `DELETE /v2/apis/{apiId}/channelNamespaces/{name}`
    DeleteChannelNamespace { api_id: &'a str, name: &'a str },
    /// `POST /v1/apis/{apiId}/apikeys`
    CreateApiKey { api_id: &'a str },
    /// `POST /v1/apis/{apiId}/apikeys/{id}`
    UpdateApiKey { api_id: &'a str, id: &'a str },
    /// `DELETE /v1/apis/{apiId}/apikeys/{id}`
    DeleteApiKey { api_id: &'a str, id: &'a str },
    /// `POST /v2/apis`
    CreateApi,
    /// `POST /v2/apis/{apiId}`
    UpdateApi { api_id: &'a str },
    /// `DELETE /v2/apis/{apiId}`
    DeleteApi { api_id: &'a str },
}

impl Operation<'_> {
    /// The API the operation names; `None` for ListApis.
    pub fn api_id(&self) -> Option<&str> {
        match *self {
            Operation::ListApis(_) | Operation::CreateApi => None,
            Operation::GetApi { api_id }
            | Operation::ListChannelNamespaces { api_id, .. }
            | Operation::GetChannelNamespace { api_id, .. }
            | Operation::ListApiKeys { api_id, .. }
            | Operation::CreateChannelNamespace { api_id }
            | Operation::UpdateChannelNamespace { api_id, .. }
            | Operation::DeleteChannelNamespace { api_id, .. }
            | Operation::CreateApiKey { api_id }
            | Operation::UpdateApiKey { api_id, .. }
            | Operation::DeleteApiKey { api_id, .. }
            | Operation::UpdateApi { api_id }
            | Operation::DeleteApi { api_id } => Some(api_id),
        }
    }

    /// Whether the operation changes the API.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Operation::CreateChannelNamespace { .. }
                | Operation::UpdateChannelNamespace { .. }
                | Operation::DeleteChannelNamespace { .. }
                | Operation::CreateApiKey { .. }
                | Operation::UpdateApiKey { .. }
                | Operation::DeleteApiKey { .. }
        )
    }
}

/// A page of a list: `maxResults` (0 or absent: the default) and `nextToken`, which is the
/// offset of the first item as decimal text (tokens are opaque to clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Page {
    pub max_results: Option<usize>,
    pub offset: usize,
}

/// The most items one page returns (the model's `MaxResults` maximum, and AWS's default).
pub const MAX_RESULTS: usize = 25;

impl Page {
    /// The items of this page, and the token of the next one when more remain.
    pub fn slice<'a, T>(&self, items: &'a [T]) -> (&'a [T], Option<String>) {
        let size = match self.max_results {
            None | Some(0) => MAX_RESULTS,
            Some(n) => n.min(MAX_RESULTS),
        };
        let start = self.offset.min(items.len());
        let end = start.saturating_add(size).min(items.len());
        let page = items.get(start..end).unwrap_or_default();
        let next = (end < items.len()).then(|| end.to_string());
        (page, next)
    }
}

/// Names the operation of a request, or why it is not served.
pub fn route<'a>(method: &str, path: &'a str, query: &str) -> Result<Operation<'a>, ControlError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let read = method == "GET";
    let unsupported = |operation, why| Err(ControlError::Unsupported { operation, why });
    match (method, segments.as_slice()) {
        ("GET", ["v2", "apis"]) => Ok(Operation::ListApis(page(query)?)),
        ("GET", ["v2", "apis", api_id]) => Ok(Operation::GetApi { api_id }),
        ("GET", ["v2", "apis", api_id, "channelNamespaces"]) => {
            Ok(Operation::ListChannelNamespaces {
                api_id,
                page: page(query)?,
            })
        }
        ("GET", ["v2", "apis", api_id, "channelNamespaces", name]) => {
            Ok(Operation::GetChannelNamespace { api_id, name })
        }
        ("GET", ["v1", "apis", api_id, "apikeys"]) => Ok(Operation::ListApiKeys {
            api_id,
            page: page(query)?,
        }),
        ("POST", ["v2", "apis", api_id, "channelNamespaces"]) => {
            Ok(Operation::CreateChannelNamespace { api_id })
        }
        ("POST", ["v2", "apis", api_id, "channelNamespaces", name]) => {
            Ok(Operation::UpdateChannelNamespace { api_id, name })
        }
        ("DELETE", ["v2", "apis", api_id, "channelNamespaces", name]) => {
            Ok(Operation::DeleteChannelNamespace { api_id, name })
        }
        ("POST", ["v1", "apis", api_id, "apikeys"]) => Ok(Operation::CreateApiKey { api_id }),
        ("POST", ["v1", "apis", api_id, "apikeys", id]) => {
            Ok(Operation::UpdateApiKey { api_id, id })
        }
        ("DELETE", ["v1", "apis", api_id, "apikeys", id]) => {
            Ok(Operation::DeleteApiKey { api_id, id })
        }
        ("POST", ["v2", "apis"]) => Ok(Operation::CreateApi),
        ("POST", ["v2", "apis", api_id]) => Ok(Operation::UpdateApi { api_id }),
        ("DELETE", ["v2", "apis", api_id]) => Ok(Operation::DeleteApi { api_id }),
        // GraphQL APIs, data sources, tags, …: outside what Herald serves.
        _ if !read => unsupported(
            "This operation",
            "only the Event API operations on APIs, channel namespaces and API keys are served",
        ),
        _ => Err(ControlError::UnknownOperation {
            method: method.to_owned(),
            path: path.to_owned(),
        }),
    }
}

/// Reads `maxResults` and `nextToken`; other parameters are ignored, as unknown ones are by AWS.
fn page(query: &str) -> Result<Page, ControlError> {
    let mut page = Page::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "maxResults" => {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= MAX_RESULTS)
                    .ok_or_else(|| {
                        ControlError::BadRequest(format!(
                            "maxResults must be an integer from 0 to {MAX_RESULTS}"
                        ))
                    })?;
                page.max_results = Some(n);
            }
            "nextToken" => {
                page.offset = value.parse().map_err(|_| {
                    ControlError::BadRequest("nextToken is not a token this API returned".into())
                })?;
            }
            _ => {}
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_paths_are_apart_from_the_data_plane() {
        for p in ["/v2/apis", "/v2/apis/x", "/v1/apis/x/apikeys"] {
            assert!(is_control_path(p), "{p}");
        }
        for p in [
            "/event",
            "/event/realtime",
            "/console",
            "/metrics",
            "/admin/reload",
            "/v2/apisx",
            "/v3/apis",
        ] {
            assert!(!is_control_path(p), "{p}");
        }
    }

    #[test]
    fn routes_reads_and_names_writes() {
        assert_eq!(
            route("GET", "/v2/apis", "maxResults=2&nextToken=4").ok(),
            Some(Operation::ListApis(Page {
                max_results: Some(2),
                offset: 4
            }))
        );
        assert_eq!(
            route("GET", "/v2/apis/h/channelNamespaces/chat", "").ok(),
            Some(Operation::GetChannelNamespace {
                api_id: "h",
                name: "chat"
            })
        );
        let err = |m, p| {
            route(m, p, "")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            route("POST", "/v2/apis", "").ok(),
            Some(Operation::CreateApi)
        );
        assert!(err("POST", "/v1/apis/h/datasources").starts_with("This operation "));
        assert_eq!(
            route("DELETE", "/v1/apis/h/apikeys/k", "").ok(),
            Some(Operation::DeleteApiKey {
                api_id: "h",
                id: "k"
            })
        );
        assert_eq!(
            route("POST", "/v2/apis/h", "").ok(),
            Some(Operation::UpdateApi { api_id: "h" })
        );
        assert!(matches!(
            route("GET", "/v2/apis/h/nope", ""),
            Err(ControlError::UnknownOperation { .. })
        ));
        assert!(matches!(
            route("GET", "/v2/apis", "maxResults=26"),
            Err(ControlError::BadRequest(_))
        ));
        assert!(matches!(
            route("GET", "/v2/apis", "nextToken=zz"),
            Err(ControlError::BadRequest(_))
        ));
    }

    #[test]
    fn pages_end_with_no_token() {
        let items = [1, 2, 3];
        let p = Page {
            max_results: Some(2),
            offset: 0,
        };
        assert_eq!(p.slice(&items), (&items[..2], Some("2".to_owned())));
        let p = Page {
            max_results: Some(2),
            offset: 2,
        };
        assert_eq!(p.slice(&items), (&items[2..], None));
        let p = Page {
            max_results: None,
            offset: 9,
        };
        assert_eq!(p.slice(&items), (&items[..0], None));
    }
}
