//! Channel paths and subscription patterns (spec §5).
//!
//! A channel is 1–5 `/`-separated segments, each 1–50 characters of `[A-Za-z0-9-]` that neither
//! starts nor ends with `-`. Leading and trailing `/` are optional on input; the canonical form
//! always has a leading `/` and no trailing one (`/ns/a/b`). The first segment names the namespace.
//!
//! A subscription pattern is a channel, or a channel prefix followed by a final `/*` that matches
//! every *deeper* channel (`/ns/*` matches `/ns/a` and `/ns/a/b`, never `/ns` itself).

use std::fmt;

/// Most segments a channel may have.
pub const MAX_SEGMENTS: usize = 5;
/// Longest segment, in characters.
pub const MAX_SEGMENT_LEN: usize = 50;

/// Why a channel or pattern was refused. The message is sent to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel is empty: give a path such as /namespace/channel")]
    Empty,
    #[error("channel has more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    #[error(
        "channel segment {0:?} is invalid: segments are 1-50 characters of A-Z, a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    BadSegment(String),
    #[error("wildcard '*' is only allowed as the last segment of a subscription channel")]
    MisplacedWildcard,
    #[error("wildcard channels can be subscribed to, not published to")]
    WildcardPublish,
}

/// A concrete channel in canonical form (`/ns/a/b`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel {
    path: String,
    /// Byte length of the namespace segment (after the leading `/`).
    ns_len: usize,
}

/// What a subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Exactly this channel.
    Exact(Channel),
    /// Every channel strictly below this prefix (written `<prefix>/*`).
    Below(Channel),
}

fn valid_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_SEGMENT_LEN
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

/// Splits input into its segments after trimming one optional leading and trailing `/`.
fn segments(input: &str) -> Result<Vec<&str>, ChannelError> {
    let s = input.strip_prefix('/').unwrap_or(input);
    let s = s.strip_suffix('/').unwrap_or(s);
    if s.is_empty() {
        return Err(ChannelError::Empty);
    }
    let segs: Vec<&str> = s.split('/').collect();
    if segs.len() > MAX_SEGMENTS {
        return Err(ChannelError::TooManySegments);
    }
    Ok(segs)
}

fn build(segs: &[&str]) -> Result<Channel, ChannelError> {
    let mut path = String::with_capacity(segs.iter().map(|s| s.len() + 1).sum());
    for seg in segs {
        if *seg == "*" {
            return Err(ChannelError::MisplacedWildcard);
        }
        if !valid_segment(seg) {
            return Err(ChannelError::BadSegment(truncate(seg)));
        }
        path.push('/');
        path.push_str(seg);
    }
    let ns_len = segs.first().map_or(0, |s| s.len());
    Ok(Channel { path, ns_len })
}

/// Keeps error messages bounded when a client sends a huge segment.
fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

impl Channel {
    /// Parses a channel to publish to: no wildcard allowed.
    pub fn parse(input: &str) -> Result<Channel, ChannelError> {
        let segs = segments(input)?;
        if segs.last() == Some(&"*") {
            return Err(ChannelError::WildcardPublish);
        }
        build(&segs)
    }

    /// The canonical path, `/ns/a/b`.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The namespace (first segment).
    pub fn namespace(&self) -> &str {
        self.path.get(1..1 + self.ns_len).unwrap_or_default()
    }

    /// The segments, namespace first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').skip(1)
    }

    /// Number of segments (1–5).
    pub fn depth(&self) -> usize {
        self.path.bytes().filter(|b| *b == b'/').count()
    }

    /// The proper prefixes of this channel, shortest first (`/ns`, `/ns/a` for `/ns/a/b`):
    /// the keys under which wildcard subscriptions that match this channel are indexed.
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        self.path
            .match_indices('/')
            .skip(1)
            .map(|(i, _)| self.path.get(..i).unwrap_or_default())
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

impl Pattern {
    /// Parses a channel to subscribe to: a channel, or a prefix ending in `/*`.
    pub fn parse(input: &str) -> Result<Pattern, ChannelError> {
        let segs = segments(input)?;
        match segs.split_last() {
            Some((&"*", [])) => Err(ChannelError::BadSegment("*".into())),
            Some((&"*", prefix)) => build(prefix).map(Pattern::Below),
            _ => build(&segs).map(Pattern::Exact),
        }
    }

    /// The namespace the pattern lives in.
    pub fn namespace(&self) -> &str {
        self.key().namespace()
    }

    /// The channel (exact) or prefix (wildcard) this pattern is indexed under.
    pub fn key(&self) -> &Channel {
        match self {
            Pattern::Exact(c) | Pattern::Below(c) => c,
        }
    }

    /// Does an event on `channel` reach a subscription with this pattern?
    pub fn matches(&self, channel: &Channel) -> bool {
        match self {
            Pattern::Exact(c) => c == channel,
            Pattern::Below(p) => channel.ancestors().any(|a| a == p.as_str()),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(c) => write!(f, "{c}"),
            Pattern::Below(c) => write!(f, "{c}/*"),
        }
    }
}

