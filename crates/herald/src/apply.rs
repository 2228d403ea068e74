//! `herald apply TEMPLATE.json`: deploys the Event API resources of a CloudFormation template —
//! what `cdk synth` writes for the CDK `EventApi` and `ChannelNamespace` constructs — to a
//! running Herald through its AppSync control plane, as CloudFormation would to AWS.
//!
//! First the whole template is read into a [`Plan`], and anything Herald cannot apply is
//! reported by resource and property before anything changes. Then the plan is applied,
//! idempotently: an API whose `Name` exists is updated, a namespace that exists is updated, a
//! key whose description matches is renewed; nothing the template does not name is deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value, json};

use herald_client::control::ControlPlane;

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// A CloudFormation template in JSON (`cdk synth` writes `cdk.out/STACK.template.json`;
    /// assets are read beside it).
    pub template: PathBuf,
    #[command(flatten)]
    pub admin: crate::manage::Admin,
}

/// What a template asks for.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub apis: Vec<ApiPlan>,
    /// Template parts that need no deploying here, with why (printed, never silently dropped).
    pub skipped: Vec<String>,
}

#[derive(Debug, PartialEq)]
pub struct ApiPlan {
    pub logical_id: String,
    /// `CreateApi`'s body: `name`, `eventConfig`, and `ownerContact`/`tags` when set.
    pub body: Value,
    pub namespaces: Vec<NamespacePlan>,
    pub keys: Vec<KeyPlan>,
}

#[derive(Debug, PartialEq)]
pub struct NamespacePlan {
    pub logical_id: String,
    pub name: String,
    /// `CreateChannelNamespace`'s body, `name` included.
    pub body: Value,
}

#[derive(Debug, PartialEq)]
pub struct KeyPlan {
    pub logical_id: String,
    /// What finds the key again on a re-apply: the `Description`, else the logical id.
    pub description: String,
    pub expires: Option<i64>,
}

/// Reads a template and the assets beside it into a plan, or every problem at once.
pub fn plan(template: &Value, dir: &Path) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    let mut plan = Plan::default();
    let Some(top) = template.as_object() else {
        return Err(vec!["the template is not a JSON object".into()]);
    };
    for (section, value) in top {
        match section.as_str() {
            "Resources" | "AWSTemplateFormatVersion" | "Description" | "Metadata" => {}
            // The CDK's check that the AWS account was bootstrapped: there is no account here.
            "Parameters" | "Rules" if cdk_bootstrap_only(section, value) => plan.skipped.push(
                format!("{section}: the CDK bootstrap check (no AWS account here)"),
            ),
            "Outputs" => plan
                .skipped
                .push("Outputs: not evaluated (the endpoints and keys are printed)".into()),
            other => problems.push(format!("{other}: not supported by herald apply")),
        }
    }
    let empty = Map::new();
    let resources = top
        .get("Resources")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let assets = Assets::read(dir);
    // APIs first: namespaces and keys name them.
    for (id, r) in resources {
        if r.get("Type").and_then(Value::as_str) == Some("AWS::AppSync::Api") {
            match api_plan(id, r) {
                Ok(p) => plan.apis.push(p),
                Err(mut e) => problems.append(&mut e),
            }
        }
    }
    for (id, r) in resources {
        let kind = r.get("Type").and_then(Value::as_str).unwrap_or_default();
        let result = match kind {
            "AWS::AppSync::Api" => continue,
            "AWS::CDK::Metadata" => {
                plan.skipped.push(format!("{id}: CDK metadata"));
                continue;
            }
            "AWS::AppSync::ChannelNamespace" => namespace_plan(id, r, &assets)
                .and_then(|(api, ns)| target(&mut plan, id, &api).map(|a| a.namespaces.push(ns))),
            "AWS::AppSync::ApiKey" => key_plan(id, r)
                .and_then(|(api, key)| target(&mut plan, id, &api).map(|a| a.keys.push(key))),
            other => Err(vec![format!(
                "{id}: type {other:?} is not an Event API resource (AWS::AppSync::Api, ChannelNamespace, ApiKey)"
            )]),
        };
        if let Err(mut e) = result {
            problems.append(&mut e);
        }
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

fn cdk_bootstrap_only(section: &str, value: &Value) -> bool {
    let Some(m) = value.as_object() else {
        return false;
    };
    match section {
        "Parameters" => m.keys().all(|k| k == "BootstrapVersion"),
        _ => m.keys().all(|k| k == "CheckBootstrapVersion"),
    }
}

fn target<'p>(plan: &'p mut Plan, id: &str, api: &str) -> Result<&'p mut ApiPlan, Vec<String>> {
    plan.apis
        .iter_mut()
        .find(|a| a.logical_id == api)
        .ok_or_else(|| {
            vec![format!(
                "{id}.ApiId: names {api:?}, which is no AWS::AppSync::Api of this template"
            )]
        })
}

