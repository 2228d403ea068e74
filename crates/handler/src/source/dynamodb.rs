//! `AMAZON_DYNAMODB`: AppSync's DynamoDB request objects (what `@aws-appsync/utils/dynamodb`
//! builds) translated to the DynamoDB JSON API (`X-Amz-Target: DynamoDB_20120810.<Op>`), and
//! the answers translated back to the plain JSON `ctx.result` AppSync gives.
//!
//! Values in request objects are already typed (`{S: "…"}`); results are plain. `nextToken` is
//! the base64 of the `LastEvaluatedKey` JSON (AppSync's is opaque too).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number, Value, json};

use super::sigv4::Signer;
use super::{CallError, DataSource, aws_error, json_body};

pub(super) async fn call(
    source: &DataSource,
    url: &reqwest::Url,
    table: Option<&str>,
    signer: &Signer,
    request: Value,
) -> Result<Value, CallError> {
    let Value::Object(req) = request else {
        return Err(CallError::Invalid(
            "a DynamoDB request must be an object".into(),
        ));
    };
    let operation = req
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let table = || {
        table.map(|t| Value::String(t.to_owned())).ok_or_else(|| {
            CallError::Invalid(format!(
                "{operation} needs the data source's `table`, which is not configured"
            ))
        })
    };
    let (target, body) = match operation.as_str() {
        "GetItem" => {
            let mut b = Map::new();
            b.insert("TableName".into(), table()?);
            b.insert("Key".into(), required(&req, "key")?);
            copy_bool(&req, "consistentRead", &mut b, "ConsistentRead");
            projection(&req, &mut b);
            ("GetItem", b)
        }
        "PutItem" => {
            let mut item = object(req.get("attributeValues"));
            for (k, v) in object(Some(&required(&req, "key")?)) {
                item.insert(k, v);
            }
            let mut b = Map::new();
            b.insert("TableName".into(), table()?);
            b.insert("Item".into(), Value::Object(item));
            expression(&req, "condition", "ConditionExpression", &mut b);
            ("PutItem", b)
        }
        "UpdateItem" => {
            let mut b = Map::new();
            b.insert("TableName".into(), table()?);
            b.insert("Key".into(), required(&req, "key")?);
            expression(&req, "update", "UpdateExpression", &mut b);
            expression(&req, "condition", "ConditionExpression", &mut b);
            b.insert("ReturnValues".into(), "ALL_NEW".into());
            ("UpdateItem", b)
        }
        "DeleteItem" => {
            let mut b = Map::new();
            b.insert("TableName".into(), table()?);
            b.insert("Key".into(), required(&req, "key")?);
            expression(&req, "condition", "ConditionExpression", &mut b);
            b.insert("ReturnValues".into(), "ALL_OLD".into());
            ("DeleteItem", b)
        }
        "Query" | "Scan" => {
            let mut b = Map::new();
            b.insert("TableName".into(), table()?);
            if operation == "Query" {
                expression(&req, "query", "KeyConditionExpression", &mut b);
            }
            expression(&req, "filter", "FilterExpression", &mut b);
            projection(&req, &mut b);
            if let Some(index) = req.get("index").filter(|v| v.is_string()) {
                b.insert("IndexName".into(), index.clone());
            }
            if let Some(limit) = req.get("limit").filter(|v| v.is_number()) {
                b.insert("Limit".into(), limit.clone());
            }
            if let Some(token) = req.get("nextToken").and_then(Value::as_str) {
                b.insert("ExclusiveStartKey".into(), decode_token(token)?);
            }
            copy_bool(&req, "consistentRead", &mut b, "ConsistentRead");
            copy_bool(&req, "scanIndexForward", &mut b, "ScanIndexForward");
            if let Some(select) = req.get("select").and_then(Value::as_str) {
                b.insert("Select".into(), select.into());
            }
            for (from, to) in [("segment", "Segment"), ("totalSegments", "TotalSegments")] {
                if let Some(v) = req.get(from).filter(|v| v.is_number()) {
                    b.insert(to.into(), v.clone());
                }
            }
            if operation == "Query" {
                ("Query", b)
            } else {
                ("Scan", b)
            }
        }
        "BatchGetItem" => {
            let mut items = Map::new();
            for (name, spec) in object(req.get("tables")) {
                let mut t = Map::new();
                t.insert(
                    "Keys".into(),
                    spec.get("keys").cloned().unwrap_or(json!([])),
                );
                copy_bool(
                    &object(Some(&spec)),
                    "consistentRead",
                    &mut t,
                    "ConsistentRead",
                );
                projection(&object(Some(&spec)), &mut t);
                items.insert(name, Value::Object(t));
            }
            let mut b = Map::new();
            b.insert("RequestItems".into(), Value::Object(items));
            ("BatchGetItem", b)
        }
        "BatchPutItem" | "BatchDeleteItem" => {
            let put = operation == "BatchPutItem";
            let mut items = Map::new();
            for (name, list) in object(req.get("tables")) {
                let writes: Vec<Value> = list
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|v| {
                        if put {
                            json!({"PutRequest": {"Item": v}})
                        } else {
                            json!({"DeleteRequest": {"Key": v}})
                        }
                    })
                    .collect();
                items.insert(name, Value::Array(writes));
            }
            let mut b = Map::new();
            b.insert("RequestItems".into(), Value::Object(items));
            ("BatchWriteItem", b)
        }
        "TransactGetItems" => {
            let mut list = Vec::new();
            for item in array(req.get("transactItems")) {
                let item = object(Some(item));
                let mut get = Map::new();
                get.insert("TableName".into(), required(&item, "table")?);
                get.insert("Key".into(), required(&item, "key")?);
                projection(&item, &mut get);
                list.push(json!({ "Get": get }));
            }
            let mut b = Map::new();
            b.insert("TransactItems".into(), Value::Array(list));
            ("TransactGetItems", b)
        }
        "TransactWriteItems" => {
            let mut list = Vec::new();
            for item in array(req.get("transactItems")) {
                let item = object(Some(item));
                let mut op = Map::new();
                op.insert("TableName".into(), required(&item, "table")?);
                let kind = item
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let key = required(&item, "key")?;
                let name = match kind {
                    "PutItem" => {
                        let mut full = object(item.get("attributeValues"));
                        for (k, v) in object(Some(&key)) {
                            full.insert(k, v);
                        }
                        op.insert("Item".into(), Value::Object(full));
                        "Put"
                    }
                    "UpdateItem" => {
                        op.insert("Key".into(), key);
                        expression(&item, "update", "UpdateExpression", &mut op);
                        "Update"
                    }
                    "DeleteItem" => {
                        op.insert("Key".into(), key);
                        "Delete"
                    }
                    "ConditionCheck" => {
                        op.insert("Key".into(), key);
                        "ConditionCheck"
                    }
                    other => {
                        return Err(CallError::Invalid(format!(
                            "unknown transactWrite operation {other:?}"
                        )));
                    }
                };
                expression(&item, "condition", "ConditionExpression", &mut op);
                list.push(json!({ name: op }));
            }
            let mut b = Map::new();
            b.insert("TransactItems".into(), Value::Array(list));
            ("TransactWriteItems", b)
        }
        other => {
            return Err(CallError::Invalid(format!(
                "unsupported DynamoDB operation {other:?}"
            )));
        }
    };
    let target = format!("DynamoDB_20120810.{target}");
    let body_value = Value::Object(body);
    let answer = source
        .post_aws(
            url,
            signer,
            "application/x-amz-json-1.0",
            &[("x-amz-target", &target)],
            body_value.to_string().into_bytes(),
        )
        .await?;
    if !(200..300).contains(&answer.status) {
        return Err(aws_error("DynamoDB", &answer));
    }
    let out = json_body("DynamoDB", &answer)?;
    Ok(result(&operation, &body_value, &req, out))
}

