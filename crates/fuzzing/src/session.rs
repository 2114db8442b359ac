//! The virtual card, in plain and through a real secure channel.
//!
//! Random bytes sent in plain stop at the card manager's security checks: almost every
//! card management command needs an authenticated session. The session targets open a
//! real SCP02 or SCP03 session with the card's test keys (the host side of the `scp`
//! crate computes the cryptograms, C-MAC and C-DECRYPTION), then wrap each fuzzed
//! plaintext command correctly, so the bytes reach INSTALL, LOAD, PUT KEY, STORE DATA,
//! GET STATUS, SET STATUS and DELETE.

use apdu::{Command, Response, StatusWord};
use card::{CardConfig, VirtualCard};
use scp::{HostAuth, HostSession, InitUpdateResponse, SecurityLevel, StaticKeys};

/// The virtual card answers any sequence of C-APDUs with a well-formed R-APDU and never
/// panics. Input: APDUs, each after a 1-byte length.
pub fn card_transmit(data: &[u8]) {
    let mut card = new_card("default", CardConfig::default);
    for apdu in length_prefixed(data) {
        let r = card.transmit(apdu);
        assert!(r.len() >= 2, "every answer ends with a status word");
    }
}

/// A new card made by `make`: a copy of one manufactured once per thread and `kind`,
/// since manufacturing generates the SCP11b key pair and its certificates (milliseconds)
/// and every input needs a fresh card.
fn new_card(kind: &'static str, make: impl FnOnce() -> CardConfig) -> VirtualCard {
    use std::cell::RefCell;
    thread_local! {
        static MADE: RefCell<Vec<(&'static str, VirtualCard)>> = const { RefCell::new(Vec::new()) };
    }
    MADE.with_borrow_mut(|made| {
        if let Some((_, card)) = made.iter().find(|(k, _)| *k == kind) {
            return card.copy_in_memory();
        }
        let card = VirtualCard::new(make());
        let copy = card.copy_in_memory();
        made.push((kind, card));
        copy
    })
}

/// As [`scp03_session`], on an SCP02 card (`i = 55`, 3DES test key `40..4F`, key version
/// `20`; levels C-MAC, +C-DEC, +R-MAC).
pub fn scp02_session(data: &[u8]) {
    session("scp02", CardConfig::scp02, data, CARD_MANAGER_INS);
}

/// Opens a real SCP03 session (`i = 70`, AES test key `40..4F`, key version `30`) to the
/// ISD of a new virtual card, then sends every fuzzed command through it, wrapped by the
/// host side of `scp`.
///
/// Input: byte 0 picks the security level (C-MAC, +C-DECRYPTION, +R-MAC, +R-ENCRYPTION);
/// then commands, each after a 1-byte length, as `selector, P1, P2, data…`: CLA `80`, INS
/// [`CARD_MANAGER_INS`]`[(selector & 7F) % len]`, selector b8 = 1 adds Le = 256. When the
/// card or the host ends the session (a security error, an error status, a new
/// INITIALIZE UPDATE, a SELECT), it is opened again, with the new keys if a
/// [`HOST_PUT_KEY`] replaced them; the input ends when the card refuses.
///
/// Checks: every answer is a well-formed R-APDU; while the session is open the host
/// verifies the R-MAC (and deciphers) every successful answer, so the card and the host
/// agree on the channel; `gp`'s command parser reads every command without panicking.
pub fn scp03_session(data: &[u8]) {
    session("default", CardConfig::default, data, CARD_MANAGER_INS);
}

/// STORE DATA (GP 2.3.1 §11.11) to the ISD through an SCP03 session, as
/// [`scp03_session`] with STORE DATA as the only instruction: P1 (DGI or BER-TLV
/// structure, encryption, last block), P2 (block number) and the data are fuzzed, so the
/// card's DGI and BER-TLV readers of personalisation data see them.
pub fn store_data(data: &[u8]) {
    session("default", CardConfig::default, data, &[0xE2]);
}

/// The instructions the SCP session targets send (GP 2.3.1 Table 11-1, plus SELECT and
/// MANAGE CHANNEL): the first byte of each command picks one (see [`scp03_session`]).
pub const CARD_MANAGER_INS: &[u8] = &[
    0xE6, // INSTALL
    0xE8, // LOAD
    0xD8, // PUT KEY
    0xE2, // STORE DATA
    0xF2, // GET STATUS
    0xF0, // SET STATUS
    0xE4, // DELETE
    0xCA, // GET DATA
    0xCB, // GET DATA (odd)
    0xA4, // SELECT
    0x70, // MANAGE CHANNEL
    0x50, // INITIALIZE UPDATE (inside a session: restarts it)
    0xC0, // GET RESPONSE
    HOST_PUT_KEY,
];

/// Not an instruction: the host builds a correct PUT KEY (GP 2.3.1 §11.8) of a whole key
/// set, P1 the version to replace (`00` adds one), P2 the new version, the key from the
/// data (cut or zero-padded to 16 bytes; AES on SCP03 cards, 3DES on SCP02 ones),
/// encrypted under the session's DEK with its check value. The fuzzer could not compute
/// that encryption; this way key replacement, and sessions with the new keys, are reached.
pub const HOST_PUT_KEY: u8 = 0x00;

/// The session targets: a card made with `config`, the instructions `ins`.
fn session(kind: &'static str, make: fn() -> CardConfig, data: &[u8], ins: &[u8]) {
    let config = make();
    let Some((&level, commands)) = data.split_first() else {
        return;
    };
    let levels: &[SecurityLevel] = match config.protocol {
        scp::Protocol::Scp02 { .. } => &[
            SecurityLevel::MAC,
            SecurityLevel::MAC_ENC,
            SecurityLevel::MAC_RMAC,
            SecurityLevel::MAC_ENC_RMAC,
        ],
        _ => &[
            SecurityLevel::MAC,
            SecurityLevel::MAC_ENC,
            SecurityLevel::MAC_RMAC,
            SecurityLevel::MAC_ENC_RMAC,
            SecurityLevel::MAC_ENC_RMAC_RENC,
        ],
    };
    let level = levels[usize::from(level) % levels.len()];
    // FUZZ_TRACE=1 prints each plain command's header and the card's status word.
    let trace = std::env::var_os("FUZZ_TRACE").is_some();
    let mut keys = config.keys.clone();
    let mut kvn = config.key_version;
    let aes = matches!(config.protocol, scp::Protocol::Scp03 { .. });
    let mut card = new_card(kind, || config.clone());
    let Some(mut host) = open(&mut card, &keys, kvn, level) else {
        panic!("a new card opens a session with its test keys at {level:?}");
    };
    for c in length_prefixed(commands) {
        let [selector, p1, p2, body @ ..] = c else {
            continue;
        };
        let instruction = ins[usize::from(selector & 0x7F) % ins.len()];
        let mut new_keys = None;
        let mut cmd = if instruction == HOST_PUT_KEY {
            let mut value = body.to_vec();
            value.resize(16, 0);
            let key = if aes {
                scp::Key::aes(&value)
            } else {
                scp::Key::des3(&value)
            }
            .expect("16-byte key");
            let set = StaticKeys::same(key);
            let Ok(data) = scp::put_key::key_set_data(*p2, &set, &host) else {
                continue;
            };
            new_keys = Some(set);
            scp::put_key::command(*p1, data)
        } else {
            Command::new(0x80, instruction, *p1, *p2).with_data(body.to_vec())
        };
        if selector & 0x80 != 0 {
            cmd = cmd.with_le(256);
        }
        // `gp`'s reader of the same command (the card has its own view of it).
        let _ = gp::commands::GpCommand::parse(&cmd);
        let Ok(wrapped) = host.wrap(&cmd) else {
            continue;
        };
        let Ok(bytes) = wrapped.to_bytes() else {
            continue;
        };
        let answer = card.transmit(&bytes);
        let resp = Response::parse(&answer).expect("every answer ends with a status word");
        let sw = resp.sw;
        if trace {
            eprintln!(
                "{:02X} {:02X} {:02X} {} -> {sw}",
                cmd.ins,
                cmd.p1,
                cmd.p2,
                cmd.data.len()
            );
        }
        if let Some(set) = new_keys.filter(|_| sw == StatusWord::SUCCESS && *p1 == kvn) {
            // The key set of this session was replaced: the next session uses the new one.
            keys = set;
            kvn = *p2;
        }
        let unwrapped = host.unwrap(resp);
        if ends_session(cmd.ins, sw) || host.is_closed() {
            match open(&mut card, &keys, kvn, level) {
                Some(h) => host = h,
                // PUT KEY replaced the keys, or the card is locked or terminated.
                None => return,
            }
        } else {
            unwrapped.expect("the host verifies the answers of an open session");
        }
    }
}

/// Whether the card has (or may have) ended the secure channel after answering `sw` to a
/// command with this INS: a security error (GP 2.3.1 §10.2.3), or a command that starts
/// another session or selects another application.
fn ends_session(ins: u8, sw: StatusWord) -> bool {
    matches!(ins, 0x50 | 0xA4 | 0x70)
        || matches!(sw.0, 0x6982 | 0x6985 | 0x6988 | 0x6283 | 0x6A88)
        || !matches!(sw.sw1(), 0x90 | 0x61 | 0x63)
}

/// INITIALIZE UPDATE and EXTERNAL AUTHENTICATE to the ISD on the basic channel (selected
/// again first); `None` if the card refuses.
fn open(
    card: &mut VirtualCard,
    keys: &StaticKeys,
    kvn: u8,
    level: SecurityLevel,
) -> Option<HostSession> {
    let select = Command::new(0x00, 0xA4, 0x04, 0x00)
        .with_data(gp::ISD_AID.as_bytes().to_vec())
        .with_le(256);
    let r = exchange(card, &select)?;
    if !r.is_success() {
        return None;
    }
    let challenge = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
    let r = exchange(card, &scp::initialize_update(kvn, &challenge))?;
    if !r.is_success() {
        return None;
    }
    let iu = InitUpdateResponse::parse(&r.data).ok()?;
    let auth = HostAuth::new(keys, &challenge, &iu, level, 0x55).ok()?;
    let r = exchange(card, &auth.external_authenticate())?;
    auth.finish(&r).ok()
}

fn exchange(card: &mut VirtualCard, cmd: &Command) -> Option<Response> {
    Response::parse(&card.transmit(&cmd.to_bytes().ok()?)).ok()
}

/// Splits `data` into pieces, each after a 1-byte length (the last may be short).
fn length_prefixed(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    core::iter::from_fn(move || {
        let (&len, tail) = data.split_first()?;
        let (piece, next) = tail.split_at(usize::from(len).min(tail.len()));
        data = next;
        Some(piece)
    })
}
