//! The applet: persistent state, security state and command dispatch.

use crate::keys::{KeyOpError, SlotKey};
use crate::secret::Secret;
use crate::{
    ins, objects, slot, Error, KeyAlgorithm, KeyOrigin, ManagementKey, MgmtAlgorithm, PinPolicy,
    TouchPolicy,
};
use apdu::tlv::{self, Tag, TlvRef};
use apdu::{Command, Response, StatusWord};
use core::fmt;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// The PIV card application AID: RID `A000000308`, PIX `00001000` and version `0100`
/// (SP 800-73-4 Part 1 §2.2).
pub const PIV_AID: [u8; 11] = [0xA0, 0, 0, 3, 8, 0, 0, 0x10, 0, 1, 0];
/// The AID of the package (load file) holding the PIV application: the NIST RID.
pub const PIV_PACKAGE_AID: [u8; 5] = [0xA0, 0, 0, 3, 8];

/// Largest data object PUT DATA accepts (container included). The largest PIV
/// object, the facial image, is 12 704 bytes (Part 1 Table 3).
const MAX_OBJECT_LEN: usize = 16 * 1024;
/// Largest total size of stored data objects.
const MAX_OBJECTS_TOTAL: usize = 256 * 1024;
/// Largest command data accumulated by command chaining.
const MAX_CHAIN_LEN: usize = MAX_OBJECT_LEN + 64;
/// PIN and PUK reference data are 8 bytes, padded with `FF` (Part 1 §2.4.3).
const REF_LEN: usize = 8;

/// `63CX`: verification failed, X retries left (ISO/IEC 7816-4 §5.6, SP 800-73-4 Part 2 §3.2.1).
fn retries_left(x: u8) -> StatusWord {
    StatusWord::new(0x63, 0xC0 | x.min(15))
}
/// `6882`: secure messaging not supported.
const SM_NOT_SUPPORTED: StatusWord = StatusWord(0x6882);

/// Initial settings of a new card.
#[derive(Clone)]
pub struct PivConfig {
    /// PIV Card Application PIN, 6 to 8 digits (default `123456`).
    pub pin: Vec<u8>,
    /// PIN Unblocking Key, 6 to 8 bytes (default `12345678`).
    pub puk: Vec<u8>,
    /// Card Application Administration Key (default 3DES `0102…08` ×3).
    pub management_key: ManagementKey,
    /// Serial number returned by GET SERIAL and used in the CHUID.
    pub serial: u32,
    /// Firmware version returned by GET VERSION (default 5.4.3, the first YubiKey
    /// version with AES management keys, GET METADATA and `VERIFY P1=FF`).
    pub version: [u8; 3],
    /// PIN retry counter (default 3).
    pub pin_retries: u8,
    /// PUK retry counter (default 3).
    pub puk_retries: u8,
}

impl Default for PivConfig {
    fn default() -> Self {
        Self {
            pin: b"123456".to_vec(),
            puk: b"12345678".to_vec(),
            management_key: ManagementKey::default(),
            serial: 0,
            version: [5, 4, 3],
            pin_retries: 3,
            puk_retries: 3,
        }
    }
}

impl fmt::Debug for PivConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivConfig")
            .field("pin", &"[REDACTED]")
            .field("puk", &"[REDACTED]")
            .field("management_key", &self.management_key)
            .field("serial", &self.serial)
            .field("version", &self.version)
            .field("pin_retries", &self.pin_retries)
            .field("puk_retries", &self.puk_retries)
            .finish()
    }
}

/// Values RESET and SET PIN RETRIES restore.
#[derive(Clone, Serialize, Deserialize)]
struct Factory {
    pin: Secret,
    puk: Secret,
    management_key: ManagementKey,
    pin_retries: u8,
    puk_retries: u8,
}

/// A retry counter.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct Counter {
    max: u8,
    left: u8,
}

impl Counter {
    fn full(max: u8) -> Self {
        Self { max, left: max }
    }
}

/// A pending step of management-key authentication (Part 2 Appendix A.1).
enum Pending {
    /// Mutual authentication: the card sent this witness, enciphered.
    Witness {
        algorithm: MgmtAlgorithm,
        plain: Zeroizing<Vec<u8>>,
    },
    /// External authentication: the card sent this challenge in clear.
    Challenge {
        algorithm: MgmtAlgorithm,
        plain: Vec<u8>,
    },
}

/// Command chaining in progress (ISO/IEC 7816-4 §5.1.1.1).
struct Chain {
    header: (u8, u8, u8),
    data: Zeroizing<Vec<u8>>,
}

/// Security state and I/O buffers; never persisted, cleared by SELECT and deselect.
#[derive(Default)]
struct Session {
    pin_verified: bool,
    /// A PIN verification immediately preceded the current command ("PIN Always").
    pin_always: bool,
    mgmt_authenticated: bool,
    pending: Option<Pending>,
    chain: Option<Chain>,
    /// Response bytes not yet fetched with GET RESPONSE.
    out: Zeroizing<Vec<u8>>,
}

