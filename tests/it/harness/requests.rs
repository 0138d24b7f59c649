//! Requests and responses as the tests build and read them: a request builder bound to a
//! server, the collected response, token pairs, and an HTTP/2 client that sends exactly the
//! fields a test gives it.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt as _, Full};
use serde_json::Value;

use super::TestServer;

pub struct Req<'a> {
    pub(super) server: &'a TestServer,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Req<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn json(mut self, v: Value) -> Self {
        self.body = Bytes::from(v.to_string());
        self.header("content-type", "application/json")
    }

    pub fn body(mut self, b: impl Into<Bytes>) -> Self {
        self.body = b.into();
        self
    }

    pub async fn send(self) -> Resp {
        let uri = format!("http://{}{}", self.server.addr, self.path);
        let mut req = Request::builder()
            .method(self.method)
            .uri(uri)
            .body(Full::new(self.body))
            .unwrap();
        *req.headers_mut() = self.headers;
        let resp = self.server.client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `detail`: the sentence, or for a 422's list, its first `msg`.
    pub fn detail(&self) -> String {
        let v = self.json();
        let detail = &v["detail"];
        detail
            .as_str()
            .or_else(|| detail[0]["msg"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// `Set-Cookie` values, by cookie name.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    /// What the echo upstream said it received, as JSON.
    pub fn echoed_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_string)
    }
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl From<&Resp> for Tokens {
    fn from(r: &Resp) -> Tokens {
        let v = r.json();
        Tokens {
            access: v["access_token"].as_str().unwrap().to_string(),
            refresh: v["refresh_token"].as_str().unwrap().to_string(),
        }
    }
}

pub struct H2 {
    pub client: h2::client::SendRequest<Bytes>,
    pub driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

impl H2 {
    /// Sends a request without a body and reads the whole answer; returns its status.
    pub async fn send(&self, req: http::Request<()>) -> u16 {
        let (resp, _) = self
            .client
            .clone()
            .ready()
            .await
            .unwrap()
            .send_request(req, true)
            .unwrap();
        let resp = resp.await.unwrap();
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            chunk.unwrap();
        }
        status
    }
}

/// The status code of a raw HTTP/1.1 response's text (0 if there is none).
pub fn status_of(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A raw `GET target` (with `Host: host` and `headers`, each ending in CRLF) to any
/// address, on a connection of its own: the status (0 when nothing HTTP came back, or
/// nothing listens) and the body.
pub async fn raw_get(
    addr: std::net::SocketAddr,
    target: &str,
    host: &str,
    headers: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req =
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status_of(&text), body)
}
