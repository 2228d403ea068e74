//! The `RELATIONAL_DATABASE` data source and `@aws-appsync/utils/rds` against the machine's
//! PostgreSQL and MariaDB. Each test creates its own uniquely named database and drops it.
//! `HERALD_TEST_POSTGRES` / `HERALD_TEST_MYSQL` override the admin URLs.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use herald_handler::{
    DataSourceConfig, DataSourceKind, EngineConfig, HandlerConfig, HandlerError, Handlers,
    RequestInfo, SubscribeContext,
};
use serde_json::{Value, json};
use sqlx::Connection as _;
use support::{block, delivered, publish};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Engine {
    Postgres,
    MariaDb,
}

fn admin_url(engine: Engine) -> String {
    match engine {
        Engine::Postgres => std::env::var("HERALD_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        Engine::MariaDb => std::env::var("HERALD_TEST_MYSQL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into()),
    }
}

/// A database of its own, dropped when the test ends (even by a panic).
struct TestDb {
    engine: Engine,
    name: String,
    url: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

async fn admin_exec(engine: Engine, statement: &str) {
    let url = admin_url(engine);
    match engine {
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"));
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                .execute(&mut c)
                .await
                .unwrap();
        }
        Engine::MariaDb => {
            let mut c = sqlx::MySqlConnection::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("MariaDB at {url}: {e}"));
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
}

impl TestDb {
    async fn new(engine: Engine, schema: &str) -> Self {
        let name = format!(
            "herald_sql_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin_exec(engine, &format!("CREATE DATABASE {name}")).await;
        let admin = admin_url(engine);
        let base = &admin[..admin.rfind('/').unwrap()];
        let db = TestDb {
            engine,
            url: format!("{base}/{name}"),
            name,
        };
        db.exec(schema).await;
        db
    }

    async fn exec(&self, statements: &str) {
        match self.engine {
            Engine::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Engine::MariaDb => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }

    /// One column of one query, as text, through the database's own client library.
    async fn texts(&self, query: &str) -> Vec<String> {
        match self.engine {
            Engine::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
            Engine::MariaDb => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (engine, name) = (self.engine, self.name.clone());
        let drop = match engine {
            Engine::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            Engine::MariaDb => format!("DROP DATABASE IF EXISTS {name}"),
        };
        // A runtime of its own: Drop cannot await, and may run while the test's runtime unwinds.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(admin_exec(engine, &drop));
            }
        })
        .join();
    }
}

fn source(url: &str, timeout_ms: u64) -> DataSourceConfig {
    DataSourceConfig {
        name: "db".into(),
        kind: DataSourceKind::RelationalDatabase,
        region: None,
        endpoint: None,
        access_key_id: None,
        secret_access_key: None,
        session_token: None,
        function: None,
        table: None,
        event_bus: None,
        headers: Default::default(),
        database_url: Some(url.into()),
        pool_size: 4,
        timeout_ms,
        max_in_flight: 16,
    }
}

fn handlers_with(config: DataSourceConfig, code: &str) -> Handlers {
    let engine = EngineConfig {
        js_workers: 1,
        ..EngineConfig::default()
    };
    Handlers::with_data_sources(
        &engine,
        &[config],
        [(
            "chat",
            HandlerConfig {
                code: Some(code.into()),
                data_source: Some("db".into()),
                ..Default::default()
            },
        )],
    )
    .unwrap()
}

fn handlers(db: &TestDb, code: &str) -> Handlers {
    handlers_with(source(&db.url, 5_000), code)
}

/// Runs a one-event publish and returns the payload the handler made of it.
async fn run(h: &Handlers, payload: Value) -> Value {
    let out = h
        .on_publish("chat", publish("/chat/a", &[("e", payload)], "u1"))
        .await
        .unwrap();
    delivered(&out[0])
}

#[tokio::test]
async fn postgres_stores_every_published_message() {
    let db = TestDb::new(
        Engine::Postgres,
        "CREATE TABLE messages (channel text NOT NULL, id text NOT NULL, body jsonb NOT NULL, \
         sender text, PRIMARY KEY (channel, id))",
    )
    .await;
    let h = handlers(&db, block("sql-postgres"));
    let out = h
        .on_publish(
            "chat",
            publish(
                "/chat/room1",
                &[
                    ("m1", json!({"text": "hello", "n": 1})),
                    ("m2", json!({"text": "it's; DROP TABLE messages; --"})),
                ],
                "u1",
            ),
        )
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!({"text": "hello", "n": 1}));
    assert_eq!(out.len(), 2);
    let stored = db
        .texts("SELECT channel || ' ' || id || ' ' || sender || ' ' || body::text FROM messages ORDER BY id")
        .await;
    assert_eq!(
        stored,
        vec![
            r#"/chat/room1 m1 u1 {"n": 1, "text": "hello"}"#,
            r#"/chat/room1 m2 u1 {"text": "it's; DROP TABLE messages; --"}"#,
        ]
    );
}

