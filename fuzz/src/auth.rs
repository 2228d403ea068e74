//! Fuzz checks for `herald-auth`: SigV4 requests verified against configured keys, and JWTs
//! verified against a fixed JWKS served from a loopback port (no other network). Fixtures come
//! from `herald-testkit`, as in the crate's own tests; like them, this is test code: it panics
//! on anything unexpected.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_auth::jwt::{
    CognitoConfig, JwtOptions, JwtVerifier, OidcConfig, looks_like_jwt, unverified_issuer,
};
use herald_auth::sigv4::{
    AccessKeyConfig, IamAction, SigV4Config, SigV4Verifier, SignedRequest, canonical,
};
use herald_auth::{AuthError, Identity, Operation};
use herald_testkit::jwt::{Algorithm, EC_KID, EncodingKey, RSA_KID, ec, jwk, rsa, token};
use herald_testkit::{Reply, serve};

/// A SigV4 verifier and the one key it knows, at a fixed clock.
struct SigV4Case {
    verifier: SigV4Verifier,
    secret: &'static str,
    now: SystemTime,
}

fn sigv4_case(
    access_key_id: &str,
    secret: &'static str,
    service: &str,
    now_secs: u64,
) -> SigV4Case {
    let key = AccessKeyConfig {
        access_key_id: access_key_id.to_owned(),
        secret_access_key: secret.to_owned(),
        session_token: None,
        actions: vec![
            IamAction::EventConnect,
            IamAction::EventPublish,
            IamAction::EventSubscribe,
        ],
        namespaces: vec!["default".to_owned()],
        principal: "fuzz".to_owned(),
        account_id: None,
    };
    let config = SigV4Config {
        service: service.to_owned(),
        keys: vec![key],
        ..SigV4Config::default()
    };
    SigV4Case {
        verifier: SigV4Verifier::new(config).unwrap(),
        secret,
        now: UNIX_EPOCH + Duration::from_secs(now_secs),
    }
}

/// The credentials of `crates/auth/tests/data`: AWS's test suite (service `service`, signed at
/// 2015-08-30T12:36:00Z) and amplify-js's WebSocket signatures (`appsync`, 2026-11-27T08:00:00Z).
fn sigv4_cases() -> &'static [SigV4Case; 2] {
    static CASES: OnceLock<[SigV4Case; 2]> = OnceLock::new();
    CASES.get_or_init(|| {
        [
            sigv4_case(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "service",
                1_440_938_160,
            ),
            sigv4_case(
                "AKIDAMPLIFYTEST",
                "amplify/test+secret",
                "appsync",
                1_795_766_400,
            ),
        ]
    })
}

/// `sigv4`: the input is an HTTP request as text — `<METHOD> <path>[?<query>]`, then one
/// `<name>:<value>` per line, an empty line, and the body. It is verified as an HTTP request and
/// its headers as a WebSocket `authorization` object. Then, when its `Authorization` header
/// parses, it is signed again with the right key: that request must never fail on its signature.
pub fn sigv4(data: &[u8]) {
    let Some(req) = parse_request(data) else {
        return;
    };
    let access = herald_auth::sigv4::Access {
        operation: Operation::Publish,
        namespace: Some("default"),
    };
    for case in sigv4_cases() {
        let _ = case.verifier.verify(&req, access, case.now);
        let fields = req
            .headers
            .iter()
            .filter_map(|(k, v)| Some((*k, std::str::from_utf8(v).ok()?)));
        let _ = case
            .verifier
            .verify_ws_fields(fields, req.body, access, case.now);

        let Some(authorization) = resign(&req, case.secret) else {
            continue;
        };
        let mut resigned = req.clone();
        if let Some(h) = resigned
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            h.1 = authorization.as_bytes();
        }
        let result = case.verifier.verify(&resigned, access, case.now);
        assert!(
            !matches!(result, Err(AuthError::BadSignature { .. })),
            "a correctly signed request was refused: {authorization}"
        );
    }
}

fn parse_request(data: &[u8]) -> Option<SignedRequest<'_>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (data.get(..i)?, data.get(i + 2..)?),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let request_line = std::str::from_utf8(lines.next()?).ok()?;
    let (method, target) = request_line.split_once(' ')?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            let name = std::str::from_utf8(line.get(..colon)?).ok()?;
            Some((name, line.get(colon + 1..)?))
        })
        .collect();
    Some(SignedRequest {
        method,
        path,
        query,
        headers,
        body,
    })
}

