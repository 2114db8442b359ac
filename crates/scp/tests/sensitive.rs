//! The session's DEK ([`HostSession::data_encryption_key`]) with
//! [`scp::encrypt_sensitive_data`] gives the bytes PUT KEY sends, and the card side takes
//! them back, for SCP02 (session DEK, 3DES-ECB) and SCP03 (static Key-DEK, AES-CBC).

use apdu::Response;
use scp::*;

const AID: &[u8] = &[0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];

fn open(keys: &StaticKeys, protocol: Protocol) -> (HostSession, CardSession) {
    let hc = random_challenge(8).unwrap();
    let (card_auth, data) = CardAuth::new(keys, protocol, 0x30, [7; 10], 1, &hc, AID).unwrap();
    let iu = InitUpdateResponse::parse(&data).unwrap();
    let auth = HostAuth::new(keys, &hc, &iu, SecurityLevel(0x03), protocol.i()).unwrap();
    let card = card_auth
        .external_authenticate(&auth.external_authenticate())
        .unwrap();
    (auth.finish(&Response::ok(vec![])).unwrap(), card)
}

#[test]
fn session_dek_encrypts_like_put_key() {
    let scp02 = StaticKeys {
        enc: Key::des3(&[0x40; 16]).unwrap(),
        mac: Key::des3(&[0x41; 16]).unwrap(),
        dek: Key::des3(&[0x42; 16]).unwrap(),
    };
    let scp03 = StaticKeys {
        enc: Key::aes(&[0x40; 16]).unwrap(),
        mac: Key::aes(&[0x41; 16]).unwrap(),
        dek: Key::aes(&[0x42; 16]).unwrap(),
    };
    for (keys, protocol) in [
        (&scp02, Protocol::Scp02 { i: 0x55 }),
        (&scp03, Protocol::Scp03 { i: 0x70 }),
    ] {
        let (host, card) = open(keys, protocol);
        let dek = host.data_encryption_key().unwrap();
        match protocol {
            // SCP03: the static Key-DEK itself.
            Protocol::Scp03 { .. } => assert_eq!(dek, keys.dek),
            // SCP02: a session key derived from it (GP 2.3.1 §E.4.1), not the static one.
            Protocol::Scp02 { .. } => assert_ne!(dek, keys.dek),
        }
        for len in [16, 32] {
            let key = match dek.kind() {
                KeyKind::Des3 if len == 32 => continue,
                KeyKind::Des3 => Key::des3(&[0x31; 16]).unwrap(),
                KeyKind::Aes => Key::aes(&vec![0x31; len]).unwrap(),
            };
            let enc = encrypt_sensitive_data(&dek, key.expose()).unwrap();
            assert_eq!(enc, host.encrypt_key(&key).unwrap(), "{protocol:?}");
            assert_eq!(card.decrypt_secret(&enc).unwrap().as_slice(), key.expose());
            assert_eq!(
                decrypt_sensitive_data(&dek, &enc).unwrap().as_slice(),
                key.expose()
            );
        }
        // 32 bytes of secret data under a 3DES DEK: four 8-byte blocks, ECB.
        let data = [0x5A; 32];
        let enc = encrypt_sensitive_data(&dek, &data).unwrap();
        assert_eq!(card.decrypt_secret(&enc).unwrap().as_slice(), data);
    }
}
