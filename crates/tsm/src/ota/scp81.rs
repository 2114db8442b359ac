//! A card's SCP81 (GP Amendment B, TLS-PSK) credentials and the administration session
//! trigger (`docs/OTA.md`, "SCP81").
//!
//! * **PSK**: derived from the card category's base key like the SCP80 keys, from its own
//!   domain-separated diversification value: `KDD_SCP81 = SHA-256("Cardwright SCP81" ‖
//!   KDD)[..10]`, then `kms::KeyStore::derive_for_kdd(category, version, KDD_SCP81)`; the
//!   PSK is the ENC key of that set (16 bytes for AES-128 and 2-key 3DES base keys). It
//!   sits in the ISD as key set [`PSK_KVN`], key [`PSK_KID`], key type `85`.
//! * **PSK identity**: the card's ICCID in ASCII digits, so the admin server finds the
//!   card (and derives its PSK) from the identity alone.
//! * **Trigger**: STORE DATA (`80 E2 90 00`) of the administration session triggering
//!   parameters `81` ([`ota::admin::TriggerParams`]) to the ISD, in an SCP80 packet: open
//!   TCP to the admin server's advertised address, PSK `KVN 40 / KID 01` with the identity
//!   named explicitly, first POST to [`ADMIN_URI`].

use std::net::SocketAddr;

use apdu::Command;
use ota::admin::{SecurityParams, TriggerParams};
use ota::cat::{BearerDescription, OpenChannel, OtherAddress, TransportLevel};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The domain separation label hashed in front of the KDD.
pub const SCP81_LABEL: &[u8] = b"Cardwright SCP81";
/// The key set version of the PSK in the ISD (Amendment B: `40`..=`4F`).
pub const PSK_KVN: u8 = 0x40;
/// The key identifier of the PSK in its key set.
pub const PSK_KID: u8 = 0x01;
/// The key type of a TLS PSK in PUT KEY and the key information (GP 2.3.1 Table 11-16).
pub const PSK_KEY_TYPE: u8 = 0x85;
/// The path of the card's first POST.
pub const ADMIN_URI: &str = "/gp/admin";
/// The BIP buffer the card's agent is asked to open.
pub const BUFFER_SIZE: u16 = 1024;

/// The diversification data of a card's PSK: `SHA-256("Cardwright SCP81" ‖ kdd)[..10]`.
pub fn kdd_scp81(kdd: &[u8; 10]) -> [u8; 10] {
    let mut h = Sha256::new();
    h.update(SCP81_LABEL);
    h.update(kdd);
    let d = h.finalize();
    let mut out = [0u8; 10];
    out.copy_from_slice(&d[..10]);
    out
}

/// Derives a card's TLS PSK from the base key version `version` of the key-store category
/// `kms_category` and the card's KDD.
pub fn derive_psk(
    keys: &dyn kms::KeyStore,
    kms_category: &str,
    version: u32,
    kdd: &[u8; 10],
) -> Result<Zeroizing<Vec<u8>>, kms::Error> {
    let set = keys.derive_for_kdd(kms_category, version, &kdd_scp81(kdd))?;
    Ok(Zeroizing::new(set.enc.expose().to_vec()))
}

/// The PSK identity of a card: its ICCID's digits.
pub fn psk_identity(iccid: &str) -> Vec<u8> {
    iccid.as_bytes().to_vec()
}

/// The ICCID a PSK identity names, if it is one.
pub fn iccid_of_identity(identity: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(identity).ok()?;
    (!s.is_empty() && s.len() <= 22 && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// Where cards reach the admin server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsEndpoint {
    /// The address the cards' agents open TCP to (an IP address: cards get no DNS
    /// resolution parameters from us).
    pub address: SocketAddr,
    /// The SMS count above which a download goes over HTTPS rather than SMS.
    pub above_sms: usize,
}

/// The STORE DATA that triggers the card's admin session for `iccid` to `endpoint`.
pub fn trigger_command(endpoint: &HttpsEndpoint, iccid: &str) -> Result<Command, String> {
    let destination = match endpoint.address {
        SocketAddr::V4(a) => OtherAddress::Ipv4(*a.ip()),
        SocketAddr::V6(a) => OtherAddress::Ipv6(*a.ip()),
    };
    let open = OpenChannel {
        alpha: None,
        bearer: BearerDescription::default_bearer(),
        buffer_size: BUFFER_SIZE,
        network_access_name: None,
        local_address: None,
        login: None,
        password: None,
        transport: Some(TransportLevel::tcp_client(endpoint.address.port())),
        destination: Some(destination),
        other: Vec::new(),
    };
    let mut t = TriggerParams::new(
        open,
        SecurityParams {
            psk_identity: psk_identity(iccid),
            kid: PSK_KID,
            kvn: PSK_KVN,
        },
    );
    t.admin_uri = Some(ADMIN_URI.into());
    let data = t.encode().map_err(|e| e.to_string())?;
    // GP 2.3.1 §11.11: P1 `90` = last block, BER-TLV data, unencrypted.
    Ok(Command::new(0x80, 0xE2, 0x90, 0x00).with_data(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdd_vector() {
        let kdd = kms::kdd_for_card_number("1234").unwrap();
        let mut h = Sha256::new();
        h.update(b"Cardwright SCP81");
        h.update(kdd);
        assert_eq!(kdd_scp81(&kdd), h.finalize()[..10]);
        assert_ne!(kdd_scp81(&kdd), super::super::scp80::kdd_scp80(&kdd));
    }

    #[test]
    fn identities_name_iccids() {
        assert_eq!(
            iccid_of_identity(&psk_identity("8949000000000000001")),
            Some("8949000000000000001")
        );
        assert_eq!(iccid_of_identity(b"card-1"), None);
        assert_eq!(iccid_of_identity(b""), None);
    }

    #[test]
    fn the_trigger_round_trips() {
        let e = HttpsEndpoint {
            address: "127.0.0.1:8443".parse().unwrap(),
            above_sms: 20,
        };
        let c = trigger_command(&e, "8949000000000000001").unwrap();
        assert_eq!((c.cla, c.ins, c.p1, c.p2), (0x80, 0xE2, 0x90, 0x00));
        let t = apdu::tlv::TlvRef::parse(&c.data).unwrap();
        assert_eq!(t.tag().value(), ota::admin::TAG_TRIGGER);
        let p = TriggerParams::from_value(t.value()).unwrap();
        let sec = p.security.unwrap();
        assert_eq!((sec.kvn, sec.kid), (PSK_KVN, PSK_KID));
        assert_eq!(sec.psk_identity, b"8949000000000000001");
        assert_eq!(p.admin_uri.as_deref(), Some(ADMIN_URI));
        let open = p.connection.unwrap();
        assert_eq!(open.transport.unwrap().port, Some(8443));
    }
}
