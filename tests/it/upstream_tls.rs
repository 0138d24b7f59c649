//! `https://` upstreams with a private CA, mutual TLS and an SNI override: a route trusts
//! exactly its own CA bundle, presents its client certificate, and names the server as
//! configured — and without each of those the upstream cannot be reached (502), never
//! reached insecurely. HTTP/2 over TLS: `"h2"` only where ALPN agrees, and `"auto"`
//! speaking whichever protocol the upstream's ALPN picks, also when that changes, and
//! backing off while the upstream is down.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::harness::TestServer;

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `names` issued by `issuer`: (DER, PEM, key PEM, key DER).
fn issue(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
) -> (
    CertificateDer<'static>,
    String,
    String,
    PrivateKeyDer<'static>,
) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let der = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
    (cert.der().clone(), cert.pem(), key.serialize_pem(), der)
}

/// An upstream on TLS that requires a client certificate from `client_ca` and answers
/// every request with the SNI it was given.
async fn mtls_upstream(
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client_ca: CertificateDer<'static>,
) -> u16 {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.0], server.1)
        .unwrap();
    serve_tls(config, |mut tls| async move {
        let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sni}",
            sni.len()
        );
        let _ = tls.write_all(answer.as_bytes()).await;
        let _ = tls.shutdown().await;
    })
    .await
}

type ServerTls = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Listens on 127.0.0.1 with `config` and hands each completed handshake to `on_conn` in
/// a task of its own. Returns the port.
async fn serve_tls<F, Fut>(config: rustls::ServerConfig, on_conn: F) -> u16
where
    F: Fn(ServerTls) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let addr = crate::harness::serve_each(move |tcp| {
        let (acceptor, on_conn) = (acceptor.clone(), on_conn.clone());
        async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                on_conn(tls).await;
            }
        }
    })
    .await;
    addr.port()
}

fn route(port: u16, name: &str, keys: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}\"\nauth = \"public\"\n\
         upstream = \"https://127.0.0.1:{port}\"\n{keys}"
    )
}

#[tokio::test]
async fn a_route_trusts_its_own_ca_presents_its_certificate_and_names_the_server() {
    let server_ca = ca("upstream CA");
    let client_ca = ca("client CA");
    let (server_der, _, _, server_key) = issue(&server_ca, &["orders.internal"]);
    let (_, client_pem, client_key_pem, _) = issue(&client_ca, &["portcullis"]);
    let port = mtls_upstream((server_der, server_key), client_ca.der().clone()).await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("ca.pem"), server_ca.pem()).unwrap();
    std::fs::write(d.join("client.pem"), &client_pem).unwrap();
    std::fs::write(d.join("client.key"), &client_key_pem).unwrap();
    let ca = format!("tls_ca_file = \"{}/ca.pem\"\n", d.display());
    let client = format!(
        "tls_client_cert_file = \"{0}/client.pem\"\ntls_client_key_file = \"{0}/client.key\"\n",
        d.display()
    );
    let sni = "tls_server_name = \"orders.internal\"\n";
    let routes = [
        route(port, "full", &format!("{ca}{client}{sni}")),
        route(port, "nocert", &format!("{ca}{sni}")),
        route(port, "noname", &format!("{ca}{client}")),
        route(port, "publicroots", &format!("{client}{sni}")),
    ]
    .concat();
    let srv = TestServer::start_in(dir, &routes).await;

    let r = srv.get("/full/x").send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "orders.internal", "SNI is the configured name");
    // Each missing piece makes the upstream unreachable, never reachable insecurely.
    for path in ["/nocert/x", "/noname/x", "/publicroots/x"] {
        assert_eq!(srv.get(path).send().await.status, 502, "{path}");
    }
}

