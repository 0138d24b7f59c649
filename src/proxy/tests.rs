//! The upstream client against a scripted HTTP/1.1 server on a real socket: framing both
//! ways, interim responses, pooling, stale pooled connections and malformed answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full, StreamBody};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::codec::{self, Chunked, Step};
use super::{Proxy, ProxyLimits, Upstream, UpstreamError};

fn limits() -> ProxyLimits {
    let cfg = Config::from_toml("", Vec::new()).unwrap();
    ProxyLimits::from_config(&cfg.server)
}
use crate::config::{Config, RouteConfig};

/// What the scripted upstream does with the next request it reads.
enum Act {
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
struct Seen {
    head: String,
    body: Vec<u8>,
    connection: usize,
}

struct Script {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<Mutex<usize>>,
}

impl Script {
    async fn start(acts: Vec<Act>) -> Script {
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
    async fn with_proxy(acts: Vec<Act>) -> (Script, Arc<Upstream>, Proxy) {
        let up = Script::start(acts).await;
        let upstream = Arc::new(Upstream::new(&up.route()));
        (up, upstream, Proxy::new(limits()))
    }

    fn route(&self) -> RouteConfig {
        route_to(&format!("http://127.0.0.1:{}", self.port))
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap()
    }

    fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

/// A public catch-all route to `upstream`, with a short response timeout.
fn route_to(upstream: &str) -> RouteConfig {
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
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Option<String> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, buf).await?;
    };
    Some(String::from_utf8(buf.split_to(end).to_vec()).unwrap())
}

/// Reads the body the head announces (content-length or chunked).
async fn read_body<S: AsyncRead + Unpin>(
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

async fn send(
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

#[tokio::test]
async fn content_length_responses_reuse_one_connection() {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let (up, route, proxy) =
        Script::with_proxy(vec![Act::Answer(ok), Act::Answer(ok), Act::Answer(ok)]).await;
    for _ in 0..3 {
        let (status, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"hello"[..]));
    }
    assert_eq!(up.accepted(), 1);
    let seen = up.seen();
    assert!(seen[0].head.starts_with("GET /x HTTP/1.1\r\n"));
    assert!(
        seen[0]
            .head
            .contains(&format!("host: 127.0.0.1:{}\r\n", up.port))
    );
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_drops_content_length() {
    let (_up, route, proxy) = Script::with_proxy(vec![Act::AnswerClose(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabcdefgh",
    )])
    .await;
    let (status, headers, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(status, 200);
    assert!(headers.get("content-length").is_none(), "{headers:?}");
    // Delimited by the close, not by the length it also claimed.
    assert_eq!(body, b"abcdefgh");
}

#[tokio::test]
async fn chunked_responses_decode_and_keep_their_trailers() {
    let (up, route, proxy) = Script::with_proxy(vec![
        Act::Answer(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n\
             4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nx-sum: 7\r\n\r\n",
        ),
        Act::Answer("HTTP/1.1 204 No Content\r\n\r\n"),
    ])
    .await;
    let (status, headers, body, trailers) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, b"wikipedia");
    assert!(headers.get("transfer-encoding").is_none(), "hop-by-hop");
    assert!(
        headers.get("content-length").is_none(),
        "never with chunked"
    );
    assert_eq!(trailers.unwrap().get("x-sum").unwrap(), "7");
    let (status, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!((status, body.len()), (204, 0));
    assert_eq!(up.accepted(), 1, "reused after a chunked body");
}

#[tokio::test]
async fn interim_responses_are_skipped_and_close_delimited_bodies_end_at_eof() {
    let (up, route, proxy) = Script::with_proxy(vec![
        Act::AnswerClose("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil the end"),
        Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ])
    .await;
    let (status, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"until the end"[..]));
    let (_, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(body, b"ok");
    assert_eq!(up.accepted(), 2, "a close-delimited body is never reused");
}

#[tokio::test]
async fn request_bodies_keep_or_gain_framing() {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let (up, route, proxy) =
        Script::with_proxy(vec![Act::Answer(ok), Act::Answer(ok), Act::Answer(ok)]).await;
    send(&proxy, &route, Method::POST, Some("sized"))
        .await
        .unwrap();
    // A body of unknown length goes chunked, frame by frame.
    let frames = futures_util::stream::iter(["one ", "two ", "", "three"].map(|s| {
        Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(s.as_bytes())))
    }));
    let req = Request::post("/x")
        .header("content-length", "999")
        .body(StreamBody::new(frames))
        .unwrap();
    let resp = proxy.forward(&route, req, &(), None).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let req = Request::get("/x").body(Full::new(Bytes::new())).unwrap();
    proxy.forward(&route, req, &(), None).await.unwrap();
    let seen = up.seen();
    assert!(seen[0].head.contains("content-length: 5\r\n"));
    assert_eq!(seen[0].body, b"sized");
    assert!(seen[1].head.contains("transfer-encoding: chunked\r\n"));
    assert!(
        !seen[1].head.contains("content-length"),
        "a stale length is dropped"
    );
    assert_eq!(seen[1].body, b"one two three");
    assert!(
        !seen[2].head.contains("content-length") && !seen[2].head.contains("transfer-encoding")
    );
}

#[tokio::test]
async fn closed_idle_connections_are_noticed_before_use() {
    // The upstream closes after answering, without saying so.
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
    let (up, route, proxy) = Script::with_proxy(vec![Act::AnswerClose(ok), Act::Answer(ok)]).await;
    send(&proxy, &route, Method::GET, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Even a POST is safe: the closed connection is discarded, not written to.
    let (status, _, _, _) = send(&proxy, &route, Method::POST, Some("x")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(up.accepted(), 2);
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn a_pooled_connection_dropped_mid_request_is_retried_only_when_safe() {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
    // Each first request is answered; the second on that connection is read and dropped.
    let (up, route, proxy) = Script::with_proxy(vec![
        Act::Answer(ok),
        Act::Close,
        Act::Answer(ok),
        Act::Answer(ok),
        Act::Close,
    ])
    .await;
    send(&proxy, &route, Method::GET, None).await.unwrap();
    let (status, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(
        (status, &body[..]),
        (200, &b"a"[..]),
        "GET retried on a new connection"
    );
    assert_eq!(up.accepted(), 2);
    send(&proxy, &route, Method::GET, None).await.unwrap();
    // A POST may have been acted on: it is not sent twice.
    let err = send(&proxy, &route, Method::POST, None).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Closed), "{err:?}");
    let connections: Vec<usize> = up.seen().iter().map(|s| s.connection).collect();
    assert_eq!(connections, [1, 1, 2, 2, 2]);
    assert_eq!(up.accepted(), 2, "no retry connection for the POST");
}

#[tokio::test]
async fn malformed_and_truncated_responses_are_errors() {
    let (_up, route, proxy) = Script::with_proxy(vec![
        Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        Act::AnswerClose("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        Act::Answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ])
    .await;
    let req = || Request::get("/x").body(Full::new(Bytes::new())).unwrap();
    assert!(matches!(
        proxy.forward(&route, req(), &(), None).await,
        Err(UpstreamError::Malformed(_))
    ));
    let resp = proxy.forward(&route, req(), &(), None).await.unwrap();
    assert!(resp.into_body().collect().await.is_err(), "short body");
    let resp = proxy.forward(&route, req(), &(), None).await.unwrap();
    assert!(resp.into_body().collect().await.is_err(), "bad chunk size");
}

#[tokio::test]
async fn head_responses_have_no_body_and_keep_the_connection() {
    let (up, route, proxy) = Script::with_proxy(vec![
        Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"),
    ])
    .await;
    let (status, headers, body, _) = send(&proxy, &route, Method::HEAD, None).await.unwrap();
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(headers.get("content-length").unwrap(), "1000");
    let (_, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(body, b"z");
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn an_upstream_answering_before_the_body_ends_is_heard() {
    let (up, route, proxy) = Script::with_proxy(vec![
        Act::AnswerBeforeBody("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig"),
        Act::AnswerBeforeBody("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"),
        Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ])
    .await;
    // More than the socket buffers hold: the write blocks, and the answer is read instead.
    let huge = Bytes::from(vec![b'x'; 64 * 1024 * 1024]);
    let req = Request::post("/x").body(Full::new(huge)).unwrap();
    let started = std::time::Instant::now();
    let resp = proxy.forward(&route, req, &(), None).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        &resp.into_body().collect().await.unwrap().to_bytes()[..],
        b"big"
    );
    // A client still sending (a body that never ends): the upstream's refusal comes through.
    let never = StreamBody::new(futures_util::stream::pending::<
        Result<http_body::Frame<Bytes>, std::io::Error>,
    >());
    let req = Request::post("/x").body(never).unwrap();
    let resp = proxy.forward(&route, req, &(), None).await.unwrap();
    assert_eq!(resp.status(), 401);
    drop(resp);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not the response timeout"
    );
    // Neither connection is reused: each carried a request that was never finished.
    send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(up.accepted(), 3);
}

#[tokio::test]
async fn a_100_continue_while_the_body_is_awaited_does_not_stop_it() {
    let (up, route, proxy) = Script::with_proxy(vec![Act::ContinueThenAnswer(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )])
    .await;
    // The client's body comes late, after the upstream's 100 Continue.
    let late = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(b"late body")))
    });
    let req = Request::post("/x")
        .header("expect", "100-continue")
        .body(StreamBody::new(Box::pin(late)))
        .unwrap();
    let resp = proxy.forward(&route, req, &(), None).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        &resp.into_body().collect().await.unwrap().to_bytes()[..],
        b"ok"
    );
    assert_eq!(up.seen()[0].body, b"late body");
}

#[tokio::test]
async fn https_upstreams_are_spoken_to_over_tls_and_pooled() {
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivatePkcs8KeyDer::from(key.signing_key.serialize_der());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], private.into())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(Mutex::new(0usize));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (handshakes.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            *h.lock().unwrap() += 1;
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                while let Some(head) = read_head(&mut tls, &mut buf).await {
                    let body = read_body(&mut tls, &mut buf, &head).await.unwrap();
                    s.lock().unwrap().push(body);
                    let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                                  6\r\nsecret\r\n0\r\n\r\n";
                    if tls.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let rule = route_to(&format!("https://localhost:{port}"));
    let route = Arc::new(Upstream::with_tls(&rule, &client));
    let proxy = Proxy::new(limits());
    for body in [None, Some("sent over tls"), None] {
        let method = if body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let (status, _, got, _) = send(&proxy, &route, method, body).await.unwrap();
        assert_eq!((status, &got[..]), (200, &b"secret"[..]));
    }
    assert_eq!(*handshakes.lock().unwrap(), 1, "one TLS connection, reused");
    assert_eq!(seen.lock().unwrap()[1], b"sent over tls");
    // The public roots do not know this certificate: the default proxy refuses it.
    let strict = Arc::new(Upstream::new(&rule));
    assert!(matches!(
        send(&proxy, &strict, Method::GET, None).await,
        Err(UpstreamError::Connect(_))
    ));
}

#[test]
fn builds_origin_form_targets() {
    use super::upstream_target;
    assert_eq!(
        upstream_target("", "/a/b", Some("x=1&y")).unwrap(),
        "/a/b?x=1&y"
    );
    assert_eq!(upstream_target("", "/", None).unwrap(), "/");
    assert_eq!(upstream_target("/v2", "/users", None).unwrap(), "/v2/users");
    assert_eq!(upstream_target("/v2", "/", None).unwrap(), "/v2/");
}
