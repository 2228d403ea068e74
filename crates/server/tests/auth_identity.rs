//! The identity each mode establishes, as handlers see it (`ctx.identity`) and as access rules
//! bind to it.

mod common;

use common::KEY;
use common::auth::*;
use serde_json::{Value, json};

#[tokio::test]
async fn handlers_see_the_identity_each_mode_established() {
    let w = World::from_toml(|o, c, h| {
        format!(
            "{}\n[[namespaces]]\nname = \"who\"\nhandlers = {{ code = '''{IDENTITY_ECHO}''' }}\n",
            test_config(ALL_MODES, o, c, h)
        )
    })
    .await;
    let key_auth = w.key_auth();
    let mut c = w.ready(&key_auth).await;
    assert_success(
        &subscribe(&mut c, "s", "/who/*", &key_auth).await,
        "subscribe_success",
        "s",
    );
    let oidc = oidc_token(&w.oidc, "olivia");
    let cognito = cognito_token(&w.cognito, "paul");
    let events = vec!["{\"n\":1}".to_owned()];
    let body = publish_body("/who/a", &events);
    let iam_socket = w.iam_auth((AK_ALL, SK_ALL), &body);
    let cases: [(&str, Value); 4] = [
        ("oidc", w.token_auth(&oidc)),
        ("cognito", w.token_auth(&cognito)),
        ("lambda", w.token_auth("allow-quinn")),
        ("iam", iam_socket),
    ];
    let mut seen = std::collections::HashMap::new();
    for (name, auth) in &cases {
        // Over the socket, then over HTTP with the same mode: both get the same identity.
        assert_success(
            &publish(&mut c, name, "/who/a", &events, auth).await,
            "publish_success",
            name,
        );
        let socket = next_event(&mut c, "s").await["identity"].clone();
        let (status, reply) = if *name == "iam" {
            post_iam(&w, (AK_ALL, SK_ALL), &body, false).await
        } else {
            let token = auth["Authorization"].as_str().unwrap();
            let (status, reply, _) = post(&w, &body, &[("Authorization", token)]).await;
            (status, reply)
        };
        assert_eq!(status, 200, "{reply}");
        let http = next_event(&mut c, "s").await["identity"].clone();
        assert_eq!(socket, http, "{name}: socket and HTTP identities agree");
        seen.insert(*name, socket);
    }
    let oidc_id = &seen["oidc"];
    assert_eq!(oidc_id["sub"], "olivia", "{oidc_id}");
    assert_eq!(oidc_id["issuer"], w.oidc.issuer());
    assert_eq!(oidc_id["username"], "olivia");
    assert_eq!(oidc_id["claims"]["aud"], OIDC_CLIENT);
    let pool = &seen["cognito"];
    assert_eq!(pool["sub"], "sub-paul", "{pool}");
    assert_eq!(pool["username"], "paul");
    assert_eq!(pool["claims"]["client_id"], COGNITO_CLIENT);
    assert_eq!(
        seen["lambda"],
        json!({"handlerContext": {"user": "allow-quinn"}})
    );
    let iam = &seen["iam"];
    assert_eq!(
        iam["username"], "arn:aws:iam::111122223333:user/all",
        "{iam}"
    );
    assert_eq!(iam["userArn"], "arn:aws:iam::111122223333:user/all");
    // API keys carry no identity, as in AppSync.
    let (status, _, _) = post(&w, &body, &[("x-api-key", KEY)]).await;
    assert_eq!(status, 200);
    assert_eq!(next_event(&mut c, "s").await["identity"], Value::Null);
    w.stop().await;
}

/// A handler that copies `ctx.identity` into each event, so the test can see what handlers get.
const IDENTITY_ECHO: &str = r#"
export function onPublish(ctx) {
  return ctx.events.map(e => ({ id: e.id, payload: { ...e.payload, identity: ctx.identity ?? null } }));
}
"#;

/// Access rules bind to the identity each mode produces: a JWT's `sub` (OIDC, Cognito), the
/// authorizer's `handlerContext`, the SigV4 key's principal. Own channels are allowed, another
/// user's and a wildcard over all users are refused.
#[tokio::test]
async fn access_rules_bind_to_every_modes_identity() {
    let w = World::from_toml(|oidc, cognito, hook| {
        format!(
            "{}\n[[namespaces]]\nname = \"iso\"\n[namespaces.rules]\nsubscribe = [\"/iso/u/{{identity.sub}}/*\", \"/iso/h/{{handlerContext.user}}/*\"]\n",
            test_config(ALL_MODES, oidc, cognito, hook)
        )
    })
    .await;
    let oidc = oidc_token(&w.oidc, "alice");
    let cognito = cognito_token(&w.cognito, "bob");
    type AuthFor<'a> = Box<dyn Fn(&str) -> Value + 'a>;
    let cases: Vec<(&str, Value, AuthFor)> = vec![
        (
            "oidc",
            w.token_auth(&oidc),
            Box::new(|_: &str| w.token_auth(&oidc)),
        ),
        (
            "cognito",
            w.token_auth(&cognito),
            Box::new(|_: &str| w.token_auth(&cognito)),
        ),
        (
            "lambda",
            w.token_auth("allow-carol"),
            Box::new(|_: &str| w.token_auth("allow-carol")),
        ),
        (
            "iam",
            w.iam_auth((AK_READER, SK_READER), "{}"),
            Box::new(|ch: &str| w.iam_auth((AK_READER, SK_READER), &subscribe_body(ch))),
        ),
    ];
    let own = |mode: &str| match mode {
        "oidc" => "/iso/u/alice/inbox",
        "cognito" => "/iso/u/sub-bob/inbox",
        "lambda" => "/iso/h/allow-carol/inbox",
        _ => "/iso/u/reader/inbox",
    };
    for (mode, connect, auth) in &cases {
        let mut c = w.ready(connect).await;
        let mine = own(mode);
        assert_success(
            &subscribe(&mut c, "own", mine, &auth(mine)).await,
            "subscribe_success",
            "own",
        );
        for (i, foreign) in ["/iso/u/mallory/inbox", "/iso/u/*", "/iso/h/*", "/iso/*"]
            .iter()
            .enumerate()
        {
            let id = format!("f{i}");
            let r = subscribe(&mut c, &id, foreign, &auth(foreign)).await;
            assert_refused(&r, "subscribe_error", &id);
        }
        // Events on another user's channel never reach this connection; its own still do.
        let body = publish_body("/iso/u/mallory/inbox", &["\"not yours\"".to_owned()]);
        assert_eq!(post(&w, &body, &[("x-api-key", KEY)]).await.0, 200);
        let body = publish_body(mine, &[format!("\"for {mode}\"")]);
        assert_eq!(post(&w, &body, &[("x-api-key", KEY)]).await.0, 200);
        assert_eq!(
            next_event(&mut c, "own").await,
            json!(format!("for {mode}")),
            "{mode}"
        );
    }
    drop(cases);
    w.stop().await;
}
