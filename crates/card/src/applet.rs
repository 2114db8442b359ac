//! Applications hosted by the virtual card.
//!
//! A real card runs Java Card applets from the CAP files it loaded. The virtual card runs
//! **built-in Rust implementations instead, chosen by the package (load file) AID**: when
//! a load file whose AID starts with a registered prefix is installed, the instance is
//! created by that prefix's [`AppletFactory`]. Load files of any other package can still
//! be loaded, listed, installed and deleted like on a real card; their instances exist in
//! the registry but have no code, so **SELECT of such an instance answers `6999`
//! (applet selection failed)**, which is what a Java Card answers when an applet's
//! `select()` refuses.
//!
//! Built in:
//! * [`StorageApplet`] (package [`STORAGE_PACKAGE`], module [`STORAGE_MODULE`]): stores
//!   what STORE DATA sends and answers GET DATA; it accepts personalisation through its
//!   security domain (INSTALL [for personalization] + STORE DATA).
//!
//! * [`crate::registration::RegistrationApplet`] (package [`REGISTRATION_PACKAGE`], module
//!   [`REGISTRATION_MODULE`]): key pairs generated on the card, certificates and AES keys
//!   loaded through its security domain, signatures and MACs (issue #11).
//!
//! * The PIV card application of the `piv` crate (NIST SP 800-73-4 with the YubiKey
//!   extensions) for load files whose AID starts with [`PIV_PACKAGE_PREFIX`]
//!   (`A0 00 00 03 08`); installed with the default PIN `123456`, PUK `12345678` and
//!   management key. Application-specific install parameters are ignored.
//!
//! Other implementations plug in with [`crate::VirtualCard::register_applet`].

use apdu::{Command, Response, StatusWord};
use std::collections::BTreeMap;
use std::fmt;

use apdu::tlv::{self, Tag};

/// Load file (package) AID of the built-in storage applet: `F0 43 57 44 53` ("\xF0CWDS",
/// a proprietary non-registered AID, ISO/IEC 7816-5 category `F`).
pub const STORAGE_PACKAGE: &[u8] = &[0xF0, 0x43, 0x57, 0x44, 0x53];
/// Executable module (applet class) AID of the storage applet: `F0 43 57 44 53 01`.
pub const STORAGE_MODULE: &[u8] = &[0xF0, 0x43, 0x57, 0x44, 0x53, 0x01];
pub use crate::registration::{REGISTRATION_MODULE, REGISTRATION_PACKAGE};
/// Package AID prefix of PIV implementations (NIST RID `A0 00 00 03 08`).
pub const PIV_PACKAGE_PREFIX: &[u8] = &[0xA0, 0x00, 0x00, 0x03, 0x08];

/// What an applet learns about the command's circumstances.
#[derive(Debug, Clone, Copy)]
pub struct AppletContext<'a> {
    /// The instance AID.
    pub aid: &'a [u8],
    /// The logical channel (0 = basic channel).
    pub channel: u8,
    /// The instance's life cycle state (GP 2.3.1 §5.3.1, §11.1.1).
    pub life_cycle: u8,
}