/// The PIV card application and its whole persistent state.
///
/// Serializing it yields everything the card must store, private keys included
/// (PKCS#8 DER, hex); the session (PIN verified, management key authenticated,
/// pending chains and responses) is not serialized.
///
/// ```
/// use apdu::Command;
/// use piv::{PivApplet, PivConfig, PIV_AID};
///
/// let mut applet = PivApplet::new(PivConfig { serial: 7, ..PivConfig::default() });
/// let apt = applet.select(&Command::new(0x00, 0xA4, 0x04, 0x00).with_data(PIV_AID.to_vec()));
/// assert_eq!(apt.data[..2], [0x61, 0x41]);
/// // VERIFY the default PIN, padded with FF to 8 bytes.
/// let r = applet.process(&Command::new(0x00, 0x20, 0x00, 0x80).with_data(*b"123456\xFF\xFF"));
/// assert!(r.is_success());
/// // GET SERIAL (YubiKey extension).
/// let r = applet.process(&Command::new(0x00, 0xF8, 0x00, 0x00).with_le(256));
/// assert_eq!(r.data, 7u32.to_be_bytes());
/// ```
#[derive(Serialize, Deserialize)]
pub struct PivApplet {
    version: [u8; 3],
    serial: u32,
    factory: Factory,
    pin: Secret,
    pin_tries: Counter,
    puk: Secret,
    puk_tries: Counter,
    management_key: ManagementKey,
    management_touch: u8,
    keys: BTreeMap<u8, SlotKey>,
    #[serde(with = "object_map")]
    objects: BTreeMap<u32, Vec<u8>>,
    #[serde(skip)]
    session: Session,
    #[serde(skip)]
    changed: bool,
}

impl fmt::Debug for PivApplet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivApplet")
            .field("version", &self.version)
            .field("serial", &self.serial)
            .field("pin_retries_left", &self.pin_tries.left)
            .field("puk_retries_left", &self.puk_tries.left)
            .field("management_key", &self.management_key)
            .field("keys", &self.keys)
            .field(
                "objects",
                &self
                    .objects
                    .keys()
                    .map(|t| format!("{t:X}"))
                    .collect::<Vec<_>>(),
            )
            .field("pin_verified", &self.session.pin_verified)
            .field("mgmt_authenticated", &self.session.mgmt_authenticated)
            .finish()
    }
}

type CmdResult = Result<Vec<u8>, StatusWord>;

impl PivApplet {
    /// A new card with `config`'s PIN, PUK, management key and serial, no keys,
    /// and a CHUID with a random GUID.
    ///
    /// # Panics
    /// If the configured PIN or PUK is not valid reference data or a retry count is
    /// zero; use [`PivApplet::try_new`] to get an error instead.
    pub fn new(config: PivConfig) -> Self {
        match Self::try_new(config) {
            Ok(applet) => applet,
            Err(e) => panic!("invalid PIV configuration: {e}"),
        }
    }

    /// A new card, checking the configuration.
    pub fn try_new(config: PivConfig) -> Result<Self, Error> {
        let pin = pad_reference(&config.pin, true).ok_or(Error::BadReferenceData {
            what: "PIN",
            digits: " of digits",
            len: config.pin.len(),
        })?;
        let puk = pad_reference(&config.puk, false).ok_or(Error::BadReferenceData {
            what: "PUK",
            digits: "",
            len: config.puk.len(),
        })?;
        if config.pin_retries == 0 || config.puk_retries == 0 {
            return Err(Error::BadRetryCount);
        }
        let factory = Factory {
            pin: pin.clone(),
            puk: puk.clone(),
            management_key: config.management_key.clone(),
            pin_retries: config.pin_retries,
            puk_retries: config.puk_retries,
        };
        let mut applet = Self {
            version: config.version,
            serial: config.serial,
            factory,
            pin,
            pin_tries: Counter::full(config.pin_retries),
            puk,
            puk_tries: Counter::full(config.puk_retries),
            management_key: config.management_key,
            management_touch: TouchPolicy::Never.id(),
            keys: BTreeMap::new(),
            objects: BTreeMap::new(),
            session: Session::default(),
            // A new card has state to save (its CHUID GUID is random).
            changed: true,
        };
        applet.install_default_objects();
        Ok(applet)
    }

    fn install_default_objects(&mut self) {
        let guid: [u8; 16] = rand::rng().random();
        self.objects
            .insert(objects::CHUID, objects::default_chuid(self.serial, &guid));
    }

    /// The serial number.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// PIN tries left before it blocks.
    pub fn pin_retries_left(&self) -> u8 {
        self.pin_tries.left
    }

    /// SELECT by AID (SP 800-73-4 Part 2 §3.1.1): resets the security state and
    /// answers the application property template.
    pub fn select(&mut self, cmd: &Command) -> Response {
        self.session = Session::default();
        if cmd.p2 & 0x0C == 0x0C {
            return Response::ok(Vec::new());
        }
        let apt = self.application_property_template();
        self.respond(apt, ne(cmd))
    }

