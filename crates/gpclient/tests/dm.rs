//! Delegated Management and DAP through `gpclient` against the virtual card: a DM security
//! domain installs with a token and is refused without one; receipts are verified and a
//! replayed counter refused; extradition with a token; a DAP security domain as the target of
//! a load, with a wrong DAP refused and nothing left on the card.

use std::sync::{Arc, Mutex};

use apdu::StatusWord;
use card::{CardConfig, VirtualCard};
use gp::aid::Aid;
use gp::dm::{DmSigningKey, ReceiptContext, ReceiptKey, Signer};
use gp::privileges::{Privilege, Privileges};
use gpclient::dm::{Delegation, ReceiptCheck, TokenFile, TokenSource};
use gpclient::{ops, ClientError, GpClient, KeySpec, OpenOptions, Operation, DEFAULT_TEST_KEY};
use scp::{Diversification, Key, SecurityLevel, StaticKeys};
use transport::{CardChannel, Traced, TransportError};

const EMPTY_CAP: &[u8] = include_bytes!("data/Empty_0102030405_8d5ac9e2_2.2.1.cap");
const EMPTY_PKG: [u8; 5] = [0x01, 0x02, 0x03, 0x04, 0x05];
const EMPTY_APPLET: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
const TOKEN_KEY: [u8; 16] = [0x70; 16];
const RECEIPT_KEY: [u8; 16] = [0x71; 16];
const DAP_KEY: [u8; 16] = [0x73; 16];
const DM_SD: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x44, 0x4D, 0x01];
const OTHER_SD: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x44, 0x4D, 0x02];
const DAP_SD: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x44, 0x41, 0x50];

#[derive(Clone)]
struct Sim(Arc<Mutex<VirtualCard>>);

impl CardChannel for Sim {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.0.lock().unwrap().transmit(capdu))
    }
    fn atr(&self) -> Vec<u8> {
        self.0.lock().unwrap().atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.0.lock().unwrap().reset();
        Ok(())
    }
    fn name(&self) -> String {
        "virtual card (dm test)".into()
    }
}

fn aid(b: &[u8]) -> Aid {
    Aid::new(b).unwrap()
}

fn open(sim: &Sim, sd: Option<Aid>) -> GpClient<Sim> {
    let mut c = GpClient::new(Traced::new(sim.clone(), None));
    c.open_secure_channel(&OpenOptions {
        keys: KeySpec::same(&DEFAULT_TEST_KEY, Diversification::None, 0),
        level: SecurityLevel::MAC_ENC,
        scp: None,
        sd,
    })
    .unwrap();
    c
}

/// A card whose ISD holds the AES token key (KVN 70) and receipt key (KVN 71), with a DM
/// security domain and a second one to extradite to.
fn card() -> Sim {
    let sim = Sim(Arc::new(Mutex::new(
        VirtualCard::new(CardConfig::default()),
    )));
    let mut c = open(&sim, None);
    for (k, kvn) in [(TOKEN_KEY, 0x70), (RECEIPT_KEY, 0x71)] {
        ops::put_key_set(&mut c, &StaticKeys::same(Key::aes(&k).unwrap()), kvn, None).unwrap();
    }
    let dm = Privileges::NONE.with(Privilege::DelegatedManagement);
    ops::create_domain(&mut c, aid(&DM_SD), dm, &[], None).unwrap();
    ops::create_domain(&mut c, aid(&OTHER_SD), Privileges::NONE, &[], None).unwrap();
    sim
}

fn delegation(last: Option<u16>) -> Delegation {
    Delegation::new(
        Some(TokenSource::Sign(Box::new(
            DmSigningKey::aes(&TOKEN_KEY).unwrap(),
        ))),
        Some(ReceiptCheck {
            key: ReceiptKey::aes(&RECEIPT_KEY).unwrap(),
            last_counter: last,
        }),
    )
}

fn cap() -> gp::cap::CapFile {
    gp::cap::CapFile::from_bytes(EMPTY_CAP).unwrap()
}

