//! A host for the applet: APDUs as a PC/SC client would send them.
#![allow(dead_code)]

use apdu::tlv::{self, Tag, Tlv};
use apdu::{Command, Response, StatusWord};
use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use piv::{PivApplet, PivConfig, PIV_AID};

pub const SW_OK: u16 = 0x9000;

pub fn hex(s: &str) -> Vec<u8> {
    apdu::parse_hex(s).expect("test hex")
}

/// Reads the vector lines (not comments) of a vector file.
pub fn vector_lines(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

pub struct Host {
    pub applet: PivApplet,
}

impl Host {
    pub fn new() -> Self {
        Self::with(PivConfig {
            serial: 12_345_678,
            ..PivConfig::default()
        })
    }

    pub fn with(config: PivConfig) -> Self {
        let mut h = Self {
            applet: PivApplet::new(config),
        };
        let r = h.select();
        assert_eq!(r.sw, StatusWord::SUCCESS);
        h
    }

    pub fn select(&mut self) -> Response {
        let cmd = Command::new(0x00, 0xA4, 0x04, 0x00).with_data(PIV_AID[..5].to_vec());
        self.applet.select(&cmd)
    }

    /// Sends raw APDU bytes (parsed exactly as the card would).
    pub fn raw(&mut self, bytes: &[u8]) -> Response {
        let cmd = Command::parse(bytes).expect("valid APDU");
        self.applet.process(&cmd)
    }

    /// Sends one command as yubico-piv-tool does: short APDUs, data split into
    /// 255-byte pieces with CLA 10 on all but the last, then GET RESPONSE while `61xx`.
    pub fn exchange(&mut self, ins: u8, p1: u8, p2: u8, data: &[u8]) -> (Vec<u8>, u16) {
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(255).collect()
        };
        let mut resp = Response::status(StatusWord::SUCCESS);
        for (i, chunk) in chunks.iter().enumerate() {
            let cla = if i + 1 < chunks.len() { 0x10 } else { 0x00 };
            let mut cmd = Command::new(cla, ins, p1, p2).with_data(chunk.to_vec());
            if chunk.is_empty() {
                cmd = cmd.with_le(256);
            }
            resp = self.applet.process(&cmd);
            if resp.sw.sw1() != 0x61 && resp.sw != StatusWord::SUCCESS {
                return (resp.data, resp.sw.0);
            }
            out.extend_from_slice(&resp.data);
        }
        while resp.sw.sw1() == 0x61 {
            let le = if resp.sw.sw2() == 0 {
                256
            } else {
                u32::from(resp.sw.sw2())
            };
            resp = self
                .applet
                .process(&Command::new(0x00, 0xC0, 0x00, 0x00).with_le(le));
            out.extend_from_slice(&resp.data);
        }
        (out, resp.sw.0)
    }

    /// One extended-length APDU with Le = 65536 (as ykman sends).
    pub fn extended(&mut self, ins: u8, p1: u8, p2: u8, data: &[u8]) -> (Vec<u8>, u16) {
        let cmd = Command::new(0x00, ins, p1, p2)
            .with_data(data.to_vec())
            .with_le(65536);
        let bytes = cmd.to_bytes().expect("encodable");
        let r = self.raw(&bytes);
        (r.data, r.sw.0)
    }

    pub fn verify_pin(&mut self, pin: &[u8]) -> u16 {
        self.exchange(0x20, 0x00, 0x80, &pad(pin)).1
    }

    /// Mutual authentication with the management key, as yubico-piv-tool / ykman do.
    pub fn authenticate(&mut self, alg: u8, key: &[u8]) -> u16 {
        let (resp, sw) = self.exchange(0x87, alg, 0x9B, &hex("7C028000"));
        if sw != SW_OK {
            return sw;
        }
        let block = if alg == 0x03 { 8 } else { 16 };
        assert_eq!(resp.len(), 4 + block, "7C LL 80 LL witness");
        assert_eq!(resp[..4], [0x7C, 2 + block as u8, 0x80, block as u8]);
        let mut witness = resp[4..].to_vec();
        host_cipher(alg, key, &mut witness, false);
        let challenge: Vec<u8> = (0..block as u8)
            .map(|i| i.wrapping_mul(37) ^ 0x5A)
            .collect();
        let mut data = vec![0x7C, (4 + 2 * block) as u8, 0x80, block as u8];
        data.extend_from_slice(&witness);
        data.extend_from_slice(&[0x81, block as u8]);
        data.extend_from_slice(&challenge);
        let (resp, sw) = self.exchange(0x87, alg, 0x9B, &data);
        if sw != SW_OK {
            return sw;
        }
        let mut expected = challenge.clone();
        host_cipher(alg, key, &mut expected, true);
        assert_eq!(resp[..4], [0x7C, 2 + block as u8, 0x82, block as u8]);
        assert_eq!(resp[4..], expected[..], "card proves it knows the key");
        sw
    }

    pub fn authenticate_default(&mut self) {
        assert_eq!(self.authenticate(0x03, &DEFAULT_MGMT), SW_OK);
    }
}

pub const DEFAULT_MGMT: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

/// PIN/PUK padded with FF to 8 bytes.
pub fn pad(v: &[u8]) -> Vec<u8> {
    let mut p = v.to_vec();
    p.resize(8, 0xFF);
    p
}

/// The host's own block cipher (independent of the applet's).
pub fn host_cipher(alg: u8, key: &[u8], block: &mut [u8], encrypt: bool) {
    fn go<C: KeyInit + BlockCipherEncrypt + BlockCipherDecrypt>(k: &[u8], b: &mut [u8], e: bool) {
        let c = C::new_from_slice(k).expect("key length");
        let blk = b.try_into().expect("block length");
        if e {
            c.encrypt_block(blk)
        } else {
            c.decrypt_block(blk)
        }
    }
    match alg {
        0x03 => go::<des::TdesEde3>(key, block, encrypt),
        0x08 => go::<aes::Aes128>(key, block, encrypt),
        0x0A => go::<aes::Aes192>(key, block, encrypt),
        0x0C => go::<aes::Aes256>(key, block, encrypt),
        _ => panic!("alg"),
    }
}

/// Reads a `7C { 82 ... }` response.
pub fn dyn_auth_response(resp: &[u8]) -> Vec<u8> {
    let (outer, rest) = Tlv::parse_one(resp).expect("7C");
    assert!(rest.is_empty());
    assert_eq!(outer.tag, Tag::new(0x7C));
    let (inner, rest) = Tlv::parse_one(&outer.value).expect("82");
    assert!(rest.is_empty());
    assert_eq!(inner.tag, Tag::new(0x82));
    inner.value
}

/// Builds `7C { 82 00, <tag> <input> }`.
pub fn dyn_auth_request(tag: u8, input: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x82, 0x00];
    inner.extend(tlv::encode(Tag::new(u32::from(tag)), input));
    tlv::encode(Tag::new(0x7C), &inner)
}