#[tokio::test]
async fn tls_keys_are_checked_when_the_routes_are_built() {
    let load = |extra: &str| {
        let text = format!("[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"{extra}");
        portcullis::Config::from_toml(&text, Vec::new())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let err = load("http://127.0.0.1:1\"\ntls_ca_file = \"/ca.pem\"\n");
    assert!(err.starts_with("routes[0].tls_ca_file: "), "{err}");
    let err = load("https://127.0.0.1:1\"\ntls_client_cert_file = \"/c.pem\"\n");
    assert!(err.starts_with("routes[0].tls_client_key_file: "), "{err}");
    let err = load("https://127.0.0.1:1\"\ntls_server_name = \"not a name\"\n");
    assert!(err.starts_with("routes[0].tls_server_name: "), "{err}");

    // A CA file that cannot be read stops the start (and would refuse a reload).
    let dir = tempfile::tempdir().unwrap();
    let text = crate::harness::config_text(
        dir.path(),
        "127.0.0.1:1".parse().unwrap(),
        "[[routes]]\nname = \"x\"\nprefix = \"/x\"\nupstream = \"https://127.0.0.1:1\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
    );
    let config = portcullis::Config::from_toml(&text, Vec::new()).unwrap();
    let err = match portcullis::App::build(config).await {
        Ok(_) => panic!("built with a missing CA file"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("routes[0].upstream: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
}

/// An upstream on TLS offering exactly `alpn`, serving HTTP/2 with hyper where ALPN picked
/// `h2` and HTTP/1.1 otherwise: every answer says the protocol version and the authority
/// (`:authority`, or `Host`) it received.
async fn h2_tls_upstream(
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    alpn: &[&[u8]],
) -> u16 {
    serve_tls(offering(server, alpn), |tls| serve_by_alpn(tls, None)).await
}

/// A server TLS configuration with one certificate, offering exactly `alpn`.
fn offering(
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    alpn: &[&[u8]],
) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server.0], server.1)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A directory holding `ca.pem` (the upstream's CA), to start Portcullis in, and the route
/// keys that trust it and speak `protocol`.
fn trusting(
    server_ca: &CertifiedIssuer<'static, KeyPair>,
    protocol: &str,
) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), server_ca.pem()).unwrap();
    let keys = format!(
        "tls_ca_file = \"{}/ca.pem\"\nupstream_protocol = \"{protocol}\"\npreserve_host = false\n",
        dir.path().display()
    );
    (dir, keys)
}

/// Serves one TLS connection in the protocol its ALPN picked (HTTP/1.1 when none), each
/// answer saying the version and the authority the request had; an HTTP/2 connection is
/// cut after `h2_for` when given.
async fn serve_by_alpn(tls: ServerTls, h2_for: Option<std::time::Duration>) {
    let service =
        hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let authority = match req.uri().authority() {
                Some(a) => a.to_string(),
                None => req.headers()["host"].to_str().unwrap().to_string(),
            };
            let text = format!("{:?} {authority}", req.version());
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from(text),
            )))
        });
    let io = hyper_util::rt::TokioIo::new(tls);
    if io.inner().get_ref().1.alpn_protocol() == Some(b"h2") {
        let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(io, service);
        let _ = tokio::time::timeout(h2_for.unwrap_or(std::time::Duration::MAX), conn).await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await;
    }
}

#[tokio::test]
async fn an_h2_route_speaks_http2_over_tls_only_when_alpn_agrees() {
    let server_ca = ca("upstream CA");
    let (der, _, _, key) = issue(&server_ca, &["127.0.0.1"]);
    let h2_port = h2_tls_upstream((der.clone(), key.clone_key()), &[b"h2"]).await;
    let http1_port = h2_tls_upstream((der, key), &[b"http/1.1"]).await;
    let (dir, keys) = trusting(&server_ca, "h2");
    let routes = [
        route(h2_port, "h2", &keys),
        route(http1_port, "noalpn", &keys),
    ]
    .concat();
    let srv = TestServer::start_in(dir, &routes).await;
    let r = srv.get("/h2/x").send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("HTTP/2.0 127.0.0.1:{h2_port}"));
    // An upstream that does not agree to h2 is not spoken to in HTTP/2 (or at all).
    assert_eq!(srv.get("/noalpn/x").send().await.status, 502);
}

