//! What every command that talks to a shared backend needs: where it is, and a runtime.

use clap::Args;
use switchyard::{Client, display};

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
        Client::connect(&self.url, &self.namespace)
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
