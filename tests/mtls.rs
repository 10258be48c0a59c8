//! Client certificates (README, "TLS"): with `--client-ca-file`, both client front doors serve
//! only clients that present a certificate that CA issued; others are refused at the handshake.
//! Nodes still join each other (through the client API, with their own certificates), and the
//! peer port is as before.
mod common;

use std::path::Path;
use std::time::Duration;

use common::{cli, curl_as, CertificateAuthority, ClientIdentity, Cluster, Issued};

fn identity(issued: &Issued) -> ClientIdentity {
    (issued.chain.clone(), issued.key.clone())
}

fn grpc_args<'a>(address: &'a str, ca: &'a Path, client: Option<&'a ClientIdentity>) -> Vec<&'a str> {
    let mut args = vec!["--grpc-address", address, "--certificate-file", ca.to_str().unwrap()];
    if let Some((certificate, key)) = client {
        args.extend(["--client-certificate-file", certificate.to_str().unwrap()]);
        args.extend(["--client-key-file", key.to_str().unwrap()]);
    }
    args
}

#[test]
fn only_clients_with_a_certificate_from_the_client_ca_are_served() {
    let ca = CertificateAuthority::new("cete-test-ca");
    let stranger_ca = CertificateAuthority::new("another-ca");
    let good = identity(&ca.issue("client", "client1", "DNS:client1"));
    let stranger = identity(&stranger_ca.issue("stranger", "client1", "DNS:client1"));
    let client_ca = ca.cert.to_str().unwrap().to_string();
    let cluster = Cluster::start_mtls_each(3, &ca.cert, &good, &|id| {
        let node = ca.issue(id, "localhost", "DNS:localhost,IP:127.0.0.1");
        vec![
            format!("--certificate-file={}", node.chain.display()),
            format!("--key-file={}", node.key.display()),
            format!("--client-ca-file={client_ca}"),
        ]
    });
    let node = &cluster.nodes[cluster.followers()[0]];
    let url = node.url("/v1/data/secret");
    let timeout = Duration::from_secs(10);

    // HTTPS: the good certificate is served; none, or one from another CA, is refused.
    let put = curl_as("PUT", &url, b"s3cret", &ca.cert, Some(&good), timeout).expect("served");
    assert_eq!(put.status, 200, "{put:?}");
    for client in [None, Some(&stranger)] {
        let refused = curl_as("GET", &url, b"", &ca.cert, client, timeout);
        assert!(refused.is_err(), "a client with {client:?} was served: {refused:?}");
    }

    // The dashboard too: its page and files (whose calls go to the same origin, over the same
    // handshake) only to a client with a certificate.
    for path in ["/ui", "/ui/app.js"] {
        let page = curl_as("GET", &node.url(path), b"", &ca.cert, Some(&good), timeout).expect("served");
        assert_eq!(page.status, 200, "{path}: {page:?}");
        assert!(curl_as("GET", &node.url(path), b"", &ca.cert, None, timeout).is_err(), "{path} without a certificate");
    }

    // gRPC, through the CLI: the same.
    let mut get = vec!["get", "secret"];
    get.extend(grpc_args(&node.addresses.grpc, &ca.cert, Some(&good)));
    let output = cli(&get);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.stdout, b"s3cret");
    for client in [None, Some(&stranger)] {
        let mut get = vec!["get", "secret"];
        get.extend(grpc_args(&node.addresses.grpc, &ca.cert, client));
        let output = cli(&get);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "a client with {client:?} was served");
        assert!(stderr.contains("client certificate"), "{client:?}: {stderr}");
    }
}