#[tokio::test]
async fn an_auto_route_speaks_what_the_upstreams_alpn_picks() {
    let server_ca = ca("upstream CA");
    let (der, _, _, key) = issue(&server_ca, &["127.0.0.1"]);
    let both = h2_tls_upstream((der.clone(), key.clone_key()), &[b"h2", b"http/1.1"]).await;
    let http1 = h2_tls_upstream((der.clone(), key.clone_key()), &[b"http/1.1"]).await;
    let silent = h2_tls_upstream((der, key), &[]).await;
    let (dir, keys) = trusting(&server_ca, "auto");
    let routes = [
        route(both, "both", &keys),
        route(http1, "http1", &keys),
        route(silent, "silent", &keys),
    ]
    .concat();
    let srv = TestServer::start_in(dir, &routes).await;
    // Several requests each, the first ones at once: the protocol learnt on the first
    // connection holds for the next.
    for (prefix, port, version) in [
        ("both", both, "HTTP/2.0"),
        ("http1", http1, "HTTP/1.1"),
        ("silent", silent, "HTTP/1.1"),
    ] {
        let path = format!("/{prefix}/x");
        let first = futures_util::future::join_all((0..4).map(|_| srv.get(&path).send())).await;
        for r in first.iter().chain([&srv.get(&path).send().await]) {
            assert_eq!(r.status, 200, "{prefix}: {}", r.text());
            assert_eq!(r.text(), format!("{version} 127.0.0.1:{port}"), "{prefix}");
        }
    }
    // gRPC needs HTTP/2: refused the gRPC way (12, UNIMPLEMENTED) on the route whose
    // upstream picked HTTP/1.1, passed on on the other.
    let h2 = srv.h2().await;
    for (prefix, grpc_status) in [("http1", Some("12")), ("both", None)] {
        let mut client = h2.client.clone().ready().await.unwrap();
        let req = http::Request::post(format!("http://{}/{prefix}/pkg.Svc/Call", srv.addr))
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200, "{prefix}");
        let got = resp
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap());
        assert_eq!(got, grpc_status, "{prefix}");
    }
}

#[tokio::test]
async fn an_auto_route_backs_off_while_its_upstream_is_down() {
    let server_ca = ca("upstream CA");
    let (der, _, _, key) = issue(&server_ca, &["127.0.0.1"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (dir, keys) = trusting(&server_ca, "auto");
    let srv = TestServer::start_in(dir, &route(port, "auto", &keys)).await;
    // Two failed connects, 150 ms apart: the backoff is then 200 ms.
    let r = srv.get("/auto/x").send().await;
    assert_eq!(r.status, 502, "{}", r.text());
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let r = srv.get("/auto/x").send().await;
    assert_eq!(r.status, 502, "{}", r.text());
    // The upstream comes up: within the backoff requests still fail at once, without a
    // connection attempt; after it, the route learns and speaks HTTP/2.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(offering((der, key), &[b"h2", b"http/1.1"])));
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_by_alpn(tls, None).await;
                }
            });
        }
    });
    let r = srv.get("/auto/x").send().await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let r = srv.get("/auto/x").send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("HTTP/2.0 127.0.0.1:{port}"));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_auto_route_follows_an_upstream_that_changes_its_answer() {
    let server_ca = ca("upstream CA");
    let (der, _, _, key) = issue(&server_ca, &["127.0.0.1"]);
    // One listener, two TLS configurations: ALPN offers h2 until `switched`, then
    // http/1.1 only. HTTP/2 connections last 300 ms, so a new connection finds the change.
    let config = |alpn: &[&[u8]]| {
        tokio_rustls::TlsAcceptor::from(Arc::new(offering((der.clone(), key.clone_key()), alpn)))
    };
    let (before, after) = (config(&[b"h2", b"http/1.1"]), config(&[b"http/1.1"]));
    let switched = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = switched.clone();
    let port = crate::harness::serve_each(move |tcp| {
        let acceptor = if flag.load(std::sync::atomic::Ordering::SeqCst) {
            after.clone()
        } else {
            before.clone()
        };
        async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                serve_by_alpn(tls, Some(std::time::Duration::from_millis(300))).await;
            }
        }
    })
    .await
    .port();
    let (dir, keys) = trusting(&server_ca, "auto");
    let srv = TestServer::start_in(dir, &route(port, "moving", &keys)).await;
    let r = srv.get("/moving/x").send().await;
    assert_eq!(r.text(), format!("HTTP/2.0 127.0.0.1:{port}"));
    switched.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // The request whose connect finds the change may fail (502), as may one sent on the
    // connection as it was cut; then HTTP/1.1 for good.
    let mut failed = 0;
    loop {
        let r = srv.get("/moving/x").send().await;
        if r.status == 200 {
            assert_eq!(r.text(), format!("HTTP/1.1 127.0.0.1:{port}"));
            break;
        }
        assert_eq!(r.status, 502, "{}", r.text());
        failed += 1;
        assert!(failed <= 2, "{failed} requests failed");
    }
    for _ in 0..3 {
        let r = srv.get("/moving/x").send().await;
        assert_eq!(r.text(), format!("HTTP/1.1 127.0.0.1:{port}"));
    }
}
