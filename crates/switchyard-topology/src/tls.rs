//! TLS for `rediss://`, `rediss+sentinel://` and `rediss+cluster://` URLs (rustls, with the `ring` provider).
//!
//! By default a server's certificate is checked against the system's trust store. A server
//! with a certificate from a private CA needs that CA ([`Tls::ca`]); a server that requires
//! client certificates (`tls-auth-clients yes`) needs a certificate and key
//! ([`Tls::client`]). Both are PEM.

use std::path::Path;

use redis::{
    Client, ClientTlsConfig, ConnectionInfo, IntoConnectionInfo, RedisResult, TlsCertificates,
};
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

/// A client for `url`, with `tls`'s certificates when the URL uses TLS (see
/// [`connection_info`]).
pub(crate) fn client(url: &str, tls: Option<&Tls>) -> RedisResult<Client> {
    let secure = is_secure(url);
    if secure {
        install_provider();
    }
    let info = connection_info(url)?;
    match tls {
        Some(tls) if secure => Client::build_with_tls(info, certificates(tls)),
        _ => Client::open(info),
    }
}

/// How to reach and greet the server at `url`:
///
/// * a `password` (and `username`) given in the query, `redis://host:6379/?password=…`, is
///   used when the URL's user part has none (redis-rs reads only the user part, so such a
///   URL would be refused with `NOAUTH` although messages hide the password as a real one);
/// * no `CLIENT SETINFO` is sent on connecting: Redis before 7.2 answers it with an error,
///   two per connection in its error statistics, which an operator reads as trouble.
pub(crate) fn connection_info(url: &str) -> RedisResult<ConnectionInfo> {
    let info = url.into_connection_info()?;
    let mut redis = info.redis_settings().clone().set_skip_set_lib_name();
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decoded(value);
        match name {
            "password" if redis.password().is_none() && !value.is_empty() => {
                redis = redis.set_password(value);
            }
            "username" if redis.username().is_none() && !value.is_empty() => {
                redis = redis.set_username(value);
            }
            _ => {}
        }
    }
    Ok(info.set_redis_settings(redis))
}

/// `text` with `%XX` escapes (and `+`, a space in a query) decoded; a malformed escape is kept
/// as it is.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_query_is_used_and_setinfo_is_not_sent() {
        let info = connection_info("redis://127.0.0.1:7000/?password=p%40ss&username=app").unwrap();
        assert_eq!(info.redis_settings().password(), Some("p@ss"));
        assert_eq!(info.redis_settings().username(), Some("app"));
        assert!(info.redis_settings().skip_set_lib_name());
        // The user part wins.
        let info = connection_info("redis://:own@127.0.0.1:7000/?password=other").unwrap();
        assert_eq!(info.redis_settings().password(), Some("own"));
        assert_eq!(percent_decoded("a%2Fb+c%zz%"), "a/b c%zz%");
    }
}
