//! Known-answer vectors from public test suites, kept in `tests/vectors/*.txt`.

use apdu::tlv::{self, Tag};
use apdu::{exchange_with, Command, Error, ExchangeOptions, GetResponseCla, StatusWord};

/// Hex with spaces, where `XX*N` is the byte XX repeated N times.
fn hex(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        match word.split_once('*') {
            Some((byte, count)) => {
                let b = apdu::parse_hex(byte).unwrap();
                assert_eq!(b.len(), 1, "repeat of more than one byte: {word}");
                out.extend(vec![b[0]; count.parse::<usize>().unwrap()]);
            }
            None => out.extend(apdu::parse_hex(word).unwrap()),
        }
    }
    out
}

fn data(text: &str) -> Vec<u8> {
    if text.trim() == "-" {
        Vec::new()
    } else {
        hex(text)
    }
}

fn path(text: &str) -> Vec<Tag> {
    text.trim()
        .split('/')
        .map(|t| Tag::try_new(u32::from_str_radix(t, 16).unwrap()).unwrap())
        .collect()
}

/// The vector lines of a file: (line number, text), comments and blanks skipped.
fn lines(file: &str) -> impl Iterator<Item = (usize, &str)> {
    file.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

#[test]
fn tlv_vectors() {
    let file = include_str!("vectors/tlv.txt");
    let mut counts = [0usize; 3];
    for (n, line) in lines(file) {
        let (kind, rest) = line.split_once(' ').unwrap();
        let fields: Vec<&str> = rest.split('|').collect();
        let bytes = hex(fields[0]);
        match kind {
            "ok" => {
                let tlvs = tlv::parse_all(&bytes).unwrap_or_else(|e| panic!("line {n}: {e}"));
                assert_eq!(tlv::encode_all(&tlvs), bytes, "line {n}: re-encoding");
                let refs: Vec<_> = tlv::iter(&bytes).collect::<Result<_, _>>().unwrap();
                let raw: Vec<u8> = refs.iter().flat_map(|r| r.raw().to_vec()).collect();
                assert_eq!(raw, bytes, "line {n}: raw views");
                counts[0] += 1;
            }
            "find" => {
                let p = path(fields[1]);
                let want = data(fields[2]);
                let got = tlv::find_in(&bytes, &p)
                    .unwrap()
                    .unwrap_or_else(|| panic!("line {n}: not found"));
                assert_eq!(got.value(), &want[..], "line {n}: find_in");
                let tlvs = tlv::parse_all(&bytes).unwrap();
                let owned = tlv::find_path(&tlvs, &p).unwrap().unwrap();
                assert_eq!(owned.value, want, "line {n}: find_path");
                assert_eq!(owned.tag, *p.last().unwrap());
                counts[1] += 1;
            }
            "err" => {
                let offset: usize = fields[1].trim().parse().unwrap();
                let name = fields[2].trim();
                match tlv::parse_all(&bytes) {
                    Err(Error::MalformedTlv { offset: o, kind }) => {
                        assert_eq!(o, offset, "line {n}: offset of {kind:?}");
                        assert!(
                            format!("{kind:?}").starts_with(name),
                            "line {n}: {kind:?} is not {name}"
                        );
                    }
                    other => panic!("line {n}: expected an error, got {other:?}"),
                }
                counts[2] += 1;
            }
            other => panic!("line {n}: unknown kind {other}"),
        }
    }
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}

#[test]
fn exchange_vectors() {
    let file = include_str!("vectors/exchange.txt");
    let mut count = 0;
    for (n, line) in lines(file) {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        let mut options = ExchangeOptions::default();
        options.get_response_cla = match f[0] {
            "ii" => GetResponseCla::Interindustry,
            "same" => GetResponseCla::SameAsCommand,
            other => panic!("line {n}: mode {other}"),
        };
        let cmd = Command::parse(&hex(f[1])).unwrap();
        let mut answers = f[2].split(',').map(hex);
        let mut sent = Vec::new();
        let resp = exchange_with(&cmd, &options, |apdu| {
            sent.push(apdu.to_vec());
            answers.next().ok_or("card mute")
        })
        .unwrap_or_else(|e| panic!("line {n}: {e}"));
        let want_sent: Vec<Vec<u8>> = f[3].split(',').map(hex).collect();
        assert_eq!(sent, want_sent, "line {n}: commands sent");
        assert!(answers.next().is_none(), "line {n}: answers left over");
        let (d, sw) = f[4].split_once(' ').unwrap();
        assert_eq!(resp.data, data(d), "line {n}: data");
        let sw = hex(sw);
        assert_eq!(resp.sw, StatusWord::new(sw[0], sw[1]), "line {n}: status");
        count += 1;
    }
    assert!(count > 10);
}
