//! The five AppSync authorization modes, as HTTP headers and as the WebSocket `authorization`
//! objects of each operation.

use std::fmt;
use std::time::SystemTime;

use reqwest::Url;
use serde_json::{Map, Value};

use crate::Error;
use crate::endpoint::Endpoint;
use crate::sigv4;

/// How the client proves who it is: one of AppSync's five modes.
///
/// Cognito user pools, OpenID Connect and Lambda authorizers all send their token as
/// `Authorization`; they differ only on the server side, so [`Auth::cognito`], [`Auth::oidc`]
/// and [`Auth::lambda`] build the same thing. [`Auth::iam`] signs every request and operation
/// with SigV4.
#[derive(Clone)]
pub enum Auth {
    /// `API_KEY`: sent as `x-api-key`.
    ApiKey(String),
    /// `AMAZON_COGNITO_USER_POOLS`, `OPENID_CONNECT` or `AWS_LAMBDA`: sent as `Authorization`.
    Token(String),
    /// `AWS_IAM`: SigV4 with these credentials, in `region` (`None`: the endpoint's region on
    /// AWS, else `AWS_REGION` or `AWS_DEFAULT_REGION`).
    Iam {
        credentials: Credentials,
        region: Option<String>,
    },
}

impl Auth {
    /// An API key (`da2-…`).
    pub fn api_key(key: impl Into<String>) -> Auth {
        Auth::ApiKey(key.into())
    }

    /// A Cognito user pool token (ID or access token, as the namespace's pool expects).
    pub fn cognito(jwt: impl Into<String>) -> Auth {
        Auth::Token(jwt.into())
    }

    /// An OpenID Connect ID token.
    pub fn oidc(jwt: impl Into<String>) -> Auth {
        Auth::Token(jwt.into())
    }

    /// A Lambda authorizer token, sent as is (`Bearer …` if the authorizer wants that).
    pub fn lambda(token: impl Into<String>) -> Auth {
        Auth::Token(token.into())
    }

    /// SigV4 with static credentials; the region comes from the endpoint or the environment
    /// unless set with [`Auth::in_region`].
    pub fn iam(credentials: Credentials) -> Auth {
        Auth::Iam {
            credentials,
            region: None,
        }
    }

    /// SigV4 with the credentials of the environment ([`Credentials::from_env`]).
    pub fn iam_from_env() -> Result<Auth, Error> {
        Ok(Auth::iam(Credentials::from_env()?))
    }

    /// For [`Auth::Iam`]: sign for this region. Other modes are returned unchanged.
    pub fn in_region(self, region: impl Into<String>) -> Auth {
        match self {
            Auth::Iam { credentials, .. } => Auth::Iam {
                credentials,
                region: Some(region.into()),
            },
            other => other,
        }
    }
}

impl fmt::Debug for Auth {
    /// Never prints a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::ApiKey(_) => f.write_str("Auth::ApiKey(…)"),
            Auth::Token(_) => f.write_str("Auth::Token(…)"),
            Auth::Iam {
                credentials,
                region,
            } => f
                .debug_struct("Auth::Iam")
                .field("access_key_id", &credentials.access_key_id)
                .field("region", region)
                .finish_non_exhaustive(),
        }
    }
}

