//! The endpoint: the HTTP URL given, the WebSocket URL derived from it, and the `host` the
//! auth objects name.

use reqwest::Url;

use crate::Error;

/// An AppSync Events endpoint, resolved from its HTTP URL.
///
/// Accepted forms: AWS's `https://<id>.appsync-api.<region>.amazonaws.com/event` (or the
/// `appsync-realtime-api` host, which is mapped back), a custom domain's
/// `https://api.example.com/event`, and Herald's `http://host:port/event`. A URL with no path
/// gets `/event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    http: Url,
    realtime: Url,
    host: String,
}

impl Endpoint {
    /// Parses the HTTP endpoint and derives the realtime URL the way amplify-js does: AWS hosts
    /// switch `appsync-api` to `appsync-realtime-api`, custom domains keep the host, both append
    /// `/realtime`. Unlike amplify-js, `http://` maps to `ws://` (amplify always uses `wss://`,
    /// which a plain local server cannot take).
    pub fn parse(endpoint: &str) -> Result<Endpoint, Error> {
        let mut http = Url::parse(endpoint)
            .map_err(|e| Error::Config(format!("endpoint {endpoint:?} is not a URL ({e})")))?;
        // The realtime URL is accepted too, and mapped back to its HTTP endpoint.
        let scheme = match http.scheme() {
            "http" | "ws" => "http",
            "https" | "wss" => "https",
            _ => {
                return Err(Error::Config(format!(
                    "the endpoint must be an http:// or https:// URL, got {endpoint:?}"
                )));
            }
        };
        http.set_scheme(scheme)
            .map_err(|()| Error::Config(format!("cannot use endpoint {endpoint:?}")))?;
        let Some(host) = http.host_str().filter(|h| !h.is_empty()).map(str::to_owned) else {
            return Err(Error::Config(format!("endpoint {endpoint:?} has no host")));
        };
        if http.path() == "/" {
            http.set_path("/event");
        }
        // Given the realtime host of an AWS API, use its HTTP host: auth objects must name it.
        if let Some(api) = aws_host(&host, "appsync-realtime-api", "appsync-api") {
            set_host(&mut http, &api)?;
        }
        let mut realtime = http.clone();
        if let Some(rt) = http
            .host_str()
            .and_then(|h| aws_host(h, "appsync-api", "appsync-realtime-api"))
        {
            set_host(&mut realtime, &rt)?;
        }
        if !realtime.path().trim_end_matches('/').ends_with("/realtime") {
            let path = format!("{}/realtime", http.path().trim_end_matches('/'));
            realtime.set_path(&path);
        } else {
            // Given `…/event/realtime`: the HTTP path is the part before.
            let path = http.path().trim_end_matches('/');
            let base = path.strip_suffix("/realtime").unwrap_or(path).to_owned();
            http.set_path(&base);
        }
        let scheme = if http.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        realtime
            .set_scheme(scheme)
            .map_err(|()| Error::Config(format!("cannot build a {scheme}:// URL from {http}")))?;
        let host = match http.port() {
            Some(port) => format!("{}:{port}", http.host_str().unwrap_or_default()),
            None => http.host_str().unwrap_or_default().to_owned(),
        };
        Ok(Endpoint {
            http,
            realtime,
            host,
        })
    }

    /// The HTTP endpoint (`POST` publishes here).
    pub fn http(&self) -> &Url {
        &self.http
    }

    /// The WebSocket endpoint.
    pub fn realtime(&self) -> &Url {
        &self.realtime
    }

    /// The HTTP host (with its port when not the scheme's default): what every auth object names
    /// as `host`, also on the realtime host, as AppSync requires.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The AWS region of an `appsync-api` host (`us-east-1` in
    /// `<id>.appsync-api.us-east-1.amazonaws.com`), for SigV4.
    pub fn aws_region(&self) -> Option<&str> {
        let host = self.http.host_str()?;
        let labels: Vec<&str> = host.split('.').collect();
        match labels.as_slice() {
            [_, "appsync-api", region, "amazonaws", "com", ..] => Some(region),
            _ => None,
        }
    }
}

/// `host` with its second label `from` replaced by `to`, when it is an AWS host.
fn aws_host(host: &str, from: &str, to: &str) -> Option<String> {
    let aws = host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn");
    let mut labels: Vec<&str> = host.split('.').collect();
    if !aws || labels.len() <= 2 || labels.get(1) != Some(&from) {
        return None;
    }
    labels[1] = to;
    Some(labels.join("."))
}

fn set_host(url: &mut Url, host: &str) -> Result<(), Error> {
    url.set_host(Some(host))
        .map_err(|e| Error::Config(format!("cannot use host {host:?} ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realtime(endpoint: &str) -> String {
        Endpoint::parse(endpoint).unwrap().realtime().to_string()
    }

    #[test]
    fn realtime_url_follows_amplify_except_for_plain_http() {
        // The spec's amplify-js test vector (§1.1).
        assert_eq!(
            realtime(
                "https://abcdefghijklmnopqrstuvwxyz.appsync-api.us-east-1.amazonaws.com/event"
            ),
            "wss://abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime"
        );
        assert_eq!(
            realtime("https://api.example.com/event"),
            "wss://api.example.com/event/realtime"
        );
        assert_eq!(
            realtime("http://127.0.0.1:8080/event"),
            "ws://127.0.0.1:8080/event/realtime"
        );
        assert_eq!(
            realtime("http://localhost:8080"),
            "ws://localhost:8080/event/realtime"
        );
        assert_eq!(
            realtime("https://[::1]:8443/event?x=1"),
            "wss://[::1]:8443/event/realtime?x=1"
        );
    }

    #[test]
    fn the_realtime_form_of_an_aws_endpoint_is_accepted() {
        let e = Endpoint::parse(
            "wss://abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.eu-west-3.amazonaws.com/event/realtime",
        )
        .unwrap();
        assert_eq!(
            e.http().as_str(),
            "https://abcdefghijklmnopqrstuvwxyz.appsync-api.eu-west-3.amazonaws.com/event"
        );
        assert_eq!(
            e.realtime().as_str(),
            "wss://abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.eu-west-3.amazonaws.com/event/realtime"
        );
        assert_eq!(
            e.host(),
            "abcdefghijklmnopqrstuvwxyz.appsync-api.eu-west-3.amazonaws.com"
        );
        assert_eq!(e.aws_region(), Some("eu-west-3"));
    }

    #[test]
    fn host_keeps_a_non_default_port() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8080/event")
                .unwrap()
                .host(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            Endpoint::parse("https://api.example.com/event")
                .unwrap()
                .host(),
            "api.example.com"
        );
        assert!(Endpoint::parse("ftp://x/event").is_err());
        assert!(Endpoint::parse("not a url").is_err());
    }
}
