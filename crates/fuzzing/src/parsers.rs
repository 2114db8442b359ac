//! Parsers of untrusted bytes in `apdu`, `gp` and `scp`.

use apdu::tlv::{self, ParseOptions, Tag, TlvRef};
use gp::commands::{
    CardData, Cplc, Fci, GpCommand, KeyInfo, RegistryEntry, StatusFormat, StatusSubset,
};

/// `Command::parse` on arbitrary bytes: never panics, and whatever parses re-encodes to
/// an equivalent command that is never longer (an extended encoding of values that fit
/// the short form, such as Le `000100`, is accepted but re-encoded short).
pub fn command_parse(data: &[u8]) {
    if let Ok(cmd) = apdu::Command::parse(data) {
        let bytes = cmd.to_bytes().expect("a parsed command encodes");
        assert!(bytes.len() <= data.len(), "re-encoding is longer");
        assert_eq!(
            apdu::Command::parse(&bytes).as_ref(),
            Ok(&cmd),
            "re-encoding differs"
        );
        if bytes.len() == data.len() {
            assert_eq!(bytes, data, "same length, different bytes");
        }
        // Chaining never loses or reorders data.
        let parts = cmd.chain(1 + data.first().copied().unwrap_or(0) as usize);
        let joined: Vec<u8> = parts.iter().flat_map(|c| c.data.iter().copied()).collect();
        assert_eq!(joined, cmd.data);
    }
}

/// `Response::parse` on arbitrary bytes: never panics, round-trips, and the status
/// word's enum view is lossless.
pub fn response_parse(data: &[u8]) {
    match apdu::Response::parse(data) {
        Ok(resp) => {
            assert_eq!(resp.to_bytes(), data);
            assert_eq!(apdu::StatusWord::from(resp.sw.status()), resp.sw);
            let _ = resp.sw.to_string();
        }
        Err(_) => assert!(data.len() < 2),
    }
}

