//! Declarative channel access rules: per namespace, the channels a caller may subscribe to and
//! publish on, written as patterns bound to the caller's identity
//! (`/users/{identity.sub}/*`, `/tenants/{claims.tenant_id}/*`, `/teams/{groups}/*`, `/public/*`).
//!
//! A rule is a channel pattern: literal segments, `{variable}` segments filled from the identity,
//! and an optional final `*` that matches every deeper channel (one or more segments, as in
//! AppSync subscriptions). A variable with several values (`groups`, an array claim) matches if
//! any value does. A value that is not a valid channel segment (empty, `/`, `*`, …) never
//! matches, so a claim cannot widen a rule.
//!
//! Wildcard subscriptions are checked, not trusted: `/ns/a/*` is allowed only if one rule covers
//! every channel it could ever match, i.e. a rule `<p>/*` whose prefix `p` is a prefix of `/ns/a`.
//! Since a segment can take infinitely many values, no set of narrower rules can cover it, so this
//! test is exact.

use herald_protocol::{Channel, Pattern};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use herald_auth::Identity;

/// The rules of one namespace (`[namespaces.rules]`). An absent list leaves that operation
/// unrestricted (authorization alone decides).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    #[serde(default)]
    pub subscribe: Option<Vec<String>>,
    #[serde(default)]
    pub publish: Option<Vec<String>>,
}

/// A rule segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(Var),
}

/// Identity fields a rule can bind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    /// JWT `sub`; the IAM principal; the API key's name; the authorizer's `handlerContext.sub`.
    Sub,
    /// JWT username; the IAM principal; the API key's name.
    Username,
    Issuer,
    /// JWT groups (`cognito:groups`): any one of them.
    Groups,
    /// A JWT claim by name (string, number, or an array: any element).
    Claim(String),
    /// A field of the Lambda authorizer's `handlerContext`.
    HandlerContext(String),
    /// The API key's configured name.
    KeyName,
    /// The SigV4 key's configured principal.
    Principal,
    /// The SigV4 access key id.
    AccessKeyId,
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    segments: Vec<Segment>,
    /// Ends in `*`: matches channels strictly below the segments.
    below: bool,
}

/// Rules of one namespace, parsed.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    subscribe: Option<Vec<Rule>>,
    publish: Option<Vec<Rule>>,
}

fn parse_var(name: &str) -> Result<Var, String> {
    Ok(match name {
        "identity.sub" | "sub" => Var::Sub,
        "identity.username" | "username" => Var::Username,
        "identity.issuer" => Var::Issuer,
        "identity.groups" | "groups" => Var::Groups,
        "key.name" | "identity.keyName" => Var::KeyName,
        "identity.principal" | "iam.principal" => Var::Principal,
        "identity.accessKeyId" | "iam.accessKeyId" => Var::AccessKeyId,
        _ => {
            if let Some(c) = name.strip_prefix("claims.").filter(|c| !c.is_empty()) {
                Var::Claim(c.to_owned())
            } else if let Some(c) = name
                .strip_prefix("handlerContext.")
                .or_else(|| name.strip_prefix("identity.handlerContext."))
                .filter(|c| !c.is_empty())
            {
                Var::HandlerContext(c.to_owned())
            } else {
                return Err(format!(
                    "unknown variable {{{name}}}: use identity.sub, identity.username, identity.issuer, groups, claims.<name>, handlerContext.<name>, key.name, identity.principal or identity.accessKeyId"
                ));
            }
        }
    })
}

impl Rule {
    /// Parses a rule for `namespace`; its first segment must be the namespace itself.
    pub fn parse(text: &str, namespace: &str) -> Result<Rule, String> {
        let trimmed = text.trim().trim_start_matches('/').trim_end_matches('/');
        let mut parts: Vec<&str> = trimmed.split('/').collect();
        let below = parts.last() == Some(&"*");
        if below {
            parts.pop();
        }
        if parts.first() != Some(&namespace) {
            return Err(format!(
                "rule {text:?} must start with its namespace: /{namespace}/…"
            ));
        }
        if parts.len() + usize::from(below) > herald_protocol::channel::MAX_SEGMENTS {
            return Err(format!(
                "rule {text:?} has more than {} segments",
                herald_protocol::channel::MAX_SEGMENTS
            ));
        }
        let mut segments = Vec::with_capacity(parts.len());
        for part in parts {
            if let Some(var) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                segments.push(Segment::Var(
                    parse_var(var).map_err(|e| format!("rule {text:?}: {e}"))?,
                ));
            } else if Channel::parse(part).is_ok_and(|c| c.depth() == 1) {
                segments.push(Segment::Literal(part.to_owned()));
            } else {
                return Err(format!(
                    "rule {text:?}: segment {part:?} is neither a channel segment, a {{variable}} nor a final *"
                ));
            }
        }
        Ok(Rule { segments, below })
    }

    /// Does this rule (bound to `identity`) allow the concrete channel?
    fn allows_channel(&self, identity: &Identity, channel: &Channel) -> bool {
        let segs: Vec<&str> = channel.segments().collect();
        let n = self.segments.len();
        let shape_ok = if self.below {
            segs.len() > n
        } else {
            segs.len() == n
        };
        shape_ok
            && self
                .segments
                .iter()
                .zip(&segs)
                .all(|(rule, seg)| segment_matches(rule, identity, seg))
    }

    /// Does this rule cover every channel `prefix/*` could match?
    fn covers_below(&self, identity: &Identity, prefix: &Channel) -> bool {
        let segs: Vec<&str> = prefix.segments().collect();
        self.below
            && self.segments.len() <= segs.len()
            && self
                .segments
                .iter()
                .zip(&segs)
                .all(|(rule, seg)| segment_matches(rule, identity, seg))
    }
}

