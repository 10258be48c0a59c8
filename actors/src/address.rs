//! Cete's address convention, shared by every listener and dialler.
//!
//! Users write addresses the way the Go server taught them: `:9000` means "all interfaces"
//! when listened on and "this host" when dialled; `host:port` means itself.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::CeteError;

/// The socket address a server binds for `address`.
///
/// `:9000` binds every interface; an IP literal binds exactly that IP; `localhost` binds the
/// loopback interface. A host *name* (`cete1:9000`) is what peers and clients dial, while the
/// IP behind it may change under the node (a container reconnected to its network gets a new
/// one), so the node binds every interface on that port and keeps advertising the name.
pub fn listen_addr(address: &str) -> Result<SocketAddr, CeteError> {
    let bad = |why: String| CeteError::InvalidArgument(format!("bad listen address {address:?}: {why}"));
    let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("expected host:port or :port".into()))?;
    let port: u16 = port.parse().map_err(|e| bad(format!("bad port: {e}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if is_host_name(host) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Err(_) => return Err(bad(format!("{host:?} is neither an IP address nor a host name"))),
        },
    };
    Ok(SocketAddr::new(ip, port))
}

fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !label.starts_with('-')
        })
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
    fn names_bind_everywhere_and_ips_exactly() {
        assert_eq!(listen_addr("cete1:7000").unwrap().to_string(), "0.0.0.0:7000");
        assert_eq!(listen_addr("127.0.0.2:7000").unwrap().to_string(), "127.0.0.2:7000");
        assert_eq!(listen_addr("localhost:7000").unwrap().to_string(), "127.0.0.1:7000");
        assert_eq!(listen_addr("[::1]:7000").unwrap().to_string(), "[::1]:7000");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = listen_addr("not an address").unwrap_err();
        assert!(err.to_string().contains("not an address"));
    }
}
