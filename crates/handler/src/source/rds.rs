//! `RELATIONAL_DATABASE`: AppSync's SQL request object (`{statements, variableMap,
//! variableTypeHintMap}`, built by `@aws-appsync/utils/rds`) run directly against PostgreSQL or
//! MySQL/MariaDB through a connection pool. AppSync sends it to Aurora's RDS Data API; a
//! self-hosted user has a database instead, so Herald speaks the database's own protocol and
//! answers with the Data API's `ExecuteStatement` result shape, which `toJsonObject` reads.
//!
//! Values are always bound parameters: `:name` in a statement becomes `$n` (PostgreSQL) or `?`
//! (MySQL), never text. Both statements of a request run in order on one connection, so
//! MySQL's `LAST_INSERT_ID()` in the second sees the first.

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use futures_util::TryStreamExt as _;
use serde_json::{Map, Value, json};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgTypeKind};
use sqlx::{Column as _, Either, Executor as _, Row as _, TypeInfo as _, ValueRef as _};

use super::{CallError, DataSource, MAX_RESPONSE_BYTES};

/// AppSync takes at most two statements per request.
const MAX_STATEMENTS: usize = 2;

/// A database, its pool made on first use (a pool starts tasks, so it needs the runtime that
/// loading the config may not run on).
pub(crate) struct Database {
    connect: Connect,
    pool_size: u32,
    timeout: Duration,
    pool: OnceLock<Pool>,
}

enum Connect {
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
}

enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dialect {
    Postgres,
    MySql,
}

impl Database {
    /// Checks the URL now; connects on the first call.
    pub(crate) fn new(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, String> {
        let scheme = url.split("://").next().unwrap_or_default();
        // sqlx's parse errors name the part that is wrong, never the password.
        let connect = match scheme {
            "postgres" | "postgresql" => Connect::Postgres(
                PgConnectOptions::from_str(url)
                    .map_err(|e| format!("database_url is not a usable PostgreSQL URL: {e}"))?,
            ),
            "mysql" | "mariadb" => Connect::MySql(
                MySqlConnectOptions::from_str(&url.replacen("mariadb://", "mysql://", 1))
                    .map_err(|e| format!("database_url is not a usable MySQL URL: {e}"))?,
            ),
            _ => {
                return Err(
                    "database_url must start with postgres:// or mysql:// (mariadb:// too)".into(),
                );
            }
        };
        Ok(Self {
            connect,
            pool_size: pool_size.max(1),
            timeout,
            pool: OnceLock::new(),
        })
    }

    fn pool(&self) -> &Pool {
        self.pool.get_or_init(|| match &self.connect {
            Connect::Postgres(options) => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(self.pool_size)
                    .acquire_timeout(self.timeout)
                    // The server abandons a statement Herald has given up on.
                    .connect_lazy_with(
                        options
                            .clone()
                            .options([("statement_timeout", self.timeout.as_millis().to_string())]),
                    ),
            ),
            Connect::MySql(options) => Pool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(self.pool_size)
                    .acquire_timeout(self.timeout)
                    .connect_lazy_with(options.clone()),
            ),
        })
    }
}

/// A parameter's value, from `variableMap`.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Param {
    fn from_json(v: &Value) -> Self {
        match v {
            Value::Null => Param::Null,
            Value::Bool(b) => Param::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Param::Int(i),
                None => Param::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Param::Text(s.clone()),
            // Objects and arrays travel as their JSON text (cast with `typeHint.JSON`).
            other => Param::Text(other.to_string()),
        }
    }
}

/// The SQL type a `typeHint` names, for PostgreSQL's cast. MySQL converts text itself.
fn pg_cast(hint: &str) -> Option<&'static str> {
    Some(match hint {
        "DECIMAL" => "numeric",
        "JSON" => "jsonb",
        "TIMESTAMP" => "timestamp",
        "DATE" => "date",
        "TIME" => "time",
        "UUID" => "uuid",
        _ => return None,
    })
}

