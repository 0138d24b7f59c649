//! A demo upstream that answers every request with a JSON description of what it received
//! (method, path, query, headers, body size) and records it. The quickstart runs it behind
//! Portcullis so the injected headers can be seen; the integration tests use it to check
//! exactly what an upstream receives. Test hooks: `x-echo-delay-ms` delays the answer,
//! `x-echo-status` sets its status, `x-echo-close` answers `Connection: close`,
//! `x-echo-bytes: N` answers N bytes of `x` instead of the JSON (at most 64 MiB),
//! `x-echo-set-header: name: value` adds a header to the answer, and a WebSocket upgrade
//! becomes a raw byte echo.

// Shared by the `echo` and `quickstart` examples and the integration tests, which each use
// part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    /// Path and query exactly as received.
    pub(crate) target: String,
    /// Every header, in order, names lower-cased.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body_len: usize,
    /// The client's address: tells which connection a request came on.
    pub(crate) peer: SocketAddr,
}

impl Recorded {
    /// All values of a header.
    pub(crate) fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }
}

#[derive(Clone)]
pub(crate) struct Echo {
    pub(crate) addr: SocketAddr,
    received: Arc<Mutex<Vec<Recorded>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Echo {
    /// Binds `addr` (use port 0 for any) and serves in the background.
    pub(crate) async fn start(addr: SocketAddr) -> std::io::Result<Echo> {
        let listener = TcpListener::bind(addr).await?;
        let echo = Echo {
            addr: listener.local_addr()?,
            received: Arc::default(),
            accepted: Arc::default(),
        };
        let received = echo.received.clone();
        let accepted = echo.accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let received = received.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(received.clone(), peer, req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(echo)
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn last(&self) -> Option<Recorded> {
        self.requests().pop()
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut r) = self.received.lock() {
            r.clear();
        }
    }
}

fn header_str<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn answer(
    received: Arc<Mutex<Vec<Recorded>>>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let close = req.headers().contains_key("x-echo-close");
    let filler = header_str(&req, "x-echo-bytes")
        .and_then(|v| v.parse::<usize>().ok())
        .map(|n| n.min(64 << 20));
    let delay = header_str(&req, "x-echo-delay-ms").and_then(|v| v.parse::<u64>().ok());
    let status = header_str(&req, "x-echo-status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let websocket_key = header_str(&req, "sec-websocket-key").map(str::to_owned);
    let upgrade = websocket_key
        .is_some()
        .then(|| hyper::upgrade::on(&mut req));
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body_len = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let record = Recorded {
        method,
        target,
        headers,
        body_len,
        peer,
    };
    if let Ok(mut r) = received.lock() {
        r.push(record.clone());
    }
    if let Some(ms) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if let (Some(key), Some(on_upgrade)) = (websocket_key, upgrade) {
        return Ok(switch_protocols(&key, on_upgrade));
    }
    let mut header_map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (n, v) in &record.headers {
        header_map.entry(n.as_str()).or_default().push(v.as_str());
    }
    let (path, query) = record
        .target
        .split_once('?')
        .map_or((record.target.as_str(), None), |(p, q)| (p, Some(q)));
    let body = serde_json::json!({
        "method": record.method,
        "path": path,
        "query": query,
        "headers": header_map.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(v.join(", ")))).collect::<serde_json::Map<_, _>>(),
        "body_bytes": record.body_len,
    });
    let body = match filler {
        Some(n) => Bytes::from(vec![b'x'; n]),
        None => Bytes::from(body.to_string()),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if close {
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    // `x-echo-set-header: name: value` adds that header to the answer.
    for (n, v) in &record.headers {
        if n == "x-echo-set-header"
            && let Some((name, value)) = v.split_once(':')
            && let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(value.trim()),
            )
        {
            resp.headers_mut().append(name, value);
        }
    }
    Ok(resp)
}

/// Accepts a WebSocket upgrade and then echoes raw bytes back (no framing: enough to show a
/// proxy passes the tunnel through untouched).
fn switch_protocols(key: &str, on_upgrade: hyper::upgrade::OnUpgrade) -> Response<Full<Bytes>> {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let io = TokioIo::new(upgraded);
            let (mut r, mut w) = tokio::io::split(io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}
