//! W3C trace context carried by a task, so that the attempt's span continues the trace of the
//! request that submitted it.

use serde::{Deserialize, Serialize};

use crate::Error;

/// A W3C `traceparent` value (`version-traceid-parentid-flags`, lower-case hex, e.g.
/// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`), validated.
///
/// A producer's trace context travels with its task: the facade's `Client` attaches the
/// current span's context when built with the `opentelemetry` feature, and the worker's span
/// for each attempt continues it. Without the feature, set it yourself with
/// [`TaskSpecBuilder::trace_parent`](crate::TaskSpecBuilder::trace_parent).
///
/// ```
/// use switchyard_core::TraceParent;
///
/// let t = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?;
/// assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err());
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceParent(String);

/// Length of a version-00 `traceparent`.
pub const TRACE_PARENT_LEN: usize = 55;

impl TraceParent {
    /// Checks `text` against the W3C format (version 00 layout, ids not all zero).
    pub fn parse(text: &str) -> Result<TraceParent, Error> {
        let bad = |why: &str| Error::invalid("trace parent", format!("{text:?}: {why}"));
        let parts: Vec<&str> = text.split('-').collect();
        let [version, trace, parent, flags] = parts[..] else {
            return Err(bad("expected version-traceid-parentid-flags"));
        };
        let hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !hex(version, 2) || version == "ff" {
            return Err(bad("the version must be 2 lower-case hex digits, not ff"));
        }
        if !hex(trace, 32) || trace.bytes().all(|b| b == b'0') {
            return Err(bad(
                "the trace id must be 32 lower-case hex digits, not all zero",
            ));
        }
        if !hex(parent, 16) || parent.bytes().all(|b| b == b'0') {
            return Err(bad(
                "the parent id must be 16 lower-case hex digits, not all zero",
            ));
        }
        if !hex(flags, 2) {
            return Err(bad("the flags must be 2 lower-case hex digits"));
        }
        Ok(TraceParent(text.to_owned()))
    }

    /// The whole value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        u8::from_str_radix(&self.0[53..55], 16).unwrap_or(0)
    }

    /// The 16 hex digits of the parent span id.
    pub fn parent_id(&self) -> &str {
        &self.0[36..52]
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_w3c_example_and_refuses_malformed_values() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceParent::parse(ok).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.parent_id(), "00f067aa0ba902b7");
        assert_eq!(t.as_str().len(), TRACE_PARENT_LEN);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