    /// The card selected another application or was reset: the PIN and management
    /// key are no longer verified.
    pub fn deselect(&mut self) {
        self.session = Session::default();
    }

    /// True once after each change of the persistent state (and once for a new
    /// applet), so the card can save it.
    pub fn changed(&mut self) -> bool {
        core::mem::take(&mut self.changed)
    }

    /// Processes any command other than the SELECT that made the applet current.
    /// Never panics; every failure is a status word.
    pub fn process(&mut self, cmd: &Command) -> Response {
        // ISO/IEC 7816-4 §5.4.1: interindustry class only; no secure messaging.
        if cmd.cla & 0x80 != 0 {
            return Response::status(StatusWord::CLA_NOT_SUPPORTED);
        }
        if cmd.cla & 0x0C != 0 {
            return Response::status(SM_NOT_SUPPORTED);
        }
        let chained = cmd.cla & 0x10 != 0;
        if cmd.ins == ins::GET_RESPONSE && !chained {
            return self.get_response(cmd);
        }
        // Any other command abandons unread response data.
        self.session.out.clear();

        let data = if chained || self.session.chain.is_some() {
            let header = (cmd.ins, cmd.p1, cmd.p2);
            let mut chain = match self.session.chain.take() {
                Some(c) if c.header == header => c,
                // A different command ends the chain; it starts afresh.
                _ => Chain {
                    header,
                    data: Zeroizing::new(Vec::new()),
                },
            };
            if chain.data.len() + cmd.data.len() > MAX_CHAIN_LEN {
                return Response::status(StatusWord::NOT_ENOUGH_MEMORY);
            }
            chain.data.extend_from_slice(&cmd.data);
            if chained {
                self.session.chain = Some(chain);
                return Response::ok(Vec::new());
            }
            chain.data
        } else {
            Zeroizing::new(cmd.data.clone())
        };

        // "PIN Always" (Part 1 §3.5.2): only a VERIFY immediately before counts; the
        // YubiKey queries of version, serial and metadata touch no security state and
        // are let through, as hosts may ask them between VERIFY and the signature.
        if !matches!(
            cmd.ins,
            ins::GENERAL_AUTHENTICATE | ins::GET_VERSION | ins::GET_SERIAL | ins::GET_METADATA
        ) {
            self.session.pin_always = false;
        }
        // A management key challenge is answered by the very next command or lost.
        if !(cmd.ins == ins::GENERAL_AUTHENTICATE && cmd.p2 == slot::MANAGEMENT) {
            self.session.pending = None;
        }

        let result = match cmd.ins {
            ins::SELECT => return self.select_in_process(cmd, &data),
            ins::GET_DATA => self.get_data(cmd, &data),
            ins::PUT_DATA => self.put_data(cmd, &data),
            ins::VERIFY => self.verify(cmd, &data),
            ins::CHANGE_REFERENCE_DATA => self.change_reference_data(cmd, &data),
            ins::RESET_RETRY_COUNTER => self.reset_retry_counter(cmd, &data),
            ins::GENERAL_AUTHENTICATE => self.general_authenticate(cmd, &data),
            ins::GENERATE_ASYMMETRIC_KEY_PAIR => self.generate(cmd, &data),
            ins::GET_VERSION => Ok(self.version.to_vec()),
            ins::GET_SERIAL => Ok(self.serial.to_be_bytes().to_vec()),
            ins::SET_MANAGEMENT_KEY => self.set_management_key(cmd, &data),
            ins::RESET => self.reset(),
            ins::SET_PIN_RETRIES => self.set_pin_retries(cmd),
            ins::IMPORT_KEY => self.import_key(cmd, &data),
            ins::GET_METADATA => self.metadata(cmd),
            _ => Err(StatusWord::INS_NOT_SUPPORTED),
        };
        match result {
            Ok(body) => self.respond(body, ne(cmd)),
            Err(sw) => Response::status(sw),
        }
    }

    // ----- I/O -----

    /// Returns up to Ne bytes; keeps the rest for GET RESPONSE and says how much with
    /// `61xx` (ISO/IEC 7816-4 §5.3.4; `00` means 256 or more).
    fn respond(&mut self, mut body: Vec<u8>, ne: usize) -> Response {
        if body.len() <= ne {
            return Response::ok(body);
        }
        self.session.out = Zeroizing::new(body.split_off(ne));
        let sw2 = self.session.out.len().min(256) as u8;
        Response::new(body, StatusWord::new(0x61, sw2))
    }

