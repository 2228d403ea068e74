//! Throwaway HTTP servers on 127.0.0.1:0 for the JWKS and authorizer tests.

#![allow(dead_code)] // each test binary uses a different subset

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the server does with a request.
pub enum Reply {
    /// Status and JSON body.
    Json(u16, String),
    /// Status, content type and body.
    Raw(u16, &'static str, String),
    /// Never answer (the connection stays open until the client gives up).
    Hang,
    /// A redirect: status and `Location`.
    Redirect(u16, String),
}

/// One received request.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<Hit>>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits_on(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .count()
    }

    pub fn last(&self) -> Option<Hit> {
        self.hits.lock().unwrap().last().cloned()
    }

    pub fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

/// Serves `handler(path, body)` on a fresh loopback port until the test's runtime ends.
pub async fn serve<F>(handler: F) -> TestServer
where
    F: Fn(&str, &str) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let server_hits = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = Arc::clone(&handler);
            let hits = Arc::clone(&server_hits);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handler = Arc::clone(&handler);
                    let hits = Arc::clone(&hits);
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_owned();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.to_string(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let body = String::from_utf8_lossy(&body).into_owned();
                        hits.lock().unwrap().push(Hit {
                            method,
                            path: path.clone(),
                            headers,
                            body: body.clone(),
                        });
                        let reply = handler(&path, &body);
                        let (status, ctype, text, location) = match reply {
                            Reply::Json(s, b) => (s, "application/json", b, None),
                            Reply::Raw(s, c, b) => (s, c, b, None),
                            Reply::Hang => std::future::pending().await,
                            Reply::Redirect(s, to) => (s, "text/plain", String::new(), Some(to)),
                        };
                        let mut resp = Response::builder()
                            .status(status)
                            .header("content-type", ctype);
                        if let Some(to) = location {
                            resp = resp.header("location", to);
                        }
                        let resp = resp.body(Full::new(Bytes::from(text))).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestServer { addr, hits }
}
