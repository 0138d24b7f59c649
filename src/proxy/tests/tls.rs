//! `https://` upstreams, and origin-form targets.

use std::sync::Arc;

use http::Method;

use super::send;
use crate::proxy::{Proxy, Upstream, UpstreamError};
use std::sync::Mutex;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

use super::{limits, read_body, read_head, route_to};

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
    use crate::proxy::upstream_target;
    assert_eq!(
        upstream_target("", "/a/b", Some("x=1&y")).unwrap(),
        "/a/b?x=1&y"
    );
    assert_eq!(upstream_target("", "/", None).unwrap(), "/");
    assert_eq!(upstream_target("/v2", "/users", None).unwrap(), "/v2/users");
    assert_eq!(upstream_target("/v2", "/", None).unwrap(), "/v2/");
}