    fn get_response(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0 || cmd.p2 != 0 {
            return Response::status(StatusWord::INCORRECT_P1P2);
        }
        if self.session.out.is_empty() {
            return Response::status(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let out = core::mem::take(&mut *self.session.out);
        self.respond(out, ne(cmd))
    }

    fn select_in_process(&mut self, cmd: &Command, data: &[u8]) -> Response {
        // SELECT by DF name with a (partial) PIV AID; anything else is the card's business.
        if cmd.p1 != 0x04 || data.len() < PIV_PACKAGE_AID.len() || !PIV_AID.starts_with(data) {
            return Response::status(StatusWord::FILE_NOT_FOUND);
        }
        self.select(cmd)
    }

    /// Application property template (Part 2 §3.1.1, Table 3).
    fn application_property_template(&self) -> Vec<u8> {
        let mut body = tlv::encode(Tag::new(0x4F), &PIV_AID[5..]);
        body.extend(tlv::encode(
            Tag::new(0x79),
            &tlv::encode(Tag::new(0x4F), &PIV_PACKAGE_AID),
        ));
        body.extend(tlv::encode(Tag::new(0x50), b"Cardwright PIV"));
        let mut algorithms = Vec::new();
        for id in [0x03, 0x08, 0x0A, 0x0C, 0x06, 0x07, 0x05, 0x11, 0x14] {
            algorithms.extend(tlv::encode(Tag::new(0x80), &[id]));
        }
        algorithms.extend(tlv::encode(Tag::new(0x06), &[0x00]));
        body.extend(tlv::encode(Tag::new(0xAC), &algorithms));
        tlv::encode(Tag::new(0x61), &body)
    }

    // ----- data objects -----

    /// GET DATA (Part 2 §3.1.2): `5C` tag list with one tag; answers the object.
    fn get_data(&mut self, cmd: &Command, data: &[u8]) -> CmdResult {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let (id, rest) = TlvRef::parse_one(data).map_err(|_| StatusWord::WRONG_DATA)?;
        if id.tag() != Tag::new(0x5C) || !rest.is_empty() {
            return Err(StatusWord::WRONG_DATA);
        }
        let tag = object_tag(id.value())?;
        if tag == objects::DISCOVERY {
            return Ok(objects::discovery(&PIV_AID));
        }
        if objects::read_needs_pin(tag) && !self.session.pin_verified {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        self.objects
            .get(&tag)
            .cloned()
            .ok_or(StatusWord::FILE_NOT_FOUND)
    }

    /// PUT DATA (Part 2 §3.3.1): `5C` tag list, then the object in its container.
    /// An empty container deletes the object.
    fn put_data(&mut self, cmd: &Command, data: &[u8]) -> CmdResult {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        self.require_mgmt()?;
        let (id, rest) = TlvRef::parse_one(data).map_err(|_| StatusWord::WRONG_DATA)?;
        if id.tag() != Tag::new(0x5C) {
            return Err(StatusWord::WRONG_DATA);
        }
        let tag = object_tag(id.value())?;
        if !objects::is_writable(tag) {
            return Err(StatusWord::WRONG_DATA);
        }
        let (object, tail) = TlvRef::parse_one(rest).map_err(|_| StatusWord::WRONG_DATA)?;
        if !tail.is_empty() || object.tag().value() != objects::container_tag(tag) {
            return Err(StatusWord::WRONG_DATA);
        }
        if object.value().is_empty() {
            self.objects.remove(&tag);
        } else {
            let others: usize = self
                .objects
                .iter()
                .filter(|(t, _)| **t != tag)
                .map(|(_, v)| v.len())
                .sum();
            if rest.len() > MAX_OBJECT_LEN || others + rest.len() > MAX_OBJECTS_TOTAL {
                return Err(StatusWord::NOT_ENOUGH_MEMORY);
            }
            self.objects.insert(tag, rest.to_vec());
        }
        self.changed = true;
        Ok(Vec::new())
    }

    // ----- PIN and PUK -----

    /// VERIFY (Part 2 §3.2.1) of the PIV Card Application PIN (`80`).
    fn verify(&mut self, cmd: &Command, data: &[u8]) -> CmdResult {
        if cmd.p2 != slot::PIN {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        match cmd.p1 {
            // Reset the security status of the key reference (log out).
            0xFF => {
                if !data.is_empty() {
                    return Err(StatusWord::WRONG_LENGTH);
                }
                self.session.pin_verified = false;
                self.session.pin_always = false;
                Ok(Vec::new())
            }
            0x00 if data.is_empty() => {
                if self.pin_tries.left == 0 {
                    Err(StatusWord::AUTH_METHOD_BLOCKED)
                } else if self.session.pin_verified {
                    Ok(Vec::new())
                } else {
                    Err(retries_left(self.pin_tries.left))
                }
            }
            0x00 => {
                if data.len() != REF_LEN {
                    return Err(StatusWord::WRONG_DATA);
                }
                if self.pin_tries.left == 0 {
                    return Err(StatusWord::AUTH_METHOD_BLOCKED);
                }
                if self.pin.ct_eq_bytes(data) {
                    self.reset_counter(true);
                    self.session.pin_verified = true;
                    self.session.pin_always = true;
                    Ok(Vec::new())
                } else {
                    self.session.pin_verified = false;
                    Err(self.count_failure(true))
                }
            }
            _ => Err(StatusWord::INCORRECT_P1P2),
        }
    }

    /// CHANGE REFERENCE DATA (Part 2 §3.2.2): current value then new value, 8 bytes each.
    fn change_reference_data(&mut self, cmd: &Command, data: &[u8]) -> CmdResult {
        if cmd.p1 != 0 {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let is_pin = match cmd.p2 {
            slot::PIN => true,
            slot::PUK => false,
            _ => return Err(StatusWord::REFERENCED_DATA_NOT_FOUND),
        };
        let (old, new) = split_references(data)?;
        let (current, counter) = if is_pin {
            (&self.pin, self.pin_tries)
        } else {
            (&self.puk, self.puk_tries)
        };
        if counter.left == 0 {
            return Err(StatusWord::AUTH_METHOD_BLOCKED);
        }
        if !current.ct_eq_bytes(old) {
            if is_pin {
                self.session.pin_verified = false;
            }
            return Err(self.count_failure(is_pin));
        }
        self.reset_counter(is_pin);
        if !valid_reference(new, is_pin) {
            return Err(StatusWord::WRONG_DATA);
        }
        let new = Secret::new(new.to_vec());
        if is_pin {
            self.pin = new;
        } else {
            self.puk = new;
        }
        self.changed = true;
        Ok(Vec::new())
    }

    /// RESET RETRY COUNTER (Part 2 §3.2.3): PUK then new PIN, 8 bytes each.
    fn reset_retry_counter(&mut self, cmd: &Command, data: &[u8]) -> CmdResult {
        if cmd.p1 != 0 {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        if cmd.p2 != slot::PIN {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        let (puk, new_pin) = split_references(data)?;
        if self.puk_tries.left == 0 {
            return Err(StatusWord::AUTH_METHOD_BLOCKED);
        }
        if !self.puk.ct_eq_bytes(puk) {
            return Err(self.count_failure(false));
        }
        self.reset_counter(false);
        if !valid_reference(new_pin, true) {
            return Err(StatusWord::WRONG_DATA);
        }
        self.pin = Secret::new(new_pin.to_vec());
        self.pin_tries.left = self.pin_tries.max;
        self.changed = true;
        Ok(Vec::new())
    }

    fn reset_counter(&mut self, pin: bool) {
        let c = if pin {
            &mut self.pin_tries
        } else {
            &mut self.puk_tries
        };
        if c.left != c.max {
            c.left = c.max;
            self.changed = true;
        }
    }

    /// Counts a wrong PIN or PUK: `63CX`, and blocked at zero (the next try gets `6983`).
    fn count_failure(&mut self, pin: bool) -> StatusWord {
        let c = if pin {
            &mut self.pin_tries
        } else {
            &mut self.puk_tries
        };
        c.left = c.left.saturating_sub(1);
        self.changed = true;
        retries_left(c.left)
    }

    // ----- GENERAL AUTHENTICATE -----

    /// GENERAL AUTHENTICATE (Part 2 §3.2.4): dynamic authentication template `7C`.
    fn general_authenticate(&mut self, cmd: &Command, data: &[u8]) -> CmdResult {
        let result = parse_template(data).and_then(|items| {
            if cmd.p2 == slot::MANAGEMENT {
                self.authenticate_management(cmd.p1, &items)
            } else {
                self.use_private_key(cmd.p1, cmd.p2, &items)
            }
        });
        // The operation that a "PIN Always" verification allowed has happened.
        self.session.pin_always = false;
        result
    }

    /// Authentication of the card application administrator (Part 2 Appendix A.1,
    /// the YubiKey `9B` flow): mutual (`80` witness, then `80`+`81`) or external
    /// (`81` challenge, then `82`).
    fn authenticate_management(&mut self, alg: u8, items: &[TlvRef<'_>]) -> CmdResult {
        // `00`, the older identifier of 3-key 3DES, is accepted (SP 800-78-4 Table 6-1).
        let algorithm = MgmtAlgorithm::from_id(alg).ok_or(StatusWord::INCORRECT_P1P2)?;
        let key = self.management_key.clone();
        if algorithm != key.algorithm() {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let block = algorithm.block_len();
        let witness = tlv::find_value(items, Tag::new(0x80));
        let challenge = tlv::find_value(items, Tag::new(0x81));
        let response = tlv::find_value(items, Tag::new(0x82));
        let internal = |_| StatusWord::UNKNOWN;
        match (witness, challenge, response) {
            (Some([]), None, None) => {
                let plain = Zeroizing::new(random_bytes(block));
                let mut enc = plain.to_vec();
                key.encrypt_block(&mut enc).map_err(internal)?;
                self.session.mgmt_authenticated = false;
                self.session.pending = Some(Pending::Witness { algorithm, plain });
                Ok(tlv::encode(
                    Tag::new(0x7C),
                    &tlv::encode(Tag::new(0x80), &enc),
                ))
            }
            (Some(w), Some(c), None) if !w.is_empty() && !c.is_empty() => {
                let ok = match self.session.pending.take() {
                    Some(Pending::Witness {
                        algorithm: a,
                        plain,
                    }) => a == algorithm && Secret::new(plain.to_vec()).ct_eq_bytes(w),
                    _ => false,
                };
                if !ok {
                    self.session.mgmt_authenticated = false;
                    return Err(StatusWord::SECURITY_NOT_SATISFIED);
                }
                if c.len() != block {
                    return Err(StatusWord::WRONG_DATA);
                }
                let mut enc = c.to_vec();
                key.encrypt_block(&mut enc).map_err(internal)?;
                self.session.mgmt_authenticated = true;
                Ok(tlv::encode(
                    Tag::new(0x7C),
                    &tlv::encode(Tag::new(0x82), &enc),
                ))
            }
            (None, Some([]), None) => {
                let plain = random_bytes(block);
                let out = tlv::encode(Tag::new(0x7C), &tlv::encode(Tag::new(0x81), &plain));
                self.session.mgmt_authenticated = false;
                self.session.pending = Some(Pending::Challenge { algorithm, plain });
                Ok(out)
            }
            (None, None, Some(r)) if !r.is_empty() => {
                let ok = match self.session.pending.take() {
                    Some(Pending::Challenge {
                        algorithm: a,
                        plain,
                    }) if a == algorithm => {
                        let mut expected = plain;
                        key.encrypt_block(&mut expected).map_err(internal)?;
                        Secret::new(expected).ct_eq_bytes(r)
                    }
                    _ => false,
                };
                self.session.mgmt_authenticated = ok;
                if ok {
                    Ok(Vec::new())
                } else {
                    Err(StatusWord::SECURITY_NOT_SATISFIED)
                }
            }
            _ => Err(StatusWord::WRONG_DATA),
        }
    }

    /// Signature, RSA decryption (`82` requested, `81` input) or ECDH (`85` peer point)
    /// with a slot key.
    fn use_private_key(&mut self, alg: u8, key_ref: u8, items: &[TlvRef<'_>]) -> CmdResult {
        if !slot::is_key_slot(key_ref) {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let key = self
            .keys
            .get(&key_ref)
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if KeyAlgorithm::from_id(alg) != Some(key.algorithm) {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        if tlv::find_value(items, Tag::new(0x82)) != Some(&[]) {
            return Err(StatusWord::WRONG_DATA);
        }
        let allowed = match key.pin_policy {
            PinPolicy::Never => true,
            PinPolicy::Once => self.session.pin_verified,
            PinPolicy::Always => self.session.pin_verified && self.session.pin_always,
        };
        let output = match (
            tlv::find_value(items, Tag::new(0x81)),
            tlv::find_value(items, Tag::new(0x85)),
        ) {
            (Some(input), None) if !input.is_empty() => {
                if !allowed {
                    return Err(StatusWord::SECURITY_NOT_SATISFIED);
                }
                key.private_operation(input).map(Zeroizing::new)
            }
            (None, Some(point)) if !point.is_empty() => {
                if !allowed {
                    return Err(StatusWord::SECURITY_NOT_SATISFIED);
                }
                key.key_agreement(point)
            }
            _ => return Err(StatusWord::WRONG_DATA),
        }
        .map_err(key_error)?;
        Ok(tlv::encode(
            Tag::new(0x7C),
            &tlv::encode(Tag::new(0x82), &output),
        ))
    }

    // ----- key management -----

    fn require_mgmt(&self) -> Result<(), StatusWord> {
        if self.session.mgmt_authenticated {
            Ok(())
        } else {
            Err(StatusWord::SECURITY_NOT_SATISFIED)
        }
    }

    /// GENERATE ASYMMETRIC KEY PAIR (Part 2 §3.3.2): control reference template `AC`
    /// with `80` algorithm (and YubiKey `AA` PIN policy, `AB` touch policy);
    /// answers `7F49` with the public key.
    fn generate(&mut self, cmd: &Command, data: &[u8]) -> CmdResult {
        if cmd.p1 != 0 || !slot::is_key_slot(cmd.p2) {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        self.require_mgmt()?;
        let (template, rest) = TlvRef::parse_one(data).map_err(|_| StatusWord::WRONG_DATA)?;
        if template.tag() != Tag::new(0xAC) || !rest.is_empty() {
            return Err(StatusWord::WRONG_DATA);
        }
        let items = tlv::parse_all_ref(template.value()).map_err(|_| StatusWord::WRONG_DATA)?;
        let algorithm = match tlv::find_value(&items, Tag::new(0x80)) {
            Some([id]) => KeyAlgorithm::from_id(*id).ok_or(StatusWord::WRONG_DATA)?,
            _ => return Err(StatusWord::WRONG_DATA),
        };
        let (pin_policy, touch_policy) = policies(&items, cmd.p2)?;
        let key = SlotKey::generate(algorithm, pin_policy, touch_policy).map_err(key_error)?;
        let public = tlv::encode(Tag::new(0x7F49), &key.public_key_objects());
        self.keys.insert(cmd.p2, key);
        self.changed = true;
        Ok(public)
    }

    /// YubiKey IMPORT KEY: P1 algorithm, P2 slot; data objects `01`..`05` (RSA CRT
    /// values) or `06` (ECC private scalar), optional `AA`, `AB`.
    fn import_key(&mut self, cmd: &Command, data: &[u8]) -> CmdResult {
        let algorithm = KeyAlgorithm::from_id(cmd.p1).ok_or(StatusWord::INCORRECT_P1P2)?;
        if !slot::is_key_slot(cmd.p2) {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        self.require_mgmt()?;
        let items = tlv::parse_all_ref(data).map_err(|_| StatusWord::WRONG_DATA)?;
        let (pin_policy, touch_policy) = policies(&items, cmd.p2)?;
        let key =
            SlotKey::import(algorithm, &items, pin_policy, touch_policy).map_err(key_error)?;
        self.keys.insert(cmd.p2, key);
        self.changed = true;
        Ok(Vec::new())
    }

    /// YubiKey SET MANAGEMENT KEY: P1 `FF`, P2 `FF` (or `FE`: touch required);
    /// data algorithm ‖ `9B` ‖ length ‖ key.
    fn set_management_key(&mut self, cmd: &Command, data: &[u8]) -> CmdResult {
        let touch = match (cmd.p1, cmd.p2) {
            (0xFF, 0xFF) => TouchPolicy::Never,
            (0xFF, 0xFE) => TouchPolicy::Always,
            _ => return Err(StatusWord::INCORRECT_P1P2),
        };
        self.require_mgmt()?;
        let key = match data {
            [alg, slot::MANAGEMENT, len, key @ ..] if usize::from(*len) == key.len() => {
                ManagementKey::from_id(*alg, key).map_err(|_| StatusWord::WRONG_DATA)?
            }
            _ => return Err(StatusWord::WRONG_DATA),
        };
        self.management_key = key;
        self.management_touch = touch.id();
        self.changed = true;
        Ok(Vec::new())
    }

    /// YubiKey RESET: only when both PIN and PUK are blocked; restores the factory
    /// PIN, PUK, management key and retry counters, deletes keys and objects.
    fn reset(&mut self) -> CmdResult {
        if self.pin_tries.left != 0 || self.puk_tries.left != 0 {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let f = self.factory.clone();
        self.pin = f.pin;
        self.puk = f.puk;
        self.pin_tries = Counter::full(f.pin_retries);
        self.puk_tries = Counter::full(f.puk_retries);
        self.management_key = f.management_key;
        self.management_touch = TouchPolicy::Never.id();
        self.keys.clear();
        self.objects.clear();
        self.install_default_objects();
        self.session = Session::default();
        self.changed = true;
        Ok(Vec::new())
    }

    /// YubiKey SET PIN RETRIES: P1 PIN tries, P2 PUK tries; needs the management
    /// key and the PIN; also restores the factory PIN and PUK.
    fn set_pin_retries(&mut self, cmd: &Command) -> CmdResult {
        self.require_mgmt()?;
        if !self.session.pin_verified {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        if cmd.p1 == 0 || cmd.p2 == 0 {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        self.pin_tries = Counter::full(cmd.p1);
        self.puk_tries = Counter::full(cmd.p2);
        self.pin = self.factory.pin.clone();
        self.puk = self.factory.puk.clone();
        self.changed = true;
        Ok(Vec::new())
    }

    /// YubiKey GET METADATA (P2 = key reference): `01` algorithm, `02` policies,
    /// `03` origin, `04` public key, `05` default value, `06` retries.
    fn metadata(&mut self, cmd: &Command) -> CmdResult {
        if cmd.p1 != 0 {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let mut out = Vec::new();
        match cmd.p2 {
            slot::PIN | slot::PUK => {
                let (value, default, counter) = if cmd.p2 == slot::PIN {
                    (&self.pin, &self.factory.pin, self.pin_tries)
                } else {
                    (&self.puk, &self.factory.puk, self.puk_tries)
                };
                out.extend(tlv::encode(Tag::new(0x01), &[0xFF]));
                out.extend(tlv::encode(Tag::new(0x05), &[u8::from(value == default)]));
                out.extend(tlv::encode(Tag::new(0x06), &[counter.max, counter.left]));
            }
            slot::MANAGEMENT => {
                let default = self.management_key == self.factory.management_key;
                out.extend(tlv::encode(
                    Tag::new(0x01),
                    &[self.management_key.algorithm().id()],
                ));
                out.extend(tlv::encode(Tag::new(0x02), &[0x00, self.management_touch]));
                out.extend(tlv::encode(Tag::new(0x05), &[u8::from(default)]));
            }
            r if slot::is_key_slot(r) => {
                let key = self
                    .keys
                    .get(&r)
                    .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
                out.extend(tlv::encode(Tag::new(0x01), &[key.algorithm.id()]));
                out.extend(tlv::encode(
                    Tag::new(0x02),
                    &[key.pin_policy.id(), key.touch_policy.id()],
                ));
                let origin = match key.origin {
                    KeyOrigin::Generated => 1,
                    KeyOrigin::Imported => 2,
                };
                out.extend(tlv::encode(Tag::new(0x03), &[origin]));
                out.extend(tlv::encode(Tag::new(0x04), &key.public_key_objects()));
            }
            _ => return Err(StatusWord::REFERENCED_DATA_NOT_FOUND),
        }
        Ok(out)
    }
}

/// Ne of a command; an absent Le is read as 256, as PIV hosts send case 3 commands
/// and still expect the response data (`yubico-piv-tool` over T=1 without Le).
fn ne(cmd: &Command) -> usize {
    match cmd.le {
        None | Some(0) => 256,
        Some(n) => n as usize,
    }
}

/// Reads the object identifier of a `5C` tag list: one to three bytes.
fn object_tag(value: &[u8]) -> Result<u32, StatusWord> {
    if value.is_empty() || value.len() > 3 {
        return Err(StatusWord::WRONG_DATA);
    }
    Ok(value.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// Reads a dynamic authentication template `7C` filling the whole data field.
fn parse_template(data: &[u8]) -> Result<Vec<TlvRef<'_>>, StatusWord> {
    let (template, rest) = TlvRef::parse_one(data).map_err(|_| StatusWord::WRONG_DATA)?;
    if template.tag() != Tag::new(0x7C) || !rest.is_empty() {
        return Err(StatusWord::WRONG_DATA);
    }
    tlv::parse_all_ref(template.value()).map_err(|_| StatusWord::WRONG_DATA)
}

/// PIN and touch policies from `AA` and `AB` (absent or `00`: the slot default).
fn policies(items: &[TlvRef<'_>], key_ref: u8) -> Result<(PinPolicy, TouchPolicy), StatusWord> {
    let pin = match tlv::find_value(items, Tag::new(0xAA)) {
        None | Some([0]) => PinPolicy::default_for(key_ref),
        Some([v]) => PinPolicy::from_id(*v).ok_or(StatusWord::WRONG_DATA)?,
        Some(_) => return Err(StatusWord::WRONG_DATA),
    };
    let touch = match tlv::find_value(items, Tag::new(0xAB)) {
        None | Some([0]) => TouchPolicy::Never,
        Some([v]) => TouchPolicy::from_id(*v).ok_or(StatusWord::WRONG_DATA)?,
        Some(_) => return Err(StatusWord::WRONG_DATA),
    };
    Ok((pin, touch))
}

fn key_error(e: KeyOpError) -> StatusWord {
    match e {
        KeyOpError::BadInput => StatusWord::WRONG_DATA,
        KeyOpError::Internal => StatusWord::UNKNOWN,
    }
}

fn split_references(data: &[u8]) -> Result<(&[u8], &[u8]), StatusWord> {
    if data.len() != 2 * REF_LEN {
        return Err(StatusWord::WRONG_DATA);
    }
    Ok(data.split_at(REF_LEN))
}

/// Whether 8 bytes of reference data are a value padded with `FF`: 6 to 8 bytes,
/// digits only for a PIN (SP 800-73-4 Part 1 §2.4.3).
fn valid_reference(padded: &[u8], pin: bool) -> bool {
    if padded.len() != REF_LEN {
        return false;
    }
    let len = padded.iter().position(|&b| b == 0xFF).unwrap_or(REF_LEN);
    let (value, padding) = padded.split_at(len);
    len >= 6 && padding.iter().all(|&b| b == 0xFF) && (!pin || value.iter().all(u8::is_ascii_digit))
}

/// Pads a configured PIN or PUK to 8 bytes and checks it.
fn pad_reference(value: &[u8], pin: bool) -> Option<Secret> {
    if value.len() > REF_LEN {
        return None;
    }
    let mut padded = Zeroizing::new(vec![0xFF; REF_LEN]);
    padded[..value.len()].copy_from_slice(value);
    valid_reference(&padded, pin).then(|| Secret::new(padded.to_vec()))
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rng().fill(&mut v[..]);
    v
}

/// Stores data objects as a map of hex tag to hex value.
mod object_map {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<u32, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter()
            .map(|(t, v)| (format!("{t:X}"), apdu::hex(v)))
            .collect::<BTreeMap<_, _>>()
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u32, Vec<u8>>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(t, v)| {
                let tag = u32::from_str_radix(&t, 16).map_err(D::Error::custom)?;
                let value = apdu::parse_hex(&v).map_err(D::Error::custom)?;
                Ok((tag, value))
            })
            .collect()
    }
}
