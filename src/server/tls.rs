//! TLS on the listeners (rustls): TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, and a
//! certificate that follows its files. cert-manager (or anyone) replaces the PEM files; the
//! next handshake after the change uses the new pair. A new pair that cannot be read, or
//! whose key does not match its certificate, is logged and the old pair stays.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

use crate::config::TlsFiles;
use crate::proxy::PlainOrTls;

/// How often the certificate files are looked at.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The certificate handshakes get: the last pair that loaded.
#[derive(Debug)]
pub(crate) struct Certificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let pair = CertifiedKey::new(certs, signing);
    pair.keys_match()
        .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    Ok(pair)
}

impl Certificate {
    /// Loads the pair; fails (for start-up to report) if it cannot.
    pub(crate) fn load(files: &TlsFiles) -> Result<Arc<Certificate>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let pair = load(files, &provider)?;
        Ok(Arc::new(Certificate {
            files: files.clone(),
            provider,
            current: ArcSwap::from_pointee(pair),
        }))
    }

    /// A rustls server configuration answering with this certificate.
    pub(crate) fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, String> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Reloads the pair whenever either file's contents change. Runs until dropped.
    pub(crate) async fn watch(self: Arc<Self>) {
        let read = |files: &TlsFiles| {
            (
                std::fs::read(&files.cert).ok(),
                std::fs::read(&files.key).ok(),
            )
        };
        let mut last = read(&self.files);
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = read(&self.files);
            if now == last {
                continue;
            }
            match load(&self.files, &self.provider) {
                Ok(pair) => {
                    self.current.store(Arc::new(pair));
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    last = now;
                }
                // Half-written, or the key not there yet: the old pair stays, and the next
                // change (or the next look, if this one was mid-write) tries again.
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; keeping the old one");
                    last = now;
                }
            }
        }
    }
}

/// A client connection's stream: plain TCP, or TLS over it.
pub(super) type ClientStream = PlainOrTls<TlsStream<TcpStream>>;
