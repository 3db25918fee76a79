//! How error messages show what a caller gave: [`quoted`] values, [`duration`]s, and [`url`]s
//! without their passwords.
//!
//! A message must stay readable whatever the input was: a 10 KB name is not echoed whole, a
//! newline or a NUL byte does not break the line or the terminal, and a character outside the
//! allowed set is named as the character it is (`'é'`), not as one of its bytes.

use std::fmt::Write as _;
use std::time::Duration;

/// Characters of a value shown before it is cut.
pub const QUOTE_MAX_CHARS: usize = 48;

/// `value` in backquotes, with control characters escaped (`\n`, `\0`, `\u{1b}`) and cut after
/// [`QUOTE_MAX_CHARS`] characters, saying how long it was.
///
/// ```
/// use switchyard_core::display::quoted;
/// assert_eq!(quoted("emails"), "`emails`");
/// assert_eq!(quoted("a\nb\0"), "`a\\nb\\0`");
/// let long = quoted(&"x".repeat(10_000));
/// assert!(long.len() < 100, "{long}");
/// assert!(long.ends_with("…` (10000 bytes)"), "{long}");
/// ```
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(QUOTE_MAX_CHARS * 2) + 2);
    out.push('`');
    let mut cut = false;
    for (i, c) in value.chars().enumerate() {
        if i == QUOTE_MAX_CHARS {
            cut = true;
            break;
        }
        push_escaped(&mut out, c);
    }
    if cut {
        let _ = write!(out, "…` ({} bytes)", value.len());
    } else {
        out.push('`');
    }
    out
}

/// One character as [`quoted`] and [`character`] show it.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\0' => out.push_str("\\0"),
        c if c.is_control() => out.extend(c.escape_default()),
        c => out.push(c),
    }
}

/// A character in single quotes, escaped as [`quoted`] escapes it: `'é'`, `'\n'`, `' '`.
///
/// ```
/// use switchyard_core::display::character;
/// assert_eq!(character('é'), "'é'");
/// assert_eq!(character('\n'), "'\\n'");
/// ```
pub fn character(c: char) -> String {
    let mut out = String::from("'");
    push_escaped(&mut out, c);
    out.push('\'');
    out
}

/// A duration as a message shows it: whole milliseconds when it is some (`250 ms`,
/// `90000 ms`), with the fraction when it has one (`1.5 ms`), and microseconds or nanoseconds
/// below a millisecond, so that nothing short reads as `0 ms`.
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::display::duration;
/// assert_eq!(duration(Duration::from_millis(250)), "250 ms");
/// assert_eq!(duration(Duration::from_micros(1500)), "1.5 ms");
/// assert_eq!(duration(Duration::from_micros(500)), "500 µs");
/// assert_eq!(duration(Duration::from_nanos(20)), "20 ns");
/// assert_eq!(duration(Duration::ZERO), "0 ms");
/// ```
pub fn duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0 ms".into();
    }
    if nanos < 1_000 {
        return format!("{nanos} ns");
    }
    if nanos < 1_000_000 {
        return trimmed(nanos, 1_000, "µs");
    }
    trimmed(nanos, 1_000_000, "ms")
}

/// `n / unit` with up to three decimals, trailing zeros dropped.
fn trimmed(n: u128, unit: u128, suffix: &str) -> String {
    let whole = n / unit;
    let thousandths = (n % unit) * 1000 / unit;
    if thousandths == 0 {
        return format!("{whole} {suffix}");
    }
    let frac = format!("{thousandths:03}");
    format!("{whole}.{} {suffix}", frac.trim_end_matches('0'))
}

/// A URL as messages and logs show it: a password in it is replaced by `***` (the user name
/// stays, so that an ACL problem can still be told apart), and so is the value of a query
/// parameter whose name ends in `password` (`password=`, `sentinel_password=`).
///
/// ```
/// use switchyard_core::display::url;
/// assert_eq!(url("redis://:s3cret@127.0.0.1:6399"), "redis://:***@127.0.0.1:6399");
/// assert_eq!(url("rediss://app:s3cret@db:6380/2"), "rediss://app:***@db:6380/2");
/// assert_eq!(url("redis://app@db"), "redis://app@db");
/// assert_eq!(url("redis://db?password=s3cret&x=1"), "redis://db?password=***&x=1");
/// assert_eq!(
///     url("redis+sentinel://:a@h1,h2/jobs?sentinel_password=b"),
///     "redis+sentinel://:***@h1,h2/jobs?sentinel_password=***"
/// );
/// assert_eq!(url("redis://127.0.0.1:6380"), "redis://127.0.0.1:6380");
/// ```
pub fn url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = authority_start..authority_start + at;
            if let Some(colon) = out[userinfo.clone()].find(':') {
                out.replace_range(userinfo.start + colon + 1..userinfo.end, "***");
            }
        }
    }
    if let Some(query) = out.find('?') {
        let mut rebuilt = out[..=query].to_owned();
        let params: Vec<String> = out[query + 1..]
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().ends_with("password") => {
                    format!("{k}=***")
                }
                _ => p.to_owned(),
            })
            .collect();
        rebuilt.push_str(&params.join("&"));
        out = rebuilt;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_counts_characters_not_bytes() {
        let s = "é".repeat(QUOTE_MAX_CHARS);
        assert_eq!(quoted(&s), format!("`{s}`"));
        let longer = "é".repeat(QUOTE_MAX_CHARS + 1);
        assert!(quoted(&longer).ends_with(&format!("…` ({} bytes)", longer.len())));
    }

    #[test]
    fn escapes_every_control_character() {
        assert_eq!(quoted("\u{1b}[31m"), "`\\u{1b}[31m`");
        assert_eq!(quoted("tab\there"), "`tab\\there`");
        assert!(!quoted("a\r\nb").contains('\n'));
    }

    #[test]
    fn urls_never_show_a_password() {
        for u in [
            "redis://:s3cret@h:1",
            "redis://user:s3cret@h:1/0",
            "redis://user:s3:cr@et@h:1",
            "redis://h:1/0?password=s3cret",
            "redis+sentinel://:s3cret@h1:26379,h2:26379/mymaster",
        ] {
            assert!(!url(u).contains("s3cret"), "{u} -> {}", url(u));
            assert!(!url(u).contains("cr@et"), "{u} -> {}", url(u));
        }
    }

    #[test]
    fn durations_keep_their_precision() {
        assert_eq!(duration(Duration::from_micros(1)), "1 µs");
        assert_eq!(duration(Duration::from_nanos(1_250)), "1.25 µs");
        assert_eq!(duration(Duration::from_secs(3)), "3000 ms");
        assert_eq!(duration(Duration::from_nanos(999_999)), "999.999 µs");
    }
}
