//! TLS for `rediss://`, `rediss+sentinel://` and `rediss+cluster://` URLs (rustls, with the `ring` provider).
//!
//! By default a server's certificate is checked against the system's trust store. A server
//! with a certificate from a private CA needs that CA ([`Tls::ca`]); a server that requires
//! client certificates (`tls-auth-clients yes`) needs a certificate and key
//! ([`Tls::client`]). Both are PEM.

use std::path::Path;

use redis::{Client, ClientTlsConfig, RedisResult, TlsCertificates};
use switchyard_core::{Error, Result};

/// Certificates beyond the system's trust store.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM of the CA that signed the servers' certificates (instead of the system's store).
    pub ca: Option<Vec<u8>>,
    /// PEM certificate and key this client presents, for servers that ask for one.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("client", &self.client.is_some())
            .finish()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::invalid(what, format!("cannot read {}: {e}", path.display())))
}

impl Tls {
    /// Trusts the CA in the PEM file at `path` (instead of the system's trust store).
    ///
    /// ```
    /// let err = switchyard_topology::Tls::ca_file("/nonexistent/ca.pem").unwrap_err();
    /// assert!(err.to_string().contains("cannot read /nonexistent/ca.pem"));
    /// ```
    pub fn ca_file(path: impl AsRef<Path>) -> Result<Tls> {
        Ok(Tls {
            ca: Some(read("TLS CA file", path.as_ref())?),
            client: None,
        })
    }

    /// Also presents the client certificate and key in these PEM files.
    pub fn with_client_files(
        mut self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Tls> {
        self.client = Some((
            read("TLS client certificate", cert.as_ref())?,
            read("TLS client key", key.as_ref())?,
        ));
        Ok(self)
    }
}

/// Makes rustls use the `ring` provider (once per process; redis-rs brings rustls without
/// choosing one).
pub(crate) fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if a provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Whether `url` asks for TLS (`rediss://`).
pub(crate) fn is_secure(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
}

/// `tls` in redis-rs's form.
pub(crate) fn certificates(tls: &Tls) -> TlsCertificates {
    TlsCertificates {
        client_tls: tls
            .client
            .clone()
            .map(|(client_cert, client_key)| ClientTlsConfig {
                client_cert,
                client_key,
            }),
        root_cert: tls.ca.clone(),
    }
}

/// A client for `url`, with `tls`'s certificates when the URL uses TLS.
pub(crate) fn client(url: &str, tls: Option<&Tls>) -> RedisResult<Client> {
    let secure = is_secure(url);
    if secure {
        install_provider();
    }
    match tls {
        Some(tls) if secure => Client::build_with_tls(url, certificates(tls)),
        _ => Client::open(url),
    }
}