/// The properties of a resource, each checked against what Herald applies.
fn properties<'r>(
    id: &str,
    r: &'r Value,
    known: &[&str],
) -> Result<&'r Map<String, Value>, Vec<String>> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let props = r
        .get("Properties")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
    let unknown: Vec<String> = props
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| format!("{id}.{k}: not supported by Herald"))
        .collect();
    if unknown.is_empty() {
        Ok(props)
    } else {
        Err(unknown)
    }
}

fn api_plan(id: &str, r: &Value) -> Result<ApiPlan, Vec<String>> {
    let p = properties(id, r, &["Name", "EventConfig", "OwnerContact", "Tags"])?;
    let mut problems = Vec::new();
    let name = literal_string(id, "Name", p.get("Name"), &mut problems);
    let event = p.get("EventConfig").cloned().unwrap_or(Value::Null);
    let event_keys = [
        "AuthProviders",
        "ConnectionAuthModes",
        "DefaultPublishAuthModes",
        "DefaultSubscribeAuthModes",
    ];
    match event.as_object() {
        Some(m) => problems.extend(
            m.keys()
                .filter(|k| !event_keys.contains(&k.as_str()))
                .map(|k| format!("{id}.EventConfig.{k}: not supported by Herald")),
        ),
        None => problems.push(format!("{id}.EventConfig: required")),
    }
    if let Some(v) = intrinsic_in(&event) {
        problems.push(format!("{id}.EventConfig: {v} cannot be resolved here"));
    }
    let mut body = json!({ "name": name, "eventConfig": camel(&event) });
    if let Some(owner) = p.get("OwnerContact") {
        body["ownerContact"] = json!(literal_string(
            id,
            "OwnerContact",
            Some(owner),
            &mut problems
        ));
    }
    if let Some(tags) = p.get("Tags") {
        body["tags"] = tag_map(id, tags, &mut problems);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ApiPlan {
        logical_id: id.to_owned(),
        body,
        namespaces: Vec::new(),
        keys: Vec::new(),
    })
}

