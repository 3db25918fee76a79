//! What every command that talks to a shared backend needs: where it is, and a runtime.

use clap::Args;
use switchyard::{Client, Durable, RedisBackend, RedisConfig, Tls, display};

/// Where the shared state lives.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The Redis holding the state, e.g. `redis://127.0.0.1:6380/0` (`rediss://` for TLS,
    /// `redis://:password@host:port` with a password), or the primary behind Sentinels,
    /// followed through failovers: `redis+sentinel://host:26379[,host:26379…]/master-name`.
    /// The value of `SWITCHYARD_URL` is never
    /// shown (it may hold a password), nor is a password in any message.
    #[arg(long, env = "SWITCHYARD_URL", hide_env_values = true)]
    pub url: String,

    /// Namespace of the keys: deployments sharing a Redis keep apart by namespace.
    #[arg(long, env = "SWITCHYARD_NAMESPACE", default_value = "switchyard")]
    pub namespace: String,

    /// For `rediss://` URLs: the PEM file of the CA that signed the servers' certificates,
    /// trusted instead of the system's store.
    #[arg(long, env = "SWITCHYARD_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// Durable mode: every acknowledged change (submit, completion, …) waits until this many
    /// replicas confirmed it, for at most 1 s; fewer is reported as an error.
    #[arg(long, env = "SWITCHYARD_DURABLE", value_name = "REPLICAS", value_parser = clap::value_parser!(u32).range(1..))]
    pub durable: Option<u32>,
}

impl Remote {
    /// Connects, refusing the in-memory backend: its state would die with this process.
    pub async fn connect(&self) -> Result<Client, String> {
        let shown = display::quoted(&display::url(&self.url));
        if self.url.starts_with("memory") {
            return Err(format!(
                "--url {shown}: expected redis://host:port or redis+sentinel://host:port/master \
                 (the in-memory backend lives inside one process; try `switchyard demo` for it)"
            ));
        }
        let mut config = RedisConfig::new(&self.url, &self.namespace);
        if let Some(path) = &self.tls_ca {
            config = config.with_tls(Tls::ca_file(path).map_err(|e| format!("--tls-ca: {e}"))?);
        }
        if let Some(replicas) = self.durable {
            config = config.with_durable(Durable::new(replicas, std::time::Duration::from_secs(1)));
        }
        let backend = RedisBackend::with_config(config)
            .await
            .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
        Ok(Client::new(backend))
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
