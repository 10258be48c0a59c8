//! Cete's address convention, shared by every listener and dialler.
//!
//! Users write addresses the way the Go server taught them: `:9000` means "all interfaces"
//! when listened on and "this host" when dialled; `host:port` means itself.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::CeteError;

/// The socket address a server binds for `address` (`:9000` binds every interface).
pub fn listen_addr(address: &str) -> Result<SocketAddr, CeteError> {
    let full = if address.starts_with(':') { format!("0.0.0.0{address}") } else { address.to_string() };
    full.to_socket_addrs()
        .map_err(|e| CeteError::InvalidArgument(format!("bad listen address {address:?}: {e}")))?
        .next()
        .ok_or_else(|| CeteError::InvalidArgument(format!("listen address {address:?} resolves to nothing")))
}

/// The `host:port` a client dials for `address` (`:9000` dials localhost).
pub fn dial_host_port(address: &str) -> String {
    if address.starts_with(':') {
        format!("127.0.0.1{address}")
    } else {
        address.to_string()
    }
}

/// The URI a gRPC client dials for `address`, `https` when TLS is on.
pub fn dial_uri(address: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host_port = dial_host_port(address);
    if host_port.contains("://") {
        host_port
    } else {
        format!("{scheme}://{host_port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_port_listens_everywhere_and_dials_localhost() {
        assert_eq!(listen_addr(":9000").unwrap().to_string(), "0.0.0.0:9000");
        assert_eq!(dial_host_port(":9000"), "127.0.0.1:9000");
        assert_eq!(dial_uri(":9000", false), "http://127.0.0.1:9000");
        assert_eq!(dial_uri("localhost:9000", true), "https://localhost:9000");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = listen_addr("not an address").unwrap_err();
        assert!(err.to_string().contains("not an address"));
    }
}