#[tokio::test]
async fn enriches_an_event_and_rejects_a_subscribe_by_lookup() {
    for engine in [Engine::Postgres, Engine::MariaDb] {
        let db = TestDb::new(
            engine,
            "CREATE TABLE members (channel varchar(200) NOT NULL, sub varchar(100) NOT NULL, \
             name varchar(100) NOT NULL, PRIMARY KEY (channel, sub))",
        )
        .await;
        db.exec("INSERT INTO members VALUES ('/chat/room1', 'u1', 'Ada')")
            .await;
        let create = match engine {
            Engine::Postgres => "createPgStatement",
            Engine::MariaDb => "createMySQLStatement",
        };
        let code = r#"
import { util } from '@aws-appsync/utils'
import { select, CREATE, toJsonObject } from '@aws-appsync/utils/rds'

const member = (ctx) => CREATE(select({
  table: 'members',
  columns: ['name'],
  where: { channel: { eq: ctx.info.channel.path }, sub: { eq: ctx.identity.sub } },
  limit: 1,
}))

export const onSubscribe = {
  request: member,
  response(ctx) {
    if (ctx.error) util.error(ctx.error.message, ctx.error.type)
    const rows = toJsonObject(ctx.result)[0]
    if (rows.length === 0) util.unauthorized()
  },
}

export const onPublish = {
  request: member,
  response(ctx) {
    if (ctx.error) util.error(ctx.error.message, ctx.error.type)
    const [row] = toJsonObject(ctx.result)[0]
    return ctx.events.map(({ id, payload }) => ({ id, payload: { ...payload, from: row?.name ?? 'unknown' } }))
  },
}
"#
        .replace("CREATE", create);
        let h = handlers(&db, &code);
        let out = h
            .on_publish(
                "chat",
                publish("/chat/room1", &[("e", json!({"text": "hi"}))], "u1"),
            )
            .await
            .unwrap();
        assert_eq!(
            delivered(&out[0]),
            json!({"text": "hi", "from": "Ada"}),
            "{engine:?}"
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
            HandlerError::Unauthorized,
            "{engine:?}"
        );
        // A name that would end the string literal is only a value.
        assert_eq!(
            h.on_subscribe("chat", subscribe("u1' OR '1'='1"))
                .await
                .unwrap_err(),
            HandlerError::Unauthorized,
            "{engine:?}"
        );
    }
}