/// A running application instance.
///
/// Commands arrive with the logical-channel bits of CLA cleared (as if on the basic
/// channel); the chaining bit (`10`) and secure-messaging indication are kept.
pub trait Applet: Send {
    /// The instance is being selected by `cmd` (for implicit selection at reset or by
    /// MANAGE CHANNEL, a synthesised `00 A4 04 00 Lc AID 00`). Answer the response (usually
    /// an FCI); any status other than `9000` or `61xx` refuses selection.
    fn select(&mut self, ctx: &AppletContext<'_>, cmd: &Command) -> Response;
    /// The instance is being deselected (another SELECT, channel closed, reset).
    fn deselect(&mut self) {}
    /// A command while selected.
    fn process(&mut self, ctx: &AppletContext<'_>, cmd: &Command) -> Response;
    /// Whether the instance takes personalisation data from its security domain
    /// (GP 2.3.1 §7.3.2, INSTALL [for personalization] §11.5; GP API `Application`).
    fn accepts_personalization(&self) -> bool {
        false
    }
    /// A STORE DATA command forwarded (already unwrapped) by the security domain during
    /// personalisation (GP `Application.processData`).
    fn process_data(&mut self, _cmd: &Command) -> Response {
        Response::status(StatusWord::FUNC_NOT_SUPPORTED)
    }
    /// Whether the persistent state may have changed since the last call (the card then
    /// asks for [`Applet::state`] and saves it if it differs). The default, `true`, is
    /// always correct; applets with a large state can track changes to save work.
    fn changed(&mut self) -> bool {
        true
    }
    /// The persistent state, saved in the card's state file after every command that
    /// changed it and given back to [`AppletFactory::restore`].
    fn state(&self) -> serde_json::Value;
}

/// Creates instances of one package's applets.
pub trait AppletFactory: Send + Sync {
    /// A short name for logs ("storage", "piv").
    fn name(&self) -> &str;
    /// INSTALL [for install]: a new instance with its application-specific install
    /// parameters (the value of tag `C9`). An error status is returned to the host.
    fn install(
        &self,
        module_aid: &[u8],
        instance_aid: &[u8],
        app_params: &[u8],
    ) -> Result<Box<dyn Applet>, StatusWord>;
    /// Brings an instance back from its saved [`Applet::state`].
    fn restore(
        &self,
        instance_aid: &[u8],
        state: &serde_json::Value,
    ) -> Result<Box<dyn Applet>, String>;
}

/// The factories known to a card, by package AID prefix (the longest prefix wins).
#[derive(Clone, Default)]
pub(crate) struct Factories(Vec<(Vec<u8>, std::sync::Arc<dyn AppletFactory>)>);

impl Factories {
    pub fn builtin() -> Self {
        let mut f = Self::default();
        f.register(STORAGE_PACKAGE, std::sync::Arc::new(StorageFactory));
        f.register(PIV_PACKAGE_PREFIX, std::sync::Arc::new(PivFactory));
        f.register(
            REGISTRATION_PACKAGE,
            std::sync::Arc::new(crate::registration::RegistrationFactory),
        );
        f
    }
    pub fn register(&mut self, prefix: &[u8], factory: std::sync::Arc<dyn AppletFactory>) {
        self.0.retain(|(p, _)| p != prefix);
        self.0.push((prefix.to_vec(), factory));
    }
    pub fn find(&self, package: &[u8]) -> Option<&std::sync::Arc<dyn AppletFactory>> {
        self.0
            .iter()
            .filter(|(p, _)| package.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, f)| f)
    }
}

impl fmt::Debug for Factories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.0
                    .iter()
                    .map(|(p, fac)| format!("{}={}", apdu::hex(p), fac.name())),
            )
            .finish()
    }
}

/// Builds the minimal FCI `6F { 84 AID }` (ISO/IEC 7816-4 §5.3.3).
pub fn fci(aid: &[u8]) -> Vec<u8> {
    tlv::encode(Tag::new(0x6F), &tlv::encode(Tag::new(0x84), aid))
}

/// Most bytes the storage applet keeps, in total.
pub const STORAGE_CAPACITY: usize = 8192;

/// A data-storage applet: STORE DATA writes data objects, GET DATA reads them back.
///
/// * STORE DATA (`80 E2`, GP 2.3.1 §11.11), P1 b5-b4 = `01`: the data field is a sequence
///   of DGIs (2-byte identifier, 1- or 3-byte length); otherwise a sequence of BER-TLV
///   objects. Each object is stored under its tag (or DGI), replacing an older value.
///   Also accepted from the security domain during personalisation.
/// * GET DATA (`00/80 CA`, ISO/IEC 7816-4 §11.4.3): P1-P2 is the tag (`00 xx` for a
///   one-byte tag) or the DGI; the answer is the whole object (tag, length, value), or
///   `6A88` if absent.
/// * More than [`STORAGE_CAPACITY`] bytes in total: `6A84`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StorageApplet {
    objects: BTreeMap<u32, Vec<u8>>,
}

impl StorageApplet {
    fn store(&mut self, cmd: &Command) -> Response {
        let dgi = (cmd.p1 >> 3) & 0x03 == 0x01;
        let mut parsed: Vec<(u32, Vec<u8>)> = Vec::new();
        if dgi {
            match gp::commands::parse_dgis(&cmd.data) {
                Ok(dgis) => parsed.extend(dgis.into_iter().map(|g| (u32::from(g.id), g.value))),
                Err(_) => return Response::status(StatusWord::WRONG_DATA),
            }
        } else {
            match tlv::parse_all(&cmd.data) {
                Ok(objs) => parsed.extend(objs.into_iter().map(|t| (t.tag.value(), t.value))),
                Err(_) => return Response::status(StatusWord::WRONG_DATA),
            }
        }
        let mut next = self.objects.clone();
        for (tag, v) in parsed {
            next.insert(tag, v);
        }
        if next.values().map(|v| v.len() + 4).sum::<usize>() > STORAGE_CAPACITY {
            return Response::status(StatusWord::NOT_ENOUGH_MEMORY);
        }
        self.objects = next;
        Response::ok(Vec::new())
    }

