//! What the binary's two certificate authorities share (the registry's, `ecr::tls`, and the
//! cluster's, `cluster::pki`): a CA's parameters made from its key alone, so that the CA
//! re-made from its key file names the issuer its certificate file names, and a leaf's
//! common parameters. Keys are ECDSA P-256 (rcgen's default).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use std::time::Duration;

/// How far back a certificate is valid from: clocks a little behind still accept one made
/// now.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Valid from an hour ago ([`BACKDATE`]) for `valid_for` from now.
fn validity(p: &mut CertificateParams, valid_for: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + now.saturating_sub(BACKDATE);
    p.not_after = epoch + now + valid_for;
}

/// The parameters of the CA of `key`, named "minifargate `what` CA <16 hex digits of the
/// SHA-256 of its public key>": they depend on the key only (and the time), so a leaf
/// issued later from the key file names the issuer of the CA's certificate file.
pub fn ca_params(key: &KeyPair, what: &str, valid_for: Duration) -> CertificateParams {
    use sha2::Digest as _;
    let id = hex::encode(sha2::Sha256::digest(key.public_key_der()));
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(
        DnType::CommonName,
        format!("minifargate {what} CA {}", &id[..16]),
    );
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, valid_for);
    p
}

/// A random serial number (a positive DER integer of 16 bytes), from the kernel.
pub fn random_serial() -> std::io::Result<SerialNumber> {
    let mut serial = [0u8; 16];
    getrandom::getrandom(&mut serial).map_err(|e| std::io::Error::other(e.to_string()))?;
    serial[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&serial))
}

/// A leaf's parameters with what every leaf here has: `sans` (DNS names or IP addresses),
/// no distinguished name, serial number `serial` ([`random_serial`]), the authority key
/// identifier, the key usages of a TLS key, valid for `valid_for`. The caller adds its
/// common name, extended key usages and other names.
pub fn leaf_params(
    sans: Vec<String>,
    serial: SerialNumber,
    valid_for: Duration,
) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(sans)?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.serial_number = Some(serial);
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut p, valid_for);
    Ok(p)
}

/// The client certificate (DER) a TLS connection presented, for the routes of a listener
/// that takes one without requiring it (serve's port for boxes, `crate::cluster::join`):
/// an extension of each request on that connection (`crate::api::server`).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub std::sync::Arc<Vec<u8>>);
