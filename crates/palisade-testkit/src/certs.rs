use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};

/// What a client certificate says about its holder.
#[derive(Debug, Clone, Default)]
pub struct ClientCertSpec<'a> {
    /// Common name.
    pub cn: &'a str,
    /// URI SANs (a SPIFFE ID is one).
    pub uris: &'a [&'a str],
    /// DNS SANs.
    pub dns: &'a [&'a str],
    /// Serial number (for revocation).
    pub serial: u64,
    /// Valid only in 2019: expired.
    pub expired: bool,
}

/// A test certificate authority that issues server and client certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    /// A fresh CA.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Palisade Test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA certificate to `dir/ca.pem`.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.pem).unwrap();
        p
    }

    /// Issues a server certificate for `names` and returns (chain PEM, key PEM).
    pub fn server_cert(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Issues a client certificate; returns (certificate PEM, key PEM).
    pub fn client_cert(&self, spec: &ClientCertSpec<'_>) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, spec.cn);
        for u in spec.uris {
            params
                .subject_alt_names
                .push(SanType::URI((*u).try_into().unwrap()));
        }
        for d in spec.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*d).try_into().unwrap()));
        }
        params.serial_number = Some(SerialNumber::from(spec.serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if spec.expired {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Issues an X.509-SVID for the SPIFFE ID `id` (its one URI SAN, no DNS name; for client
    /// and server authentication, as SPIRE issues them); returns (certificate PEM, key PEM).
    pub fn svid(&self, id: &str, serial: u64, expired: bool) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(id.try_into().unwrap()));
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if expired {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A CRL of this CA revoking `serials`, PEM.
    pub fn crl(&self, serials: &[u64]) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2026, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2026, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }

    /// Issues a server certificate and writes `dir/NAME.pem` and `dir/NAME.key`.
    pub fn write_server_cert(&self, dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let (c, k) = self.server_cert(names);
        let cp = dir.join(format!("{name}.pem"));
        let kp = dir.join(format!("{name}.key"));
        std::fs::write(&cp, c).unwrap();
        std::fs::write(&kp, k).unwrap();
        (cp, kp)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