/// AWS's MySQL example shape: insert, then read the row back by `LAST_INSERT_ID()` on the same
/// connection; and the other builders.
#[tokio::test]
async fn mariadb_insert_then_select_and_the_builders() {
    let db = TestDb::new(
        Engine::MariaDb,
        "CREATE TABLE persons (id int AUTO_INCREMENT PRIMARY KEY, name varchar(50), \
         age int, `weird``col` varchar(10), score decimal(6,2), born date, seen datetime(3), \
         ok boolean, data json, raw varbinary(8), big bigint unsigned)",
    )
    .await;
    let code = block("sql-mysql").to_owned()
        + r#"
export const steps = {
  update: (p) => update({ table: 'persons', values: { age: 41, 'weird`col': 'x', big: 4294967296 }, where: { name: { eq: p.name } } }),
  select: (p) => select({ table: 'persons', where: { or: [{ name: { beginsWith: 'Ad' } }, { age: { between: [100, 200] } }] },
                          orderBy: [{ column: 'id', dir: 'DESC' }], limit: 5, offset: 0 }),
  remove: (p) => remove({ table: 'persons', where: { name: { eq: p.name } } }),
  typed: () => sql`SELECT CAST('12.50' AS DECIMAL(6,2)) AS d, DATE('2024-02-29') AS dt,
                   TIMESTAMP('2024-02-29 10:11:12.345') AS ts, (SELECT big FROM persons WHERE name = 'Ada') AS big,
                   NULL AS nothing, JSON_OBJECT('a', 1) AS j, 1.5e0 AS f, X'00ff' AS raw`,
}
"#;
    let code = code.replace(
        "export const onPublish = {",
        "export const onPublishDoc = {",
    ) + r#"
import { select, update, remove } from '@aws-appsync/utils/rds'
export const onPublish = {
  request(ctx) {
    const p = ctx.events[0].payload
    if (p.step === 'doc') return onPublishDoc.request(ctx)
    return createMySQLStatement(steps[p.step](p))
  },
  response(ctx) {
    if (ctx.events[0].payload.step === 'doc') return onPublishDoc.response(ctx)
    return [{ id: ctx.events[0].id, payload: { rows: ctx.error ? null : toJsonObject(ctx.result), error: ctx.error,
      raw: ctx.error ? null : JSON.parse(ctx.result).sqlStatementResults.map((s) => s.numberOfRecordsUpdated) } }]
  },
}
"#;
    let h = handlers(&db, &code);
    let first = run(&h, json!({"step": "doc", "name": "Ada", "age": 36})).await;
    assert_eq!(first["id"], 1);
    assert_eq!(first["name"], "Ada");
    let second = run(&h, json!({"step": "doc", "name": "Bob", "age": 7})).await;
    assert_eq!(second["id"], 2);
    let updated = run(&h, json!({"step": "update", "name": "Ada"})).await;
    assert_eq!(updated["raw"], json!([1]), "{updated}");
    let selected = run(&h, json!({"step": "select"})).await;
    assert_eq!(selected["rows"][0][0]["age"], 41);
    assert_eq!(selected["rows"][0][0]["weird`col"], "x");
    assert_eq!(selected["rows"][0].as_array().unwrap().len(), 1);
    let typed = run(&h, json!({"step": "typed"})).await;
    assert_eq!(
        typed["rows"][0][0],
        json!({"d": "12.50", "dt": "2024-02-29", "ts": "2024-02-29 10:11:12.345",
               "big": 4294967296u64, "nothing": null, "j": "{\"a\": 1}", "f": 1.5,
               "raw": "AP8="}),
        "{typed}"
    );
    let removed = run(&h, json!({"step": "remove", "name": "Bob"})).await;
    assert_eq!(removed["raw"], json!([1]));
    assert_eq!(db.texts("SELECT name FROM persons").await, vec!["Ada"]);
}

/// Every common PostgreSQL type comes back in the Data API's form, values bound with the type
/// hints AppSync defines, and the remaining builders.
#[tokio::test]
async fn postgres_types_hints_and_builders() {
    let db = TestDb::new(
        Engine::Postgres,
        "CREATE TYPE mood AS ENUM ('ok', 'sad'); \
         CREATE TABLE things (id uuid PRIMARY KEY, n int, big bigint, price numeric(10,3), \
         f float8, ok boolean, at timestamp, at_tz timestamptz, day date, t time, doc jsonb, \
         raw bytea, label varchar(20), m mood, \"odd\"\"name\" text)",
    )
    .await;
    let code = r#"
import { util } from '@aws-appsync/utils'
import { sql, insert, select, update, remove, createPgStatement, toJsonObject, typeHint } from '@aws-appsync/utils/rds'

const steps = {
  insert: (p) => insert({ table: 'things', returning: '*', values: {
    id: typeHint.UUID(p.id), n: 7, big: 9007199254740991, price: typeHint.DECIMAL('1234.5'), f: 0.25, ok: true,
    at: typeHint.TIMESTAMP('2024-05-01 12:30:00.5'),
    day: typeHint.DATE('2024-05-01'), t: typeHint.TIME('23:59:58'), doc: typeHint.JSON({ a: [1, 'x'] }),
    label: null, 'odd"name': 'q' } }),
  select: (p) => select({ table: 'things', columns: ['id', 'n', 'label'], where: { id: { eq: typeHint.UUID(p.id) }, label: { attributeExists: false } } }),
  update: (p) => update({ table: 'things', values: { label: 'new', n: 8 }, where: { n: { in: [7, 70] } }, returning: ['n', 'label'] }),
  custom: (p) => sql`SELECT ${p.id}::uuid AS id, 'sad'::mood AS m, decode('00ff', 'hex') AS raw, -0.001::numeric AS small,
                     100000::numeric AS round, ARRAY[1] IS NOT NULL AS yes,
                     '2024-05-01 12:30:00+02'::timestamptz AS tz, ${p.missing} IS NULL AS no_value`,
  remove: (p) => remove({ table: 'things', where: { id: { eq: typeHint.UUID(p.id) } }, returning: '*' }),
  two: (p) => [sql`UPDATE things SET n = n + 1`, sql`SELECT n FROM things WHERE id = ${typeHint.UUID(p.id)}`],
  bad: () => sql`SELECT * FROM nowhere`,
  interval: () => sql`SELECT interval '1 day' AS i`,
}

export const onPublish = {
  request(ctx) {
    const p = ctx.events[0].payload
    const s = steps[p.step](p)
    return Array.isArray(s) ? createPgStatement(...s) : createPgStatement(s)
  },
  response(ctx) {
    return [{ id: ctx.events[0].id, payload: { rows: ctx.error ? null : toJsonObject(ctx.result), error: ctx.error } }]
  },
}
"#;
    let h = handlers(&db, code);
    let id = "0e37df36-f698-11e6-8dd4-cb9ced3df976";
    let inserted = run(&h, json!({"step": "insert", "id": id})).await;
    assert_eq!(
        inserted["rows"][0][0],
        json!({"id": id, "n": 7, "big": 9007199254740991i64, "price": "1234.500", "f": 0.25,
               "ok": true, "at": "2024-05-01 12:30:00.5", "at_tz": null,
               "day": "2024-05-01", "t": "23:59:58", "doc": "{\"a\":[1,\"x\"]}", "raw": null,
               "label": null, "m": null, "odd\"name": "q"}),
        "{inserted}"
    );
    let selected = run(&h, json!({"step": "select", "id": id})).await;
    assert_eq!(
        selected["rows"],
        json!([[{"id": id, "n": 7, "label": null}]])
    );
    let updated = run(&h, json!({"step": "update"})).await;
    assert_eq!(updated["rows"], json!([[{"n": 8, "label": "new"}]]));
    let custom = run(&h, json!({"step": "custom", "id": id})).await;
    assert_eq!(
        custom["rows"][0][0],
        json!({"id": id, "m": "sad", "raw": "AP8=", "small": "-0.001", "round": "100000",
               "yes": true, "no_value": true, "tz": "2024-05-01 10:30:00"}),
        "{custom}"
    );
    let two = run(&h, json!({"step": "two", "id": id})).await;
    assert_eq!(two["rows"], json!([[], [{"n": 9}]]));
    let bad = run(&h, json!({"step": "bad"})).await;
    assert_eq!(bad["error"]["type"], "RDS:BadRequestException");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"nowhere\" does not exist"),
        "{bad}"
    );
    let interval = run(&h, json!({"step": "interval"})).await;
    assert!(
        interval["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cast it to text"),
        "{interval}"
    );
    let removed = run(&h, json!({"step": "remove", "id": id})).await;
    assert_eq!(removed["rows"][0][0]["n"], 9);
    assert!(db.texts("SELECT id::text FROM things").await.is_empty());
}

