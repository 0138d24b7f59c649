//! TLS on the listeners: HTTP/1.1 and HTTP/2 (by ALPN) over TLS, plain HTTP refused, the
//! certificate rotated from its files while connections stay open, a broken new pair
//! refused in favour of the old one, and the operator listener behind the same certificate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use crate::harness::TestServer;

/// A self-signed certificate for localhost: (certificate DER, certificate PEM, key PEM).
fn certificate() -> (CertificateDer<'static>, String, String) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (
        key.cert.der().clone(),
        key.cert.pem(),
        key.signing_key.serialize_pem(),
    )
}

fn write_pair(dir: &std::path::Path, cert: &str, key: &str) {
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
}

/// A TLS connection to `addr` trusting `roots`, offering `alpn`.
async fn connect(
    addr: std::net::SocketAddr,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// The certificate the server presents to a new handshake.
async fn presented(addr: std::net::SocketAddr, roots: &[CertificateDer<'static>]) -> Vec<u8> {
    let tls = connect(addr, roots, &[b"http/1.1"]).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

async fn get_h1(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> u16 {
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

fn tls_config(dir: &std::path::Path, admin: bool) -> String {
    format!(
        "[server]\ntls_cert_file = \"{d}/tls.crt\"\ntls_key_file = \"{d}/tls.key\"\nadmin_tls = {admin}\n",
        d = dir.display()
    )
}

/// A server whose listeners speak TLS with a fresh certificate; returns it with the
/// certificate's DER and the directory holding the PEM files.
async fn tls_server(admin: bool) -> (TestServer, CertificateDer<'static>, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (der, cert, key) = certificate();
    write_pair(&path, &cert, &key);
    (
        TestServer::start_in(dir, &tls_config(&path, admin)).await,
        der,
        path,
    )
}

#[tokio::test]
async fn http1_and_http2_over_tls_and_nothing_in_the_clear() {
    let (srv, der, _dir) = tls_server(false).await;
    let roots = [der];
    // HTTP/1.1, chosen by ALPN.
    let tls = connect(srv.addr, &roots, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(matches!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2)
    ));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(get_h1(&mut sender, "/public/x").await, 200);
    assert_eq!(get_h1(&mut sender, "/api/x").await, 401);

    // HTTP/2, chosen by ALPN.
    let tls = connect(srv.addr, &roots, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/public/h2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(srv.echo.last().unwrap().target, "/public/h2");

    // Plain HTTP to the TLS port gets no HTTP answer.
    assert_eq!(srv.raw_get_status("/public/x", "").await, 0);
}

#[tokio::test]
async fn the_certificate_rotates_from_its_files_while_connections_stay_open() {
    let (srv, first, dir) = tls_server(false).await;
    let (second, cert, key) = certificate();
    let roots = [first.clone(), second.clone()];
    // A connection open across the rotation.
    let tls = connect(srv.addr, &roots, &[b"http/1.1"]).await;
    let (mut open, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(get_h1(&mut open, "/public/before").await, 200);

    write_pair(&dir, &cert, &key);
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented(srv.addr, &roots).await != second.to_vec() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get_h1(&mut open, "/public/after").await,
        200,
        "the open connection lives on"
    );

    // A broken pair (a key that does not belong to the certificate) is refused.
    let (_, other_cert, _) = certificate();
    write_pair(&dir, &other_cert, &key);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(presented(srv.addr, &roots).await, second.to_vec());
    std::fs::write(dir.join("tls.crt"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(presented(srv.addr, &roots).await, second.to_vec());
}

#[tokio::test]
async fn the_operator_listener_can_speak_tls_too() {
    let (srv, der, _dir) = tls_server(true).await;
    let tls = connect(srv.admin, &[der], &[b"http/1.1"]).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(get_h1(&mut sender, "/healthz").await, 200);
    assert_eq!(get_h1(&mut sender, "/readyz").await, 200);
}

#[test]
fn half_a_pair_is_a_configuration_error() {
    for (text, key) in [
        (
            "[server]\ntls_cert_file = \"/x.crt\"\n",
            "server.tls_key_file",
        ),
        (
            "[server]\ntls_key_file = \"/x.key\"\n",
            "server.tls_cert_file",
        ),
        ("[server]\nadmin_tls = true\n", "server.admin_tls"),
    ] {
        let err = portcullis::Config::from_toml(text, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(key), "{err}");
    }
}