struct Request {
    statements: Vec<String>,
    variables: Map<String, Value>,
    hints: Map<String, Value>,
}

fn parse(request: Value) -> Result<Request, CallError> {
    let Value::Object(mut request) = request else {
        return Err(CallError::Invalid(
            "a RELATIONAL_DATABASE request is an object {statements, variableMap}: build it with \
             createPgStatement or createMySQLStatement"
                .into(),
        ));
    };
    let statements = match request.remove("statements") {
        Some(Value::Array(list)) => list
            .into_iter()
            .map(|s| match s {
                Value::String(s) => Ok(s),
                _ => Err(CallError::Invalid("every statement is a string".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(CallError::Invalid(
                "the request has no `statements` array".into(),
            ));
        }
    };
    if statements.is_empty() || statements.len() > MAX_STATEMENTS {
        return Err(CallError::Invalid(format!(
            "a request runs 1 to {MAX_STATEMENTS} statements, not {}",
            statements.len()
        )));
    }
    let object = |value: Option<Value>, key: &str| match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(CallError::Invalid(format!("`{key}` must be an object"))),
    };
    Ok(Request {
        statements,
        variables: object(request.remove("variableMap"), "variableMap")?,
        hints: object(request.remove("variableTypeHintMap"), "variableTypeHintMap")?,
    })
}

/// Rewrites `:name` parameters into the dialect's placeholders and lists the values to bind,
/// in order. Quoted strings, quoted identifiers, comments and PostgreSQL's `::` casts are left
/// alone. A `null` becomes the literal `NULL` on PostgreSQL (a typed null would not fit every
/// column); everything else is bound.
fn rewrite(
    statement: &str,
    dialect: Dialect,
    variables: &Map<String, Value>,
    hints: &Map<String, Value>,
) -> Result<(String, Vec<Param>), CallError> {
    let mut out = String::with_capacity(statement.len() + 16);
    let mut params: Vec<Param> = Vec::new();
    // PostgreSQL numbers parameters, so a name used twice binds once.
    let mut numbered: Vec<(String, usize)> = Vec::new();
    let mut chars = statement.char_indices().peekable();
    let bytes = statement.as_bytes();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                out.push(c);
                // To the closing quote; a doubled quote stays inside.
                while let Some((_, d)) = chars.next() {
                    out.push(d);
                    if d == c {
                        if chars.peek().is_some_and(|&(_, e)| e == c) {
                            if let Some((_, e)) = chars.next() {
                                out.push(e);
                            }
                        } else {
                            break;
                        }
                    } else if d == '\\'
                        && dialect == Dialect::MySql
                        && let Some((_, e)) = chars.next()
                    {
                        out.push(e);
                    }
                }
            }
            '-' if bytes.get(i + 1) == Some(&b'-') => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if bytes.get(i + 1) == Some(&b'*') => {
                out.push(c);
                let mut last = ' ';
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
            }
            ':' if chars.peek().is_some_and(|&(_, d)| d == ':') => {
                out.push_str("::");
                chars.next();
            }
            ':' if chars
                .peek()
                .is_some_and(|&(_, d)| d.is_ascii_alphabetic() || d == '_') =>
            {
                let mut name = String::from(":");
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        name.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let value = variables.get(&name).ok_or_else(|| {
                    CallError::Invalid(format!(
                        "the statement uses {name}, which variableMap does not define"
                    ))
                })?;
                let param = Param::from_json(value);
                let hint = hints.get(&name).and_then(Value::as_str);
                match dialect {
                    Dialect::MySql => {
                        out.push('?');
                        params.push(param);
                    }
                    Dialect::Postgres => {
                        if param == Param::Null {
                            out.push_str("NULL");
                        } else if let Some(&(_, n)) = numbered.iter().find(|(k, _)| *k == name) {
                            let _ = write!(out, "${n}");
                        } else {
                            params.push(param);
                            let n = params.len();
                            numbered.push((name, n));
                            let _ = write!(out, "${n}");
                        }
                        if let Some(cast) = hint.and_then(pg_cast) {
                            let _ = write!(out, "::{cast}");
                        }
                    }
                }
            }
            _ => out.push(c),
        }
    }
    Ok((out, params))
}

