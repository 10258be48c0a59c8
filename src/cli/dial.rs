//! How the client subcommands reach a node: dialling (plaintext or TLS) and turning what
//! goes wrong into one-line messages a user can act on.

use std::time::Duration;

use anyhow::anyhow;
use cete_actors::wire::tls::ClientTls;
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
        let tls = match &self.certificate_file {
            Some(path) => Some(ClientTls::new(path, self.common_name.as_deref())?),
            None => None,
        };
        let channel = cete_actors::wire::tls::connect(address, tls.as_ref(), CONNECT_TIMEOUT).await?;
        // The node enforces its own value limit; the client takes whatever it is sent.
        Ok(KvsClient::new(channel).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX))
    }
}

/// A failed call as one line: the node's message, or what the status code means.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    let message = status.message();
    let broken_protocol = ["transport error", "h2 protocol error", "http2 error", "frame with invalid size"]
        .iter()
        .any(|sign| message.contains(sign));
    if matches!(status.code(), tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Unavailable)
        && broken_protocol
    {
        return anyhow!("transport error: the node did not speak gRPC; if it runs with TLS, pass --certificate-file");
    }
    if status.message().is_empty() {
        anyhow!("{}", status.code().description())
    } else {
        anyhow!("{}", status.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_args(address: &str) -> ClientArgs {
        ClientArgs { grpc_address: address.into(), certificate_file: None, common_name: None }
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
