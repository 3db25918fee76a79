//! What every command that talks to a shared backend needs: where it is, and a runtime.

use clap::Args;
use switchyard::{Client, Durable, RedisConfig, Tls};
use switchyard_core::display;

/// Where the shared state lives.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The Redis holding the state, e.g. `redis://127.0.0.1:6380/0` (`rediss://` for TLS,
    /// `redis://:password@host:port` with a password), the primary behind Sentinels,
    /// followed through failovers: `redis+sentinel://host:26379[,host:26379…]/master-name`,
    /// or a Redis Cluster through seed nodes: `redis+cluster://host:port[,host:port…]`.
    /// The value of `SWITCHYARD_URL` is never
    /// shown (it may hold a password), nor is a password in any message.
    #[arg(long, env = "SWITCHYARD_URL", hide_env_values = true)]
    pub url: Option<String>,

    /// Namespace of the keys: deployments sharing a Redis keep apart by namespace.
    #[arg(long, env = "SWITCHYARD_NAMESPACE", default_value = "switchyard")]
    pub namespace: String,

    /// For `rediss://` URLs: the PEM file of the CA that signed the servers' certificates,
    /// trusted instead of the system's store.
    #[arg(long, env = "SWITCHYARD_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// For servers that ask for client certificates (`tls-auth-clients yes`): this client's
    /// PEM certificate (with `--tls-key`).
    #[arg(
        long,
        env = "SWITCHYARD_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of `--tls-cert`.
    #[arg(
        long,
        env = "SWITCHYARD_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,

    /// Spread the namespace over this many partitions (each its own hash tag, so on a Cluster
    /// each can live on its own primary). The first client to say it decides; later ones may
    /// leave it out (they find the partitions) but may not say another number.
    #[arg(long, env = "SWITCHYARD_PARTITIONS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub partitions: Option<u16>,

    /// Durable mode: every acknowledged change (submit, completion, …) waits until this many
    /// replicas confirmed it, for at most 1 s; fewer is reported as an error.
    #[arg(long, env = "SWITCHYARD_DURABLE", value_name = "REPLICAS", value_parser = clap::value_parser!(u32).range(1..))]
    pub durable: Option<u32>,
}

impl Remote {
    /// The URL given, or what to do when none was.
    pub fn url(&self) -> Result<&str, String> {
        self.url.as_deref().ok_or_else(|| {
            "no Redis given: pass --url redis://host:port (or redis+sentinel://…, \
             redis+cluster://…), or set SWITCHYARD_URL"
                .to_owned()
        })
    }

    /// Connects, refusing the in-memory backend: its state would die with this process.
    pub async fn connect(&self) -> Result<Client, String> {
        let url = self.url()?;
        let shown = display::quoted(&display::url(url));
        if url.starts_with("memory") {
            return Err(format!(
                "--url {shown}: expected redis://host:port, redis+sentinel://host:port/master or \
                 redis+cluster://host:port,host:port (the in-memory backend lives inside one \
                 process; try `switchyard demo` for it)"
            ));
        }
        let mut config = RedisConfig::new(url, &self.namespace);
        let mut tls = match &self.tls_ca {
            Some(path) => Some(Tls::ca_file(path).map_err(|e| format!("--tls-ca: {e}"))?),
            None => None,
        };
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let with_client = tls
                .take()
                .unwrap_or_default()
                .with_client_files(cert, key)
                .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
            tls = Some(with_client);
        }
        if let Some(tls) = tls {
            config = config.with_tls(tls);
        }
        if let Some(replicas) = self.durable {
            config = config.with_durable(Durable::new(replicas, std::time::Duration::from_secs(1)));
        }
        Client::redis(config, self.partitions)
            .await
            .map_err(|e| format!("cannot connect to {shown}: {e}"))
    }
}

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Parses a duration in milliseconds given on the command line.
pub fn millis(ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(ms)
}

/// Resolves on the first SIGINT or SIGTERM (SIGINT only, off Unix). Call it inside the runtime.
pub fn stop_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static, String> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
