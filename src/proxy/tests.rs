//! The upstream client against a scripted HTTP/1.1 server on a real socket: framing both
//! ways, interim responses, pooling, stale pooled connections and malformed answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::codec::{self, Chunked, Step};
use super::{Proxy, ProxyLimits, Upstream, UpstreamError};

pub(super) fn limits() -> ProxyLimits {
    let cfg = Config::from_toml("", Vec::new()).unwrap();
    ProxyLimits::from_config(&cfg.server)
}
use crate::config::{Config, RouteConfig};

/// What the scripted upstream does with the next request it reads.
pub(super) enum Act {
    /// Write these bytes and keep the connection.
    Answer(&'static str),
    /// Write these bytes and close.
    AnswerClose(&'static str),
    /// Close without answering.
    Close,
    /// Answer as soon as the head is read, and never read the body.
    AnswerBeforeBody(&'static str),
    /// Send `100 Continue` after the head, then read the body and answer.
    ContinueThenAnswer(&'static str),
}

/// One request as the scripted upstream read it.
#[derive(Debug)]
pub(super) struct Seen {
    pub(super) head: String,
    pub(super) body: Vec<u8>,
    pub(super) connection: usize,
}

pub(super) struct Script {
    pub(super) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<Mutex<usize>>,
}

impl Script {
    pub(super) async fn start(acts: Vec<Act>) -> Script {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acts = Arc::new(Mutex::new(VecDeque::from(acts)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        let (s, a) = (seen.clone(), accepted.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let n = {
                    let mut a = a.lock().unwrap();
                    *a += 1;
                    *a
                };
                tokio::spawn(serve(stream, n, acts.clone(), s.clone()));
            }
        });
        Script {
            port,
            seen,
            accepted,
        }
    }

    /// A script, the upstream of a route to it, and a proxy.
    pub(super) async fn with_proxy(acts: Vec<Act>) -> (Script, Arc<Upstream>, Proxy) {
        let up = Script::start(acts).await;
        let upstream = Arc::new(Upstream::new(&up.route()));
        (up, upstream, Proxy::new(limits()))
    }

    pub(super) fn route(&self) -> RouteConfig {
        route_to(&format!("http://127.0.0.1:{}", self.port))
    }

    pub(super) fn seen(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap()
    }

    pub(super) fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

/// A public catch-all route to `upstream`, with a short response timeout.
pub(super) fn route_to(upstream: &str) -> RouteConfig {
    let text = format!(
        "[[routes]]\nname = \"r\"\nprefix = \"/\"\nauth = \"public\"\nupstream = \"{upstream}\"\nresponse_timeout = \"2s\"\n"
    );
    Config::from_toml(&text, Vec::new())
        .unwrap()
        .routes
        .remove(0)
}

async fn serve(
    mut stream: TcpStream,
    connection: usize,
    acts: Arc<Mutex<VecDeque<Act>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf = BytesMut::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let act = acts.lock().unwrap().pop_front();
        if let Some(Act::AnswerBeforeBody(bytes)) = act {
            seen.lock().unwrap().push(Seen {
                head,
                body: Vec::new(),
                connection,
            });
            let _ = stream.write_all(bytes.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        if let Some(Act::ContinueThenAnswer(_)) = act
            && stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        let Some(body) = read_body(&mut stream, &mut buf, &head).await else {
            return;
        };
        seen.lock().unwrap().push(Seen {
            head,
            body,
            connection,
        });
        match act {
            Some(Act::Answer(bytes) | Act::ContinueThenAnswer(bytes)) => {
                if stream.write_all(bytes.as_bytes()).await.is_err() {
                    return;
                }
            }
            Some(Act::AnswerClose(bytes)) => {
                let _ = stream.write_all(bytes.as_bytes()).await;
                return;
            }
            Some(Act::Close | Act::AnswerBeforeBody(_)) | None => return,
        }
    }
}

async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Option<()> {
    (stream.read_buf(buf).await.ok()? > 0).then_some(())
}

/// Reads one request head, as text.
pub(super) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Option<String> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, buf).await?;
    };
    Some(String::from_utf8(buf.split_to(end).to_vec()).unwrap())
}

/// Reads the body the head announces (content-length or chunked).
pub(super) async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    head: &str,
) -> Option<Vec<u8>> {
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if lower.contains("transfer-encoding: chunked") {
        let mut state = Chunked::Size;
        loop {
            match codec::decode_chunked(&mut state, buf).unwrap() {
                Step::Data(d) => body.extend_from_slice(&d),
                Step::End(_) => break,
                Step::Progress => {}
                Step::NeedMore => read_more(stream, buf).await?,
            }
        }
    } else if let Some(line) = lower.lines().find(|l| l.starts_with("content-length:")) {
        let n: usize = line["content-length:".len()..].trim().parse().unwrap();
        while buf.len() < n {
            read_more(stream, buf).await?;
        }
        body = buf.split_to(n).to_vec();
    }
    Some(body)
}

pub(super) async fn send(
    proxy: &Proxy,
    route: &Arc<Upstream>,
    method: Method,
    body: Option<&'static str>,
) -> Result<(u16, http::HeaderMap, Vec<u8>, Option<http::HeaderMap>), UpstreamError> {
    let req = Request::builder()
        .method(method)
        .uri("/x")
        .header(http::header::HOST, route.host())
        .body(Full::new(Bytes::from_static(body.unwrap_or("").as_bytes())))
        .unwrap();
    let resp = proxy.forward(route, req, &(), None).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    Ok((status, headers, collected.to_bytes().to_vec(), trailers))
}

mod pool;
mod responses;
mod tls;
