//! The task type shared by the Redis producer and worker examples.

use serde::{Deserialize, Serialize};

/// Count the words of a text (and pretend it takes a while).
#[derive(Debug, Serialize, Deserialize)]
pub struct CountWords {
    /// The text.
    pub text: String,
    /// How long the work takes, in ms.
    pub work_ms: u64,
}

impl switchyard::Task for CountWords {
    const KIND: &'static str = "count_words";
}

/// What a worker answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Counted {
    /// The number of words.
    pub words: usize,
    /// The worker that counted them.
    pub worker: String,
}

/// The queue both sides use.
pub const QUEUE: &str = "words";

/// `SWITCHYARD_NAMESPACE`, or `switchyard`: the namespace `switchyard status` shows by default.
pub fn namespace() -> String {
    std::env::var("SWITCHYARD_NAMESPACE").unwrap_or_else(|_| "switchyard".to_owned())
}

/// `SWITCHYARD_URL`, or a local Redis on port 6380.
pub fn redis_url() -> String {
    std::env::var("SWITCHYARD_URL").unwrap_or_else(|_| "redis://127.0.0.1:6380".to_owned())
}
