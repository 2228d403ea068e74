//! SigV4 signing for the `appsync` service with the `aws-sigv4` crate: an independent signer
//! to check Herald's verifier against, in the HTTP form and the WebSocket form amplify-js uses
//! (the headers of a synthetic `POST /event`, signed over the operation's body, sent as JSON).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use serde_json::{Map, Value};

/// An access key as a client holds it.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    /// For temporary credentials; sent as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
}

impl<'a> From<(&'a str, &'a str)> for Key<'a> {
    fn from((id, secret): (&'a str, &'a str)) -> Self {
        Key {
            id,
            secret,
            session_token: None,
        }
    }
}

/// How to sign: as whom, where and when.
#[derive(Clone, Copy, Debug)]
pub struct Signer<'a> {
    pub key: Key<'a>,
    pub region: &'a str,
    pub time: SystemTime,
    /// Also sign and send `x-amz-content-sha256`, as S3-style clients do; AppSync's do not.
    pub content_sha256: bool,
}

impl<'a> Signer<'a> {
    /// Signs as `key` in `region`, now.
    pub fn new(key: impl Into<Key<'a>>, region: &'a str) -> Self {
        Signer {
            key: key.into(),
            region,
            time: SystemTime::now(),
            content_sha256: false,
        }
    }

    /// The same signer at `time`.
    pub fn at(self, time: SystemTime) -> Self {
        Signer { time, ..self }
    }

    /// Signs the request; returns the headers to add (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` / `x-amz-content-sha256` when they apply), names lowercase.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        self.sign_for("appsync", method, url, headers, body)
    }

    /// [`Signer::sign`] for another SigV4 service name (`lambda`, `dynamodb`, `events`, …).
    pub fn sign_for(
        &self,
        service: &str,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        let key = self.key;
        let identity = Credentials::new(
            key.id,
            key.secret,
            key.session_token.map(str::to_owned),
            None,
            "test",
        )
        .into();
        let mut settings = SigningSettings::default();
        if self.content_sha256 {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(service)
            .time(self.time)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The WebSocket `authorization` object amplify-js builds for `host`: [`ws_headers`] and
    /// the signature of `POST https://<host>/event` over `body` (the synthetic body of the
    /// operation). `Authorization` is capitalised as AppSync's documentation writes it; the
    /// other names are lowercase, and an `x-amz-user-agent` the verifier must ignore is added.
    pub fn ws_auth(&self, host: &str, body: &str) -> Map<String, Value> {
        let base = ws_headers(host);
        let signed = self.sign(
            "POST",
            &format!("https://{host}/event"),
            &base,
            body.as_bytes(),
        );
        let mut auth = Map::new();
        for (k, v) in base {
            auth.insert(k.to_owned(), Value::String(v));
        }
        for (k, v) in signed {
            let k = if k == "authorization" {
                "Authorization".to_owned()
            } else {
                k
            };
            auth.insert(k, Value::String(v));
        }
        auth.insert("x-amz-user-agent".into(), "aws-amplify/6".into());
        auth
    }
}

/// The headers amplify-js signs for WebSocket operations (its `AWS_APPSYNC_REALTIME_HEADERS`
/// and `host`).
pub fn ws_headers(host: &str) -> Vec<(&'static str, String)> {
    vec![
        ("accept", "application/json, text/javascript".to_owned()),
        ("content-encoding", "amz-1.0".to_owned()),
        ("content-type", "application/json; charset=UTF-8".to_owned()),
        ("host", host.to_owned()),
    ]
}
