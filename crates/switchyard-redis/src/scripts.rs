//! The Lua scripts, embedded at build time. Each transition file in `lua/` is prefixed with
//! `lua/lib.lua` once, when the backend starts; calls then go out as EVALSHA, and
//! `redis::ScriptInvocation` reloads a script transparently when the server answers NOSCRIPT
//! (after a restart, a failover or `SCRIPT FLUSH`).

use redis::Script;

const LIB: &str = include_str!("../../../lua/lib.lua");

macro_rules! scripts {
    ($($field:ident => $file:literal),* $(,)?) => {
        /// One compiled script per transition.
        #[derive(Debug)]
        pub(crate) struct Scripts {
            $(pub(crate) $field: Script,)*
        }

        impl Scripts {
            pub(crate) fn load() -> Self {
                Scripts {
                    $($field: Script::new(&format!(
                        "{LIB}\n-- {}\n{}", $file, include_str!(concat!("../../../lua/", $file))
                    )),)*
                }
            }

            /// Every script with its file name (for preloading and docs).
            pub(crate) fn all(&self) -> Vec<(&'static str, &Script)> {
                vec![$(($file, &self.$field),)*]
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
    reap_worker => "reap_worker.lua",
    dispatch => "dispatch.lua",
    receive => "receive.lua",
    complete => "complete.lua",
    fail => "fail.lua",
    cancel => "cancel.lua",
    expire_lease => "expire_lease.lua",
    promote => "promote.lua",
    purge => "purge.lua",
    redrive => "redrive.lua",
    peek => "peek.lua",
    await_outcome => "await.lua",
    stats => "stats.lua",
}
