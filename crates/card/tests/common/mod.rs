//! A host driving the virtual card the way a GP tool does: `gp` command builders, `scp`
//! host-side secure channels.
#![allow(dead_code)]

use apdu::{hex, parse_hex, Command, Response, StatusWord};
use card::VirtualCard;
use gp::commands::{GetStatus, Install, InstallParams, RegistryEntry, StatusFormat, StatusSubset};
use gp::{Aid, Privileges};
use scp::{HostAuth, HostSession, InitUpdateResponse, Key, SecurityLevel, StaticKeys};

/// The storage applet's package and module (see `card::applet`).
pub const STORAGE_PKG: &str = "F043574453";
pub const STORAGE_MODULE: &str = "F04357445301";
pub const ISD: &str = "A000000151000000";
pub const SD_PKG: &str = "A0000001515350";
pub const SD_MODULE: &str = "A000000151535041";

pub fn h(s: &str) -> Vec<u8> {
    parse_hex(s).unwrap()
}
pub fn aid(s: &str) -> Aid {
    Aid::new(&h(s)).unwrap()
}
pub fn cmd(s: &str) -> Command {
    Command::parse(&h(s)).unwrap()
}

/// The default key `40..4F` as AES or 3DES.
pub fn default_keys(aes: bool) -> StaticKeys {
    let k = h("404142434445464748494A4B4C4D4E4F");
    StaticKeys::same(if aes {
        Key::aes(&k).unwrap()
    } else {
        Key::des3(&k).unwrap()
    })
}

/// Distinct AES-128 keys ENC/MAC/DEK (pySim's KEYSET_AES128 values).
pub fn aes_keys() -> StaticKeys {
    StaticKeys {
        enc: Key::aes(&h("000102030405060708090a0b0c0d0e0f")).unwrap(),
        mac: Key::aes(&h("101112131415161718191a1b1c1d1e1f")).unwrap(),
        dek: Key::aes(&h("202122232425262728292a2b2c2d2e2f")).unwrap(),
    }
}

/// A host talking to a virtual card, with an optional open secure channel.
pub struct Host {
    pub card: VirtualCard,
    pub session: Option<HostSession>,
    pub log: bool,
}

impl Host {
    pub fn new(card: VirtualCard) -> Self {
        Host {
            card,
            session: None,
            log: std::env::var_os("CARD_TRACE").is_some(),
        }
    }

    /// Sends bytes as they are.
    pub fn raw(&mut self, c: &Command) -> Response {
        let bytes = c.to_bytes().unwrap();
        let r = Response::parse(&self.card.transmit(&bytes)).unwrap();
        if self.log {
            eprintln!(">> {}\n<< {}", hex(&bytes), hex(&r.to_bytes()));
        }
        r
    }

    /// Sends a command through the secure channel, if one is open.
    pub fn send(&mut self, c: &Command) -> Response {
        match self.session.as_mut() {
            None => self.raw(c),
            Some(s) => {
                let wrapped = s.wrap(c).expect("wrap");
                let r = self.raw(&wrapped);
                let s = self.session.as_mut().unwrap();
                s.unwrap(r).expect("R-MAC verifies")
            }
        }
    }

    pub fn select(&mut self, a: &str) -> Response {
        self.session = None;
        self.raw(
            &Command::new(0x00, 0xA4, 0x04, 0x00)
                .with_data(h(a))
                .with_le(256),
        )
    }

    /// INITIALIZE UPDATE + EXTERNAL AUTHENTICATE to the selected security domain.
    pub fn open(
        &mut self,
        keys: &StaticKeys,
        kvn: u8,
        level: SecurityLevel,
    ) -> Result<(), scp::Error> {
        self.session = None;
        let challenge = h("0102030405060708");
        let r = self.raw(&scp::initialize_update(kvn, &challenge));
        if r.sw != StatusWord::SUCCESS {
            return Err(scp::Error::Status(r.sw));
        }
        let iu = InitUpdateResponse::parse(&r.data)?;
        let auth = HostAuth::new(keys, &challenge, &iu, level, 0x55)?;
        let ea = auth.external_authenticate();
        let r = self.raw(&ea);
        self.session = Some(auth.finish(&r)?);
        Ok(())
    }

