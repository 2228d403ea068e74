//! The DynamoDB data source and `@aws-appsync/utils/dynamodb` against dynalite, a
//! DynamoDB-compatible server this test starts on a free port (`npm ci` in tests/dynamodb
//! installs it; scripts/test does).

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herald_handler::{
    DataSourceConfig, DataSourceKind, EngineConfig, HandlerConfig, HandlerError, Handlers,
    RequestInfo, SubscribeContext,
};
use serde_json::{Value, json};
use support::{block, delivered, publish};

/// A running dynalite, killed when dropped.
struct Dynalite {
    child: Child,
    endpoint: String,
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn dynalite() -> Dynalite {
    let cli = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/dynamodb/node_modules/dynalite/cli.js");
    assert!(
        cli.exists(),
        "dynalite is not installed: run `npm ci` in tests/dynamodb (scripts/test does)"
    );
    let port = free_port();
    let child = Command::new("node")
        .arg(&cli)
        .args([
            "--port",
            &port.to_string(),
            "--createTableMs",
            "0",
            "--deleteTableMs",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let server = Dynalite {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    // Ready when it accepts connections.
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("dynalite did not start on port {port}");
}

/// Calls the DynamoDB API directly (unsigned: dynalite does not check signatures' values).
async fn ddb(endpoint: &str, op: &str, body: Value) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(endpoint)
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
        .header("x-amz-date", "20260101T000000Z")
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{op}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

async fn create_table(endpoint: &str, name: &str, hash: &str, range: Option<&str>) {
    let mut schema = vec![json!({"AttributeName": hash, "KeyType": "HASH"})];
    let mut attrs = vec![json!({"AttributeName": hash, "AttributeType": "S"})];
    if let Some(range) = range {
        schema.push(json!({"AttributeName": range, "KeyType": "RANGE"}));
        attrs.push(json!({"AttributeName": range, "AttributeType": "S"}));
    }
    ddb(
        endpoint,
        "CreateTable",
        json!({"TableName": name, "KeySchema": schema, "AttributeDefinitions": attrs,
               "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}}),
    )
    .await;
    for _ in 0..200 {
        let d = ddb(endpoint, "DescribeTable", json!({"TableName": name})).await;
        if d["Table"]["TableStatus"] == "ACTIVE" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("table {name} did not become active");
}

fn source(endpoint: &str, table: &str) -> DataSourceConfig {
    DataSourceConfig {
        name: "ddb".into(),
        kind: DataSourceKind::AmazonDynamodb,
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        access_key_id: Some("AKIDEXAMPLE".into()),
        secret_access_key: Some("secret".into()),
        session_token: None,
        function: None,
        table: Some(table.into()),
        event_bus: None,
        headers: Default::default(),
        database_url: None,
        pool_size: 10,
        timeout_ms: 5_000,
        max_in_flight: 16,
    }
}

fn handlers(endpoint: &str, table: &str, code: &str) -> Handlers {
    let engine = EngineConfig {
        js_workers: 1,
        ..EngineConfig::default()
    };
    Handlers::with_data_sources(
        &engine,
        &[source(endpoint, table)],
        [(
            "chat",
            HandlerConfig {
                code: Some(code.into()),
                data_source: Some("ddb".into()),
                ..Default::default()
            },
        )],
    )
    .unwrap()
}

#[tokio::test]
async fn stores_every_published_message() {
    let server = dynalite().await;
    create_table(&server.endpoint, "messages_table", "channel", Some("id")).await;
    // AWS's "Saving events to DynamoDB before broadcasting" example, as docs/handlers.md shows it.
    let h = handlers(&server.endpoint, "messages_table", block("dynamodb"));
    let out = h
        .on_publish(
            "chat",
            publish(
                "/chat/room1",
                &[
                    ("m1", json!({"text": "hello", "n": 1})),
                    ("m2", json!({"text": "bye"})),
                ],
                "u1",
            ),
        )
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!({"text": "hello", "n": 1}));
    let stored = ddb(
        &server.endpoint,
        "GetItem",
        json!({"TableName": "messages_table",
               "Key": {"channel": {"S": "/chat/room1"}, "id": {"S": "m1"}}}),
    )
    .await;
    assert_eq!(
        stored["Item"],
        json!({"channel": {"S": "/chat/room1"}, "id": {"S": "m1"},
               "text": {"S": "hello"}, "n": {"N": "1"}})
    );
}

#[tokio::test]
async fn enriches_an_event_and_rejects_a_subscribe_by_lookup() {
    let server = dynalite().await;
    create_table(&server.endpoint, "users", "path", Some("sub")).await;
    ddb(
        &server.endpoint,
        "PutItem",
        json!({"TableName": "users", "Item": {"path": {"S": "/chat/room1"}, "sub": {"S": "u1"},
               "name": {"S": "Ada"}, "roles": {"L": [{"S": "admin"}]}}}),
    )
    .await;
    // The subscribe handler of AWS's "DynamoDB get() function" example, with its two typos
    // fixed (`ddb` was imported as `{ get }`, `until.unauthorized()`).
    let code = r#"
import { util } from '@aws-appsync/utils'
import * as ddb from '@aws-appsync/utils/dynamodb'

export const onSubscribe = {
  request(ctx) {
    return ddb.get({key: { path: ctx.info.channel.path, sub: ctx.identity.sub }})
  },
  response(ctx) {
    console.log('Got the item:', ctx.result)
    if (!ctx.result){
      console.error("No info about this user for this channel path.")
      util.unauthorized()
    }
  }
}

export const onPublish = {
  request(ctx) {
    ctx.stash.count = ctx.events.length
    return ddb.get({ key: { path: ctx.info.channel.path, sub: ctx.identity.sub }, projection: ['name', 'roles'] })
  },
  response(ctx) {
    if (ctx.error) util.error(ctx.error.message, ctx.error.type)
    return ctx.events.map(({ id, payload }) => ({
      id, payload: { ...payload, from: ctx.result?.name ?? 'unknown', roles: ctx.result?.roles ?? [], of: ctx.stash.count },
    }))
  }
}
"#;
    let h = handlers(&server.endpoint, "users", code);
    let out = h
        .on_publish(
            "chat",
            publish("/chat/room1", &[("e", json!({"text": "hi"}))], "u1"),
        )
        .await
        .unwrap();
    assert_eq!(
        delivered(&out[0]),
        json!({"text": "hi", "from": "Ada", "roles": ["admin"], "of": 1})
    );
    let subscribe = |sub: &str| SubscribeContext {
        presence_info: None,
        channel: "/chat/room1".into(),
        identity: Some(json!({ "sub": sub })),
        request: RequestInfo::default(),
    };
    h.on_subscribe("chat", subscribe("u1")).await.unwrap();
    assert_eq!(
        h.on_subscribe("chat", subscribe("u2")).await.unwrap_err(),
        HandlerError::Unauthorized
    );
}

/// The other builders, each checked through the table it changed.
#[tokio::test]
async fn module_builders_round_trip() {
    let server = dynalite().await;
    create_table(&server.endpoint, "items", "id", None).await;
    create_table(&server.endpoint, "other", "id", None).await;
    let code = r#"
import { util } from '@aws-appsync/utils'
import * as ddb from '@aws-appsync/utils/dynamodb'

const steps = {
  put: (p) => ddb.put({ key: { id: p.id }, item: { n: 1, tags: ['a'], nested: { ok: true } },
                        condition: { id: { attributeExists: false } } }),
  update: (p) => ddb.update({ key: { id: p.id },
                              update: { n: ddb.operations.increment(2), tags: ddb.operations.append(['b']), label: 'x' } }),
  get: (p) => ddb.get({ key: { id: p.id }, consistentRead: true }),
  scan: () => ddb.scan({ filter: { n: { ge: 3 } }, limit: 10 }),
  query: (p) => ddb.query({ query: { id: { eq: p.id } } }),
  batchPut: () => ddb.batchPut({ tables: { items: [{ id: 'b1', n: 5 }], other: [{ id: 'o1' }] } }),
  batchGet: () => ddb.batchGet({ tables: { items: { keys: [{ id: 'missing' }, { id: 'b1' }] } } }),
  batchDelete: () => ddb.batchDelete({ tables: { other: [{ id: 'o1' }] } }),
  remove: (p) => ddb.remove({ key: { id: p.id }, condition: { n: { eq: 3 } } }),
  failing: (p) => ddb.put({ key: { id: p.id }, item: {}, condition: { id: { attributeExists: true } } }),
}

export const onPublish = {
  request(ctx) {
    const p = ctx.events[0].payload
    ctx.stash.step = p.step
    return steps[p.step](p)
  },
  response(ctx) {
    return [{ id: ctx.events[0].id, payload: { result: ctx.result, error: ctx.error } }]
  }
}
"#;
    let h = handlers(&server.endpoint, "items", code);
    let step = |step: &'static str| {
        let h = &h;
        async move {
            let out = h
                .on_publish(
                    "chat",
                    publish("/chat/a", &[("e", json!({"step": step, "id": "k1"}))], "u1"),
                )
                .await
                .unwrap();
            delivered(&out[0])
        }
    };
    let put = step("put").await;
    assert_eq!(
        put["result"],
        json!({"id": "k1", "n": 1, "tags": ["a"], "nested": {"ok": true}})
    );
    let updated = step("update").await;
    assert_eq!(
        updated["result"],
        json!({"id": "k1", "n": 3, "tags": ["a", "b"], "nested": {"ok": true}, "label": "x"})
    );
    assert_eq!(step("get").await["result"]["n"], 3);
    let scanned = step("scan").await;
    assert_eq!(scanned["result"]["items"][0]["id"], "k1");
    assert_eq!(scanned["result"]["nextToken"], Value::Null);
    let queried = step("query").await;
    assert_eq!(queried["result"]["items"].as_array().unwrap().len(), 1);
    let batch = step("batchPut").await;
    assert_eq!(
        batch["result"]["data"]["items"],
        json!([{"id": "b1", "n": 5}])
    );
    let got = step("batchGet").await;
    assert_eq!(
        got["result"]["data"]["items"],
        json!([null, {"id": "b1", "n": 5}])
    );
    let deleted = step("batchDelete").await;
    assert_eq!(deleted["result"]["data"]["other"], json!([{"id": "o1"}]));
    let removed = step("remove").await;
    assert_eq!(removed["result"]["id"], "k1");
    let failed = step("failing").await;
    assert_eq!(failed["result"], Value::Null);
    assert_eq!(
        failed["error"]["type"],
        "DynamoDB:ConditionalCheckFailedException"
    );
}

/// dynalite has no transactions: the two transaction requests are checked against a loopback
/// fixture answering as DynamoDB does.
#[tokio::test]
async fn transactions_as_dynamodb_takes_them() {
    use herald_testkit::fixture::{self, Reply};
    let fixture = fixture::serve(|_, body| {
        let req: Value = serde_json::from_str(body).unwrap();
        if req["TransactItems"][0].get("Get").is_some() {
            Reply::Json(
                200,
                json!({"Responses": [{"Item": {"id": {"S": "t1"}, "v": {"N": "1"}}}, {}]})
                    .to_string(),
            )
        } else {
            Reply::Json(200, "{}".into())
        }
    })
    .await;
    let code = r#"
import * as ddb from '@aws-appsync/utils/dynamodb'
export const onPublish = {
  request(ctx) {
    return ctx.events[0].payload === 'write'
      ? ddb.transactWrite({ items: [
          { putItem: { table: 'other', key: { id: 't1' }, item: { v: 1 }, condition: { id: { attributeExists: false } } } },
          { updateItem: { table: 'items', key: { id: 'b1' }, update: { n: ddb.operations.decrement(1) } } },
          { removeItem: { table: 'items', key: { id: 'gone' } } },
        ] })
      : ddb.transactGet({ items: [{ table: 'other', key: { id: 't1' } }, { table: 'items', key: { id: 'none' } }] })
  },
  response: (ctx) => [{ id: ctx.events[0].id, payload: ctx.result }],
}
"#;
    let h = handlers(&fixture.url(""), "items", code);
    let run = |what: &'static str| {
        let h = &h;
        async move {
            let out = h
                .on_publish("chat", publish("/chat/a", &[("e", json!(what))], "u1"))
                .await
                .unwrap();
            delivered(&out[0])
        }
    };
    assert_eq!(
        run("write").await,
        json!({"keys": [{"id": "t1"}, {"id": "b1"}, {"id": "gone"}], "cancellationReasons": null})
    );
    let hit = fixture.last().unwrap();
    assert!(hit.headers.contains(&(
        "x-amz-target".to_owned(),
        "DynamoDB_20120810.TransactWriteItems".to_owned()
    )));
    assert_eq!(
        serde_json::from_str::<Value>(&hit.body).unwrap(),
        json!({"TransactItems": [
            {"Put": {"TableName": "other", "Item": {"id": {"S": "t1"}, "v": {"N": "1"}},
                     "ConditionExpression": "attribute_not_exists(#c_id)",
                     "ExpressionAttributeNames": {"#c_id": "id"}}},
            {"Update": {"TableName": "items", "Key": {"id": {"S": "b1"}},
                        "UpdateExpression": "ADD #u_n :u_0",
                        "ExpressionAttributeNames": {"#u_n": "n"},
                        "ExpressionAttributeValues": {":u_0": {"N": "-1"}}}},
            {"Delete": {"TableName": "items", "Key": {"id": {"S": "gone"}}}},
        ]})
    );
    assert_eq!(
        run("read").await,
        json!({"items": [{"id": "t1", "v": 1}, null], "cancellationReasons": null})
    );
}