/// The `Authorization` value that signs `req` correctly with `secret`, keeping the presented
/// credential scope and signed headers. `None` when it cannot be built (the value does not parse,
/// a signed header is missing), or when `Authorization` signs itself, so changing it would
/// change what was signed.
fn resign(req: &SignedRequest<'_>, secret: &str) -> Option<String> {
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let auth = canonical::parse_authorization(header("authorization")?).ok()?;
    if auth
        .signed_headers
        .split(';')
        .any(|h| h.eq_ignore_ascii_case("authorization"))
    {
        return None;
    }
    let creq = canonical::canonical_request(
        req.method,
        req.path,
        req.query,
        &req.headers,
        auth.signed_headers,
        &canonical::sha256_hex(req.body),
    )
    .ok()?;
    let string_to_sign = canonical::string_to_sign(header("x-amz-date")?, auth.scope, &creq);
    let key = canonical::signing_key(
        secret,
        auth.scope_date,
        auth.scope_region,
        auth.scope_service,
    );
    Some(format!(
        "{} Credential={}/{}, SignedHeaders={}, Signature={}",
        canonical::ALGORITHM,
        auth.access_key_id,
        auth.scope,
        auth.signed_headers,
        canonical::signature_hex(&key, &string_to_sign)
    ))
}

/// The issuer of the fuzz JWKS. Never fetched: the verifiers are given the JWKS URL directly.
pub const JWT_ISSUER: &str = "https://issuer.fuzz.invalid";

/// The `kid` of the Ed25519 key that signs fuzzed claims.
const ED_KID: &str = "ed";

/// A throwaway Ed25519 key for signing fuzzed claims (fast to sign and verify, unlike RSA):
/// PKCS#8 DER, the fixed prefix then a 32-byte seed. It exists only here and signs nothing else.
const ED25519_PKCS8: [u8; 48] = {
    let mut der = [7u8; 48];
    let prefix = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut i = 0;
    while i < prefix.len() {
        der[i] = prefix[i];
        i += 1;
    }
    der
};

struct JwtFixture {
    runtime: tokio::runtime::Runtime,
    oidc: JwtVerifier,
    cognito: JwtVerifier,
    signer: EncodingKey,
}

/// Both verifiers, over a JWKS of the test suites' RSA and P-256 keys plus the fuzz Ed25519 key,
/// fetched once from a loopback fixture. A day between refreshes keeps every later token offline.
fn jwt_fixture() -> &'static JwtFixture {
    static FIXTURE: OnceLock<JwtFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let signer = EncodingKey::from_ed_der(&ED25519_PKCS8);
        let jwks = serde_json::json!({"keys": [
            jwk(&rsa(), Algorithm::RS256, RSA_KID),
            jwk(&ec(), Algorithm::ES256, EC_KID),
            jwk(&signer, Algorithm::EdDSA, ED_KID),
        ]})
        .to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (oidc, cognito) = runtime.block_on(async {
            let server = serve(move |_, _| Reply::Json(200, jwks.clone())).await;
            let options = JwtOptions {
                algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
                jwks_uri: Some(server.url("/jwks")),
                jwks_min_refresh_secs: 86_400,
                jwks_max_age_secs: 86_400,
                ..JwtOptions::default()
            };
            // TTLs of a century: set, so the checks run, yet seeds signed today stay valid.
            let century_ms = 100 * 365 * 86_400 * 1000;
            let oidc = JwtVerifier::oidc(OidcConfig {
                issuer: JWT_ISSUER.to_owned(),
                client_id: Some("fuzz-client".to_owned()),
                iat_ttl: century_ms,
                auth_ttl: century_ms,
                options: options.clone(),
            })
            .unwrap();
            let cognito = JwtVerifier::cognito(CognitoConfig {
                user_pool_id: "us-east-1_Fuzz".to_owned(),
                aws_region: "us-east-1".to_owned(),
                app_id_client_regex: Some("fuzz-[a-z]+".to_owned()),
                issuer: Some(JWT_ISSUER.to_owned()),
                options,
            })
            .unwrap();
            oidc.prefetch().await.unwrap();
            cognito.prefetch().await.unwrap();
            (oidc, cognito)
        });
        JwtFixture {
            runtime,
            oidc,
            cognito,
            signer,
        }
    })
}

/// `jwt`: a token (an `Authorization` value), verified by an OIDC and a Cognito verifier. Input
/// that starts with `{` is a claims object instead: the target signs it with the fuzz Ed25519
/// key, so arbitrary claims get past the signature to the claim checks.
pub fn jwt(data: &[u8]) {
    let fixture = jwt_fixture();
    let token = if data.first() == Some(&b'{') {
        let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) else {
            return;
        };
        token(&fixture.signer, Algorithm::EdDSA, Some(ED_KID), &claims)
    } else {
        match std::str::from_utf8(data) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    };
    let _ = looks_like_jwt(&token);
    let _ = unverified_issuer(&token);
    for verifier in [&fixture.oidc, &fixture.cognito] {
        match fixture.runtime.block_on(verifier.verify(&token)) {
            Ok(Identity::Jwt(id)) => {
                assert_eq!(id.issuer, JWT_ISSUER);
                assert_eq!(id.mode, verifier.mode());
            }
            Ok(other) => panic!("a JWT verifier returned {other:?}"),
            Err(_) => {}
        }
    }
}
