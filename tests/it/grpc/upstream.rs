//! The gRPC tests' upstream: tonic services (unary, server streaming, bidi) over a raw-bytes
//! codec on a hyper HTTP/2 server, and a plain HTTP/2 endpoint that echoes request trailers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use futures_util::StreamExt as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Messages are raw bytes: no protobuf, no code generation.
#[derive(Clone, Copy, Default)]
pub(super) struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type BoxStream = Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>, Status>> + Send>>;

/// Unary: answers with the identity metadata it received; `Slow` waits 2 s first, `Fail`
/// fails with NOT_FOUND and a trailer of its own.
#[derive(Clone)]
struct Unary(&'static str);

impl tonic::server::UnaryService<Vec<u8>> for Unary {
    type Response = Vec<u8>;
    type Future = BoxFuture<Result<tonic::Response<Vec<u8>>, Status>>;
    fn call(&mut self, req: tonic::Request<Vec<u8>>) -> Self::Future {
        let which = self.0;
        Box::pin(async move {
            let seen = |name: &str| {
                req.metadata()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            let text = format!(
                "user={} role={} auth={} msg={}",
                seen("x-user-id"),
                seen("x-user-role"),
                seen("authorization"),
                String::from_utf8_lossy(req.get_ref())
            );
            match which {
                "Slow" => tokio::time::sleep(Duration::from_secs(2)).await,
                "Fail" => {
                    let mut status = Status::not_found("no such thing");
                    status
                        .metadata_mut()
                        .insert("x-upstream-detail", "kept".parse().unwrap());
                    return Err(status);
                }
                _ => {}
            }
            Ok(tonic::Response::new(text.into_bytes()))
        })
    }
}

/// Server streaming: the request says "<count> <size>"; that many messages of that many
/// bytes (message i filled with byte i), each made only when the stream is polled for it.
#[derive(Clone)]
struct Download(Arc<AtomicU64>);

impl tonic::server::ServerStreamingService<Vec<u8>> for Download {
    type Response = Vec<u8>;
    type ResponseStream = BoxStream;
    type Future = BoxFuture<Result<tonic::Response<BoxStream>, Status>>;
    fn call(&mut self, req: tonic::Request<Vec<u8>>) -> Self::Future {
        let produced = self.0.clone();
        Box::pin(async move {
            let text = String::from_utf8_lossy(req.get_ref()).to_string();
            let mut it = text.split(' ').map(|n| n.parse::<usize>().unwrap_or(0));
            let (count, size) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            let stream = futures_util::stream::iter(0..count).map(move |i| {
                produced.fetch_add(size as u64, Ordering::SeqCst);
                Ok(vec![i as u8; size])
            });
            Ok(tonic::Response::new(Box::pin(stream) as BoxStream))
        })
    }
}

/// Bidi streaming: each message comes back reversed, as it arrives.
#[derive(Clone)]
struct Reverse;

impl tonic::server::StreamingService<Vec<u8>> for Reverse {
    type Response = Vec<u8>;
    type ResponseStream = BoxStream;
    type Future = BoxFuture<Result<tonic::Response<BoxStream>, Status>>;
    fn call(&mut self, req: tonic::Request<tonic::Streaming<Vec<u8>>>) -> Self::Future {
        Box::pin(async move {
            let stream = req.into_inner().map(|m| {
                m.map(|mut m| {
                    m.reverse();
                    m
                })
            });
            Ok(tonic::Response::new(Box::pin(stream) as BoxStream))
        })
    }
}

type Reply = http::Response<tonic::body::Body>;

/// The upstream's dispatcher; `/plain.Trailers/echo` is not gRPC: it answers with the
/// request's trailers (each `x-got-<name>`) as its own trailers.
async fn upstream_call(req: http::Request<Incoming>, produced: Arc<AtomicU64>) -> Reply {
    let grpc = tonic::server::Grpc::new(Raw);
    let path = req.uri().path().to_string();
    let mut grpc = grpc;
    match path.rsplit('/').next().unwrap_or("") {
        "Unary" => grpc.unary(Unary("Unary"), req).await,
        "Slow" => grpc.unary(Unary("Slow"), req).await,
        "Fail" => grpc.unary(Unary("Fail"), req).await,
        "Download" => grpc.server_streaming(Download(produced), req).await,
        "Reverse" => grpc.streaming(Reverse, req).await,
        "echo" => {
            let collected = req.into_body().collect().await.unwrap();
            let mut out = http::HeaderMap::new();
            if let Some(trailers) = collected.trailers() {
                for (name, value) in trailers {
                    let name = http::HeaderName::from_bytes(format!("x-got-{name}").as_bytes());
                    out.insert(name.unwrap(), value.clone());
                }
            }
            let len = collected.to_bytes().len();
            let body = http_body_util::Full::new(Bytes::from(format!("{len} bytes")))
                .map_err(|never| match never {})
                .with_trailers(async move { Some(Ok(out)) });
            http::Response::new(tonic::body::Body::new(body))
        }
        _ => http::Response::builder()
            .status(404)
            .body(tonic::body::Body::empty())
            .unwrap(),
    }
}

pub(super) struct Upstream {
    pub(super) addr: SocketAddr,
    /// Bytes the download service has produced so far.
    pub(super) produced: Arc<AtomicU64>,
}

pub(super) async fn start_upstream() -> Upstream {
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let addr = crate::harness::serve_each(move |tcp| {
        let counter = counter.clone();
        async move {
            let service = hyper::service::service_fn(move |req| {
                let counter = counter.clone();
                async move { Ok::<_, Infallible>(upstream_call(req, counter).await) }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        }
    })
    .await;
    Upstream { addr, produced }
}
