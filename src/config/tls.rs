//! The typed values of the TLS keys: a listener's certificate files, and a route's
//! settings for its `https://` upstream. Parsed in `validate` and `route_rules`.

use std::path::PathBuf;

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How a route talks TLS to its `https://` upstream, when not with the defaults (the
/// public web roots, no client certificate, the URL's host as the server name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// A PEM bundle of the CAs the upstream's certificate must chain to (instead of the
    /// public roots).
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key to present (mutual TLS).
    pub client_cert: Option<TlsFiles>,
    /// The name sent as SNI and checked against the certificate, instead of the URL's host.
    pub server_name: Option<String>,
}
