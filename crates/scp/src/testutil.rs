//! Reader for the known-answer files in `tests/vectors/` (unit tests only).

use std::collections::HashMap;

pub(crate) struct Rec {
    pub kind: String,
    pub f: HashMap<String, String>,
    pub at: String,
}

impl Rec {
    pub fn s(&self, k: &str) -> &str {
        self.f
            .get(k)
            .unwrap_or_else(|| panic!("{}: no field {k}", self.at))
    }
    /// Hex field; `None` for "-".
    pub fn hex(&self, k: &str) -> Option<Vec<u8>> {
        match self.s(k) {
            "-" => None,
            v => Some(apdu::parse_hex(v).unwrap_or_else(|e| panic!("{}: {k}: {e}", self.at))),
        }
    }
    pub fn h(&self, k: &str) -> Vec<u8> {
        self.hex(k).unwrap_or_default()
    }
    pub fn byte(&self, k: &str) -> u8 {
        u8::from_str_radix(self.s(k), 16).unwrap_or_else(|e| panic!("{}: {k}: {e}", self.at))
    }
}

pub(crate) fn records(name: &str, text: &str) -> Vec<Rec> {
    let mut source = String::new();
    let mut out = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let l = l.trim();
        if let Some(s) = l.strip_prefix("# source:") {
            source = s.trim().to_string();
            continue;
        }
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut parts = l.split_whitespace();
        let kind = parts.next().unwrap_or_default().to_string();
        let f = parts
            .filter_map(|p| p.split_once('='))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        out.push(Rec {
            kind,
            f,
            at: format!("{name}:{} ({source})", n + 1),
        });
    }
    out
}
