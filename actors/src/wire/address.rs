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

/// Whether dialling `dialled` reaches the listener of `listening` on this host: the same port,
/// and either the same host as written, or a loopback or unspecified host dialled while the
/// listener is on every interface or on loopback (`:9000`, `127.0.0.1:9000`, `localhost:9000`
/// and `0.0.0.0:9000` all dial a node listening on `:9000`).
///
/// Only forms that certainly mean this host count: another host's name or IP may well be a
/// different node on the same port (as in a cluster of containers, every node on `:9000`).
pub fn dials_listener(dialled: &str, listening: &str) -> bool {
    let (Some((dialled_host, dialled_port)), Some((listen_host, listen_port))) =
        (host_and_port(dialled), host_and_port(listening))
    else {
        return false;
    };
    if dialled_port != listen_port {
        return false;
    }
    if dialled_host.eq_ignore_ascii_case(listen_host) {
        return true;
    }
    let local = |host: &str| match host {
        "" | "localhost" => true,
        _ => host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified()),
    };
    let listens_locally =
        listen_addr(listening).is_ok_and(|addr| addr.ip().is_unspecified() || addr.ip().is_loopback());
    local(dialled_host) && listens_locally
}

/// `host:port` (or `:port`, `[v6]:port`) split, the brackets of an IPv6 host removed.
fn host_and_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok()?;
    Some((host.trim_start_matches('[').trim_end_matches(']'), port))
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
    fn every_local_form_of_the_same_port_dials_the_listener() {
        for listening in [":9000", "127.0.0.1:9000", "0.0.0.0:9000", "localhost:9000", "cete1:9000"] {
            for dialled in [":9000", "127.0.0.1:9000", "localhost:9000", "0.0.0.0:9000", "[::1]:9000"] {
                assert!(dials_listener(dialled, listening), "{dialled} should dial {listening}");
            }
        }
        assert!(dials_listener("cete1:9000", "cete1:9000"));
        assert!(dials_listener("10.0.0.5:9000", "10.0.0.5:9000"));
    }

    #[test]
    fn another_port_or_another_host_is_another_node() {
        assert!(!dials_listener(":9001", ":9000"));
        assert!(!dials_listener("localhost:9001", "127.0.0.1:9000"));
        // Every node of a cluster of containers listens on :9000; cete1 is not this one.
        assert!(!dials_listener("cete1:9000", ":9000"));
        assert!(!dials_listener("cete1:9000", "cete2:9000"));
        assert!(!dials_listener("10.0.0.6:9000", "10.0.0.5:9000"));
        // A listener on one interface is not reached through loopback.
        assert!(!dials_listener(":9000", "10.0.0.5:9000"));
        assert!(!dials_listener("garbage", ":9000"));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = listen_addr("not an address").unwrap_err();
        assert!(err.to_string().contains("not an address"));
    }
}
