//! Certificates made with the openssl CLI, the way Cete's README has users make them, and a
//! small certificate authority for the CA-signed case.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;

use super::temp_dir;

/// A self-signed certificate and its key, from the README's command.
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: TempDir,
}

impl SelfSigned {
    /// `openssl req -x509 -nodes -newkey rsa:2048 -keyout key.pem -out cert.pem -days 365
    /// -subj '/CN=<common_name>'` (the README has rsa:4096; 2048 is as good here, and faster).
    pub fn new(common_name: &str) -> SelfSigned {
        let dir = temp_dir();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        openssl(&format!(
            "req -x509 -nodes -newkey rsa:2048 -keyout {} -out {} -days 365 -subj /CN={common_name}",
            key.display(),
            cert.display()
        ));
        SelfSigned { cert, key, _dir: dir }
    }
}

/// A CA certificate and key that issue server certificates with subjectAltNames.
pub struct CertificateAuthority {
    /// The CA certificate: what clients trust.
    pub cert: PathBuf,
    key: PathBuf,
    dir: TempDir,
}

/// A certificate issued by a [`CertificateAuthority`].
pub struct Issued {
    /// The server certificate followed by the CA's, as servers present them.
    pub chain: PathBuf,
    pub key: PathBuf,
}

impl CertificateAuthority {
    pub fn new(name: &str) -> CertificateAuthority {
        let dir = temp_dir();
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
        openssl(&format!(
            "req -x509 -nodes -newkey rsa:2048 -keyout {} -out {} -days 365 -subj /CN={name}",
            key.display(),
            cert.display()
        ));
        CertificateAuthority { cert, key, dir }
    }

    /// A certificate `file_name` for CN `common_name`, with `subject_alt_names` (e.g.
    /// `DNS:localhost,IP:127.0.0.1`), signed by this CA, for servers and clients alike (a node
    /// shows its own as a client certificate when it joins through another's client API).
    pub fn issue(&self, file_name: &str, common_name: &str, subject_alt_names: &str) -> Issued {
        static SERIAL: AtomicU32 = AtomicU32::new(1000);
        let at = |suffix: &str| self.dir.path().join(format!("{file_name}{suffix}"));
        let (key, request, cert, extensions, chain) =
            (at("-key.pem"), at(".csr"), at(".pem"), at(".ext"), at("-chain.pem"));
        let extension_text = format!(
            "subjectAltName={subject_alt_names}\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
        );
        fs::write(&extensions, extension_text).expect("write the extensions file");
        openssl(&format!(
            "req -nodes -newkey rsa:2048 -keyout {} -out {} -subj /CN={common_name}",
            key.display(),
            request.display()
        ));
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        openssl(&format!(
            "x509 -req -in {} -CA {} -CAkey {} -set_serial {serial} -days 365 -extfile {} -out {}",
            request.display(),
            self.cert.display(),
            self.key.display(),
            extensions.display(),
            cert.display()
        ));
        let mut pem = fs::read(&cert).expect("read the issued certificate");
        pem.extend(fs::read(&self.cert).expect("read the CA certificate"));
        fs::write(&chain, pem).expect("write the chain");
        Issued { chain, key }
    }
}

/// `openssl ARGS`, the arguments written as on a command line (temp paths and names here
/// hold no spaces).
fn openssl(command_line: &str) {
    let output = Command::new("openssl").args(command_line.split_whitespace()).output().expect("run openssl");
    assert!(output.status.success(), "openssl {command_line} failed: {}", String::from_utf8_lossy(&output.stderr));
}