/// The namespace a raw channel string names (its first segment), without validating it: for
/// counting requests that may not parse.
pub fn namespace_of(raw: &str) -> &str {
    raw.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_form() {
        for input in ["/ns/a/b", "ns/a/b", "/ns/a/b/", "ns/a/b/"] {
            let c = Channel::parse(input).unwrap();
            assert_eq!(c.as_str(), "/ns/a/b");
            assert_eq!(c.namespace(), "ns");
            assert_eq!(c.depth(), 3);
            assert_eq!(c.segments().collect::<Vec<_>>(), ["ns", "a", "b"]);
            assert_eq!(c.ancestors().collect::<Vec<_>>(), ["/ns", "/ns/a"]);
        }
    }

    #[test]
    fn rejects_invalid_channels() {
        let long = "a".repeat(51);
        let bad = [
            "",
            "/",
            "//",
            "/ns//a",
            "/-ns",
            "/ns-",
            "/n_s",
            "/ns/a.b",
            "/a/b/c/d/e/f",
            long.as_str(),
            "/ns/*/a",
            "/ns/é",
        ];
        for input in bad {
            assert!(
                Channel::parse(input).is_err(),
                "{input:?} should be invalid"
            );
            assert!(
                Pattern::parse(input).is_err(),
                "{input:?} should be invalid"
            );
        }
        assert_eq!(
            Channel::parse("/ns/*"),
            Err(ChannelError::WildcardPublish),
            "wildcards are for subscribing only"
        );
        assert!(Pattern::parse("/*").is_err());
        assert!(Pattern::parse("/a/b/c/d/e/*").is_err());
        assert!(Channel::parse(&"a".repeat(50)).is_ok());
    }

    #[test]
    fn wildcard_matches_deeper_channels_only() {
        let p = Pattern::parse("/default/*").unwrap();
        let on = |s| p.matches(&Channel::parse(s).unwrap());
        assert!(on("/default/messages"));
        assert!(on("/default/greetings/tutorial"));
        assert!(!on("/default"));
        assert!(!on("/other/messages"));
        assert!(!on("/defaultx/messages"));
        let exact = Pattern::parse("default/messages/").unwrap();
        assert!(exact.matches(&Channel::parse("/default/messages").unwrap()));
        assert!(!exact.matches(&Channel::parse("/default/messages/x").unwrap()));
        assert_eq!(Pattern::parse("ns/a/*/").unwrap().to_string(), "/ns/a/*");
    }

    /// The spec's regex, written out naively as a model.
    fn model_valid(input: &str) -> bool {
        let s = input.strip_prefix('/').unwrap_or(input);
        let s = s.strip_suffix('/').unwrap_or(s);
        let segs: Vec<&str> = s.split('/').collect();
        !s.is_empty()
            && segs.len() <= 5
            && segs.iter().all(|seg| {
                let chars: Vec<char> = seg.chars().collect();
                !chars.is_empty()
                    && chars.len() <= 50
                    && chars.iter().all(|c| c.is_ascii_alphanumeric() || *c == '-')
                    && chars[0] != '-'
                    && chars[chars.len() - 1] != '-'
            })
    }

    /// Naive matching model: compare segment lists.
    fn model_matches(pattern: &str, channel: &str) -> bool {
        let p: Vec<&str> = pattern.trim_matches('/').split('/').collect();
        let c: Vec<&str> = channel.trim_matches('/').split('/').collect();
        if p.last() == Some(&"*") {
            let prefix = &p[..p.len() - 1];
            c.len() > prefix.len() && c[..prefix.len()] == *prefix
        } else {
            p == c
        }
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("ns".to_string()),
            "[a-c-]{1,3}",
            "[A-Za-z0-9_.*-]{0,4}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(segment(), 0..7),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(segs, lead, trail)| {
                let mut s = segs.join("/");
                if lead {
                    s.insert(0, '/');
                }
                if trail {
                    s.push('/');
                }
                s
            })
    }

    proptest! {
        #[test]
        fn parse_agrees_with_the_spec_regex(input in path()) {
            prop_assert_eq!(Channel::parse(&input).is_ok(), model_valid(&input));
        }

        #[test]
        fn matching_agrees_with_the_naive_model(pattern in path(), channel in path()) {
            if let (Ok(p), Ok(c)) = (Pattern::parse(&pattern), Channel::parse(&channel)) {
                prop_assert_eq!(p.matches(&c), model_matches(&pattern, &channel));
                // The index lookup (exact key, or an ancestor key) must find exactly the matches.
                let found = match &p {
                    Pattern::Exact(k) => k == &c,
                    Pattern::Below(k) => c.ancestors().any(|a| a == k.as_str()),
                };
                prop_assert_eq!(found, p.matches(&c));
            }
        }
    }
}