/// Binds the parameters of one statement, whichever the database.
macro_rules! bound {
    ($text:expr, $params:expr) => {{
        // The text is the operator's handler code; client values are only parameters.
        let mut query = sqlx::query(sqlx::AssertSqlSafe($text));
        for param in $params {
            query = match param {
                Param::Null => query.bind(None::<String>),
                Param::Bool(b) => query.bind(b),
                Param::Int(i) => query.bind(i),
                Param::Float(f) => query.bind(f),
                Param::Text(s) => query.bind(s),
            };
        }
        query
    }};
}

/// Runs a request within the data source's time limit; `ctx.result` is the Data API's answer
/// as JSON text, as AppSync gives it. A statement still running at the limit has its
/// connection closed rather than returned to the pool, where it would stay busy until the
/// database finished.
pub(crate) async fn call(
    source: &DataSource,
    database: &Database,
    request: Value,
) -> Result<Value, CallError> {
    let request = parse(request)?;
    let deadline = tokio::time::Instant::now() + database.timeout;
    let timed_out = || source.timed_out();
    let mut budget = Budget(MAX_RESPONSE_BYTES);
    let mut results = Vec::with_capacity(request.statements.len());
    // The same steps for both databases; only the types differ, so a macro rather than generics
    // over sqlx's executor traits.
    macro_rules! run {
        ($pool:expr, $dialect:expr, $field:expr) => {{
            let mut conn = tokio::time::timeout_at(deadline, $pool.acquire())
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| failed(source, &e))?;
            let run = async {
                for statement in &request.statements {
                    let (text, params) =
                        rewrite(statement, $dialect, &request.variables, &request.hints)?;
                    let mut out = Statement::default();
                    let mut stream = conn.fetch_many(bound!(text, params));
                    while let Some(step) =
                        stream.try_next().await.map_err(|e| failed(source, &e))?
                    {
                        match step {
                            Either::Left(done) => out.affected += done.rows_affected(),
                            Either::Right(row) => out.push(&row, $field, &mut budget, source)?,
                        }
                    }
                    results.push(out.finish(statement));
                }
                Ok::<(), CallError>(())
            };
            match tokio::time::timeout_at(deadline, run).await {
                Ok(done) => done?,
                Err(_) => {
                    conn.close_on_drop();
                    return Err(timed_out());
                }
            }
        }};
    }
    match database.pool() {
        Pool::Postgres(pool) => run!(pool, Dialect::Postgres, pg_field),
        Pool::MySql(pool) => run!(pool, Dialect::MySql, mysql_field),
    }
    Ok(Value::String(
        json!({ "sqlStatementResults": results }).to_string(),
    ))
}

/// A database error as `ctx.error`: the database's message (it names no credentials), typed as
/// the Data API types it. Connection failures say only that the database was not reached.
fn failed(source: &DataSource, error: &sqlx::Error) -> CallError {
    match error {
        sqlx::Error::Database(db) => CallError::failed(
            "RDS:BadRequestException",
            match db.code() {
                Some(code) => format!("{} (SQLSTATE {code})", db.message()),
                None => db.message().to_owned(),
            },
        ),
        sqlx::Error::PoolTimedOut => CallError::failed(
            "TimeoutError",
            format!(
                "data source {}: no database connection within the time limit: the database is \
                 unreachable, or all pool_size connections are busy",
                source.name
            ),
        ),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => CallError::failed(
            "RDS:BadRequestException",
            format!(
                "data source {}: a column could not be read: {error}",
                source.name
            ),
        ),
        _ => CallError::failed(
            "RDS:ServiceUnavailableError",
            format!(
                "data source {}: the database could not be reached",
                source.name
            ),
        ),
    }
}

