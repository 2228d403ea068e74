//! A throwaway HTTP/1.1 server on 127.0.0.1:0: answers each request from a closure and records
//! what it received, so a test can check what the code under test sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// What the server does with a request.
pub enum Reply {
    /// Status and JSON body.
    Json(u16, String),
    /// Status, content type and body.
    Raw(u16, &'static str, String),
    /// Never answer (the connection stays open until the client gives up).
    Hang,
    /// Status, extra response headers and JSON body.
    JsonWithHeaders(u16, Vec<(&'static str, String)>, String),
    /// A redirect: status and `Location`.
    Redirect(u16, String),
}

/// One received request.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, without `?` (empty when none).
    pub query: String,
    /// Names as hyper gives them (lowercase).
    pub headers: Vec<(String, String)>,
    /// The body as text (invalid UTF-8 replaced).
    pub body: String,
}

/// A running fixture server; it serves until the test's runtime ends.
pub struct Fixture {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Fixture {
    /// `http://<addr><path>`; `url("")` is the server's origin.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// How many requests were received.
    pub fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    /// How many requests were received on `path`.
    pub fn hits_on(&self, path: &str) -> usize {
        self.on(path).len()
    }

    /// The latest request.
    pub fn last(&self) -> Option<Hit> {
        self.hits.lock().unwrap().last().cloned()
    }

    /// The bodies received on `path`, parsed as JSON.
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.on(path)
            .iter()
            .map(|h| serde_json::from_str(&h.body).unwrap())
            .collect()
    }

    /// The values of header `name` (lowercase) on every request received on `path`.
    pub fn header_values(&self, path: &str, name: &str) -> Vec<String> {
        self.on(path)
            .into_iter()
            .flat_map(|h| h.headers.into_iter().filter(|(k, _)| k == name))
            .map(|(_, v)| v)
            .collect()
    }

    fn on(&self, path: &str) -> Vec<Hit> {
        let hits = self.hits.lock().unwrap();
        hits.iter().filter(|h| h.path == path).cloned().collect()
    }
}

/// Serves `handler(path, body)` on a fresh loopback port until the test's runtime ends.
pub async fn serve<F>(handler: F) -> Fixture
where
    F: Fn(&str, &str) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let handler = Arc::new(handler);
    let recorded = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            let hits = Arc::clone(&recorded);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handler = Arc::clone(&handler);
                    let hits = Arc::clone(&hits);
                    async move { Ok::<_, Infallible>(answer(req, &*handler, &hits).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Fixture { addr, hits }
}

/// Records `req` and answers it as `handler` says (or never, for [`Reply::Hang`]).
async fn answer<F>(
    req: Request<hyper::body::Incoming>,
    handler: &F,
    hits: &Mutex<Vec<Hit>>,
) -> Response<Full<Bytes>>
where
    F: Fn(&str, &str) -> Reply,
{
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let reply = handler(&path, &body);
    hits.lock().unwrap().push(Hit {
        method,
        path,
        query,
        headers,
        body,
    });
    let mut extra = Vec::new();
    let (status, content_type, text, location) = match reply {
        Reply::Json(s, b) => (s, "application/json", b, None),
        Reply::Raw(s, c, b) => (s, c, b, None),
        Reply::Hang => std::future::pending().await,
        Reply::Redirect(s, to) => (s, "text/plain", String::new(), Some(to)),
        Reply::JsonWithHeaders(s, h, b) => {
            extra = h;
            (s, "application/json", b, None)
        }
    };
    let mut response = Response::builder()
        .status(status)
        .header("content-type", content_type);
    for (name, value) in extra {
        response = response.header(name, value);
    }
    if let Some(to) = location {
        response = response.header("location", to);
    }
    response.body(Full::new(Bytes::from(text))).unwrap()
}
