//! TLS: a `rediss://` URL against a `redis-server` started with `--tls-port` and a certificate
//! signed by a CA this test makes (with `openssl`). Trusting the CA (`Tls::ca_file`), every
//! kind of connection works over TLS — script calls, a waiting worker's subscription, an
//! awaited outcome; without it, the connection is refused with a certificate error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::path::Path;
use std::process::Command;

use switchyard_redis::{RedisBackend, RedisConfig, Tls};
use switchyard_testkit::awaited_round_trip;
use switchyard_testkit::redis_server::{RedisServer, ServerOptions, free_port};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (Debian: apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=switchyard test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_runs_over_tls_with_a_trusted_ca_and_an_unknown_ca_is_refused() {
    let dir = std::env::temp_dir().join(format!("switchyard-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let file = |name: &str| dir.join(name).display().to_string();
    let tls_port = free_port().unwrap();
    let server = RedisServer::start_with(
        &ServerOptions::default()
            .arg("tls-port", &tls_port.to_string())
            .arg("tls-cert-file", &file("server.crt"))
            .arg("tls-key-file", &file("server.key"))
            .arg("tls-ca-cert-file", &file("ca.crt"))
            .arg("tls-auth-clients", "no"),
    )
    .unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}");

    let config = RedisConfig::new(&url, "sec").with_tls(Tls::ca_file(dir.join("ca.crt")).unwrap());
    let b = RedisBackend::with_config(config).await.unwrap();
    awaited_round_trip(&b, "jobs").await;

    // The system's trust store does not know the test CA.
    let err = RedisBackend::connect(&url, "sec").await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.to_lowercase().contains("certificate"),
        "expected a certificate error: {message}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
