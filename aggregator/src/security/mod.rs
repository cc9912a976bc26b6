//! Who may do what: scoped bearer tokens for consumers and senders ([`tokens`]), configured in
//! `[security]` ([`config`]). See docs/security.md for the threat model.

pub mod config;
pub mod tokens;
