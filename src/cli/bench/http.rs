//! One plain HTTP/1.1 keep-alive connection per bench client, straight on hyper.
//!
//! A pooled client would hide how many connections the server sees; here a client is exactly
//! one TCP connection, made again only after it broke or a request on it timed out (the answer
//! may still come, and would be taken for the next request's).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where an HTTP endpoint is: `host:port` to dial and to send as `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub authority: String,
}

impl BaseUrl {
    /// Accepts `http://host:port`, `host:port`, or `:port` (this host).
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let text = text.trim();
        if text.starts_with("https://") {
            return Err(format!("{text}: cete bench speaks plain HTTP only; for TLS use gRPC with --certificate-file"));
        }
        let rest = text.strip_prefix("http://").unwrap_or(text);
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("{text}: give an HTTP endpoint as http://host:port, without a path"));
        }
        let authority =
            if authority.starts_with(':') { format!("127.0.0.1{authority}") } else { authority.to_string() };
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(BaseUrl { authority }),
            _ => Err(format!("{text}: an HTTP endpoint needs a port, as in http://127.0.0.1:8000")),
        }
    }
}

/// An answer: the status and the whole body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

pub struct HttpConnection {
    base: BaseUrl,
    connect_timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpConnection {
    /// Dials `base` now, so that a wrong address fails the run before the clock starts.
    pub async fn open(base: BaseUrl, connect_timeout: Duration) -> Result<HttpConnection, String> {
        let mut connection = HttpConnection { base, connect_timeout, sender: None };
        connection.sender = Some(connection.dial().await?);
        Ok(connection)
    }

    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let authority = &self.base.authority;
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(authority))
            .await
            .map_err(|_| format!("cannot reach {authority}: no answer within {:?}", self.connect_timeout))?
            .map_err(|err| format!("cannot reach {authority}: {err}"))?;
        // Small requests one after another: do not let Nagle hold them back.
        stream.set_nodelay(true).map_err(|err| format!("cannot set TCP_NODELAY: {err}"))?;
        let (sender, connection) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|err| format!("HTTP handshake failed: {err}"))?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends one request with `body` (empty for none) and reads the whole answer. On any error
    /// the connection is dropped; the next request dials again.
    pub async fn request(
        &mut self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Answer, String> {
        let result = self.exchange(method, path_and_query, content_type, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    /// Forgets the connection, e.g. after a request on it was abandoned half way.
    pub fn reset(&mut self) {
        self.sender = None;
    }

    async fn exchange(
        &mut self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Answer, String> {
        let sender = match self.sender.take() {
            Some(sender) => sender,
            None => self.dial().await?,
        };
        let sender = self.sender.insert(sender);
        sender.ready().await.map_err(|err| format!("connection lost: {err}"))?;
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, &self.base.authority)
            .header(header::CONTENT_LENGTH, body.len());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(body)).map_err(|err| format!("bad request: {err}"))?;
        let response = sender.send_request(request).await.map_err(|err| format!("request failed: {err}"))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|err| format!("answer cut short: {err}"))?;
        Ok(Answer { status, body: body.to_bytes() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_take_the_usual_spellings() {
        let local = |port: &str| BaseUrl { authority: format!("127.0.0.1:{port}") };
        assert_eq!(BaseUrl::parse(":8000"), Ok(local("8000")));
        assert_eq!(BaseUrl::parse("127.0.0.1:2379"), Ok(local("2379")));
        assert_eq!(BaseUrl::parse("http://127.0.0.1:2379/"), Ok(local("2379")));
        assert_eq!(BaseUrl::parse(" http://localhost:8000"), Ok(BaseUrl { authority: "localhost:8000".into() }));
        assert_eq!(BaseUrl::parse("http://[::1]:8000"), Ok(BaseUrl { authority: "[::1]:8000".into() }));
    }

    #[test]
    fn endpoints_without_a_port_or_with_tls_or_a_path_are_refused() {
        assert!(BaseUrl::parse("localhost").unwrap_err().contains("needs a port"));
        assert!(BaseUrl::parse("http://localhost:http").unwrap_err().contains("needs a port"));
        assert!(BaseUrl::parse("https://localhost:8000").unwrap_err().contains("plain HTTP only"));
        assert!(BaseUrl::parse("http://localhost:8000/v1").unwrap_err().contains("without a path"));
        assert!(BaseUrl::parse("").is_err());
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_with_its_address() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let base = BaseUrl::parse(&format!(":{port}")).expect("valid");
        let err = HttpConnection::open(base, Duration::from_secs(2)).await.err().expect("nothing listens");
        assert!(err.starts_with(&format!("cannot reach 127.0.0.1:{port}")), "{err}");
    }
}