/// Shapes DynamoDB's answer as AppSync's `ctx.result`.
fn result(operation: &str, sent: &Value, req: &Map<String, Value>, out: Value) -> Value {
    match operation {
        "GetItem" => out.get("Item").map_or(Value::Null, plain),
        "PutItem" => sent.get("Item").map_or(Value::Null, plain),
        "UpdateItem" | "DeleteItem" => out.get("Attributes").map_or(Value::Null, plain),
        "Query" | "Scan" => {
            let items: Vec<Value> = array(out.get("Items")).iter().map(plain).collect();
            let next = out.get("LastEvaluatedKey").map_or(Value::Null, |k| {
                Value::String(STANDARD.encode(k.to_string()))
            });
            json!({
                "items": items,
                "nextToken": next,
                "scannedCount": out.get("ScannedCount").cloned().unwrap_or(Value::Null),
            })
        }
        "BatchGetItem" => {
            let mut data = Map::new();
            let mut unprocessed = Map::new();
            let responses = out.get("Responses");
            for (name, spec) in object(req.get("tables")) {
                let got = array(responses.and_then(|r| r.get(&name)));
                // AppSync orders the items as the keys were asked, null where missing.
                let ordered: Vec<Value> = array(spec.get("keys"))
                    .iter()
                    .map(|key| {
                        got.iter()
                            .find(|item| has_key(item, key))
                            .map_or(Value::Null, plain)
                    })
                    .collect();
                data.insert(name.clone(), Value::Array(ordered));
                let left = out
                    .get("UnprocessedKeys")
                    .and_then(|u| u.get(&name))
                    .map(|u| array(u.get("Keys")).iter().map(plain).collect())
                    .unwrap_or_default();
                unprocessed.insert(name, Value::Array(left));
            }
            json!({"data": data, "unprocessedKeys": unprocessed})
        }
        "BatchPutItem" | "BatchDeleteItem" => {
            let put = operation == "BatchPutItem";
            let (field, inner) = if put {
                ("PutRequest", "Item")
            } else {
                ("DeleteRequest", "Key")
            };
            let mut data = Map::new();
            let mut unprocessed = Map::new();
            for (name, list) in object(req.get("tables")) {
                let left: Vec<&Value> =
                    array(out.get("UnprocessedItems").and_then(|u| u.get(&name)))
                        .iter()
                        .filter_map(|w| w.get(field).and_then(|r| r.get(inner)))
                        .collect();
                let done: Vec<Value> = array(Some(&list))
                    .iter()
                    .map(|v| {
                        if left.contains(&v) {
                            Value::Null
                        } else {
                            plain(v)
                        }
                    })
                    .collect();
                data.insert(name.clone(), Value::Array(done));
                unprocessed.insert(name, Value::Array(left.into_iter().map(plain).collect()));
            }
            let key = if put {
                "unprocessedItems"
            } else {
                "unprocessedKeys"
            };
            json!({"data": data, key: unprocessed})
        }
        "TransactGetItems" => {
            let items: Vec<Value> = array(out.get("Responses"))
                .iter()
                .map(|r| r.get("Item").map_or(Value::Null, plain))
                .collect();
            json!({"items": items, "cancellationReasons": null})
        }
        "TransactWriteItems" => {
            let keys: Vec<Value> = array(req.get("transactItems"))
                .iter()
                .map(|i| i.get("key").map_or(Value::Null, plain))
                .collect();
            json!({"keys": keys, "cancellationReasons": null})
        }
        _ => out,
    }
}

