//! Validated names: queues, workers and task kinds.
//!
//! All three share one character set, `A-Z a-z 0-9 _ - . :`, chosen so that a name can be
//! embedded in a Redis key or a composite member without escaping: it contains no `{`/`}` (hash
//! tags), no `|` (the separator Switchyard uses inside sorted-set members, which sorts after every
//! allowed character) and no whitespace.

use std::fmt;
use std::sync::Arc;

use crate::Error;
use crate::display::{character, quoted};

/// Is `b` allowed in a name?
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
}

fn validate(field: &'static str, value: &str, max_len: usize) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(Error::invalid(
            field,
            format!(
                "{} is {} bytes long; at most {max_len} are allowed",
                quoted(value),
                value.len()
            ),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|&c| !c.is_ascii() || !is_name_byte(c as u8))
    {
        return Err(Error::invalid(
            field,
            format!(
                "{} contains {}; only letters, digits, `_`, `-`, `.` and `:` are allowed",
                quoted(value),
                character(bad)
            ),
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Longest accepted name, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps a name.
            pub fn new(value: impl AsRef<str>) -> Result<Self, Error> {
                let value = value.as_ref();
                validate($field, value, Self::MAX_LEN)?;
                Ok($name(Arc::from(value)))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self, Error> {
                $name::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                $name::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $name::new(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// The name of a queue, e.g. `emails` or `video.transcode` (1–64 bytes).
    ///
    /// ```
    /// use switchyard_core::QueueName;
    /// assert!(QueueName::new("emails").is_ok());
    /// assert!(QueueName::new("bad name").is_err());
    /// ```
    QueueName,
    "queue name",
    64
);

name_type!(
    /// The id of a worker, e.g. `host-3:pid-812` (1–128 bytes). Unique among live workers.
    WorkerId,
    "worker id",
    128
);

name_type!(
    /// The kind of a task: the name a worker routes to its handler, e.g. `send_email` (1–128 bytes).
    TaskKind,
    "task kind",
    128
);

name_type!(
    /// The name of a schedule, e.g. `nightly-sitemap` (1–64 bytes, the characters of a queue
    /// name; see [`crate::schedule`]).
    ScheduleName,
    "schedule name",
    64
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(QueueName::new("a.b-c_d:1").is_ok());
        assert!(QueueName::new("").is_err());
        assert!(QueueName::new("x".repeat(65)).is_err());
        assert!(QueueName::new("x".repeat(64)).is_ok());
        for bad in ["a b", "a|b", "a{b}", "é", "a\n"] {
            let err = WorkerId::new(bad).unwrap_err();
            assert!(err.to_string().contains("worker id"), "{err}");
        }
    }

    #[test]
    fn messages_stay_short_and_name_the_character() {
        let err = QueueName::new("café").unwrap_err().to_string();
        assert!(err.contains("contains 'é'"), "{err}");
        let err = QueueName::new("a\nb\0").unwrap_err().to_string();
        assert!(!err.contains('\n') && !err.contains('\0'), "{err:?}");
        assert!(err.contains("'\\n'"), "{err}");
        let err = WorkerId::new("w".repeat(10_000)).unwrap_err().to_string();
        assert!(err.len() < 200, "{} bytes: {err}", err.len());
        assert!(err.contains("10000 bytes"), "{err}");
    }

    #[test]
    fn separator_sorts_after_every_name_byte() {
        for b in 0u8..=255 {
            if is_name_byte(b) {
                assert!(b < b'|', "{}", b as char);
            }
        }
    }
}