/// A slow statement ends at the data source's `timeout_ms`; an unreachable database fails
/// without naming its credentials; neither holds the pool afterwards.
#[tokio::test]
async fn timeouts_and_unreachable_databases_are_errors_not_hangs() {
    let db = TestDb::new(Engine::Postgres, "CREATE TABLE t (n int)").await;
    let code = r#"
import { sql, createPgStatement, toJsonObject } from '@aws-appsync/utils/rds'
export const onPublish = {
  request: (ctx) => createPgStatement(ctx.events[0].payload.slow ? sql`SELECT 1 AS s FROM pg_sleep(5)` : sql`SELECT 1 AS one`),
  response: (ctx) => [{ id: ctx.events[0].id, payload: { rows: ctx.error ? null : toJsonObject(ctx.result), error: ctx.error } }],
}
"#;
    let h = handlers_with(source(&db.url, 300), code);
    let started = std::time::Instant::now();
    let slow = run(&h, json!({"slow": true})).await;
    assert_eq!(slow["error"]["type"], "TimeoutError", "{slow}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The pool (4 connections) still serves after more timeouts than it has connections.
    for _ in 0..5 {
        run(&h, json!({"slow": true})).await;
    }
    let fast = run(&h, json!({"slow": false})).await;
    assert_eq!(fast["rows"], json!([[{"one": 1}]]), "{fast}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let h = handlers_with(
        source(
            &format!("postgres://herald:s3cret-password@127.0.0.1:{port}/x"),
            2_000,
        ),
        code,
    );
    let down = run(&h, json!({"slow": false})).await;
    let text = down.to_string();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(
        ["RDS:ServiceUnavailableError", "TimeoutError"]
            .contains(&down["error"]["type"].as_str().unwrap()),
        "{text}"
    );
}

#[test]
fn a_bad_database_url_fails_loading() {
    let engine = EngineConfig::default();
    for url in ["redis://127.0.0.1", "postgres://127.0.0.1:notaport/db", ""] {
        let err = Handlers::with_data_sources(
            &engine,
            &[source(url, 1_000)],
            std::iter::empty::<(&str, HandlerConfig)>(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("database_url"), "{url}: {err}");
    }
}
