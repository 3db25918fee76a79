//! The Lua scripts, embedded at build time and assembled once when the backend starts.
//!
//! Each transition file in `lua/` is run with the parts of `lua/lib.lua` it uses. Assembly
//! happens once per process (never per call), and does two things that matter for speed,
//! because Redis runs a script's whole body on every EVALSHA and every `local function`
//! creates a closure each time:
//!
//! * only the library items a script uses (transitively) are included;
//! * library constants (`local NAME = <number | 'string' | KEYS[n]>`) are substituted as
//!   literals, so that functions capture fewer upvalues.
//!
//! The assembled text is valid Lua with the same meaning as `lib.lua` followed by the script.
//! Calls go out as EVALSHA; `redis::ScriptInvocation` reloads a script transparently when the
//! server answers NOSCRIPT (after a restart, a failover or `SCRIPT FLUSH`).

use std::collections::{BTreeSet, HashMap};

use redis::Script;

const LIB: &str = include_str!("../../../lua/lib.lua");

/// A top-level statement of the library: `local function f`, `local x = …`, with its lines.
#[derive(Debug)]
struct Item {
    names: Vec<String>,
    text: String,
}

/// One lexical token of interest: an identifier and its byte range.
fn identifiers(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'\'' || c == b'"' {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            // Skip field names after `.` or `:` (r.st is a field, not a variable).
            let is_field = start > 0 && matches!(b[start - 1], b'.' | b':');
            if !is_field {
                out.push((start, i));
            }
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// `local A, B = 1, 2` with literal values: the constants it defines.
fn constants(line: &str) -> Option<Vec<(String, String)>> {
    let rest = line.strip_prefix("local ")?;
    let (lhs, rhs) = rest.split_once(" = ")?;
    let rhs = rhs.split(" --").next()?.trim();
    let names: Vec<&str> = lhs.split(',').map(str::trim).collect();
    let values: Vec<&str> = if rhs.starts_with('\'') {
        vec![rhs]
    } else {
        rhs.split(',').map(str::trim).collect()
    };
    if names.len() != values.len() {
        return None;
    }
    let upper = |n: &&str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    let literal = |v: &&str| {
        (v.starts_with('\'')
            && v.ends_with('\'')
            && v.len() >= 2
            && !v[1..v.len() - 1].contains('\''))
            || v.chars().all(|c| c.is_ascii_digit() || " ^-+*".contains(c))
            || (v.starts_with("KEYS[") && v.ends_with(']'))
    };
    if !names.iter().all(upper) || !values.iter().all(literal) {
        return None;
    }
    Some(
        names
            .iter()
            .zip(values)
            .map(|(n, v)| {
                let v = if v.starts_with('\'') || v.starts_with("KEYS") {
                    v.to_owned()
                } else {
                    format!("({v})")
                };
                ((*n).to_owned(), v)
            })
            .collect(),
    )
}

fn split_items(lib: &str) -> (Vec<Item>, HashMap<String, String>) {
    let mut items: Vec<Item> = Vec::new();
    let mut consts = HashMap::new();
    let mut pending_comments = String::new();
    let mut current: Option<Item> = None;
    for line in lib.lines() {
        if let Some(rest) = line.strip_prefix("local ") {
            if let Some(item) = current.take() {
                items.push(item);
            }
            if let Some(cs) = constants(line) {
                consts.extend(cs);
                pending_comments.clear();
                continue;
            }
            let names = match rest.strip_prefix("function ") {
                Some(f) => vec![f.split('(').next().unwrap_or("").trim().to_owned()],
                None => rest
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|n| n.trim().to_owned())
                    .collect(),
            };
            let mut text = std::mem::take(&mut pending_comments);
            text.push_str(line);
            text.push('\n');
            current = Some(Item { names, text });
        } else if line.starts_with("--") {
            // A comment at top level (function bodies are indented) introduces the next item.
            if let Some(item) = current.take() {
                items.push(item);
            }
            pending_comments.push_str(line);
            pending_comments.push('\n');
        } else if let Some(item) = current.as_mut() {
            item.text.push_str(line);
            item.text.push('\n');
        } else {
            pending_comments.clear();
        }
    }
    if let Some(item) = current.take() {
        items.push(item);
    }
    (items, consts)
}

fn substitute(code: &str, consts: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(code.len());
    let mut last = 0;
    for (s, e) in identifiers(code) {
        if let Some(v) = consts.get(&code[s..e]) {
            out.push_str(&code[last..s]);
            out.push_str(v);
            last = e;
        }
    }
    out.push_str(&code[last..]);
    out
}

/// The library items `script` uses, then the script, with constants substituted.
pub(crate) fn assemble(lib: &str, name: &str, script: &str) -> String {
    let (items, consts) = split_items(lib);
    let index: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .flat_map(|(i, it)| it.names.iter().map(move |n| (n.as_str(), i)))
        .collect();
    let uses = |code: &str| -> Vec<usize> {
        identifiers(code)
            .into_iter()
            .filter_map(|(s, e)| index.get(&code[s..e]).copied())
            .collect()
    };
    let mut needed = BTreeSet::new();
    let mut stack = uses(script);
    // `now` is validated by every script.
    stack.extend(index.get("NOW").copied());
    while let Some(i) = stack.pop() {
        if needed.insert(i) {
            stack.extend(uses(&items[i].text).into_iter().filter(|d| *d != i));
        }
    }
    let mut out = String::new();
    for i in needed {
        out.push_str(&items[i].text);
    }
    out.push_str(&format!("-- {name}\n"));
    out.push_str(script);
    substitute(&out, &consts)
}

macro_rules! scripts {
    ($($field:ident => $file:literal),* $(,)?) => {
        /// One assembled script per transition.
        #[derive(Debug)]
        pub(crate) struct Scripts {
            $(pub(crate) $field: Script,)*
        }

        impl Scripts {
            pub(crate) fn load() -> Self {
                Scripts {
                    $($field: Script::new(&assemble(LIB, $file, include_str!(concat!("../../../lua/", $file)))),)*
                }
            }

            /// Every script with its file name (for preloading).
            pub(crate) fn all(&self) -> Vec<(&'static str, &Script)> {
                vec![$(($file, &self.$field),)*]
            }

            /// The assembled source of every script, for inspection.
            #[cfg(test)]
            pub(crate) fn sources() -> Vec<(&'static str, String)> {
                vec![$(($file, assemble(LIB, $file, include_str!(concat!("../../../lua/", $file)))),)*]
            }
        }
    };
}

scripts! {
    declare => "declare.lua",
    submit => "submit.lua",
    register => "register.lua",
    heartbeat => "heartbeat.lua",
    deregister => "deregister.lua",
    drain => "drain.lua",
    reap_worker => "reap_worker.lua",
    dispatch => "dispatch.lua",
    receive => "receive.lua",
    complete => "complete.lua",
    fail => "fail.lua",
    cancel => "cancel.lua",
    promote => "promote.lua",
    purge => "purge.lua",
    redrive => "redrive.lua",
    pause => "pause.lua",
    delete_task => "delete_task.lua",
    purge_queue => "purge_queue.lua",
    reconfigure => "reconfigure.lua",
    delete_queue => "delete_queue.lua",
    peek => "peek.lua",
    await_outcome => "await.lua",
    stats => "stats.lua",
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOY: &str = "local A, B = 1, 'x'\nlocal K = KEYS[2]\n\n-- helper\nlocal function f(x)\n  return x + A -- A\nend\n\nlocal function g() return f(1) end\nlocal function unused() return B end\nlocal T = {}\n";

    #[test]
    fn includes_what_is_used_and_inlines_constants() {
        let out = assemble(TOY, "toy", "return g() .. K .. r.A .. 'A'");
        assert!(out.contains("local function f(x)"), "{out}");
        assert!(out.contains("local function g()"));
        assert!(!out.contains("unused"));
        assert!(!out.contains("local T"));
        assert!(out.contains("return x + (1)"), "{out}");
        assert!(
            out.contains("KEYS[2] .. r.A .. 'A'"),
            "fields and strings untouched: {out}"
        );
        assert!(!out.contains("local A"));
    }

    #[test]
    fn every_script_assembles_without_dangling_names() {
        let (items, consts) = split_items(LIB);
        let defined: BTreeSet<&str> = items
            .iter()
            .flat_map(|i| i.names.iter().map(String::as_str))
            .collect();
        for (file, source) in Scripts::sources() {
            for name in &defined {
                let declared = source.contains(&format!("local function {name}("))
                    || source.contains(&format!("local {name}"));
                let used = identifiers(&source)
                    .iter()
                    .any(|(s, e)| &source[*s..*e] == *name);
                assert!(
                    !used || declared,
                    "{file} uses {name} without its definition"
                );
            }
            for c in consts.keys() {
                assert!(
                    identifiers(&source)
                        .iter()
                        .all(|(s, e)| &source[*s..*e] != c.as_str()),
                    "{file}: {c} not inlined"
                );
            }
        }
    }
}