fn segment_matches(rule: &Segment, identity: &Identity, seg: &str) -> bool {
    match rule {
        Segment::Literal(l) => l == seg,
        Segment::Var(var) => values(var, identity)
            .iter()
            .any(|v| v == seg && Channel::parse(v).is_ok_and(|c| c.depth() == 1)),
    }
}

/// The values a variable takes for an identity (none when the identity lacks the field).
fn values(var: &Var, identity: &Identity) -> Vec<String> {
    use herald_auth::Identity as V;
    let scalar = |v: &Value| match v {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    match (identity, var) {
        (V::Jwt(j), Var::Sub) => vec![j.sub.clone()],
        (V::Jwt(j), Var::Username) => vec![j.username.clone()],
        (V::Jwt(j), Var::Issuer) => vec![j.issuer.clone()],
        (V::Jwt(j), Var::Groups) => j.groups.clone(),
        (V::Jwt(j), Var::Claim(c)) => j.claims.get(c).map(scalar).unwrap_or_default(),
        (V::Lambda(l), Var::HandlerContext(c)) => {
            l.handler_context.get(c).map(scalar).unwrap_or_default()
        }
        (V::Lambda(l), Var::Sub) => l.handler_context.get("sub").map(scalar).unwrap_or_default(),
        (V::Lambda(l), Var::Groups) => l
            .handler_context
            .get("groups")
            .map(scalar)
            .unwrap_or_default(),
        (V::Iam(i), Var::Sub | Var::Username | Var::Principal) => vec![i.principal.clone()],
        (V::Iam(i), Var::AccessKeyId) => vec![i.access_key_id.clone()],
        (V::ApiKey { name }, Var::Sub | Var::Username | Var::KeyName) => {
            name.iter().cloned().collect()
        }
        _ => Vec::new(),
    }
}

impl Rules {
    /// Parses a namespace's rules; every problem is reported with its key.
    pub fn parse(config: &RulesConfig, namespace: &str, key: &str) -> Result<Rules, Vec<String>> {
        let mut problems = Vec::new();
        let mut list = |name: &str, texts: &Option<Vec<String>>| {
            texts.as_ref().map(|texts| {
                texts
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| match Rule::parse(t, namespace) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            problems.push(format!("{key}.{name}[{i}]: {e}"));
                            None
                        }
                    })
                    .collect()
            })
        };
        let rules = Rules {
            subscribe: list("subscribe", &config.subscribe),
            publish: list("publish", &config.publish),
        };
        if problems.is_empty() {
            Ok(rules)
        } else {
            Err(problems)
        }
    }

    /// May this identity subscribe with this pattern?
    pub fn allows_subscribe(&self, identity: &Identity, pattern: &Pattern) -> bool {
        let Some(rules) = &self.subscribe else {
            return true;
        };
        match pattern {
            Pattern::Exact(c) => rules.iter().any(|r| r.allows_channel(identity, c)),
            Pattern::Below(p) => rules.iter().any(|r| r.covers_below(identity, p)),
        }
    }

    /// May this identity publish on this channel?
    pub fn allows_publish(&self, identity: &Identity, channel: &Channel) -> bool {
        self.publish
            .as_ref()
            .is_none_or(|rules| rules.iter().any(|r| r.allows_channel(identity, channel)))
    }

    /// Whether any rule exists (so callers can skip the check cheaply).
    pub fn is_empty(&self) -> bool {
        self.subscribe.is_none() && self.publish.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_auth::{Identity as V, JwtIdentity};
    use proptest::prelude::*;
    use serde_json::json;

    fn jwt(sub: &str, groups: &[&str], claims: Value) -> Identity {
        V::Jwt(JwtIdentity {
            mode: herald_auth::AuthMode::OpenIdConnect,
            sub: sub.into(),
            username: sub.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            issuer: "https://idp".into(),
            claims,
            default_auth_strategy: "ALLOW",
        })
    }

    fn rules(sub: &[&str]) -> Rules {
        let cfg = RulesConfig {
            subscribe: Some(sub.iter().map(|s| s.to_string()).collect()),
            publish: Some(sub.iter().map(|s| s.to_string()).collect()),
        };
        Rules::parse(&cfg, "ns", "namespaces[0].rules").unwrap()
    }

    #[test]
    fn per_user_per_tenant_and_public() {
        let r = rules(&[
            "/ns/users/{identity.sub}/*",
            "/ns/tenants/{claims.tenant_id}/*",
            "/ns/teams/{groups}/*",
            "/ns/public/*",
        ]);
        let alice = jwt("alice", &["red"], json!({"tenant_id": "t1"}));
        let sub = |p: &str| r.allows_subscribe(&alice, &Pattern::parse(p).unwrap());
        assert!(sub("/ns/users/alice/*"));
        assert!(sub("/ns/users/alice/inbox"));
        assert!(sub("/ns/users/alice/inbox/*"));
        assert!(!sub("/ns/users/*"), "a wildcard over every user is refused");
        assert!(!sub("/ns/users/bob/inbox"));
        assert!(
            !sub("/ns/users/alice"),
            "the rule covers channels below, not the prefix"
        );
        assert!(sub("/ns/tenants/t1/x"));
        assert!(!sub("/ns/tenants/t2/x"));
        assert!(sub("/ns/teams/red/*"));
        assert!(!sub("/ns/teams/blue/x"));
        assert!(sub("/ns/public/news"));
        assert!(!sub("/ns/*"));
    }

    #[test]
    fn values_cannot_inject_segments() {
        let r = rules(&["/ns/users/{identity.sub}/*"]);
        for evil in ["a/b", "*", "", "a b", "-x"] {
            let who = jwt(evil, &[], json!({}));
            assert!(
                !r.allows_subscribe(&who, &Pattern::parse("/ns/users/a/b/c").unwrap()),
                "{evil:?}"
            );
            assert!(
                !r.allows_subscribe(&who, &Pattern::parse("/ns/users/*").unwrap()),
                "{evil:?}"
            );
        }
    }

    #[test]
    fn bad_rules_are_reported_with_their_key() {
        let cfg = RulesConfig {
            subscribe: Some(vec![
                "/other/x".into(),
                "/ns/{nope}".into(),
                "/ns/a b".into(),
                "/ns/*/x".into(),
            ]),
            publish: None,
        };
        let problems = Rules::parse(&cfg, "ns", "namespaces[2].rules").unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("namespaces[2].rules.subscribe[0]"));
    }

    fn seg() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("u1".to_string()),
            Just("u2".to_string()),
            Just("t1".to_string())
        ]
    }

    fn rule_text() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            seg(),
            Just("{identity.sub}".to_string()),
            Just("{groups}".to_string()),
            Just("{claims.tenant}".to_string()),
        ];
        (proptest::collection::vec(part, 0..3), any::<bool>()).prop_map(|(parts, below)| {
            let mut s = String::from("/ns");
            for p in parts {
                s.push('/');
                s.push_str(&p);
            }
            if below {
                s.push_str("/*");
            }
            s
        })
    }

    fn path(max: usize) -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(seg(), 0..max)
    }

    proptest! {
        /// Isolation: whatever the identity, rules and subscription, a subscription the rules
        /// allow never matches a channel the rules do not allow.
        #[test]
        fn an_allowed_subscription_never_reaches_a_forbidden_channel(
            texts in proptest::collection::vec(rule_text(), 0..4),
            sub in seg(), groups in proptest::collection::vec(seg(), 0..3), tenant in seg(),
            pattern in path(4), wildcard in any::<bool>(), channel in path(4),
        ) {
            let cfg = RulesConfig { subscribe: Some(texts.clone()), publish: Some(texts) };
            let rules = Rules::parse(&cfg, "ns", "k").unwrap();
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let who = jwt(&sub, &groups, json!({"tenant": tenant}));
            let mut p = format!("/ns/{}", pattern.join("/"));
            if wildcard { p.push_str("/*"); }
            let c = format!("/ns/{}", channel.join("/"));
            if let (Ok(p), Ok(c)) = (Pattern::parse(&p), Channel::parse(&c))
                && rules.allows_subscribe(&who, &p)
                && p.matches(&c)
            {
                prop_assert!(rules.allows_publish(&who, &c), "{p} allowed, matches {c}, but {c} is not allowed");
            }
        }
    }
}
