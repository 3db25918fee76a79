//! W3C trace context carried by a task (`traceparent` and `tracestate`), so that the
//! attempt's span continues the trace of the request that submitted it.

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

/// A W3C `tracestate` value: vendor-specific `key=value` members (e.g.
/// `rojo=00f067aa0ba902b7,congo=t61rcWkgMzE`) that travel with a [`TraceParent`], validated.
///
/// It is carried next to the task's trace parent and handed to the worker's span unchanged,
/// so that vendors' tracing systems keep their state across the queue.
///
/// ```
/// use switchyard_core::TraceState;
///
/// let s = TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")?;
/// assert_eq!(s.as_str(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
/// assert!(TraceState::parse("Upper=case").is_err());
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceState(String);

/// The longest `tracestate` carried, in bytes (the length W3C asks every system to propagate).
pub const TRACE_STATE_MAX_LEN: usize = 512;

/// At most this many members (W3C's limit).
const TRACE_STATE_MAX_MEMBERS: usize = 32;

impl TraceState {
    /// Checks `text` against the W3C `tracestate` grammar: at most 32 comma-separated
    /// `key=value` members with distinct keys, at most [`TRACE_STATE_MAX_LEN`] bytes.
    pub fn parse(text: &str) -> Result<TraceState, Error> {
        let bad = |why: String| Error::invalid("trace state", format!("{text:?}: {why}"));
        if text.len() > TRACE_STATE_MAX_LEN {
            return Err(bad(format!(
                "{} bytes is longer than {TRACE_STATE_MAX_LEN}",
                text.len()
            )));
        }
        let mut keys = Vec::new();
        for member in text.split(',').map(|m| m.trim_matches([' ', '\t'])) {
            if member.is_empty() {
                continue;
            }
            let Some((key, value)) = member.split_once('=') else {
                return Err(bad(format!("{member:?} is not key=value")));
            };
            if !valid_key(key) {
                return Err(bad(format!(
                    "key {key:?}: expected lower-case letters, digits, _ - * / and at most one @"
                )));
            }
            if !valid_value(value) {
                return Err(bad(format!(
                    "value {value:?}: expected 1-256 printable characters without , or = \
                     (not ending in a space)"
                )));
            }
            if keys.contains(&key) {
                return Err(bad(format!("key {key:?} appears twice")));
            }
            keys.push(key);
        }
        if keys.len() > TRACE_STATE_MAX_MEMBERS {
            return Err(bad(format!(
                "{} members is more than {TRACE_STATE_MAX_MEMBERS}",
                keys.len()
            )));
        }
        Ok(TraceState(text.to_owned()))
    }

    /// The whole value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TraceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `tracestate` key: `simple-key`, or `tenant@system`.
fn valid_key(key: &str) -> bool {
    let part = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'*' | b'/')
            })
    };
    match key.split_once('@') {
        None => part(key, 256),
        Some((tenant, system)) => part(tenant, 241) && part(system, 14),
    }
}

/// A `tracestate` value: 1-256 of 0x20-0x7E except `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    (1..=256).contains(&value.len())
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_states_follow_the_w3c_grammar() {
        for ok in [
            "congo=t61rcWkgMzE",
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            "tenant@vendor=x, other=y z",
            "a=1,,b=2",
        ] {
            assert!(TraceState::parse(ok).is_ok(), "{ok:?} refused");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        for bad in [
            "novalue".to_owned(),
            "Upper=x".to_owned(),
            "k=a,k=b".to_owned(),
            "k=has=equals".to_owned(),
            "k=".to_owned(),
            "k=tab\there".to_owned(),
            "@v=x".to_owned(),
            many.join(","),
            format!("k={}", "v".repeat(TRACE_STATE_MAX_LEN)),
        ] {
            assert!(TraceState::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }

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