fn namespace_plan(
    id: &str,
    r: &Value,
    assets: &Assets,
) -> Result<(String, NamespacePlan), Vec<String>> {
    let p = properties(
        id,
        r,
        &[
            "ApiId",
            "Name",
            "CodeHandlers",
            "CodeS3Location",
            "HandlerConfigs",
            "PublishAuthModes",
            "SubscribeAuthModes",
            "Tags",
        ],
    )?;
    let mut problems = Vec::new();
    let api = api_ref(id, p.get("ApiId"), &mut problems);
    let name = literal_string(id, "Name", p.get("Name"), &mut problems);
    let mut body = json!({ "name": name });
    for (from, to) in [
        ("HandlerConfigs", "handlerConfigs"),
        ("PublishAuthModes", "publishAuthModes"),
        ("SubscribeAuthModes", "subscribeAuthModes"),
    ] {
        if let Some(v) = p.get(from) {
            if intrinsic_in(v).is_some() {
                problems.push(format!(
                    "{id}.{from}: intrinsic functions cannot be resolved here"
                ));
            }
            body[to] = camel(v);
        }
    }
    if let Some(code) = p.get("CodeHandlers") {
        body["codeHandlers"] = json!(literal_string(
            id,
            "CodeHandlers",
            Some(code),
            &mut problems
        ));
    }
    if let Some(location) = p.get("CodeS3Location") {
        match assets.code(location) {
            Ok(code) => body["codeHandlers"] = json!(code),
            Err(e) => problems.push(format!("{id}.CodeS3Location: {e}")),
        }
    }
    if let Some(tags) = p.get("Tags") {
        body["tags"] = tag_map(id, tags, &mut problems);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((
        api,
        NamespacePlan {
            logical_id: id.to_owned(),
            name,
            body,
        },
    ))
}

fn key_plan(id: &str, r: &Value) -> Result<(String, KeyPlan), Vec<String>> {
    let p = properties(id, r, &["ApiId", "Description", "Expires"])?;
    let mut problems = Vec::new();
    let api = api_ref(id, p.get("ApiId"), &mut problems);
    let description = match p.get("Description") {
        Some(d) => literal_string(id, "Description", Some(d), &mut problems),
        None => id.to_owned(),
    };
    let expires = match p.get("Expires") {
        None => None,
        Some(v) => match v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(e) => Some(e),
            None => {
                problems.push(format!("{id}.Expires: must be epoch seconds"));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((
        api,
        KeyPlan {
            logical_id: id.to_owned(),
            description,
            expires,
        },
    ))
}

/// The logical id of the API an `ApiId` names: `Fn::GetAtt [Api, ApiId]` or `Ref Api`.
fn api_ref(id: &str, v: Option<&Value>, problems: &mut Vec<String>) -> String {
    let named = v.and_then(|v| {
        if let Some(att) = v.get("Fn::GetAtt") {
            let (logical, attr) = match att {
                Value::Array(a) => (a.first()?.as_str()?, a.get(1)?.as_str()?),
                Value::String(s) => s.split_once('.')?,
                _ => return None,
            };
            return (attr == "ApiId").then(|| logical.to_owned());
        }
        v.get("Ref").and_then(Value::as_str).map(str::to_owned)
    });
    named.unwrap_or_else(|| {
        problems.push(format!(
            "{id}.ApiId: must be {{\"Fn::GetAtt\": [API, \"ApiId\"]}} of an AWS::AppSync::Api in this template"
        ));
        String::new()
    })
}

fn literal_string(id: &str, key: &str, v: Option<&Value>, problems: &mut Vec<String>) -> String {
    match v.and_then(Value::as_str) {
        Some(s) => s.to_owned(),
        None => {
            problems.push(format!(
                "{id}.{key}: must be a string (intrinsic functions cannot be resolved here)"
            ));
            String::new()
        }
    }
}

/// CloudFormation's `[{Key, Value}]` as the API's `{key: value}`.
fn tag_map(id: &str, v: &Value, problems: &mut Vec<String>) -> Value {
    let mut out = Map::new();
    for t in v.as_array().into_iter().flatten() {
        match (
            t.get("Key").and_then(Value::as_str),
            t.get("Value").and_then(Value::as_str),
        ) {
            (Some(k), Some(v)) => {
                out.insert(k.to_owned(), json!(v));
            }
            _ => problems.push(format!("{id}.Tags: each tag needs a string Key and Value")),
        }
    }
    Value::Object(out)
}

/// The first intrinsic function (`Fn::…`, `Ref`) inside a value, if any.
fn intrinsic_in(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) => m
            .keys()
            .find(|k| k.starts_with("Fn::") || *k == "Ref")
            .cloned()
            .or_else(|| m.values().find_map(intrinsic_in)),
        Value::Array(a) => a.iter().find_map(intrinsic_in),
        _ => None,
    }
}

/// CloudFormation's property names (`AuthType`, `OpenIDConnectConfig`, `IatTTL`) as the API's
/// (`authType`, `openIDConnectConfig`, `iatTTL`): the first letter lowered.
fn camel(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let mut c = k.chars();
                    let key = match c.next() {
                        Some(f) => f.to_lowercase().chain(c).collect(),
                        None => String::new(),
                    };
                    (key, camel(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(camel).collect()),
        v => v.clone(),
    }
}

/// The file assets `cdk synth` wrote beside the template (`*.assets.json`): code a namespace
/// names by its S3 location.
struct Assets {
    dir: PathBuf,
    /// S3 object key → file, relative to the template's directory.
    by_key: BTreeMap<String, String>,
}

impl Assets {
    fn read(dir: &Path) -> Assets {
        let mut by_key = BTreeMap::new();
        let manifests = std::fs::read_dir(dir).into_iter().flatten().flatten();
        for entry in manifests {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".assets.json") {
                continue;
            }
            let Ok(text) = std::fs::read(entry.path()) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_slice::<Value>(&text) else {
                continue;
            };
            for file in manifest["files"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                let Some(path) = file["source"]["path"].as_str() else {
                    continue;
                };
                for dest in file["destinations"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.values())
                {
                    if let Some(key) = dest["objectKey"].as_str() {
                        by_key.insert(key.to_owned(), path.to_owned());
                    }
                }
            }
        }
        Assets {
            dir: dir.to_owned(),
            by_key,
        }
    }

    /// The code at `s3://bucket/KEY` (a string, or the CDK's `Fn::Sub` of one).
    fn code(&self, location: &Value) -> Result<String, String> {
        let text = location
            .as_str()
            .or_else(|| location.get("Fn::Sub").and_then(Value::as_str))
            .ok_or("must be an s3:// URL of an asset of this template")?;
        let key = text.rsplit('/').next().unwrap_or_default();
        let file = self.by_key.get(key).ok_or_else(|| {
            format!("{text}: no asset of this template (*.assets.json) has the key {key:?}")
        })?;
        let path = self.dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}

/// `herald apply`.
pub fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let text = std::fs::read(&args.template)
        .with_context(|| format!("cannot read {}", args.template.display()))?;
    let template: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a JSON template", args.template.display()))?;
    let dir = args.template.parent().unwrap_or(Path::new("."));
    let plan = plan(&template, dir).map_err(|problems| {
        anyhow!(
            "nothing was applied; {} cannot be:\n  {}",
            args.template.display(),
            problems.join("\n  ")
        )
    })?;
    for s in &plan.skipped {
        eprintln!("skipped {s}");
    }
    let control = args.admin.client()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deployed = runtime.block_on(deploy(&control, &plan))?;
    println!("{}", serde_json::to_string_pretty(&deployed)?);
    Ok(())
}