fn card_sw(e: ClientError) -> (Operation, StatusWord) {
    match e {
        ClientError::Card { op, sw, .. } => (op, sw),
        other => panic!("expected a card refusal, got {other:?}"),
    }
}

fn has(sim: &Sim, a: &[u8]) -> bool {
    let mut c = open(sim, None);
    ops::registry(&mut c).unwrap().find(&aid(a)).is_some()
}

#[test]
fn dm_domain_needs_a_token_and_gets_receipts() {
    let sim = card();
    // Without a token: INSTALL [for load] is refused with 6982, nothing loaded.
    let mut c = open(&sim, Some(aid(&DM_SD)));
    let e = ops::install_cap(&mut c, &cap(), &Default::default()).unwrap_err();
    assert_eq!(card_sw(e), (Operation::InstallForLoad, StatusWord(0x6982)));
    assert!(!has(&sim, &EMPTY_PKG));

    // With tokens: loaded and installed; load and install receipts verified, counters 1, 2.
    let mut c = open(&sim, Some(aid(&DM_SD)));
    c.set_delegation(delegation(None));
    ops::install_cap(&mut c, &cap(), &Default::default()).unwrap();
    let d = c.delegation().unwrap();
    let counters: Vec<u16> = d
        .receipts()
        .iter()
        .map(|r| r.confirmation.counter)
        .collect();
    assert_eq!(counters, vec![1, 2]);
    assert!(matches!(
        d.receipts()[0].context,
        ReceiptContext::Load { .. }
    ));
    assert!(has(&sim, &EMPTY_APPLET));

    // Extradition of the applet to the other SD with a token: extradition receipt 3.
    let mut c = open(&sim, Some(aid(&DM_SD)));
    c.set_delegation(delegation(Some(2)));
    ops::extradite(&mut c, aid(&EMPTY_APPLET), aid(&OTHER_SD), None).unwrap();
    let r = &c.delegation().unwrap().receipts()[0];
    assert_eq!(r.confirmation.counter, 3);
    assert!(matches!(r.context, ReceiptContext::Extradition { .. }));
    let mut isd = open(&sim, None);
    let reg = ops::registry(&mut isd).unwrap();
    assert_eq!(
        reg.find(&aid(&EMPTY_APPLET)).unwrap().associated_sd,
        Some(aid(&OTHER_SD))
    );

    // A replayed (not higher) counter is refused by the host: the host expects above 10.
    let mut c = open(&sim, Some(aid(&DM_SD)));
    c.set_delegation(delegation(Some(10)));
    let second = aid(&[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x09]);
    let e = ops::install_instance(
        &mut c,
        aid(&EMPTY_PKG),
        aid(&EMPTY_APPLET),
        second,
        Privileges::NONE,
        vec![0xC9, 0x00],
        true,
    );
    match e.unwrap_err() {
        ClientError::Receipt { op, detail } => {
            assert_eq!(op, Operation::InstallForInstall);
            assert!(detail.contains("not above"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tampered_token_and_token_for_another_command_are_refused() {
    let sim = card();
    let key = DmSigningKey::aes(&TOKEN_KEY).unwrap();
    // A token file whose only token is for INSTALL [for load] of another package: the host
    // finds no token for this command and sends nothing.
    let other = gp::commands::Install::ForLoad {
        load_file: aid(&[9, 9, 9, 9, 9]),
        security_domain: None,
        hash: vec![],
        params: vec![0xEF, 0x06, 0xC6, 0x04, 0, 0, 0, 0],
        token: vec![],
    };
    use gp::dm::TokenInput;
    let input = other.token_input().unwrap();
    let file = TokenFile {
        entries: vec![(input.clone(), key.sign(&input).unwrap())],
    };
    let mut c = open(&sim, Some(aid(&DM_SD)));
    c.set_delegation(Delegation::new(Some(TokenSource::File(file)), None));
    match ops::install_cap(&mut c, &cap(), &Default::default()).unwrap_err() {
        ClientError::Token { op, .. } => assert_eq!(op, Operation::InstallForLoad),
        other => panic!("{other:?}"),
    }
    // A tampered token for the right command: the card answers 6A80.
    struct Tampered(DmSigningKey);
    impl std::fmt::Debug for Tampered {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Tampered")
        }
    }
    impl Signer for Tampered {
        fn scheme(&self) -> gp::dm::Scheme {
            self.0.scheme()
        }
        fn sign(&self, m: &[u8]) -> gp::Result<Vec<u8>> {
            let mut t = self.0.sign(m)?;
            t[0] ^= 0x01;
            Ok(t)
        }
    }
    let mut c = open(&sim, Some(aid(&DM_SD)));
    c.set_delegation(Delegation::new(
        Some(TokenSource::Sign(Box::new(Tampered(key)))),
        None,
    ));
    let e = ops::install_cap(&mut c, &cap(), &Default::default()).unwrap_err();
    assert_eq!(card_sw(e), (Operation::InstallForLoad, StatusWord(0x6A80)));
    assert!(!has(&sim, &EMPTY_PKG));
}

#[test]
fn dap_domain_as_load_target() {
    let sim = card();
    let mut c = open(&sim, None);
    let dap = Privileges::NONE.with(Privilege::DapVerification);
    ops::create_domain(&mut c, aid(&DAP_SD), dap, &[], None).unwrap();
    // The DAP SD's verification key (KVN 73), put through its own secure channel.
    let mut d = open(&sim, Some(aid(&DAP_SD)));
    ops::put_key_set(
        &mut d,
        &StaticKeys::same(Key::aes(&DAP_KEY).unwrap()),
        0x73,
        None,
    )
    .unwrap();
    let to = Some(aid(&DAP_SD));
    // No DAP block: refused, nothing stays.
    let mut c = open(&sim, None);
    let e = ops::install_cap(
        &mut c,
        &cap(),
        &ops::InstallOptions {
            to,
            load_only: true,
            hash: Some("sha256".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(card_sw(e), (Operation::Load, StatusWord(0x6982)));
    assert!(!has(&sim, &EMPTY_PKG));
    // A DAP by the wrong key: refused too.
    let wrong: Arc<dyn Signer + Send + Sync> = Arc::new(DmSigningKey::aes(&[1; 16]).unwrap());
    let mut c = open(&sim, None);
    let e = ops::install_cap(
        &mut c,
        &cap(),
        &ops::InstallOptions {
            to,
            load_only: true,
            dap: vec![(aid(&DAP_SD), wrong)],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(card_sw(e), (Operation::Load, StatusWord(0x6982)));
    assert!(!has(&sim, &EMPTY_PKG));
    // The right DAP: loaded into the DAP SD.
    let right: Arc<dyn Signer + Send + Sync> = Arc::new(DmSigningKey::aes(&DAP_KEY).unwrap());
    let mut c = open(&sim, None);
    ops::install_cap(
        &mut c,
        &cap(),
        &ops::InstallOptions {
            to,
            load_only: true,
            dap: vec![(aid(&DAP_SD), right)],
            ..Default::default()
        },
    )
    .unwrap();
    let reg = ops::registry(&mut c).unwrap();
    assert_eq!(
        reg.find(&aid(&EMPTY_PKG)).unwrap().associated_sd,
        Some(aid(&DAP_SD))
    );
}

fn vector_key(name: &str) -> DmSigningKey {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gp/tests/vectors/dm")
        .join(name);
    DmSigningKey::from_pkcs8(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn rsa_and_ecdsa_token_keys_loaded_with_put_key() {
    for name in ["token-rsa1024.pem", "token-p256.pem", "token-rsa2048.pem"] {
        let sim = card();
        let key = vector_key(name);
        // The token key replaces the AES one under KVN 70 (PUT KEY of a public key).
        let mut c = open(&sim, None);
        ops::put_public_key(&mut c, 0x70, 0x01, 0x70, &key.verifying_key()).unwrap();
        let mut c = open(&sim, Some(aid(&DM_SD)));
        c.set_delegation(Delegation::new(
            Some(TokenSource::Sign(Box::new(vector_key(name)))),
            Some(ReceiptCheck {
                key: ReceiptKey::aes(&RECEIPT_KEY).unwrap(),
                last_counter: None,
            }),
        ));
        ops::install_cap(&mut c, &cap(), &Default::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        ops::delete(&mut c, &aid(&EMPTY_PKG), true).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.delegation().unwrap().receipts().len(), 3, "{name}");
        assert!(!has(&sim, &EMPTY_PKG));
    }
}

#[test]
fn asymmetric_dap_keys() {
    for name in ["token-p256.pem", "token-rsa1024.pem", "token-rsa2048.pem"] {
        let sim = card();
        let mut c = open(&sim, None);
        let dap = Privileges::NONE.with(Privilege::DapVerification);
        ops::create_domain(&mut c, aid(&DAP_SD), dap, &[], None).unwrap();
        let mut d = open(&sim, Some(aid(&DAP_SD)));
        ops::put_public_key(&mut d, 0x73, 0x01, 0, &vector_key(name).verifying_key()).unwrap();
        let signer: Arc<dyn Signer + Send + Sync> = Arc::new(vector_key(name));
        let mut c = open(&sim, None);
        ops::install_cap(
            &mut c,
            &cap(),
            &ops::InstallOptions {
                to: Some(aid(&DAP_SD)),
                dap: vec![(aid(&DAP_SD), signer)],
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(has(&sim, &EMPTY_APPLET), "{name}");
    }
}

#[test]
fn mandated_dap_applies_to_every_load() {
    let sim = card();
    let mut c = open(&sim, None);
    let mdap = Privileges::NONE.with(Privilege::MandatedDapVerification);
    ops::create_domain(&mut c, aid(&DAP_SD), mdap, &[], None).unwrap();
    let mut d = open(&sim, Some(aid(&DAP_SD)));
    let key = vector_key("token-p256.pem");
    ops::put_public_key(&mut d, 0x73, 0x01, 0, &key.verifying_key()).unwrap();
    // A load into the ISD without the mandated DAP: refused, nothing stays.
    let mut c = open(&sim, None);
    let e = ops::install_cap(&mut c, &cap(), &Default::default()).unwrap_err();
    assert_eq!(card_sw(e), (Operation::Load, StatusWord(0x6982)));
    assert!(!has(&sim, &EMPTY_PKG));
    // With the controlling authority's DAP it loads.
    let signer: Arc<dyn Signer + Send + Sync> = Arc::new(key);
    let mut c = open(&sim, None);
    ops::install_cap(
        &mut c,
        &cap(),
        &ops::InstallOptions {
            dap: vec![(aid(&DAP_SD), signer)],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(has(&sim, &EMPTY_APPLET));
}

/// Tokens and DAP computed in advance (what an application provider's package carries),
/// given as bytes in `InstallOptions` for the commands `install_plan` gives.
fn precomputed(
    opts: &ops::InstallOptions,
    token_key: &DmSigningKey,
    dap_key: Option<&DmSigningKey>,
) -> ops::InstallOptions {
    use gp::dm::TokenInput;
    let mut out = opts.clone();
    if dap_key.is_some() {
        // With a DAP block the hash is sent, so the tokens are for commands with it.
        out.dap_signatures = vec![(aid(&DAP_SD), Vec::new())];
    }
    let hash = ops::install_hash(&cap(), &out).unwrap();
    let (for_load, installs) = ops::install_plan(&cap(), &out, hash.clone()).unwrap();
    out.load_token = Some(token_key.sign(&for_load.token_input().unwrap()).unwrap());
    for i in installs {
        let gp::commands::Install::ForInstall { application, .. } = &i else {
            unreachable!()
        };
        let t = token_key.sign(&i.token_input().unwrap()).unwrap();
        out.install_tokens.push((*application, t));
    }
    if let Some(k) = dap_key {
        out.dap_signatures = vec![(aid(&DAP_SD), k.sign(gp::dm::dap_input(&hash)).unwrap())];
    }
    out
}

#[test]
fn precomputed_tokens_are_sent_as_they_are_and_receipts_checked() {
    let sim = card();
    let key = DmSigningKey::aes(&TOKEN_KEY).unwrap();
    let opts = precomputed(&Default::default(), &key, None);
    assert!(opts.load_token.is_some() && opts.install_tokens.len() == 1);
    // A wrong token for the load: the card refuses, nothing stays.
    let mut bad = opts.clone();
    if let Some(t) = bad.load_token.as_mut() {
        t[0] ^= 0x01;
    }
    let mut c = open(&sim, Some(aid(&DM_SD)));
    let e = ops::install_cap(&mut c, &cap(), &bad).unwrap_err();
    assert_eq!(card_sw(e), (Operation::InstallForLoad, StatusWord(0x6A80)));
    assert!(!has(&sim, &EMPTY_PKG));
    // A token for an instance this install does not create: refused before anything.
    let mut other = opts.clone();
    other.install_tokens[0].0 = aid(&[1, 2, 3, 4, 5, 6, 7, 0x0A]);
    let mut c = open(&sim, Some(aid(&DM_SD)));
    assert!(matches!(
        ops::install_cap(&mut c, &cap(), &other),
        Err(ClientError::Invalid(_))
    ));
    // The right tokens, no token source at all; receipts checked with the receipt key.
    let mut c = open(&sim, Some(aid(&DM_SD)));
    c.set_delegation(Delegation::new(
        None,
        Some(ReceiptCheck {
            key: ReceiptKey::aes(&RECEIPT_KEY).unwrap(),
            last_counter: None,
        }),
    ));
    ops::install_cap(&mut c, &cap(), &opts).unwrap();
    let d = c.delegation().unwrap();
    assert_eq!(
        d.receipts()
            .iter()
            .map(|r| r.confirmation.counter)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(matches!(
        d.receipts()[1].context,
        ReceiptContext::Install { .. }
    ));
    assert!(has(&sim, &EMPTY_APPLET));
}

#[test]
fn precomputed_dap_signature() {
    let sim = card();
    let mut c = open(&sim, None);
    let dap = Privileges::NONE.with(Privilege::DapVerification);
    ops::create_domain(&mut c, aid(&DAP_SD), dap, &[], None).unwrap();
    let mut d = open(&sim, Some(aid(&DAP_SD)));
    let dap_key = vector_key("token-p256.pem");
    ops::put_public_key(&mut d, 0x73, 0x01, 0, &dap_key.verifying_key()).unwrap();
    let base = ops::InstallOptions {
        to: Some(aid(&DAP_SD)),
        ..Default::default()
    };
    // The signature bytes of the provider, for this load file's SHA-256.
    let token_key = DmSigningKey::aes(&TOKEN_KEY).unwrap();
    let mut opts = precomputed(&base, &token_key, Some(&dap_key));
    opts.load_token = None;
    opts.install_tokens.clear();
    assert_eq!(
        ops::install_hash(&cap(), &opts).unwrap(),
        cap().load_file_hash(gp::cap::HashAlgorithm::Sha256)
    );
    // Altered: refused at the LOAD, nothing stays.
    let mut bad = opts.clone();
    let last = bad.dap_signatures[0].1.len() - 1;
    bad.dap_signatures[0].1[last] ^= 0x01;
    let mut c = open(&sim, None);
    let e = ops::install_cap(&mut c, &cap(), &bad).unwrap_err();
    assert_eq!(card_sw(e), (Operation::Load, StatusWord(0x6982)));
    assert!(!has(&sim, &EMPTY_PKG));
    let mut c = open(&sim, None);
    ops::install_cap(&mut c, &cap(), &opts).unwrap();
    assert!(has(&sim, &EMPTY_APPLET));
}