/// BER-TLV (`apdu::tlv`, the one codec of the workspace) on arbitrary bytes: never
/// panics; strict and padding-skipping parsers, the zero-copy walk of every nested level
/// and path lookup all terminate, and what parses re-encodes to a sequence that parses
/// to the same objects.
pub fn tlv_parse(data: &[u8]) {
    for options in [ParseOptions::STRICT, ParseOptions::SKIP_PADDING] {
        if let Ok(objects) = tlv::parse_all_with(data, options) {
            let encoded = tlv::encode_all(&objects);
            assert!(encoded.len() <= data.len());
            assert_eq!(
                tlv::parse_all(&encoded).expect("re-encoding parses"),
                objects
            );
        }
    }
    // The borrowed parse agrees with the owned one, and offsets point at the objects.
    match (tlv::parse_all_ref(data), tlv::parse_all(data)) {
        (Ok(refs), Ok(owned)) => {
            assert_eq!(refs.len(), owned.len());
            for (r, o) in refs.iter().zip(&owned) {
                assert_eq!((r.tag(), r.value()), (o.tag, &o.value[..]));
                assert_eq!(&data[r.offset()..r.offset() + r.raw().len()], r.raw());
                assert_eq!(tlv::encode(r.tag(), r.value()), o.encode());
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("borrowed {a:?} and owned {b:?} parses disagree"),
    }
    // Walk every constructed object (iteratively: nesting depth is attacker-chosen).
    let mut stack: Vec<TlvRef<'_>> = tlv::iter(data).filter_map(Result::ok).collect();
    while let Some(t) = stack.pop() {
        if let Ok(children) = t.children() {
            stack.extend(children.filter_map(Result::ok));
        }
    }
    let _ = tlv::find_in(data, &[Tag::new(0x6F), Tag::new(0xA5), Tag::new(0xBF0C)]);
    let _ = tlv::read_length(data);
    let _ = Tag::parse(data);
    let _ = TlvRef::parse(data);
}

/// CAP files (ZIP archives of components) and card-side load file data blocks: never
/// panic; a CAP that parses yields a load file data block that the card-side parser
/// accepts.
pub fn cap_parse(data: &[u8]) {
    if let Ok(cap) = gp::cap::CapFile::from_bytes(data) {
        let block = cap.load_file_data_block();
        let lf = gp::cap::LoadFile::parse(&block).expect("a parsed CAP's load file parses");
        assert_eq!(lf.package_aid(), cap.package_aid());
        let _ = cap.load_file_hash(gp::cap::HashAlgorithm::Sha256);
    }
    let _ = gp::cap::LoadFile::parse(data);
}

/// Every GlobalPlatform response parser the host runs on card output, and the card-side
/// command parser: never panic.
pub fn gp_responses(data: &[u8]) {
    let _ = Fci::parse(data);
    let _ = Cplc::parse(data);
    let _ = CardData::parse(data);
    let _ = KeyInfo::parse(data);
    for subset in [
        StatusSubset::IssuerSecurityDomain,
        StatusSubset::Applications,
        StatusSubset::LoadFiles,
        StatusSubset::LoadFilesAndModules,
    ] {
        for format in [StatusFormat::Legacy, StatusFormat::Tlv] {
            let _ = RegistryEntry::parse_all(subset, format, data);
        }
    }
    if let Ok(cmd) = apdu::Command::parse(data) {
        let _ = GpCommand::parse(&cmd);
    }
}

/// INITIALIZE UPDATE responses and PUT KEY key data: never panic; what parses
/// re-encodes.
pub fn init_update_parse(data: &[u8]) {
    if let Ok(iu) = scp::InitUpdateResponse::parse(data) {
        assert_eq!(
            scp::InitUpdateResponse::parse(&iu.to_bytes()).ok(),
            Some(iu)
        );
    }
    let _ = scp::put_key::parse_key_set_data(data);
}

/// PUT KEY data fields of any keys, secret and asymmetric (`scp::put_key::parse_key_data`,
/// the card side of GP 2.3.1 §11.8.2.3): never panics; what parses re-encodes with
/// `key_data` to a field that parses to the same keys, also when split over short
/// commands with `put_key::commands`.
pub fn put_key_parse(data: &[u8]) {
    use scp::put_key;
    if let Ok((kvn, keys)) = put_key::parse_key_data(data) {
        let again = put_key::key_data(kvn, &keys);
        assert_eq!(
            put_key::parse_key_data(&again).ok(),
            Some((kvn, keys.clone()))
        );
        if kvn <= 0x7F {
            if let Ok(cmds) = put_key::commands(0, 1, kvn, &keys, 255) {
                let mut joined = vec![kvn];
                for c in &cmds {
                    assert!(c.data.len() <= 255);
                    joined.extend_from_slice(&c.data[1..]);
                }
                assert_eq!(put_key::parse_key_data(&joined).ok(), Some((kvn, keys)));
            }
        }
    }
}

/// Delegated Management bytes from a card or a file (GP 2.3.1 Appendix C.4/C.5): the
/// confirmation of INSTALL/LOAD/DELETE, public keys as PUT KEY or a file gives them, and the
/// token input of any INSTALL/DELETE the card parses. Never panics; a confirmation that parses
/// re-encodes to one that parses to the same, and its receipt input can be built.
pub fn dm_confirmation(data: &[u8]) {
    use gp::commands::{Confirmation, Delete, Install};
    use gp::dm::{DmVerifyingKey, ReceiptContext, TokenInput};
    if let Ok(Some(c)) = Confirmation::parse(data) {
        let again = c.to_bytes().expect("a parsed confirmation re-encodes");
        assert_eq!(Confirmation::parse(&again).ok(), Some(Some(c.clone())));
        let ctx = ReceiptContext::Delete {
            aid: gp::Aid::new(&[0xA0, 0, 0, 0, 1]).expect("AID"),
        };
        let _ = ctx.receipt_input(&c);
    }
    let _ = DmVerifyingKey::p256(data);
    let _ = DmVerifyingKey::from_spki(data);
    if data.len() > 4 {
        let (n, e) = data.split_at(data.len() - 3);
        let _ = DmVerifyingKey::rsa(n, e);
    }
    for ins in [0xE6u8, 0xE4] {
        if data.len() >= 2 {
            let cmd = apdu::Command::new(0x80, ins, data[0], data[1]).with_data(data[2..].to_vec());
            if let Ok(i) = Install::parse(&cmd) {
                let _ = i.token_input();
            }
            if let Ok(d) = Delete::parse(&cmd) {
                let _ = d.token_input();
            }
        }
    }
}
