//! The web console at `/console`: a pub/sub editor and live per-namespace figures, static files
//! embedded in the binary (plain HTML, CSS and JavaScript under `console/`, no build step).

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{self, HeaderValue};

use super::response::Body;

const HTML: &str = "text/html; charset=utf-8";
const INDEX: &str = include_str!("console/index.html");

/// The console's files: (path under /console, content type, contents).
const FILES: &[(&str, &str, &str)] = &[
    ("", HTML, INDEX),
    ("index.html", HTML, INDEX),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
];

/// Scripts and styles from the console itself only; sockets and requests to any endpoint, since
/// the console can talk to another Herald (or AppSync) than the one serving it.
const CSP: &str = "default-src 'self'; img-src 'self' data:; connect-src 'self' http: https: ws: wss:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Serves `/console` and `/console/<file>`; `None` for an unknown file.
pub fn serve(path: &str) -> Option<Response<Body>> {
    // `strip_prefix`, not `trim_start_matches`: that would strip `/console/console.js` twice.
    let rest = path.strip_prefix("/console")?;
    let name = rest.strip_prefix('/').unwrap_or(rest);
    let (_, kind, body) = FILES.iter().find(|(n, _, _)| *n == name)?;
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Always revalidate, so a new Herald's console is picked up at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_embedded_files() {
        for (path, kind) in [
            ("/console", "text/html; charset=utf-8"),
            ("/console/", "text/html; charset=utf-8"),
            ("/console/index.html", "text/html; charset=utf-8"),
            ("/console/console.js", "text/javascript; charset=utf-8"),
            ("/console/console.css", "text/css; charset=utf-8"),
        ] {
            let r = serve(path).unwrap_or_else(|| panic!("{path} not served"));
            assert_eq!(r.headers()[header::CONTENT_TYPE], kind, "{path}");
        }
        assert!(serve("/console/nope.js").is_none());
        assert!(serve("/consolex").is_none());
        assert!(serve("/console/../metrics").is_none());
    }

    #[test]
    fn page_references_only_embedded_files() {
        for reference in INDEX
            .split(['"', '\''])
            .filter(|s| s.starts_with("/console/"))
        {
            assert!(serve(reference).is_some(), "{reference} is not embedded");
        }
        // Nothing from a CDN: the console works with no network but Herald.
        for (name, _, body) in FILES {
            for remote in [
                "src=\"http",
                "href=\"http",
                "url(http",
                "from 'http",
                "import('http",
            ] {
                assert!(!body.contains(remote), "{name} loads {remote}…");
            }
        }
    }
}
