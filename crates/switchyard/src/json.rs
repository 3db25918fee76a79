//! Payloads and results as JSON, one encoding for the producer and the worker side.

use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_core::{Error, Result};

/// Encodes a value as JSON.
pub(crate) fn to_json<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Codec {
        what,
        reason: e.to_string(),
    })
}

/// Decodes JSON.
pub(crate) fn from_json<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Codec {
        what,
        reason: e.to_string(),
    })
}
