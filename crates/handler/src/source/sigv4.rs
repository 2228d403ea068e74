//! Signing outgoing AWS requests (SigV4), on the canonicalisation herald-auth verifies with, so
//! one implementation of the rules serves both directions.

use std::time::{SystemTime, UNIX_EPOCH};

use herald_auth::sigv4::canonical::{
    canonical_request, format_amz_date, sha256_hex, signature_hex, signing_key, string_to_sign,
};

/// AWS credentials. `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Who signs, where, for which service.
#[derive(Debug, Clone)]
pub(crate) struct Signer {
    pub credentials: Credentials,
    pub region: String,
    pub service: &'static str,
}

impl Signer {
    /// Headers to add to a request to `url` (`x-amz-date`, `authorization`, and
    /// `x-amz-security-token` with temporary credentials). `headers` are the request's other
    /// headers, all of which are signed, with `host`.
    pub(crate) fn sign(
        &self,
        method: &str,
        url: &reqwest::Url,
        headers: &[(&str, &str)],
        body: &[u8],
        now: SystemTime,
    ) -> Vec<(&'static str, String)> {
        let unix = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let amz_date = format_amz_date(unix);
        let date = amz_date.get(..8).unwrap_or_default();
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let mut signed: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
            .collect();
        signed.push(("host".into(), host));
        signed.push(("x-amz-date".into(), amz_date.clone()));
        if let Some(token) = &self.credentials.session_token {
            signed.push(("x-amz-security-token".into(), token.clone()));
        }
        signed.sort();
        let names: Vec<&str> = signed.iter().map(|(n, _)| n.as_str()).collect();
        let signed_headers = names.join(";");
        let pairs: Vec<(&str, &[u8])> = signed
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let canonical = canonical_request(
            method,
            url.path(),
            url.query().unwrap_or_default(),
            &pairs,
            &signed_headers,
            &sha256_hex(body),
        )
        // Every signed header is in `pairs` by construction.
        .unwrap_or_default();
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = string_to_sign(&amz_date, &scope, &canonical);
        let key = signing_key(
            &self.credentials.secret_access_key,
            date,
            &self.region,
            self.service,
        );
        let signature = signature_hex(&key, &to_sign);
        let mut out = vec![
            ("x-amz-date", amz_date),
            (
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                    self.credentials.access_key_id
                ),
            ),
        ];
        if let Some(token) = &self.credentials.session_token {
            out.push(("x-amz-security-token", token.clone()));
        }
        out
    }
}

/// Percent-encodes a path segment (RFC 3986 unreserved kept), as the AWS SDKs encode labels.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
