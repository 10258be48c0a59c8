//! How the client subcommands reach a node: dialling (plaintext or TLS) and turning what
//! goes wrong into one-line messages a user can act on.

use std::time::Duration;

use anyhow::anyhow;
use cete_proto::kvs::kvs_client::KvsClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

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

    /// Connects to the node at `address` with this command's TLS settings.
    pub async fn connect_to(&self, address: &str) -> anyhow::Result<Client> {
        let tls = self.tls_config(address)?;
        let uri = cete_actors::address::dial_uri(address, tls.is_some());
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|err| anyhow!("bad gRPC address {address:?}: {}", error_chain(&err)))?
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|err| anyhow!("cannot set up TLS for {address}: {}", error_chain(&err)))?;
        }
        let channel =
            endpoint.connect().await.map_err(|err| anyhow!("cannot reach cete at {address}: {}", error_chain(&err)))?;
        // The node enforces its own value limit; the client takes whatever it is sent.
        Ok(KvsClient::new(channel).max_decoding_message_size(usize::MAX))
    }

    /// TLS when `--certificate-file` is given: the node's certificate must chain to it.
    fn tls_config(&self, address: &str) -> anyhow::Result<Option<ClientTlsConfig>> {
        let Some(path) = &self.certificate_file else {
            return Ok(None);
        };
        let pem =
            std::fs::read(path).map_err(|err| anyhow!("cannot read certificate file {}: {err}", path.display()))?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        // `:9000` dials 127.0.0.1, which certificates rarely name; they do name localhost.
        // Otherwise tonic checks the host that was dialled.
        match (&self.common_name, address.starts_with(':')) {
            (Some(name), _) => tls = tls.domain_name(name.clone()),
            (None, true) => tls = tls.domain_name("localhost"),
            (None, false) => {}
        }
        Ok(Some(tls))
    }
}

/// A failed call as one line: the node's message, or what the status code means.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    if status.message().is_empty() {
        anyhow!("{}", status.code().description())
    } else {
        anyhow!("{}", status.message())
    }
}

/// `err` and its causes on one line: tonic's transport errors say little at the top
/// ("transport error") and the useful part ("Connection refused") underneath.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
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
