//! HTTP from the tests: one blocking client, and answers read in full.

use std::sync::OnceLock;
use std::time::Duration;

/// An HTTP answer, read in full.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Every header, its name in lower case.
    pub headers: Vec<(String, String)>,
}

/// Shows the body as text, cut short, so a failed assertion stays readable.
impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let shown: String = text.chars().take(300).collect();
        let cut = if shown.len() < text.len() { "..." } else { "" };
        write!(f, "{} {:?} {shown:?}{cut}", self.status, self.content_type)
    }
}

impl Reply {
    /// The value of header `name` (any case), if the answer has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, value)| value.as_str())
    }

    /// Header `name` as a number; panics when it is missing or not one.
    pub fn number(&self, name: &str) -> u64 {
        let value = self.header(name).unwrap_or_else(|| panic!("no {name} header in {self:?}: {:?}", self.headers));
        value.trim_matches('"').parse().unwrap_or_else(|_| panic!("{name}: {value:?} is not a number"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): status {} {:?}", self.status, self.text()))
    }

    /// Asserts this is an error of `status` with a JSON body `{"error":"<something>"}`.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status, status, "unexpected answer: {self:?}");
        assert!(
            self.content_type.starts_with("application/json"),
            "error Content-Type {:?}, body {:?}",
            self.content_type,
            self.text()
        );
        let error = &self.json()["error"];
        assert!(error.as_str().is_some_and(|message| !message.is_empty()), "no \"error\" message in {:?}", self.text());
    }

    pub fn assert_success(&self) {
        assert!((200..300).contains(&self.status), "unexpected answer: {self:?}");
    }
}

/// One client for the whole test process. Plain HTTP only; proxies in the environment ignored.
pub fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client")
    })
}

pub fn try_http(
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
    content_type: Option<&str>,
) -> Result<Reply, reqwest::Error> {
    let mut request = client().request(method, url).body(body);
    if let Some(content_type) = content_type {
        request = request.header(reqwest::header::CONTENT_TYPE, content_type);
    }
    read_reply(request.send()?)
}

pub fn http(method: reqwest::Method, url: &str, body: Vec<u8>, content_type: Option<&str>) -> Reply {
    try_http(method.clone(), url, body, content_type).unwrap_or_else(|e| panic!("{method} {url} failed: {e}"))
}

/// Whether anything answers HTTP on `address` (`host:port`).
pub fn answers_http(address: &str) -> bool {
    let url = format!("http://{address}/v1/liveness_check");
    try_http(reqwest::Method::GET, &url, Vec::new(), None).is_ok()
}

/// Like [`try_http`], giving up after `timeout`: for nodes that may be down or paused.
pub fn try_http_within(
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Reply, reqwest::Error> {
    read_reply(client().request(method, url).body(body).timeout(timeout).send()?)
}

/// HTTPS the way Cete's README does it: `curl --cacert CA https://localhost:PORT/...`.
///
/// `Err` carries curl's exit code and message when no HTTP answer came back (a refused
/// certificate is exit code 60).
pub fn curl(
    method: &str,
    url: &str,
    body: &[u8],
    cacert: &std::path::Path,
    timeout: Duration,
) -> Result<Reply, CurlError> {
    curl_as(method, url, body, cacert, None, timeout)
}

/// A client certificate and its key (PEM files).
pub type ClientIdentity = (std::path::PathBuf, std::path::PathBuf);

/// [`curl`], presenting `client` as the client certificate (`--cert`, `--key`) when given.
pub fn curl_as(
    method: &str,
    url: &str,
    body: &[u8],
    cacert: &std::path::Path,
    client: Option<&ClientIdentity>,
    timeout: Duration,
) -> Result<Reply, CurlError> {
    let dir = super::temp_dir();
    let body_in = dir.path().join("request");
    let body_out = dir.path().join("response");
    let headers_out = dir.path().join("headers");
    std::fs::write(&body_in, body).expect("write the request body");
    let mut command = std::process::Command::new("curl");
    command
        .args(["--silent", "--show-error", "--noproxy", "*", "--request", method])
        .arg("--cacert")
        .arg(cacert)
        .args(["--max-time", &format!("{:.1}", timeout.as_secs_f64())])
        .args(["--write-out", "%{http_code} %{content_type}"])
        .arg("--output")
        .arg(&body_out)
        .arg("--dump-header")
        .arg(&headers_out);
    if let Some((certificate, key)) = client {
        command.arg("--cert").arg(certificate).arg("--key").arg(key);
    }
    if !body.is_empty() {
        command.arg("--data-binary").arg(format!("@{}", body_in.display()));
        command.args(["--header", "Content-Type:"]);
    }
    // `localhost` is what the certificate names; the nodes listen on 127.0.0.1 only.
    if let Some(port) = url.strip_prefix("https://localhost:").and_then(|rest| rest.split('/').next()) {
        command.args(["--resolve", &format!("localhost:{port}:127.0.0.1")]);
    }
    let output = command.arg(url).output().expect("run curl");
    if !output.status.success() {
        return Err(CurlError {
            exit_code: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let written = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, content_type) = written.split_once(' ').unwrap_or((&written, ""));
    Ok(Reply {
        status: status.parse().unwrap_or_else(|_| panic!("curl wrote no status: {written:?}")),
        content_type: content_type.to_string(),
        body: std::fs::read(&body_out).unwrap_or_default(),
        headers: std::fs::read_to_string(&headers_out)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect(),
    })
}

/// curl could not get an HTTP answer.
#[derive(Debug)]
pub struct CurlError {
    pub exit_code: Option<i32>,
    pub stderr: String,
}

/// A response read in full: status, Content-Type and body.
pub fn read_reply(response: reqwest::blocking::Response) -> Result<Reply, reqwest::Error> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let body = response.bytes()?.to_vec();
    Ok(Reply { status, content_type, body, headers })
}