/// AWS credentials for SigV4.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// For temporary credentials (STS); sent as `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl Credentials {
    /// Long-term credentials.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// Temporary credentials with their session token.
    pub fn with_session_token(self, token: impl Into<String>) -> Self {
        Credentials {
            session_token: Some(token.into()),
            ..self
        }
    }

    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, when set, `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Result<Credentials, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Ok(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            _ => Err(Error::Config(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be set for IAM".into(),
            )),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What the credential is used for on the socket: each has its own signed body (spec §4.2).
pub(crate) enum Operation<'a> {
    Connect,
    Subscribe {
        channel: &'a str,
    },
    Publish {
        channel: &'a str,
        events: &'a [String],
    },
}

/// The credentials resolved against an endpoint (the region decided once).
#[derive(Clone)]
pub(crate) struct Signer {
    mode: Mode,
    host: String,
    /// The HTTP endpoint, signed for HTTP publishes; its `https` form for socket operations.
    http: Url,
}

#[derive(Clone)]
enum Mode {
    Header(&'static str, String),
    Iam {
        credentials: Credentials,
        region: String,
    },
}

impl Signer {
    pub(crate) fn new(auth: &Auth, endpoint: &Endpoint) -> Result<Signer, Error> {
        let mode = match auth {
            Auth::ApiKey(key) => Mode::Header("x-api-key", key.clone()),
            Auth::Token(token) => Mode::Header("Authorization", token.clone()),
            Auth::Iam {
                credentials,
                region,
            } => {
                let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                let region = region
                    .clone()
                    .or_else(|| endpoint.aws_region().map(str::to_owned))
                    .or_else(|| env("AWS_REGION"))
                    .or_else(|| env("AWS_DEFAULT_REGION"))
                    .ok_or_else(|| {
                        Error::Config(
                            "no region for IAM: not an AWS endpoint, and neither Auth::in_region nor AWS_REGION is set".into(),
                        )
                    })?;
                Mode::Iam {
                    credentials: credentials.clone(),
                    region,
                }
            }
        };
        Ok(Signer {
            mode,
            host: endpoint.host().to_owned(),
            http: endpoint.http().clone(),
        })
    }

    /// The headers for `POST <endpoint>` with `body` (besides `content-type`).
    pub(crate) fn http_headers(&self, body: &[u8]) -> Vec<(String, String)> {
        match &self.mode {
            Mode::Header(name, value) => vec![((*name).to_owned(), value.clone())],
            Mode::Iam {
                credentials,
                region,
            } => {
                let headers = [
                    ("content-type", "application/json".to_owned()),
                    ("host", self.host.clone()),
                ];
                sigv4::sign(
                    credentials,
                    region,
                    "POST",
                    &self.http,
                    &headers,
                    body,
                    SystemTime::now(),
                )
            }
        }
    }

    /// The `authorization` object of a socket operation (and, for [`Operation::Connect`], of
    /// the `header-` subprotocol).
    pub(crate) fn ws_authorization(&self, op: &Operation<'_>) -> Map<String, Value> {
        let mut auth = Map::new();
        match &self.mode {
            Mode::Header(name, value) => {
                // AWS checks `host` against the API's HTTP host, also on the realtime host.
                auth.insert("host".into(), Value::String(self.host.clone()));
                auth.insert((*name).into(), Value::String(value.clone()));
            }
            Mode::Iam {
                credentials,
                region,
            } => {
                let body = match op {
                    Operation::Connect => "{}".to_owned(),
                    Operation::Subscribe { channel } => subscribe_body(channel),
                    Operation::Publish { channel, events } => publish_body(channel, events),
                };
                // amplify-js signs `POST https://<host>/event` whatever the endpoint's scheme.
                let mut url = self.http.clone();
                let _ = url.set_scheme("https");
                let headers = [
                    ("accept", "application/json, text/javascript".to_owned()),
                    ("content-encoding", "amz-1.0".to_owned()),
                    ("content-type", "application/json; charset=UTF-8".to_owned()),
                    ("host", self.host.clone()),
                ];
                let signed = sigv4::sign(
                    credentials,
                    region,
                    "POST",
                    &url,
                    &headers,
                    body.as_bytes(),
                    SystemTime::now(),
                );
                for (k, v) in headers {
                    auth.insert(k.into(), Value::String(v));
                }
                for (k, v) in signed {
                    let k = if k == "authorization" {
                        "Authorization".to_owned()
                    } else {
                        k
                    };
                    auth.insert(k, Value::String(v));
                }
            }
        }
        auth
    }
}

/// `{"channel":"…"}`: compact, as every AppSync client writes it.
fn subscribe_body(channel: &str) -> String {
    format!("{{\"channel\":{}}}", Value::String(channel.to_owned()))
}

/// `{"channel":"…","events":["…",…]}`: compact, `channel` first.
pub(crate) fn publish_body(channel: &str, events: &[String]) -> String {
    let events: Vec<Value> = events.iter().cloned().map(Value::String).collect();
    format!(
        "{{\"channel\":{},\"events\":{}}}",
        Value::String(channel.to_owned()),
        Value::Array(events)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_compact_channel_first() {
        assert_eq!(subscribe_body("/default/*"), r#"{"channel":"/default/*"}"#);
        assert_eq!(
            publish_body("/a/b", &["{\"x\":1}".into(), "\"é/\"".into()]),
            r#"{"channel":"/a/b","events":["{\"x\":1}","\"é/\""]}"#
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let auth = Auth::iam(Credentials::new("AKIA1", "s3cret")).in_region("eu-west-1");
        let text = format!("{auth:?} {:?}", Auth::api_key("da2-s3cret"));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("AKIA1"), "{text}");
    }

    #[test]
    fn the_region_comes_from_an_aws_endpoint() {
        let endpoint = Endpoint::parse(
            "https://abcdefghijklmnopqrstuvwxyz.appsync-api.ap-south-1.amazonaws.com/event",
        )
        .unwrap();
        let signer = Signer::new(&Auth::iam(Credentials::new("AKIA1", "s")), &endpoint).unwrap();
        let auth = signer.ws_authorization(&Operation::Connect);
        let authorization = auth["Authorization"].as_str().unwrap();
        assert!(
            authorization.contains("/ap-south-1/appsync/aws4_request"),
            "{authorization}"
        );
        assert_eq!(
            auth["host"],
            "abcdefghijklmnopqrstuvwxyz.appsync-api.ap-south-1.amazonaws.com"
        );
    }
}