/// Applies a plan; returns each API's endpoints and keys.
async fn deploy(control: &ControlPlane, plan: &Plan) -> anyhow::Result<Value> {
    let mut existing = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/v2/apis?nextToken={t}"),
            None => "/v2/apis".to_owned(),
        };
        let page = control.call("GET", &path, None).await?;
        for api in page["apis"].as_array().into_iter().flatten() {
            if let (Some(name), Some(id)) = (api["name"].as_str(), api["apiId"].as_str()) {
                existing.insert(name.to_owned(), id.to_owned());
            }
        }
        token = page["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let base = control.endpoint().as_str().trim_end_matches('/').to_owned();
    let ws = base.replacen("http", "ws", 1);
    let mut out = Vec::new();
    for api in &plan.apis {
        let name = api.body["name"].as_str().unwrap_or_default();
        let api_id = match existing.get(name) {
            Some(id) => {
                let mut update = api.body.clone();
                if let Some(m) = update.as_object_mut() {
                    m.remove("tags");
                }
                control
                    .call("POST", &format!("/v2/apis/{id}"), Some(&update))
                    .await
                    .with_context(|| format!("{}: UpdateApi", api.logical_id))?;
                eprintln!("updated API {name} ({id})");
                id.clone()
            }
            None => {
                let made = control
                    .call("POST", "/v2/apis", Some(&api.body))
                    .await
                    .with_context(|| format!("{}: CreateApi", api.logical_id))?;
                let id = made["api"]["apiId"]
                    .as_str()
                    .ok_or_else(|| anyhow!("{}: CreateApi answered no apiId", api.logical_id))?
                    .to_owned();
                eprintln!("created API {name} ({id})");
                id
            }
        };
        for ns in &api.namespaces {
            let path = format!("/v2/apis/{api_id}/channelNamespaces/{}", ns.name);
            match control.call("GET", &path, None).await {
                Ok(_) => {
                    let mut update = ns.body.clone();
                    if let Some(m) = update.as_object_mut() {
                        m.remove("name");
                        m.remove("tags");
                    }
                    control
                        .call("POST", &path, Some(&update))
                        .await
                        .with_context(|| format!("{}: UpdateChannelNamespace", ns.logical_id))?;
                    eprintln!("updated namespace {}", ns.name);
                }
                Err(e) if e.error_type() == Some("NotFoundException") => {
                    let created = format!("/v2/apis/{api_id}/channelNamespaces");
                    control
                        .call("POST", &created, Some(&ns.body))
                        .await
                        .with_context(|| format!("{}: CreateChannelNamespace", ns.logical_id))?;
                    eprintln!("created namespace {}", ns.name);
                }
                Err(e) => bail!("{}: GetChannelNamespace: {e}", ns.logical_id),
            }
        }
        let listed = control
            .call("GET", &format!("/v1/apis/{api_id}/apikeys"), None)
            .await?;
        let mut keys = Vec::new();
        for key in &api.keys {
            let found = listed["apiKeys"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|k| k["description"].as_str() == Some(key.description.as_str()))
                .and_then(|k| k["id"].as_str());
            let mut body = json!({ "description": key.description });
            if let Some(e) = key.expires {
                body["expires"] = json!(e);
            }
            let reply = match found {
                Some(id) => control
                    .call(
                        "POST",
                        &format!("/v1/apis/{api_id}/apikeys/{id}"),
                        Some(&body),
                    )
                    .await
                    .with_context(|| format!("{}: UpdateApiKey", key.logical_id))?,
                None => control
                    .call("POST", &format!("/v1/apis/{api_id}/apikeys"), Some(&body))
                    .await
                    .with_context(|| format!("{}: CreateApiKey", key.logical_id))?,
            };
            keys.push(json!({
                "logicalId": key.logical_id,
                "id": reply["apiKey"]["id"],
                "expires": reply["apiKey"]["expires"],
            }));
        }
        out.push(json!({
            "logicalId": api.logical_id,
            "apiId": api_id,
            "name": name,
            "http": format!("{base}/apis/{api_id}/event"),
            "realtime": format!("{ws}/apis/{api_id}/event/realtime"),
            "apiKeys": keys,
        }));
    }
    Ok(json!({ "apis": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Value {
        json!({
            "Resources": {
                "Api": {"Type": "AWS::AppSync::Api", "Properties": {
                    "Name": "a", "Tags": [{"Key": "team", "Value": "web"}],
                    "EventConfig": {"AuthProviders": [{"AuthType": "OPENID_CONNECT", "OpenIDConnectConfig": {"Issuer": "https://i", "IatTTL": 5}}],
                        "ConnectionAuthModes": [{"AuthType": "API_KEY"}], "DefaultPublishAuthModes": [{"AuthType": "API_KEY"}], "DefaultSubscribeAuthModes": [{"AuthType": "API_KEY"}]}}},
                "Key": {"Type": "AWS::AppSync::ApiKey", "Properties": {"ApiId": {"Fn::GetAtt": ["Api", "ApiId"]}, "Expires": 1_900_000_000}},
                "Ns": {"Type": "AWS::AppSync::ChannelNamespace", "Properties": {"ApiId": {"Fn::GetAtt": "Api.ApiId"}, "Name": "chat", "CodeHandlers": "x", "HandlerConfigs": {}}}
            },
            "Parameters": {"BootstrapVersion": {"Type": "String"}},
            "Rules": {"CheckBootstrapVersion": {}}
        })
    }

    #[test]
    fn a_template_becomes_requests_in_the_apis_terms() {
        let plan = plan(&template(), Path::new("/nonexistent")).unwrap();
        assert_eq!(plan.skipped.len(), 2);
        let api = &plan.apis[0];
        assert_eq!(api.body["tags"], json!({"team": "web"}));
        let provider = &api.body["eventConfig"]["authProviders"][0];
        assert_eq!(
            provider["openIDConnectConfig"],
            json!({"issuer": "https://i", "iatTTL": 5})
        );
        assert_eq!(
            api.keys,
            vec![KeyPlan {
                logical_id: "Key".into(),
                description: "Key".into(),
                expires: Some(1_900_000_000)
            }]
        );
        assert_eq!(
            api.namespaces[0].body,
            json!({"name": "chat", "codeHandlers": "x", "handlerConfigs": {}})
        );
    }

    #[test]
    fn what_cannot_be_applied_is_named_by_resource_and_property() {
        let mut t = template();
        t["Resources"]["Api"]["Properties"]["EventConfig"]["LogConfig"] = json!({});
        t["Resources"]["Ns"]["Properties"]["Unknown"] = json!(1);
        t["Resources"]["Fn"] = json!({"Type": "AWS::Lambda::Function"});
        t["Resources"]["Key"]["Properties"]["ApiId"] = json!("literal");
        t["Conditions"] = json!({});
        let problems = plan(&t, Path::new("/nonexistent")).unwrap_err().join("\n");
        for expected in [
            "Api.EventConfig.LogConfig",
            "Ns.Unknown",
            "Fn: type",
            "Key.ApiId",
            "Conditions",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} missing from:\n{problems}"
            );
        }
    }
}