    fn get(&self, cmd: &Command) -> Response {
        let tag = u16::from_be_bytes([cmd.p1, cmd.p2]) as u32;
        match self.objects.get(&tag) {
            Some(v) => Response::ok(match Tag::try_new(tag) {
                Ok(tag) => tlv::encode(tag, v),
                // A DGI whose identifier is not also a BER-TLV tag: answered as stored,
                // in the DGI format (GP 2.3.1 §11.11.2.2: 2-byte identifier, length
                // `00`-`FE` or `FF` + 2 bytes).
                Err(_) => {
                    let mut out = (tag as u16).to_be_bytes().to_vec();
                    match u8::try_from(v.len()) {
                        Ok(n) if n < 0xFF => out.push(n),
                        _ => {
                            out.push(0xFF);
                            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
                        }
                    }
                    out.extend_from_slice(v);
                    out
                }
            }),
            None => Response::status(StatusWord::REFERENCED_DATA_NOT_FOUND),
        }
    }
}

impl Applet for StorageApplet {
    fn select(&mut self, ctx: &AppletContext<'_>, _cmd: &Command) -> Response {
        Response::ok(fci(ctx.aid))
    }
    fn process(&mut self, _ctx: &AppletContext<'_>, cmd: &Command) -> Response {
        if cmd.cla & 0x03 != 0 || !matches!(cmd.cla & !0x0C, 0x00 | 0x80) {
            return Response::status(StatusWord::CLA_NOT_SUPPORTED);
        }
        match cmd.ins {
            0xE2 => self.store(cmd),
            0xCA | 0xCB => self.get(cmd),
            _ => Response::status(StatusWord::INS_NOT_SUPPORTED),
        }
    }
    fn accepts_personalization(&self) -> bool {
        true
    }
    fn process_data(&mut self, cmd: &Command) -> Response {
        self.store(cmd)
    }
    fn state(&self) -> serde_json::Value {
        let m: BTreeMap<String, String> = self
            .objects
            .iter()
            .map(|(t, v)| (object_key(*t), apdu::hex(v)))
            .collect();
        serde_json::json!({ "objects": m })
    }
}

/// A stored object's tag (or DGI) as the hex of its minimal big-endian bytes (`9F70`,
/// `CF`, `0101`): the key under which [`StorageApplet::state`] saves it.
fn object_key(tag: u32) -> String {
    let bytes = tag.to_be_bytes();
    let skip = bytes.iter().take(3).take_while(|&&b| b == 0).count();
    apdu::hex(&bytes[skip..])
}

/// Creates [`StorageApplet`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageFactory;

