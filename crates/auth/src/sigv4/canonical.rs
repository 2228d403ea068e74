//! The SigV4 algorithm pieces: parsing `Authorization`, the canonical request, the string to sign
//! and the signing key. Pure functions, no configuration, so they can be tested against AWS's
//! published vectors and against an independent signer.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::AuthError;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm AppSync uses (SigV4a is not supported).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHeader<'a> {
    /// Access key id (first element of the credential).
    pub access_key_id: &'a str,
    /// `date/region/service/aws4_request`, as sent.
    pub scope: &'a str,
    /// `YYYYMMDD` from the scope.
    pub scope_date: &'a str,
    /// Region from the scope.
    pub scope_region: &'a str,
    /// Service from the scope.
    pub scope_service: &'a str,
    /// Lower-case header names, `;`-separated, as sent.
    pub signed_headers: &'a str,
    /// The signature, decoded from hex (32 bytes).
    pub signature: Vec<u8>,
}

/// Parses an `Authorization` header value. Errors are [`AuthError::Malformed`] with the reason.
pub fn parse_authorization(value: &str) -> Result<AuthorizationHeader<'_>, AuthError> {
    let malformed = |why: &str| AuthError::Malformed(format!("SigV4 Authorization header: {why}"));
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| malformed("must start with AWS4-HMAC-SHA256"))?;
    if !rest.starts_with(' ') {
        return Err(malformed("expected a space after the algorithm"));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| malformed("components must be key=value"))?;
        let slot = match k {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(malformed("unknown component")),
        };
        if slot.replace(v).is_some() {
            return Err(malformed("duplicate component"));
        }
    }
    let credential = credential.ok_or_else(|| malformed("missing Credential"))?;
    let signed_headers = signed.ok_or_else(|| malformed("missing SignedHeaders"))?;
    let signature = signature.ok_or_else(|| malformed("missing Signature"))?;

    // The access key id never contains '/', so the first '/' ends it.
    let (access_key_id, scope) = credential
        .split_once('/')
        .ok_or_else(|| malformed("Credential must be key/date/region/service/aws4_request"))?;
    let mut it = scope.split('/');
    let (Some(date), Some(region), Some(service), Some(term), None) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return Err(malformed(
            "Credential must be key/date/region/service/aws4_request",
        ));
    };
    if term != "aws4_request" || access_key_id.is_empty() {
        return Err(malformed(
            "Credential must be key/date/region/service/aws4_request",
        ));
    }
    if signed_headers.is_empty() {
        return Err(malformed("empty SignedHeaders"));
    }
    let signature =
        hex_decode(signature).ok_or_else(|| malformed("Signature must be 64 hex digits"))?;
    if signature.len() != 32 {
        return Err(malformed("Signature must be 64 hex digits"));
    }
    Ok(AuthorizationHeader {
        access_key_id,
        scope,
        scope_date: date,
        scope_region: region,
        scope_service: service,
        signed_headers,
        signature,
    })
}

/// Builds the canonical request. `headers` are all request headers (name, raw value); only those
/// named in `signed_headers` are used, values of repeated headers joined with `,` in arrival order.
/// Fails if a signed header is absent.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &[u8])],
    signed_headers: &str,
    payload_hash: &str,
) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(query).as_bytes());
    out.push(b'\n');
    for name in signed_headers.split(';') {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut found = false;
        for (_, value) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
            if found {
                out.push(b',');
            }
            found = true;
            push_trimmed_value(&mut out, value);
        }
        if !found {
            return Err(AuthError::Malformed(format!(
                "signed header {name:?} is not present in the request"
            )));
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    Ok(out)
}

/// Trims leading/trailing whitespace and collapses inner runs of spaces to one (SigV4 step 4).
fn push_trimmed_value(out: &mut Vec<u8>, value: &[u8]) {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = value.iter().position(|b| !is_ws(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |e| e + 1);
    let mut prev_space = false;
    for &b in value.get(start..end).unwrap_or_default() {
        if is_ws(&b) {
            if !prev_space {
                out.push(b' ');
            }
            prev_space = true;
        } else {
            out.push(b);
            prev_space = false;
        }
    }
}

/// The canonical URI of a non-S3 service: the wire path (already percent-encoded once),
/// normalized (`.`/`..` resolved, repeated `/` collapsed), then encoded again.
pub fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 8);
    for seg in &segments {
        out.push('/');
        uri_encode_into(&mut out, seg.as_bytes());
    }
    // A final `.` or `..` leaves a trailing slash, as RFC 3986's remove_dot_segments does
    // (`/a/.` is `/a/`): aws-sigv4 signs that form.
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if out.is_empty() || (trailing && !segments.is_empty()) {
        out.push('/');
    }
    out
}

