//! Endpoint spelling for libzmq's `bind`, shared by the ingest ROUTER and the live PUB.

/// libzmq wants `*` for an OS-chosen TCP port; accept `:0` too (`tcp://127.0.0.1:0` →
/// `tcp://127.0.0.1:*`). Other endpoints pass unchanged.
pub fn libzmq_endpoint(bind: &str) -> String {
    match bind.strip_suffix(":0") {
        Some(base) if bind.starts_with("tcp://") => format!("{base}:*"),
        _ => bind.to_string(),
    }
}

/// The endpoint `socket` is bound to (the resolved port). Errors: libzmq's, or not UTF-8.
pub fn bound_endpoint(socket: &zmq::Socket, bind: &str) -> anyhow::Result<String> {
    socket
        .get_last_endpoint()?
        .map_err(|_| anyhow::anyhow!("zmq {bind}: endpoint is not UTF-8"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn port_zero_means_any_port() {
        assert_eq!(
            super::libzmq_endpoint("tcp://127.0.0.1:0"),
            "tcp://127.0.0.1:*"
        );
        assert_eq!(
            super::libzmq_endpoint("tcp://0.0.0.0:5556"),
            "tcp://0.0.0.0:5556"
        );
    }
}