impl AppletFactory for StorageFactory {
    fn name(&self) -> &str {
        "storage"
    }
    fn install(
        &self,
        module_aid: &[u8],
        _instance_aid: &[u8],
        _app_params: &[u8],
    ) -> Result<Box<dyn Applet>, StatusWord> {
        if module_aid != STORAGE_MODULE {
            // The package has only this one applet class.
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        Ok(Box::new(StorageApplet::default()))
    }
    fn restore(
        &self,
        _instance_aid: &[u8],
        state: &serde_json::Value,
    ) -> Result<Box<dyn Applet>, String> {
        let mut a = StorageApplet::default();
        if let Some(objs) = state.get("objects").and_then(|o| o.as_object()) {
            for (k, v) in objs {
                let tag = apdu::parse_hex(k).map_err(|e| e.to_string())?;
                if tag.is_empty() || tag.len() > 3 {
                    return Err(format!("bad tag {k}"));
                }
                let tag = tag.iter().fold(0u32, |a, b| (a << 8) | *b as u32);
                let v = v.as_str().ok_or("object value is not a string")?;
                a.objects
                    .insert(tag, apdu::parse_hex(v).map_err(|e| e.to_string())?);
            }
        }
        Ok(Box::new(a))
    }
}

/// The `piv` crate's applet hosted by the card.
struct PivHosted(piv::PivApplet);

impl Applet for PivHosted {
    fn select(&mut self, _ctx: &AppletContext<'_>, cmd: &Command) -> Response {
        self.0.select(cmd)
    }
    fn deselect(&mut self) {
        self.0.deselect()
    }
    fn process(&mut self, _ctx: &AppletContext<'_>, cmd: &Command) -> Response {
        self.0.process(cmd)
    }
    fn changed(&mut self) -> bool {
        self.0.changed()
    }
    fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

/// Creates PIV instances ([`piv::PivApplet`] with [`piv::PivConfig::default`]); install
/// parameters `C9 04 <serial>` set the serial number.
#[derive(Debug, Clone, Copy, Default)]
pub struct PivFactory;

impl AppletFactory for PivFactory {
    fn name(&self) -> &str {
        "piv"
    }
    fn install(
        &self,
        _module_aid: &[u8],
        _instance_aid: &[u8],
        app_params: &[u8],
    ) -> Result<Box<dyn Applet>, StatusWord> {
        // Install parameters (C9 content): an optional 4-byte serial number, big-endian.
        let mut config = piv::PivConfig::default();
        match app_params {
            [] => {}
            [a, b, c, d] => config.serial = u32::from_be_bytes([*a, *b, *c, *d]),
            _ => return Err(StatusWord::WRONG_DATA),
        }
        let applet = piv::PivApplet::try_new(config).map_err(|_| StatusWord::WRONG_DATA)?;
        Ok(Box::new(PivHosted(applet)))
    }
    fn restore(
        &self,
        _instance_aid: &[u8],
        state: &serde_json::Value,
    ) -> Result<Box<dyn Applet>, String> {
        let applet: piv::PivApplet =
            serde_json::from_value(state.clone()).map_err(|e| e.to_string())?;
        Ok(Box::new(PivHosted(applet)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::parse_hex as h;

    fn ctx() -> AppletContext<'static> {
        AppletContext {
            aid: STORAGE_MODULE,
            channel: 0,
            life_cycle: 0x07,
        }
    }

    #[test]
    fn storage_store_get_restore() {
        let mut a = StorageApplet::default();
        let r = a.process(
            &ctx(),
            &Command::parse(&h("80E2900006 5F2004414243 44").unwrap()).unwrap(),
        );
        assert_eq!(r.sw, StatusWord::WRONG_DATA, "truncated TLV");
        let r = a.process(
            &ctx(),
            &Command::parse(&h("80E29000075F200441424344").unwrap()).unwrap(),
        );
        assert_eq!(r.sw, StatusWord::SUCCESS);
        let r = a.process(&ctx(), &Command::parse(&h("80CA5F2000").unwrap()).unwrap());
        assert_eq!(r, Response::ok(h("5F200441424344").unwrap()));
        // DGI format.
        let r = a.process(
            &ctx(),
            &Command::parse(&h("80E2880105010102AABB").unwrap()).unwrap(),
        );
        assert_eq!(r.sw, StatusWord::SUCCESS);
        let r = a.process(&ctx(), &Command::parse(&h("00CA010100").unwrap()).unwrap());
        assert_eq!(r.data, h("010102AABB").unwrap());
        let r = a.process(&ctx(), &Command::parse(&h("80CA9F7F00").unwrap()).unwrap());
        assert_eq!(r.sw, StatusWord(0x6A88));
        // A long DGI comes back in the DGI format (FF + 2 length bytes), not as BER-TLV.
        let mut long = h("0202FF012C").unwrap();
        long.extend([0x5A; 300]);
        let store = Command::new(0x80, 0xE2, 0x88, 0x02).with_data(long.clone());
        assert!(a.process(&ctx(), &store).is_success());
        let r = a.process(&ctx(), &Command::new(0x00, 0xCA, 0x02, 0x02).with_le(65536));
        assert_eq!(r.data, long);
        assert_eq!(a.state()["objects"]["0202"], apdu::hex(&[0x5A; 300]));
        let restored = StorageFactory.restore(STORAGE_MODULE, &a.state()).unwrap();
        assert_eq!(restored.state(), a.state());
    }

    #[test]
    fn storage_capacity() {
        let mut a = StorageApplet::default();
        let mut big =
            Command::new(0x80, 0xE2, 0x90, 0).with_data(tlv::encode(Tag::new(0xC1), &[0; 4000]));
        assert!(a.process(&ctx(), &big).is_success());
        big.data = tlv::encode(Tag::new(0xC2), &[0; 4000]);
        assert!(a.process(&ctx(), &big).is_success());
        big.data = tlv::encode(Tag::new(0xC3), &[0; 4000]);
        assert_eq!(a.process(&ctx(), &big).sw, StatusWord::NOT_ENOUGH_MEMORY);
    }

    #[test]
    fn factory_lookup_prefers_longest_prefix() {
        let mut f = Factories::builtin();
        assert_eq!(
            f.find(STORAGE_PACKAGE).map(|x| x.name().to_string()),
            Some("storage".into())
        );
        assert_eq!(
            f.find(&h("A000000308000010").unwrap())
                .map(|x| x.name().to_string()),
            Some("piv".into())
        );
        assert!(f.find(&h("A000000309").unwrap()).is_none());
        f.register(&h("F043").unwrap(), std::sync::Arc::new(StorageFactory));
        assert!(f.find(&h("F0430000").unwrap()).is_some());
    }
}
