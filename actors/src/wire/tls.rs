//! TLS for every Cete connection: the server identity (`--certificate-file`, `--key-file`) and
//! the client side that trusts exactly the configured certificate and checks the expected
//! name (`--common-name`).
//!
//! Why a verifier of our own: the certificate Cete's README has users make
//! (`openssl req -x509 ... -subj '/CN=localhost'`) is self-signed, marked as a CA, and names
//! its host only in the common name. rustls' WebPKI verifier rightly refuses that as a server
//! certificate (a CA used as an end entity, no subjectAltName). Cete accepts it only when the
//! server presents *exactly* the certificate the client was configured with — trust by
//! identity, as with a pinned key — and that certificate names the expected host (its
//! subjectAltNames if it has any, else its common name). Any other certificate, such as one
//! issued by a CA, goes through the full WebPKI verification with the configured file as the
//! trust root. The handshake signatures are always verified.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{CeteError, CeteResult};
use crate::wire::address::dial_host_port;

/// Reads every certificate of a PEM file.
pub fn read_certificates(path: &Path) -> CeteResult<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CeteError::InvalidArgument(format!("cannot read certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(CeteError::InvalidArgument(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(path: &Path) -> CeteResult<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| CeteError::InvalidArgument(format!("cannot read a private key from {}: {e}", path.display())))
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The rustls server configuration for a node's certificate and key (HTTPS); with
/// `client_ca_file`, every client must present a certificate that CA issued (mTLS), or the
/// handshake fails.
pub fn server_config(
    certificate_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> CeteResult<rustls::ServerConfig> {
    let certs = read_certificates(certificate_file)?;
    let key = read_private_key(key_file)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CeteError::internal("tls", e))?;
    let builder = match client_ca_file {
        Some(path) => builder.with_client_cert_verifier(client_verifier(path)?),
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| CeteError::InvalidArgument(format!("certificate and key do not make a TLS identity: {e}")))
}

/// Accepts the client certificates the CA(s) in `path` issued, and no client without one.
fn client_verifier(path: &Path) -> CeteResult<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots.add(cert).map_err(|e| {
            CeteError::InvalidArgument(format!("{} holds a certificate that cannot be a CA: {e}", path.display()))
        })?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| CeteError::InvalidArgument(format!("cannot verify clients with {}: {e}", path.display())))
}

/// What a client trusts: the configured certificate(s), and the name servers must carry
/// (`--common-name`; without one, the host of the address dialled, `localhost` for `:port`).
#[derive(Clone)]
pub struct ClientTls {
    trusted: Vec<CertificateDer<'static>>,
    common_name: Option<String>,
    /// The certificate chain and key this client presents, to servers that ask for one (mTLS).
    identity: Option<Arc<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientTls({} certificates, name {:?})", self.trusted.len(), self.common_name)
    }
}

impl ClientTls {
    pub fn new(certificate_file: &Path, common_name: Option<&str>) -> CeteResult<Self> {
        let trusted = read_certificates(certificate_file)?;
        let common_name = common_name.filter(|n| !n.is_empty()).map(str::to_string);
        Ok(ClientTls { trusted, common_name, identity: None })
    }

    /// This client, presenting the certificate (chain) and key in these files to servers that
    /// ask for a client certificate.
    pub fn with_identity(self, certificate_file: &Path, key_file: &Path) -> CeteResult<Self> {
        let identity = (read_certificates(certificate_file)?, read_private_key(key_file)?);
        Ok(ClientTls { identity: Some(Arc::new(identity)), ..self })
    }

