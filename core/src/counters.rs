//! Counters declared once: [`counters!`](crate::counters) makes a struct of monotonic
//! `AtomicU64` counters, each with its doc comment, and its `snapshot()` of `(name, value)` in
//! declaration order, from which both binaries derive their status file, log line and
//! OpenTelemetry metrics.

/// Declares `$vis struct $S` with one `pub AtomicU64` per listed name (docs kept), `Default`,
/// and `snapshot(&self) -> Vec<(&'static str, u64)>` in declaration order.
#[macro_export]
macro_rules! counters {
    ($(#[$sdoc:meta])* $vis:vis struct $S:ident { $($(#[$doc:meta])* $name:ident),* $(,)? }) => {
        $(#[$sdoc])*
        #[derive(Debug, Default)]
        $vis struct $S { $($(#[$doc])* pub $name: ::std::sync::atomic::AtomicU64,)* }

        impl $S {
            /// `(name, value)` of every counter, in declaration order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((
                    stringify!($name),
                    self.$name.load(::std::sync::atomic::Ordering::Relaxed),
                ),)*]
            }
        }
    };
}
