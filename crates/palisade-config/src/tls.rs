//! Loading certificates and keys, and building rustls configs for listeners and upstreams.
//! TLS 1.2 and 1.3 only, rustls' AEAD-only suites, aws-lc-rs as the one crypto provider.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::aws_lc_rs;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Reads a PEM certificate chain; fails when the file is missing, unreadable or has none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificate file {}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no CERTIFICATE block", path.display()));
    }
    Ok(certs)
}

/// The validity (not before, not after; seconds since the epoch) of the first certificate of
/// a PEM file, the leaf of a chain.
pub fn leaf_validity(path: &Path) -> Option<(i64, i64)> {
    let chain = load_certs(path).ok()?;
    palisade_identity::mtls::validity(chain.first()?)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

/// Picks the certificate whose names cover the SNI name; the first one otherwise.
pub struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("certificates", &self.keys.len())
            .finish()
    }
}

impl SniResolver {
    /// The certificate for `sni`, if one covers it.
    fn for_name(&self, sni: &str) -> Option<&Arc<CertifiedKey>> {
        let name = ServerName::try_from(sni).ok()?;
        self.keys.iter().find(|k| {
            k.end_entity_cert()
                .ok()
                .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
                .is_some_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|n| self.for_name(n))
            .or_else(|| self.keys.first())
            .cloned()
    }
}

/// A certificate file pair, already resolved against the config's folder.
pub struct CertPaths<'a> {
    /// Chain file.
    pub cert: &'a Path,
    /// Key file.
    pub key: &'a Path,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// A listener's client-certificate settings, paths resolved.
#[derive(Debug, Clone)]
pub struct ClientAuthPaths {
    /// CA files.
    pub ca: Vec<std::path::PathBuf>,
    /// CRL files.
    pub crls: Vec<std::path::PathBuf>,
    /// Certificate required at the handshake.
    pub required: bool,
}

fn client_verifier(
    c: &ClientAuthPaths,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for f in &c.ca {
        for cert in load_certs(f)? {
            roots
                .add(cert)
                .map_err(|e| format!("{} holds an unusable CA certificate: {e}", f.display()))?;
        }
    }
    let mut crls = Vec::new();
    for f in &c.crls {
        let pem = std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        for crl in rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(&pem) {
            crls.push(crl.map_err(|e| format!("{} is not a PEM CRL: {e}", f.display()))?);
        }
    }
    let mut b =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .with_crls(crls);
    if !c.required {
        b = b.allow_unauthenticated();
    }
    b.build()
        .map_err(|e| format!("client certificate verifier: {e}"))
}

/// Builds a listener's server config. Errors are per certificate (index, message).
pub fn server_config(
    certs: &[CertPaths<'_>],
    tls13_only: bool,
    http2: bool,
    client_auth: Option<&ClientAuthPaths>,
) -> Result<rustls::ServerConfig, Vec<(usize, String)>> {
    let provider = provider();
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        let loaded = load_certs(c.cert).and_then(|chain| {
            let key = load_key(c.key)?;
            let signing = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| format!("unsupported private key in {}: {e}", c.key.display()))?;
            let ck = CertifiedKey::new(chain, signing);
            ck.keys_match().map_err(|e| {
                format!(
                    "{} does not belong to {}: {e}",
                    c.key.display(),
                    c.cert.display()
                )
            })?;
            Ok(ck)
        });
        match loaded {
            Ok(k) => keys.push(Arc::new(k)),
            Err(e) => errors.push((i, e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| vec![(0, format!("TLS versions: {e}"))])?;
    let cfg = match client_auth {
        None => cfg.with_no_client_auth(),
        Some(c) => {
            cfg.with_client_cert_verifier(client_verifier(c).map_err(|e| vec![(usize::MAX, e)])?)
        }
    };
    let mut cfg = cfg.with_cert_resolver(Arc::new(SniResolver { keys }));
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    if let Ok(t) = aws_lc_rs::Ticketer::new() {
        cfg.ticketer = t;
    }
    Ok(cfg)
}

/// Verifies an upstream by its SPIFFE ID rather than its host name, as a service mesh does
/// (an X.509-SVID names a workload, not a host): the chain must lead to one of the roots,
/// be valid now and for server authentication, and the leaf must carry exactly one URI SAN,
/// a SPIFFE ID one of `ids` allows (exact, or a prefix ending in `*`). Anything else fails
/// the handshake: no request reaches a service that is not the expected one.
#[derive(Debug)]
struct WrongPeer(String);

impl fmt::Display for WrongPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WrongPeer {}

#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<rustls::RootCertStore>,
    ids: Vec<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let id = palisade_identity::mtls::parse_client_cert(end_entity).and_then(|c| c.spiffe);
        match id {
            Some(id) if palisade_identity::mtls::allowed(&self.ids, &id) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(WrongPeer(format!(
                    "the upstream is {}, not {}",
                    id.as_deref()
                        .unwrap_or("a certificate without one SPIFFE ID"),
                    self.ids.join(" or ")
                ))))),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Builds the client config used towards an upstream: its certificate is checked against
/// `ca` and the host name, or, when `peer_ids` is not empty, against `ca` and those SPIFFE
/// IDs (the chain, validity and server-auth usage checked as rustls does, then the one URI SAN).
pub fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
    peer_ids: &[String],
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| format!("{} holds an unusable CA certificate: {e}", ca.display()))?;
    }
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = if peer_ids.is_empty() {
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
                roots: Arc::new(roots),
                ids: peer_ids.to_vec(),
                provider,
            }))
    };
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| format!("client certificate {}: {e}", cert.display())),
    }
}