    /// The rustls client configuration for connecting to `address`.
    fn config_for(&self, address: &str) -> CeteResult<Arc<ClientConfig>> {
        let expected = self.common_name.clone().unwrap_or_else(|| default_expected_name(address));
        let verifier = PinnedOrWebPki::new(self.trusted.clone(), &expected)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CeteError::internal("tls", e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match &self.identity {
            Some(identity) => {
                builder.with_client_auth_cert(identity.0.clone(), identity.1.clone_key()).map_err(|e| {
                    CeteError::InvalidArgument(format!(
                        "the client certificate and key do not make a TLS identity: {e}"
                    ))
                })?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The name a client expects a server at `address` to carry when none is configured.
pub fn default_expected_name(address: &str) -> String {
    let host_port = dial_host_port(address);
    let host = host_port.rsplit_once(':').map(|(host, _)| host).unwrap_or(&host_port);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if address.starts_with(':') || host == "127.0.0.1" || host == "::1" {
        "localhost".to_string()
    } else {
        host.to_string()
    }
}

fn endpoint(address: &str, connect_timeout: Duration) -> CeteResult<Endpoint> {
    // The scheme stays http even with TLS: TLS is done by [`connector`], with Cete's verifier.
    Ok(Endpoint::from_shared(format!("http://{}", dial_host_port(address)))
        .map_err(|e| CeteError::InvalidArgument(format!("bad address {address:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

type TlsIo = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Dials TCP, then runs the TLS handshake with `config`.
fn connector(
    config: Arc<ClientConfig>,
) -> impl tower::Service<
    Uri,
    Response = TlsIo,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TlsIo>> + Send,
> + Clone
       + Send
       + 'static {
    let tls = tokio_rustls::TlsConnector::from(config);
    tower::service_fn(move |uri: Uri| {
        let tls = tls.clone();
        async move {
            let host = uri.host().unwrap_or("localhost").trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            // The verifier checks the configured name, whatever the address dialled.
            let server_name = ServerName::try_from(host).map_err(std::io::Error::other)?;
            Ok(TokioIo::new(tls.connect(server_name, tcp).await?))
        }
    })
}

/// A gRPC channel to `address` that connects lazily (and reconnects), over TLS when `tls`
/// is given.
pub fn channel(address: &str, tls: Option<&ClientTls>, connect_timeout: Duration) -> CeteResult<Channel> {
    let endpoint = endpoint(address, connect_timeout)?;
    Ok(match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(connector(tls.config_for(address)?)),
        None => endpoint.connect_lazy(),
    })
}

/// A gRPC channel to `address`, connected now: an unreachable node or a refused certificate
/// is reported here, with its cause.
pub async fn connect(address: &str, tls: Option<&ClientTls>, connect_timeout: Duration) -> CeteResult<Channel> {
    let endpoint = endpoint(address, connect_timeout)?;
    let connected = match tls {
        Some(tls) => endpoint.connect_with_connector(connector(tls.config_for(address)?)).await,
        None => endpoint.connect().await,
    };
    connected.map_err(|e| CeteError::Unavailable(format!("cannot reach cete at {address}: {}", error_chain(&e))))
}

/// An error and its causes on one line: transport errors say little at the top
/// ("transport error") and the useful part ("Connection refused") underneath.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
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

/// Whether `err`, or an error that caused it, is an `E` (also when wrapped in an
/// `io::Error`, whose `source` skips the error it wraps): how a transport error is told
/// apart by its type, never by its text.
pub fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    cause::<E>(err).is_some()
}

/// The first `E` among `err` and the errors that caused it (see [`caused_by`]).
fn cause<'a, E: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    std::iter::successors(Some(err), |e| e.source()).find_map(|e| {
        e.downcast_ref::<E>()
            .or_else(|| e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|i| i.downcast_ref()))
    })
}

/// Whether the server turned this client's certificate down, or asked for one it did not get
/// (a node with `--client-ca-file`): the TLS alert that says so, as the handshake's (TLS 1.3:
/// the first request's) failure.
pub fn refused_client_certificate(err: &(dyn std::error::Error + 'static)) -> bool {
    use rustls::AlertDescription::*;
    matches!(
        cause::<rustls::Error>(err),
        Some(rustls::Error::AlertReceived(
            CertificateRequired | BadCertificate | UnknownCA | CertificateUnknown | UnsupportedCertificate
        ))
    )
}

/// Whether a call failed in the TLS handshake (a certificate one side refuses): retrying
/// will not change that.
pub fn refused_by_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<rustls::Error>(err)
}

/// Whether a gRPC call never reached its peer (the channel could not connect, or its TLS
/// handshake failed), so the request is safe to send elsewhere.
pub fn never_connected(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && caused_by::<tonic::ConnectError>(status)
}

/// Accepts the pinned certificate(s) by identity (plus a name check), anything else by WebPKI.
#[derive(Debug)]
struct PinnedOrWebPki {
    pinned: Vec<CertificateDer<'static>>,
    expected_name: String,
    expected: ServerName<'static>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedOrWebPki {
    fn new(trusted: Vec<CertificateDer<'static>>, expected_name: &str) -> CeteResult<Self> {
        let expected = ServerName::try_from(expected_name.to_string())
            .map_err(|e| CeteError::InvalidArgument(format!("bad common name {expected_name:?}: {e}")))?;
        let provider = provider();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(trusted.iter().cloned());
        // A certificate that cannot serve as a root (not a CA) can still be pinned.
        let webpki = if added > 0 {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().ok()
        } else {
            None
        };
        Ok(PinnedOrWebPki { pinned: trusted, expected_name: expected_name.to_string(), expected, webpki, provider })
    }
}

/// Whether `cert` names `expected`: its DNS/IP subjectAltNames when it has any, else its CN.
fn names_host(cert: &CertificateDer<'_>, expected: &str) -> Result<bool, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|e| format!("unparsable certificate: {e}"))?;
    if !parsed.validity().is_valid() {
        return Err("the certificate has expired or is not yet valid".into());
    }
    let expected_ip: Option<IpAddr> = expected.parse().ok();
    let sans = parsed.subject_alternative_name().ok().flatten();
    if let Some(sans) = sans.filter(|s| !s.value.general_names.is_empty()) {
        return Ok(sans.value.general_names.iter().any(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => dns_matches(dns, expected),
            x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                expected_ip.is_some_and(|ip| ip_bytes(ip) == *bytes)
            }
            _ => false,
        }));
    }
    let named =
        parsed.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).any(|cn| dns_matches(cn, expected));
    Ok(named)
}

fn dns_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|pinned| pinned.as_ref() == end_entity.as_ref()) {
            return match names_host(end_entity, &self.expected_name) {
                Ok(true) => Ok(ServerCertVerified::assertion()),
                Ok(false) => Err(rustls::Error::General(format!(
                    "the server's certificate is not issued for {:?}",
                    self.expected_name
                ))),
                Err(e) => Err(rustls::Error::General(e)),
            };
        }
        match &self.webpki {
            Some(webpki) => {
                webpki.verify_server_cert(end_entity, intermediates, &self.expected, ocsp_response, now).map_err(|e| {
                    rustls::Error::General(format!(
                        "the server's certificate is neither the configured one nor issued by it ({e})"
                    ))
                })
            }
            None => Err(rustls::Error::General(
                "the server's certificate is neither the configured one nor issued by it".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_label() {
        assert!(dns_matches("*.example.com", "a.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(dns_matches("LocalHost", "localhost"));
    }

    #[test]
    fn default_names_follow_the_address() {
        assert_eq!(default_expected_name(":9000"), "localhost");
        assert_eq!(default_expected_name("127.0.0.1:9000"), "localhost");
        assert_eq!(default_expected_name("node2.cete:9000"), "node2.cete");
    }
}