/// What is left of the answer size limit.
struct Budget(usize);

impl Budget {
    fn take(&mut self, field: &Value, source: &DataSource) -> Result<(), CallError> {
        let size = match field {
            Value::Object(map) => map.values().map(approx_size).sum::<usize>() + 16,
            other => approx_size(other),
        };
        self.0 = self.0.checked_sub(size).ok_or_else(|| {
            CallError::failed(
                "ResponseTooLarge",
                format!(
                    "data source {} answered more than {MAX_RESPONSE_BYTES} bytes; select fewer rows or columns",
                    source.name
                ),
            )
        })?;
        Ok(())
    }
}

fn approx_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        _ => 8,
    }
}

/// One statement's result in the Data API's shape.
#[derive(Default)]
struct Statement {
    affected: u64,
    records: Vec<Value>,
    columns: Vec<Value>,
}

impl Statement {
    /// Adds one row, each field read by `field` (the database's own conversion).
    fn push<R: sqlx::Row>(
        &mut self,
        row: &R,
        field: fn(&R, usize) -> Result<Value, String>,
        budget: &mut Budget,
        source: &DataSource,
    ) -> Result<(), CallError> {
        if self.columns.is_empty() {
            self.columns = row
                .columns()
                .iter()
                .map(|c| {
                    json!({ "name": c.name(), "label": c.name(),
                            "typeName": c.type_info().name().to_ascii_lowercase() })
                })
                .collect();
        }
        let mut record = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let value = field(row, i).map_err(|e| unreadable(source, column.name(), &e))?;
            budget.take(&value, source)?;
            record.push(value);
        }
        self.records.push(Value::Array(record));
        Ok(())
    }

    fn finish(self, statement: &str) -> Value {
        // The Data API counts changed rows, not selected ones.
        let select = statement
            .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
            .get(..6)
            .is_some_and(|w| w.eq_ignore_ascii_case("select"));
        json!({
            "numberOfRecordsUpdated": if select { 0 } else { self.affected },
            "records": self.records,
            "columnMetadata": self.columns,
        })
    }
}

fn unreadable(source: &DataSource, column: &str, error: &str) -> CallError {
    CallError::failed(
        "RDS:BadRequestException",
        format!(
            "data source {}: column {column:?}: {error}; cast it to text in the statement",
            source.name
        ),
    )
}

fn string(s: impl Into<String>) -> Value {
    json!({ "stringValue": s.into() })
}

fn null() -> Value {
    json!({ "isNull": true })
}

fn blob(bytes: &[u8]) -> Value {
    json!({ "blobValue": base64::engine::general_purpose::STANDARD.encode(bytes) })
}

