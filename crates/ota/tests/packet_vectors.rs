//! Runs every known answer of `tests/vectors/scp80.txt`: securing gives the expected
//! bytes, opening gives back the data.

use ota::packet::*;

const VECTORS: &str = include_str!("vectors/scp80.txt");

struct Vector {
    name: String,
    fields: Vec<(String, String)>,
}

impl Vector {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn hex(&self, key: &str) -> Vec<u8> {
        let v = self
            .get(key)
            .unwrap_or_else(|| panic!("{}: no {key}", self.name));
        apdu::parse_hex(v).unwrap_or_else(|e| panic!("{}: {key}: {e}", self.name))
    }
    fn hex_or(&self, key: &str, default: &str) -> Vec<u8> {
        apdu::parse_hex(self.get(key).unwrap_or(default)).unwrap()
    }
    fn byte(&self, key: &str) -> u8 {
        self.hex(key)[0]
    }
    fn key(&self, key: &str) -> Option<Key> {
        self.get(key).map(|_| Key::new(self.hex(key)))
    }
    fn counter(&self, key: &str) -> Counter {
        Counter(self.hex_or(key, "0000000000").try_into().unwrap())
    }
    fn header(&self) -> CommandHeader {
        let spi = self.hex("spi");
        CommandHeader {
            spi: Spi::from_bytes([spi[0], spi[1]]),
            kic: Kic::from_byte(self.byte("kic")),
            kid: Kid::from_byte(self.byte("kid")),
            tar: Tar(self.hex("tar").try_into().unwrap()),
            counter: self.counter("cntr"),
        }
    }
    fn keys(&self) -> KeySet {
        KeySet {
            kic: self.key("kic_key"),
            kid: self.key("kid_key"),
        }
    }
}

fn vectors() -> Vec<Vector> {
    let mut out: Vec<Vector> = Vec::new();
    for line in VECTORS.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(Vector {
                name: name.to_string(),
                fields: Vec::new(),
            });
        } else {
            let (k, v) = line.split_once('=').expect("key = value");
            out.last_mut()
                .expect("a [name] first")
                .fields
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

#[test]
fn every_known_answer() {
    let all = vectors();
    assert!(all.len() >= 20, "only {} vectors read", all.len());
    let mut ran = 0;
    for v in &all {
        let header = v.header();
        let keys = v.keys();
        let packet = v.hex("packet");
        match v.get("kind").unwrap() {
            "command" => {
                let data = v.hex("data");
                let built = secure_command(&header, &keys, &data)
                    .unwrap_or_else(|e| panic!("{}: secure: {e}", v.name));
                assert_eq!(
                    apdu::hex(&built),
                    apdu::hex(&packet),
                    "{}: secure_command",
                    v.name
                );
                let opened = open_command(&packet, &keys, v.counter("stored"))
                    .unwrap_or_else(|e| panic!("{}: open: {e}", v.name));
                assert_eq!(opened.data, data, "{}: open data", v.name);
                assert_eq!(opened.header, header, "{}: open header", v.name);
                // The SMS framing: 02 70 00 then the packet.
                let ud = frame_command_sms(&packet);
                assert_eq!(unframe_command_sms(&ud).unwrap(), &packet[..]);
                assert!(!opened.explain().is_empty());
            }
            "response" => {
                let sec = header.por_security();
                let opened = open_response(&packet, &sec, &keys)
                    .unwrap_or_else(|e| panic!("{}: open: {e}", v.name));
                assert!(opened.secured, "{}", v.name);
                assert_eq!(
                    apdu::hex(&opened.data),
                    apdu::hex(&v.hex("data")),
                    "{}",
                    v.name
                );
                assert_eq!(
                    opened.header.status.to_byte(),
                    v.byte("status"),
                    "{}",
                    v.name
                );
                assert_eq!(opened.header.tar, header.tar, "{}", v.name);
                if v.get("cntr").is_some() {
                    assert_eq!(opened.header.counter, header.counter, "{}", v.name);
                }
                let rebuilt = secure_response(&sec, &keys, &opened.header, &opened.data)
                    .unwrap_or_else(|e| panic!("{}: secure: {e}", v.name));
                assert_eq!(
                    apdu::hex(&rebuilt),
                    apdu::hex(&packet),
                    "{}: secure_response",
                    v.name
                );
                let ud = frame_response_sms(&packet);
                assert_eq!(unframe_response_sms(&ud).unwrap(), &packet[..]);
            }
            "response-bad" => {
                let err = open_response(&packet, &header.por_security(), &keys).unwrap_err();
                assert_eq!(err, Error::ChecksumMismatch, "{}", v.name);
            }
            other => panic!("{}: unknown kind {other}", v.name),
        }
        ran += 1;
    }
    assert_eq!(ran, all.len());
}
