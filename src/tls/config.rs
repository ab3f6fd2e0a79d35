//! Building rustls configurations: always with an explicit crypto provider,
//! so two providers in one dependency graph can never make rustls panic, and
//! always TLS 1.2 + TLS 1.3 (nothing older).

use crate::error::{ConfigError, Error, PemItem, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// The crypto provider netactor uses: the process default if the application
/// installed one, else the one compiled in (aws-lc-rs by default, or ring).
///
/// Built without either feature (`--no-default-features`, e.g. for a target
/// with no C compiler at hand for aws-lc), netactor does what rustls does:
/// it uses the provider installed with
/// [`CryptoProvider::install_default`], or one passed to
/// [`ClientBuilder::provider`] / [`ServerBuilder::provider`]; with neither,
/// building a TLS configuration fails with [`Error::Config`] naming
/// the three ways out. Plaintext connections never need a provider.
///
/// ```
/// let provider = netactor::tls::crypto_provider().expect("a provider is compiled in");
/// assert!(!provider.cipher_suites.is_empty());
/// ```
pub fn crypto_provider() -> Result<Arc<CryptoProvider>> {
    if let Some(p) = CryptoProvider::get_default() {
        return Ok(p.clone());
    }
    #[cfg(feature = "aws-lc-rs")]
    {
        Ok(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }
    #[cfg(all(not(feature = "aws-lc-rs"), feature = "ring"))]
    {
        Ok(Arc::new(rustls::crypto::ring::default_provider()))
    }
    #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
    {
        Err(ConfigError::NoCryptoProvider.into())
    }
}

/// [`crypto_provider`], where netactor chooses it with TLS 1.3 record keys
/// that idle connections give back (tls/idle_keys.rs).
fn default_provider() -> Result<Arc<CryptoProvider>> {
    if CryptoProvider::get_default().is_none() {
        if let Some(p) = super::idle_keys::own_provider() {
            return Ok(p);
        }
    }
    crypto_provider()
}

fn read_file(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| {
        // An I/O error, with the path (which `io::Error` itself lacks).
        Error::Io(std::sync::Arc::new(std::io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", p.display()),
        )))
    })
}

/// Parses every `CERTIFICATE` block of a PEM document.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| pem_error(PemItem::Certificate, e))?;
    if certs.is_empty() {
        return Err(ConfigError::NoCertificate.into());
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM document.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| pem_error(PemItem::PrivateKey, e))
}

fn pem_error(item: PemItem, e: rustls::pki_types::pem::Error) -> Error {
    ConfigError::Pem {
        item,
        error: Arc::new(e),
    }
    .into()
}

fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem)? {
        roots
            .add(cert)
            .map_err(|e| Error::Config(ConfigError::CaCertificate(e)))?;
    }
    Ok(roots)
}

fn platform_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(ConfigError::NoTrustRoots.into());
    }
    Ok(roots)
}

#[derive(Debug, Clone)]
enum Trust {
    /// The operating system's store (rustls-native-certs), loaded at `build`.
    Platform,
    /// Exactly these roots.
    Roots(RootCertStore),
    /// No verification at all.
    Nothing,
}

/// Builds a client configuration. Verification is **on** unless
/// [`dangerous_accept_any_certificate`](Self::dangerous_accept_any_certificate)
/// is called.
///
/// Build it once and share the `Arc` across connections
/// ([`ConnectOptions::tls`](crate::ConnectOptions::tls),
/// [`TlsSetup::client`](super::TlsSetup::client)): the config holds the
/// session-resumption cache, so sharing it also makes reconnects cheaper.
///
/// ```
/// # fn main() -> netactor::Result<()> {
/// # let ca_pem = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap().cert.pem();
/// use netactor::tls::ClientBuilder;
/// let cfg = ClientBuilder::new()
///     .ca_pem(ca_pem.as_bytes())?          // trust exactly this CA (default: platform roots)
///     .alpn(["h2", "http/1.1"])
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    trust: Trust,
    alpn: Vec<Vec<u8>>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    provider: Option<Arc<CryptoProvider>>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// Verifying against the platform's root certificates (honours
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub fn new() -> Self {
        ClientBuilder {
            trust: Trust::Platform,
            alpn: Vec::new(),
            identity: None,
            provider: None,
        }
    }

    /// Trusts exactly the CA certificates in `pem` instead of the platform
    /// roots (call again to add more).
    pub fn ca_pem(mut self, pem: &[u8]) -> Result<Self> {
        let more = roots_from_pem(pem)?;
        match &mut self.trust {
            Trust::Roots(r) => r.roots.extend(more.roots),
            _ => self.trust = Trust::Roots(more),
        }
        Ok(self)
    }

    /// [`ca_pem`](Self::ca_pem) reading a file.
    pub fn ca_file(self, path: impl AsRef<Path>) -> Result<Self> {
        let pem = read_file(path.as_ref())?;
        self.ca_pem(&pem)
    }

    /// ALPN protocols to offer, most preferred first.
    pub fn alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// A client certificate chain (leaf first) and key to present when the
    /// server asks for one.
    pub fn client_cert_pem(mut self, chain: &[u8], key: &[u8]) -> Result<Self> {
        self.identity = Some((certs_from_pem(chain)?, Arc::new(key_from_pem(key)?)));
        Ok(self)
    }

    /// Uses this crypto provider instead of [`crypto_provider`].
    ///
    /// A provider chosen here (or installed as the process default) is
    /// used as it is. With neither, netactor's own choice also releases
    /// the TLS 1.3 record keys' AEAD contexts of a connection idle for
    /// 250 ms (~1.2 KiB with aws-lc-rs), building them again on its
    /// next record: see ARCHITECTURE.md, "TLS: the engine and its buffers".
    pub fn provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Accepts **any** server certificate for any name: no protection
    /// against an active attacker. For tests and debugging only.
    pub fn dangerous_accept_any_certificate(mut self) -> Self {
        self.trust = Trust::Nothing;
        self
    }

    /// The shareable configuration.
    pub fn build(self) -> Result<Arc<ClientConfig>> {
        let provider = match self.provider {
            Some(p) => p,
            None => default_provider()?,
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = match self.trust {
            Trust::Platform => builder.with_root_certificates(platform_roots()?),
            Trust::Roots(r) => builder.with_root_certificates(r),
            Trust::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        };
        let mut cfg = match self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key.clone_key())
                .map_err(config_error)?,
        };
        cfg.alpn_protocols = self.alpn;
        Ok(Arc::new(cfg))
    }
}