fn pg_field(row: &PgRow, i: usize) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(null());
    }
    let type_info = raw.type_info().into_owned();
    let get_err = |e: sqlx::Error| e.to_string();
    Ok(match type_info.name() {
        "BOOL" => json!({ "booleanValue": row.try_get::<bool, _>(i).map_err(get_err)? }),
        "INT2" => json!({ "longValue": row.try_get::<i16, _>(i).map_err(get_err)? }),
        "INT4" => json!({ "longValue": row.try_get::<i32, _>(i).map_err(get_err)? }),
        "INT8" => json!({ "longValue": row.try_get::<i64, _>(i).map_err(get_err)? }),
        "FLOAT4" => json!({ "doubleValue": row.try_get::<f32, _>(i).map_err(get_err)? }),
        "FLOAT8" => json!({ "doubleValue": row.try_get::<f64, _>(i).map_err(get_err)? }),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => {
            string(row.try_get::<String, _>(i).map_err(get_err)?)
        }
        "JSON" | "JSONB" => string(row.try_get::<Value, _>(i).map_err(get_err)?.to_string()),
        "BYTEA" => blob(&row.try_get::<Vec<u8>, _>(i).map_err(get_err)?),
        "UUID" => {
            let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
            string(uuid_text(bytes).ok_or("a UUID is not 16 bytes")?)
        }
        "NUMERIC" => {
            let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
            string(numeric_text(bytes).ok_or("a NUMERIC value is malformed")?)
        }
        "TIMESTAMP" => string(datetime_text(
            row.try_get::<time::PrimitiveDateTime, _>(i)
                .map_err(get_err)?,
        )),
        "TIMESTAMPTZ" => {
            let t = row
                .try_get::<time::OffsetDateTime, _>(i)
                .map_err(get_err)?
                .to_offset(time::UtcOffset::UTC);
            string(datetime_text(time::PrimitiveDateTime::new(
                t.date(),
                t.time(),
            )))
        }
        "DATE" => string(date_text(row.try_get::<time::Date, _>(i).map_err(get_err)?)),
        "TIME" => string(time_text(row.try_get::<time::Time, _>(i).map_err(get_err)?)),
        name => {
            // A user-defined enum arrives as its label.
            if matches!(type_info.kind(), PgTypeKind::Enum(_)) {
                let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
                string(String::from_utf8_lossy(bytes))
            } else {
                return Err(format!("type {name} is not converted"));
            }
        }
    })
}

fn mysql_field(row: &MySqlRow, i: usize) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(null());
    }
    let name = raw.type_info().name().to_owned();
    let get_err = |e: sqlx::Error| e.to_string();
    Ok(match name.as_str() {
        "NULL" => null(),
        "BOOLEAN" => {
            json!({ "booleanValue": row.try_get_unchecked::<i64, _>(i).map_err(get_err)? != 0 })
        }
        "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "YEAR" => {
            json!({ "longValue": row.try_get_unchecked::<i64, _>(i).map_err(get_err)? })
        }
        n if n.ends_with(" UNSIGNED") => {
            json!({ "longValue": row.try_get_unchecked::<u64, _>(i).map_err(get_err)? })
        }
        "FLOAT" | "DOUBLE" => {
            json!({ "doubleValue": row.try_get_unchecked::<f64, _>(i).map_err(get_err)? })
        }
        // DECIMAL is text even in the binary protocol; ENUM, SET and JSON are text too.
        "DECIMAL" | "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT"
        | "ENUM" | "SET" | "JSON" => {
            string(row.try_get_unchecked::<String, _>(i).map_err(get_err)?)
        }
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            blob(&row.try_get_unchecked::<Vec<u8>, _>(i).map_err(get_err)?)
        }
        "DATETIME" | "TIMESTAMP" => string(datetime_text(
            row.try_get_unchecked::<time::PrimitiveDateTime, _>(i)
                .map_err(get_err)?,
        )),
        "DATE" => string(date_text(
            row.try_get_unchecked::<time::Date, _>(i).map_err(get_err)?,
        )),
        "TIME" => string(time_text(
            row.try_get_unchecked::<time::Time, _>(i).map_err(get_err)?,
        )),
        other => return Err(format!("type {other} is not converted")),
    })
}

