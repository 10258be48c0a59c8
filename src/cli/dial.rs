//! How the client subcommands reach a node: dialling (plaintext or TLS) and turning what
//! goes wrong into one-line messages a user can act on.

use std::time::Duration;

use anyhow::anyhow;
use cete_actors::wire::tls::{refused_client_certificate, ClientTls};
use cete_proto::kvs::kvs_client::KvsClient;
use tonic::transport::Channel;

use super::ClientArgs;

/// A gRPC client of one node's `kvs.KVS` service.
pub type Client = KvsClient<Channel>;

/// A node that does not answer within this is reported down rather than waited on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl ClientArgs {
    /// Connects to the node at `--grpc-address`.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        self.connect_to(&self.grpc_address).await
    }

    /// Connects to the node at `address` with this command's TLS settings: with
    /// `--certificate-file`, the node must present that certificate (or one it issued) for
    /// `--common-name` (default: localhost for `:port`, else the host dialled).
    pub async fn connect_to(&self, address: &str) -> anyhow::Result<Client> {
        let channel = self.channel_to(address).await?;
        // The node enforces its own value limit; the client takes whatever it is sent.
        Ok(KvsClient::new(channel).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX))
    }

    /// A channel to the node at `address`, for any of its services.
    pub async fn channel_to(&self, address: &str) -> anyhow::Result<Channel> {
        let tls = match &self.certificate_file {
            Some(path) => {
                let tls = ClientTls::new(path, self.common_name.as_deref())?;
                Some(match (&self.client_certificate_file, &self.client_key_file) {
                    (Some(certificate), Some(key)) => tls.with_identity(certificate, key)?,
                    _ => tls,
                })
            }
            None => None,
        };
        let dialled = match (&tls, &self.client_certificate_file) {
            (None, _) => Dialled::Plaintext,
            (Some(_), None) => Dialled::Tls,
            (Some(_), Some(_)) => Dialled::TlsWithClientCertificate,
        };
        let _ = DIALLED.set(dialled);
        Ok(cete_actors::wire::tls::connect(address, tls.as_ref(), CONNECT_TIMEOUT).await?)
    }
}

/// How this process dialled, for what a broken call means ([`status_error`]): a client CLI
/// makes its calls with one set of flags.
static DIALLED: std::sync::OnceLock<Dialled> = std::sync::OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialled {
    Plaintext,
    Tls,
    TlsWithClientCertificate,
}

/// A failed call as one line: the node's message, or what the status code means.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    let message = status.message();
    let broken_protocol = ["transport error", "h2 protocol error", "http2 error", "frame with invalid size"]
        .iter()
        .any(|sign| message.contains(sign));
    let broken = matches!(status.code(), tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Unavailable)
        && broken_protocol;
    // Over TLS 1.3 a node that turns a client's certificate down (or finds none) says so after
    // the client's side of the handshake is done: the client sees its first call break, as a
    // transport error or a cancelled call, and never the alert.
    let cut_off = broken || (status.code() == tonic::Code::Cancelled && message.contains("operation was canceled"));
    match (DIALLED.get(), cut_off || refused_client_certificate(&status)) {
        (Some(Dialled::Tls), true) => anyhow!(
            "the node cut the connection off: if it asks for client certificates (--client-ca-file), pass \
             --client-certificate-file and --client-key-file with one its CA issued"
        ),
        (Some(Dialled::TlsWithClientCertificate), true) => anyhow!(
            "the node cut the connection off: it may have turned this client certificate down (is it issued by \
             the node's --client-ca-file?)"
        ),
        _ if broken => {
            anyhow!("transport error: the node did not speak gRPC; if it runs with TLS, pass --certificate-file")
        }
        _ if message.is_empty() => anyhow!("{}", status.code().description()),
        _ => anyhow!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_args(address: &str) -> ClientArgs {
        ClientArgs {
            grpc_address: address.into(),
            certificate_file: None,
            common_name: None,
            client_certificate_file: None,
            client_key_file: None,
        }
    }

    #[tokio::test]
    async fn a_node_that_is_down_is_reported_with_its_address() {
        // A port that was free a moment ago: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let address = format!(":{port}");
        let err = client_args(&address).connect().await.expect_err("nothing listens");
        let message = format!("{err:#}");
        assert!(message.starts_with(&format!("cannot reach cete at {address}: ")), "{message}");
        assert!(message.to_lowercase().contains("refused"), "{message}");
    }

    #[tokio::test]
    async fn a_missing_certificate_file_is_named() {
        let args = ClientArgs { certificate_file: Some("/nonexistent/ca.pem".into()), ..client_args(":9000") };
        let err = args.connect().await.expect_err("no such file");
        assert!(format!("{err:#}").contains("/nonexistent/ca.pem"), "{err:#}");
    }

    #[test]
    fn an_empty_status_message_falls_back_to_the_code() {
        let err = status_error(tonic::Status::unavailable(""));
        assert!(!err.to_string().is_empty());
        assert_eq!(status_error(tonic::Status::not_found("no such key")).to_string(), "no such key");
    }
}