#[derive(Debug, Clone)]
enum ClientAuth {
    None,
    Optional(RootCertStore),
    Required(RootCertStore),
}

/// Builds a server configuration from a certificate chain and its key.
///
/// Build it once and share the `Arc`: pass clones to
/// [`ListenOptions::tls`](crate::ListenOptions::tls) (every accepted
/// connection is TLS), to [`TlsSetup::server`](super::TlsSetup::server) for
/// STARTTLS, or to [`TlsAutostart`](crate::framing::TlsAutostart). Cloning
/// the `Arc` is a reference-count increment; the session-ticket keys and
/// resumption cache inside are shared by all connections.
///
/// ```
/// # fn main() -> netactor::Result<()> {
/// # let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// # let (cert_pem, key_pem, client_ca_pem) = (ck.cert.pem(), ck.signing_key.serialize_pem(), ck.cert.pem());
/// use netactor::tls::ServerBuilder;
/// let cfg = ServerBuilder::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?
///     .client_auth_required(client_ca_pem.as_bytes())?   // optional: mutual TLS
///     .alpn(["smtp"])
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ServerBuilder {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
    alpn: Vec<Vec<u8>>,
    provider: Option<Arc<CryptoProvider>>,
}

impl ServerBuilder {
    /// A certificate chain (leaf first) and private key, already parsed.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        ServerBuilder {
            chain,
            key,
            client_auth: ClientAuth::None,
            alpn: Vec::new(),
            provider: None,
        }
    }

    /// From a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519).
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Self> {
        Ok(Self::new(certs_from_pem(chain)?, key_from_pem(key)?))
    }

    /// [`from_pem`](Self::from_pem) reading both from files.
    pub fn from_pem_files(chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        Self::from_pem(&read_file(chain.as_ref())?, &read_file(key.as_ref())?)
    }

    /// Require a client certificate issued by one of the CAs in `ca_pem`;
    /// clients without one fail the handshake.
    pub fn client_auth_required(mut self, ca_pem: &[u8]) -> Result<Self> {
        self.client_auth = ClientAuth::Required(roots_from_pem(ca_pem)?);
        Ok(self)
    }

    /// Verify a client certificate if the client sends one (it must chain to
    /// a CA in `ca_pem`), but also accept clients without one. See
    /// [`Ctx::tls_peer_certificates`](crate::Ctx::tls_peer_certificates).
    pub fn client_auth_optional(mut self, ca_pem: &[u8]) -> Result<Self> {
        self.client_auth = ClientAuth::Optional(roots_from_pem(ca_pem)?);
        Ok(self)
    }

    /// ALPN protocols the server accepts, most preferred first. A client
    /// offering ALPN with none of them fails the handshake.
    pub fn alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Uses this crypto provider instead of [`crypto_provider`].
    ///
    /// A provider chosen here (or installed as the process default) is
    /// used as it is. With neither, netactor's own choice also releases
    /// the TLS 1.3 record keys' AEAD contexts of a connection idle for
    /// 250 ms (~1.2 KiB with aws-lc-rs), building them again on its
    /// next record: see ARCHITECTURE.md, "TLS: the engine and its buffers".
    pub fn provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The shareable configuration. Fails if the key does not match the
    /// certificate.
    pub fn build(self) -> Result<Arc<ServerConfig>> {
        let provider = match self.provider {
            Some(p) => p,
            None => default_provider()?,
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let verifier = |roots: RootCertStore, optional: bool| {
            let b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            );
            let b = if optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| Error::Config(ConfigError::ClientVerifier(e)))
        };
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(r) => builder.with_client_cert_verifier(verifier(r, true)?),
            ClientAuth::Required(r) => builder.with_client_cert_verifier(verifier(r, false)?),
        };
        let mut cfg = builder
            .with_single_cert(self.chain, self.key)
            .map_err(config_error)?;
        cfg.alpn_protocols = self.alpn;
        Ok(Arc::new(cfg))
    }
}

#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        // The handshake signature is still checked: the peer must own the
        // key of the certificate it sent, whatever that certificate is.
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// rustls refused to build a configuration (a key that does not match its
/// certificate, a provider without the protocol versions): the caller's
/// configuration is wrong, no peer is involved.
fn config_error(e: rustls::Error) -> Error {
    Error::Config(ConfigError::Rustls(e))
}