fn uuid_text(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    let mut s = String::with_capacity(36);
    for (k, byte) in b.iter().enumerate() {
        if matches!(k, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    Some(s)
}

/// PostgreSQL's binary NUMERIC (base-10000 digit groups) as decimal text.
fn numeric_text(b: &[u8]) -> Option<String> {
    let word =
        |at: usize| -> Option<i16> { Some(i16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?])) };
    let ndigits = i32::from(word(0)?);
    let weight = i32::from(word(2)?);
    let sign = word(4)? as u16;
    let dscale = usize::from(word(6)? as u16);
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits = (0..ndigits.max(0))
        .map(|k| word(8 + 2 * usize::try_from(k).ok()?))
        .collect::<Option<Vec<i16>>>()?;
    // The group at power `pos` of 10000.
    let group = |pos: i32| -> i16 {
        usize::try_from(weight - pos)
            .ok()
            .and_then(|idx| digits.get(idx).copied())
            .unwrap_or(0)
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for pos in (0..=weight).rev() {
            if pos == weight {
                let _ = write!(s, "{}", group(pos));
            } else {
                let _ = write!(s, "{:04}", group(pos));
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut pos = -1;
        while fraction.len() < dscale {
            let _ = write!(fraction, "{:04}", group(pos));
            pos -= 1;
        }
        fraction.truncate(dscale);
        s.push('.');
        s.push_str(&fraction);
    }
    Some(s)
}

fn date_text(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn time_text(t: time::Time) -> String {
    let mut s = format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    if t.nanosecond() != 0 {
        let fraction = format!("{:09}", t.nanosecond());
        s.push('.');
        s.push_str(fraction.trim_end_matches('0'));
    }
    s
}

/// The Data API's timestamp form: `2024-05-01 12:30:00[.123]`.
fn datetime_text(t: time::PrimitiveDateTime) -> String {
    format!("{} {}", date_text(t.date()), time_text(t.time()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn names_become_placeholders_and_quotes_stay() {
        let v = vars(json!({":P0": 1, ":P1": "x", ":P2": null}));
        let h = vars(json!({":P1": "UUID"}));
        let sql = "SELECT ':P0', \"a:P0\" FROM t WHERE a = :P0 AND b = :P1 AND c = :P2 \
                   AND d::text = :P0 -- :P9\n /* :P9 */";
        let (pg, params) = rewrite(sql, Dialect::Postgres, &v, &h).unwrap();
        assert_eq!(
            pg,
            "SELECT ':P0', \"a:P0\" FROM t WHERE a = $1 AND b = $2::uuid AND c = NULL \
             AND d::text = $1 -- :P9\n /* :P9 */"
        );
        assert_eq!(params, vec![Param::Int(1), Param::Text("x".into())]);
        let (my, params) = rewrite(sql, Dialect::MySql, &v, &h).unwrap();
        assert!(
            my.contains("a = ? AND b = ? AND c = ? AND d::text = ?"),
            "{my}"
        );
        assert_eq!(params.len(), 4);
    }

    #[test]
    fn an_undefined_name_is_refused() {
        let err = rewrite("SELECT :nope", Dialect::Postgres, &Map::new(), &Map::new());
        assert!(matches!(err, Err(CallError::Invalid(m)) if m.contains(":nope")));
    }

    #[test]
    fn mysql_backslash_escapes_stay_in_the_string() {
        let v = vars(json!({":a": 1}));
        let (my, _) = rewrite(r"SELECT 'it\'s :a', :a", Dialect::MySql, &v, &Map::new()).unwrap();
        assert_eq!(my, r"SELECT 'it\'s :a', ?");
    }

    #[test]
    fn numeric_is_read_as_decimal_text() {
        // 12345.6789: groups 1, 2345, 6789; weight 1; dscale 4.
        let mut b = Vec::new();
        for w in [3i16, 1, 0, 4, 1, 2345, 6789] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric_text(&b).as_deref(), Some("12345.6789"));
        // -0.05: one group 500 at weight -1, dscale 2.
        let mut b = Vec::new();
        for w in [1i16, -1, 0x4000, 2, 500] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric_text(&b).as_deref(), Some("-0.05"));
        // 10000 with no fraction: one group 1 at weight 1.
        let mut b = Vec::new();
        for w in [1i16, 1, 0, 0, 1] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric_text(&b).as_deref(), Some("10000"));
        assert_eq!(numeric_text(&[0, 1]), None);
    }

    #[test]
    fn uuid_is_hyphenated() {
        let b: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            uuid_text(&b).as_deref(),
            Some("00010203-0405-0607-0809-0a0b0c0d0e0f")
        );
    }
}