/// The canonical query string: parameters decoded, re-encoded strictly, sorted by key then value.
pub fn canonical_query(query: &str) -> String {
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let mut ek = String::new();
            let mut ev = String::new();
            uri_encode_into(&mut ek, &percent_decode(k));
            uri_encode_into(&mut ev, &percent_decode(v));
            (ek, ev)
        })
        .collect();
    params.sort();
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Percent-encodes every byte except the RFC 3986 unreserved set, upper-case hex.
fn uri_encode_into(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
}

/// Decodes `%XX` sequences and `+` (form encoding, as the AWS SDKs parse queries). Invalid
/// sequences are kept literally.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => match (
                b.get(i + 1).and_then(hex_val),
                b.get(i + 2).and_then(hex_val),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn hex_val(c: &u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex (either case). `None` on odd length or a non-hex digit.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| match p {
            [h, l] => Some(hex_val(h)? << 4 | hex_val(l)?),
            _ => None,
        })
        .collect()
}

/// Lower-case hex.
pub fn hex_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    s
}

/// Hex SHA-256 of `data` (the payload hash and the canonical-request hash).
pub fn sha256_hex(data: &[u8]) -> String {
    hex_encode(&Sha256::digest(data))
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request)
    )
}

fn hmac(key: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    mac
}

/// Derives the signing key `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = format!("AWS4{secret}");
    let k = hmac(k.as_bytes(), date.as_bytes()).finalize().into_bytes();
    let k = hmac(&k, region.as_bytes()).finalize().into_bytes();
    let k = hmac(&k, service.as_bytes()).finalize().into_bytes();
    hmac(&k, b"aws4_request").finalize().into_bytes().into()
}

/// The hex signature of `string_to_sign` (used by tests and by clients; the verifier compares
/// in constant time with [`signature_matches`]).
pub fn signature_hex(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex_encode(
        &hmac(signing_key, string_to_sign.as_bytes())
            .finalize()
            .into_bytes(),
    )
}

/// Constant-time comparison of the expected signature with the presented one.
pub fn signature_matches(signing_key: &[u8; 32], string_to_sign: &str, presented: &[u8]) -> bool {
    hmac(signing_key, string_to_sign.as_bytes())
        .verify_slice(presented)
        .is_ok()
}

/// Parses `YYYYMMDDTHHMMSSZ` into seconds since the Unix epoch. `None` if malformed.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(crate::time::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Formats Unix seconds as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = crate::time::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(format_amz_date(1_440_938_160), "20150830T123600Z");
        for bad in [
            "2015083T123600Z",
            "20151330T123600Z",
            "20150830 123600Z",
            "20150830T12360xZ",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn uri_normalization() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/event"), "/event");
        assert_eq!(canonical_uri("//a/./b/../c/"), "/a/c/");
        assert_eq!(canonical_uri("/a%20b"), "/a%2520b");
        assert_eq!(canonical_uri("/.."), "/");
        // Found by proptest against aws-sigv4: a final dot segment keeps its slash.
        assert_eq!(canonical_uri("/'/."), "/%27/");
        assert_eq!(canonical_uri("/a/b/.."), "/a/");
    }

    #[test]
    fn query_canonicalization() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("k"), "k=");
        assert_eq!(canonical_query("x=a%2Fb&y=%zz"), "x=a%2Fb&y=%25zz");
    }

    #[test]
    fn authorization_parsing() {
        let sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let v = format!(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"
        );
        let a = parse_authorization(&v).unwrap();
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!(a.scope_region, "us-east-1");
        assert_eq!(a.signed_headers, "host;x-amz-date");
        assert_eq!(hex_encode(&a.signature), sig);
        for bad in [
            "Bearer x",
            "AWS4-HMAC-SHA256Credential=a",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request, SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/aws4_request, SignedHeaders=host, Signature=00",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }
}