fn has_key(item: &Value, key: &Value) -> bool {
    object(Some(key))
        .iter()
        .all(|(k, v)| item.get(k) == Some(v))
}

fn required(req: &Map<String, Value>, name: &str) -> Result<Value, CallError> {
    req.get(name)
        .filter(|v| !v.is_null())
        .cloned()
        .ok_or_else(|| CallError::Invalid(format!("the request needs `{name}`")))
}

fn object(v: Option<&Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    }
}

fn array(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn copy_bool(req: &Map<String, Value>, from: &str, out: &mut Map<String, Value>, to: &str) {
    if let Some(v) = req.get(from).filter(|v| v.is_boolean()) {
        out.insert(to.into(), v.clone());
    }
}

/// `{expression, expressionNames, expressionValues}` → `<to>` plus the shared name and value
/// maps (merged: a request may carry several expressions).
fn expression(req: &Map<String, Value>, from: &str, to: &str, out: &mut Map<String, Value>) {
    let Some(Value::Object(expr)) = req.get(from) else {
        return;
    };
    let Some(text) = expr.get("expression").and_then(Value::as_str) else {
        return;
    };
    out.insert(to.into(), text.into());
    merge(expr.get("expressionNames"), "ExpressionAttributeNames", out);
    merge(
        expr.get("expressionValues"),
        "ExpressionAttributeValues",
        out,
    );
}

fn projection(req: &Map<String, Value>, out: &mut Map<String, Value>) {
    expression(req, "projection", "ProjectionExpression", out);
}

fn merge(from: Option<&Value>, to: &str, out: &mut Map<String, Value>) {
    let Some(Value::Object(from)) = from else {
        return;
    };
    if from.is_empty() {
        return;
    }
    let entry = out
        .entry(to.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(map) = entry {
        for (k, v) in from {
            map.insert(k.clone(), v.clone());
        }
    }
}

fn decode_token(token: &str) -> Result<Value, CallError> {
    STANDARD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| CallError::Invalid("invalid nextToken".into()))
}

/// A typed DynamoDB value (or item: a map of them) as plain JSON.
pub(crate) fn plain(v: &Value) -> Value {
    let Value::Object(map) = v else {
        return v.clone();
    };
    if map.len() == 1
        && let Some((tag, inner)) = map.iter().next()
    {
        match (tag.as_str(), inner) {
            ("S", Value::String(_)) => return inner.clone(),
            ("N", Value::String(n)) => return number(n),
            ("BOOL", Value::Bool(_)) => return inner.clone(),
            ("NULL", _) => return Value::Null,
            ("B", Value::String(_)) => return inner.clone(),
            ("M", Value::Object(m)) => {
                return Value::Object(m.iter().map(|(k, v)| (k.clone(), plain(v))).collect());
            }
            ("L", Value::Array(l)) => return Value::Array(l.iter().map(plain).collect()),
            ("SS" | "BS", Value::Array(_)) => return inner.clone(),
            ("NS", Value::Array(l)) => {
                return Value::Array(
                    l.iter()
                        .map(|n| n.as_str().map_or(Value::Null, number))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    // An item: every attribute is typed.
    Value::Object(map.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
}

fn number(n: &str) -> Value {
    if let Ok(i) = n.parse::<i64>() {
        return Value::Number(i.into());
    }
    n.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map_or_else(|| Value::String(n.to_owned()), Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_items_become_plain() {
        let item = json!({"id": {"S": "a"}, "n": {"N": "1.5"}, "c": {"N": "3"},
            "tags": {"SS": ["x"]}, "m": {"M": {"ok": {"BOOL": true}, "z": {"NULL": true}}},
            "l": {"L": [{"S": "q"}]}});
        assert_eq!(
            plain(&item),
            json!({"id": "a", "n": 1.5, "c": 3, "tags": ["x"],
                "m": {"ok": true, "z": null}, "l": ["q"]})
        );
    }

    #[test]
    fn expressions_merge_names_and_values() {
        let req = json!({"update": {"expression": "SET #a = :a", "expressionNames": {"#a": "a"},
                "expressionValues": {":a": {"N": "1"}}},
            "condition": {"expression": "attribute_exists(#k)", "expressionNames": {"#k": "id"}}});
        let mut out = Map::new();
        let req = object(Some(&req));
        expression(&req, "update", "UpdateExpression", &mut out);
        expression(&req, "condition", "ConditionExpression", &mut out);
        assert_eq!(
            Value::Object(out),
            json!({"UpdateExpression": "SET #a = :a", "ConditionExpression": "attribute_exists(#k)",
                "ExpressionAttributeNames": {"#a": "a", "#k": "id"},
                "ExpressionAttributeValues": {":a": {"N": "1"}}})
        );
    }
}
