//! SigV4 request signing for the `appsync` service: the HTTP form (the real `POST /event`) and
//! the WebSocket form (the headers of a synthetic `POST /event` signed over the operation's
//! body, spec §4.2). Checked against the `aws-sigv4` crate in the tests.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::auth::Credentials;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "appsync";

/// Signs a request; returns the headers to add (`authorization`, `x-amz-date`, and
/// `x-amz-security-token` with temporary credentials), names lowercase. `headers` are the
/// request's headers to sign, `host` among them.
pub(crate) fn sign(
    credentials: &Credentials,
    region: &str,
    method: &str,
    url: &Url,
    headers: &[(&str, String)],
    body: &[u8],
    time: SystemTime,
) -> Vec<(String, String)> {
    let (amz_date, date) = timestamps(time);
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    signed.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(token) = &credentials.session_token {
        signed.push(("x-amz-security-token".into(), token.clone()));
    }
    signed.sort();
    let names: Vec<&str> = signed.iter().map(|(k, _)| k.as_str()).collect();
    let signed_headers = names.join(";");

    let mut canonical = format!(
        "{method}\n{}\n{}\n",
        canonical_uri(url.path()),
        canonical_query(url)
    );
    for (k, v) in &signed {
        canonical.push_str(k);
        canonical.push(':');
        canonical.push_str(v);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers);
    canonical.push('\n');
    canonical.push_str(&hex(&Sha256::digest(body)));

    let scope = format!("{date}/{region}/{SERVICE}/aws4_request");
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [region, SERVICE, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));

    let mut out = vec![
        (
            "authorization".to_owned(),
            format!(
                "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                credentials.access_key_id
            ),
        ),
        ("x-amz-date".to_owned(), amz_date),
    ];
    if let Some(token) = &credentials.session_token {
        out.push(("x-amz-security-token".into(), token.clone()));
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The path, each segment encoded again (the double encoding of every service but S3).
fn canonical_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        uri_encode(&mut out, segment.as_bytes());
    }
    if out.is_empty() || (path.ends_with('/') && path.len() > 1) {
        out.push('/');
    }
    out
}

/// The query parameters decoded, encoded strictly, sorted by name then value.
fn canonical_query(url: &Url) -> String {
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&mut ek, k.as_bytes());
            uri_encode(&mut ev, v.as_bytes());
            (ek, ev)
        })
        .collect();
    params.sort();
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding: unreserved characters kept, everything else `%XX` (upper case).
fn uri_encode(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// `YYYYMMDDTHHMMSSZ` and `YYYYMMDD`, in UTC.
fn timestamps(time: SystemTime) -> (String, String) {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}{m:02}{d:02}");
    let amz = format!(
        "{date}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    (amz, date)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use herald_testkit::sigv4::{Key, Signer, ws_headers};

    #[test]
    fn dates_are_utc() {
        assert_eq!(
            timestamps(UNIX_EPOCH),
            ("19700101T000000Z".into(), "19700101".into())
        );
        // 2024-02-29T23:59:59Z, a leap day.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(
            timestamps(t),
            ("20240229T235959Z".into(), "20240229".into())
        );
    }

    /// The same signature as `aws-sigv4` for the same request, with and without a session token.
    #[test]
    fn signatures_match_aws_sigv4() {
        let time = UNIX_EPOCH + Duration::from_secs(1_795_766_509);
        for token in [None, Some("FwoGZXIvYXdz//token+==")] {
            let credentials = Credentials {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: "secret/key+x".into(),
                session_token: token.map(str::to_owned),
            };
            let key = Key {
                id: "AKIAEXAMPLE",
                secret: "secret/key+x",
                session_token: token,
            };
            let oracle = Signer::new(key, "eu-west-1").at(time);
            for url in [
                "https://abc.appsync-api.eu-west-1.amazonaws.com/event",
                "http://127.0.0.1:8080/event?b=2&a=x%20y",
            ] {
                let parsed = Url::parse(url).unwrap();
                let host = match parsed.port() {
                    Some(p) => format!("{}:{p}", parsed.host_str().unwrap()),
                    None => parsed.host_str().unwrap().to_owned(),
                };
                let mut headers = ws_headers(&host);
                headers.push(("x-extra", "  spaced  ".to_owned()));
                let body = br#"{"channel":"/default/a","events":["{\"a\":1}"]}"#;
                let mut ours = sign(
                    &credentials,
                    "eu-west-1",
                    "POST",
                    &parsed,
                    &headers,
                    body,
                    time,
                );
                let mut theirs = oracle.sign("POST", url, &headers, body);
                ours.sort();
                theirs.sort();
                assert_eq!(ours, theirs, "{url} with token {token:?}");
            }
        }
    }
}