    pub fn install(&mut self, i: Install) -> Response {
        self.send(&i.to_command().unwrap())
    }

    /// INSTALL [for install and make selectable].
    pub fn install_app(&mut self, lf: &str, module: &str, app: &str, privs: [u8; 3]) -> Response {
        self.install(Install::ForInstall {
            load_file: aid(lf),
            module: aid(module),
            application: aid(app),
            privileges: Privileges(privs),
            params: InstallParams::default().to_bytes(),
            token: Vec::new(),
            make_selectable: true,
        })
    }

    /// INSTALL [for load] and the LOAD blocks; returns the last response.
    pub fn load(&mut self, lf: &str, sd: Option<&str>, block: &[u8], hash: Vec<u8>) -> Response {
        let r = self.install(Install::ForLoad {
            load_file: aid(lf),
            security_domain: sd.map(aid),
            hash,
            params: Vec::new(),
            token: Vec::new(),
        });
        if !r.is_success() {
            return r;
        }
        let max = self.session.as_ref().map_or(255, |s| s.max_plain_len(255));
        let mut last = r;
        for c in gp::commands::load_blocks(block, max).unwrap() {
            last = self.send(&c);
            if !last.is_success() {
                break;
            }
        }
        last
    }

    /// All registry entries of a subset, following `6310` pages.
    pub fn status(&mut self, subset: StatusSubset, format: StatusFormat) -> Vec<RegistryEntry> {
        let mut req = GetStatus::new(subset).with_format(format);
        let mut out = Vec::new();
        loop {
            let r = self.send(&req.to_command().unwrap());
            let page = gp::commands::GetStatusResponse::parse(&req, &r).unwrap();
            out.extend(page.entries);
            if !page.more {
                return out;
            }
            req = req.next_page();
        }
    }

    pub fn set_status(&mut self, p1: u8, p2: u8, data: &[u8]) -> Response {
        self.send(&Command::new(0x80, 0xF0, p1, p2).with_data(data.to_vec()))
    }

    pub fn delete(&mut self, a: &str, related: bool) -> Response {
        let c = gp::commands::Delete::object(aid(a), related)
            .to_command()
            .unwrap();
        self.send(&c)
    }

    /// PUT KEY of a whole key set (P1 = `replace`, `00` to add).
    pub fn put_keys(&mut self, replace: u8, new_kvn: u8, keys: &StaticKeys) -> Response {
        let data =
            scp::put_key::key_set_data(new_kvn, keys, self.session.as_ref().unwrap()).unwrap();
        let r = self.send(&scp::put_key::command(replace, data));
        if r.is_success() {
            scp::put_key::check_response(&r.data, new_kvn, keys).unwrap();
        }
        r
    }
}

/// A minimal load file data block (CAP components Header, Directory, Import, Applet; GP
/// 2.3.1 §C, Java Card VM spec §6) for `package` with the applet classes `applets`.
pub fn load_file(package: &str, version: (u8, u8), applets: &[&str]) -> Vec<u8> {
    fn comp(tag: u8, info: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(info.len() as u16).to_be_bytes());
        v.extend_from_slice(info);
        v
    }
    let pkg = h(package);
    let mut header = h("DECAFFED0102");
    header.push(if applets.is_empty() { 0x00 } else { 0x04 });
    header.extend_from_slice(&[version.1, version.0, pkg.len() as u8]);
    header.extend_from_slice(&pkg);
    let mut applet = vec![applets.len() as u8];
    for a in applets {
        let a = h(a);
        applet.push(a.len() as u8);
        applet.extend_from_slice(&a);
        applet.extend_from_slice(&[0x00, 0x10]);
    }
    // One import: javacard/framework 1.2.
    let import = h("01020107A0000000620101");
    let mut v = comp(1, &header);
    v.extend(comp(2, &[0u8; 31]));
    v.extend(comp(4, &import));
    if !applets.is_empty() {
        v.extend(comp(3, &applet));
    }
    v.extend(comp(6, &[0u8; 8]));
    v.extend(comp(7, &h("0018 8C 7A")));
    v
}
