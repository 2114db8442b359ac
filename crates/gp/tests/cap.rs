//! CAP file and load file tests with the two public CAP files and synthetic ones.

use apdu::{hex, parse_hex, Command};
use gp::cap::testing::{cap_archive, synthetic_cap, synthetic_components};
use gp::cap::{CapError, CapFile, ComponentTag, HashAlgorithm, LoadFile};
use gp::commands::{load_blocks, Install, Load, LoadAssembler};
use gp::Aid;

type Components = Vec<(ComponentTag, Vec<u8>)>;

const HELLO: &[u8] = include_bytes!("data/pysim_test_javacard_HelloSTK.cap");
const EMPTY: &[u8] = include_bytes!("data/Empty_0102030405_8d5ac9e2_2.2.1.cap");

fn cap_vectors() -> Vec<(String, Aid, Aid, Option<Vec<u8>>)> {
    include_str!("vectors/cap.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let lfdb = if f[3] == "-" {
                None
            } else {
                Some(parse_hex(f[3]).unwrap())
            };
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                lfdb,
            )
        })
        .collect()
}

fn file(name: &str) -> &'static [u8] {
    match name {
        "pysim_test_javacard_HelloSTK.cap" => HELLO,
        "Empty_0102030405_8d5ac9e2_2.2.1.cap" => EMPTY,
        _ => panic!("unknown {name}"),
    }
}

#[test]
fn public_caps_match_their_sources() {
    let v = cap_vectors();
    assert_eq!(v.len(), 2);
    for (name, lf_aid, applet, lfdb) in v {
        let cap = CapFile::from_bytes(file(&name)).unwrap();
        assert_eq!(cap.package_aid(), lf_aid, "{name}");
        assert_eq!(cap.applet_aids(), vec![applet], "{name}");
        if let Some(expected) = lfdb {
            // pySim's get_loadfile(): all components, Descriptor included, in load order.
            assert_eq!(hex(&cap.load_file_data_block()), hex(&expected), "{name}");
        }
        // The card reads the same facts back from the load file alone.
        let lf = LoadFile::parse(&cap.load_file_data_block()).unwrap();
        assert_eq!(lf.package_aid(), lf_aid);
        assert_eq!(lf.applet_aids(), vec![applet]);
        assert_eq!(lf.imports(), cap.imports());
        assert_eq!(lf.version(), cap.version());
        let lf = LoadFile::parse(&cap.load_file_data_block_with(false)).unwrap();
        assert!(lf
            .components
            .iter()
            .all(|(t, _)| *t != ComponentTag::Descriptor));
    }
}

#[test]
fn hello_stk_details() {
    let cap = CapFile::from_bytes(HELLO).unwrap();
    // Header.cap 01000f DECAFFED 01 02 04 00 01 05 D07002CA44: CAP 2.1, ACC_APPLET, package v1.0.
    assert_eq!(cap.info().cap_version, (2, 1));
    assert_eq!(cap.info().flags, gp::cap::flags::ACC_APPLET);
    assert_eq!(cap.version(), (1, 0));
    assert_eq!(cap.package_name(), None);
    assert_eq!(cap.path, "org/toorcamp/HelloSTK/javacard/");
    // Import.cap: javacard.framework 1.2, sim.toolkit (16-byte AID) 2.6, java.lang 1.0.
    let imports: Vec<String> = cap.imports().iter().map(ToString::to_string).collect();
    assert_eq!(
        imports,
        [
            "A0000000620101 v1.2",
            "A0000000090003FFFFFFFF8910710002 v2.6",
            "A0000000620001 v1.0"
        ]
    );
    assert_eq!(cap.applets()[0].install_method_offset, 0x0020);
    assert_eq!(cap.code_size(), cap.load_file_data_block().len());
    assert!(cap.component(ComponentTag::Debug).is_none());
    assert_eq!(cap.load_file_hash(HashAlgorithm::Sha1).len(), 20);
    assert_eq!(cap.load_file_hash(HashAlgorithm::Sha256).len(), 32);
    assert_eq!(cap.load_file_hash(HashAlgorithm::Sha384).len(), 48);
    assert_eq!(cap.load_file_hash(HashAlgorithm::Sha512).len(), 64);
}

#[test]
fn empty_applet_details() {
    let cap = CapFile::from_bytes(EMPTY).unwrap();
    assert_eq!(cap.info().cap_version, (2, 1));
    // Header.cap: package_info 00 00 05 0102030405, version 0.0.
    assert_eq!(cap.version(), (0, 0));
    assert_eq!(cap.path, "testapplets/empty/javacard/");
    assert_eq!(cap.imports().len(), 3);
    assert_eq!(cap.component_tags().len(), 10);
}

#[test]
fn hash_algorithms_known_answers() {
    // FIPS 180-2 Appendix A/B/C and FIPS 180-4 examples: "abc".
    assert_eq!(
        hex(&HashAlgorithm::Sha1.digest(b"abc")),
        "A9993E364706816ABA3E25717850C26C9CD0D89D"
    );
    assert_eq!(
        hex(&HashAlgorithm::Sha256.digest(b"abc")),
        "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
    );
    assert_eq!(
        hex(&HashAlgorithm::Sha384.digest(b"abc")),
        "CB00753F45A35E8BB5A03D699AC65007272C32AB0EDED1631A8B605A43FF5BED8086072BA1E7CC2358BAECA134C825A7"
    );
    assert_eq!(
        hex(&HashAlgorithm::Sha512.digest(b"abc")),
        "DDAF35A193617ABACC417349AE20413112E6FA4E89A97EA20A9EEEE64B55D39A2192992A274FC1A836BA3C23A3FEEBBD\
         454D4423643CE80E2A9AC94FA54CA49F"
    );
}

#[test]
fn hello_stk_load_sequence_as_pysim_sends_it() {
    // pySim load(): C4 || BER length || load file, 240-byte blocks, 80E8 P1 P2 Lc block 00.
    let cap = CapFile::from_bytes(HELLO).unwrap();
    let lfdb = cap.load_file_data_block();
    let cmds = load_blocks(&lfdb, 240).unwrap();
    // C4 82 xx xx for 256..=65535 bytes, C4 81 xx for 128..=255.
    let hdr_len = if lfdb.len() > 255 { 4 } else { 3 };
    assert_eq!(cmds.len(), (lfdb.len() + hdr_len).div_ceil(240));
    let first = cmds[0].to_bytes().unwrap();
    assert_eq!(hex(&first[..5]), "80E80000F0");
    assert_eq!(first[5], 0xC4);
    assert_eq!(*first.last().unwrap(), 0x00);
    let last = cmds.last().unwrap();
    assert_eq!((last.p1, usize::from(last.p2)), (0x80, cmds.len() - 1));
    let mut asm = LoadAssembler::new();
    let mut done = None;
    for c in &cmds {
        done = asm.push(&Load::parse(c).unwrap()).unwrap();
    }
    let s = done.unwrap();
    assert_eq!(s.data_block, lfdb);
    assert_eq!(
        LoadFile::parse(&s.data_block).unwrap().package_aid(),
        cap.package_aid()
    );
    // INSTALL [for load] with a SHA-256 hash round-trips.
    let i = Install::ForLoad {
        load_file: cap.package_aid(),
        security_domain: Some(gp::ISD_AID),
        hash: cap.load_file_hash(HashAlgorithm::Sha256),
        params: Vec::new(),
        token: Vec::new(),
    };
    let cmd = i.to_command().unwrap();
    assert_eq!(hex(&cmd.to_bytes().unwrap()[..5]), "80E6020032");
    assert_eq!(
        Install::parse(&Command::parse(&cmd.to_bytes().unwrap()).unwrap()).unwrap(),
        i
    );
}

#[test]
fn synthetic_caps_of_many_sizes() {
    for size in [0usize, 1024, 10 * 1024, 64 * 1024, 200 * 1024] {
        let bytes = synthetic_cap(size);
        let cap = CapFile::from_bytes(&bytes).unwrap();
        assert!(
            cap.code_size() >= size.min(5 * 0xFFFF),
            "size {size}: {}",
            cap.code_size()
        );
        assert_eq!(cap.package_aid().to_string(), "A00000055501");
        assert_eq!(cap.package_name(), Some("com/example/synth"));
        assert_eq!(cap.applet_aids()[0].to_string(), "A0000005550101");
        assert_eq!(cap.info().cap_version, (2, 2));
        let lf = LoadFile::parse(&cap.load_file_data_block()).unwrap();
        assert_eq!(lf.imports().len(), 2);
    }
    // Stored and deflated archives read the same.
    let comps = synthetic_components(4096);
    let a = CapFile::from_bytes(&cap_archive("x/y", &comps, false)).unwrap();
    let b = CapFile::from_bytes(&cap_archive("x/y", &comps, true)).unwrap();
    assert_eq!(a.load_file_data_block(), b.load_file_data_block());
}

#[test]
fn malformed_caps_give_precise_errors() {
    let comps = synthetic_components(100);
    let with = |f: &dyn Fn(&mut Components)| {
        let mut c = comps.clone();
        f(&mut c);
        CapFile::from_bytes(&cap_archive("p", &c, false)).unwrap_err()
    };
    // Not a ZIP at all / truncated ZIP.
    assert!(matches!(
        CapFile::from_bytes(b"PK\x03\x04junk"),
        Err(CapError::Zip(_))
    ));
    assert!(matches!(
        CapFile::from_bytes(&HELLO[..HELLO.len() - 10]),
        Err(CapError::Zip(_))
    ));
    // Missing Header / Import.
    assert_eq!(
        with(&|c| c.retain(|x| x.0 != ComponentTag::Header)),
        CapError::MissingComponent(ComponentTag::Header)
    );
    assert_eq!(
        with(&|c| c.retain(|x| x.0 != ComponentTag::Import)),
        CapError::MissingComponent(ComponentTag::Import)
    );
    // Size field disagreeing with the entry.
    let e = with(&|c| c[5].1.push(0));
    assert!(
        matches!(
            e,
            CapError::Malformed {
                component: ComponentTag::Method,
                offset: 1,
                ..
            }
        ),
        "{e}"
    );
    // Wrong tag in a file.
    let e = with(&|c| c[2].1[0] = 9);
    assert!(
        matches!(
            e,
            CapError::Malformed {
                component: ComponentTag::Import,
                offset: 0,
                ..
            }
        ),
        "{e}"
    );
    // Bad magic.
    let e = with(&|c| c[0].1[3] = 0);
    assert!(
        matches!(
            e,
            CapError::Malformed {
                component: ComponentTag::Header,
                offset: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("DECAFFED"));
    // Applet count larger than the data.
    let e = with(&|c| c[3].1[3] = 2);
    assert!(
        matches!(
            e,
            CapError::Malformed {
                component: ComponentTag::Applet,
                offset: 14,
                ..
            }
        ),
        "{e}"
    );
    // Extended format is reported as unsupported.
    let e = with(&|c| c[0].1[9] |= 0x08);
    assert!(matches!(e, CapError::Unsupported(_)), "{e}");
    // Two packages in one archive.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (dir, (tag, bytes)) in [("a", &comps[0]), ("b", &comps[1])] {
        w.start_file(format!("{dir}/javacard/{}.cap", tag.name()), opts)
            .unwrap();
        std::io::Write::write_all(&mut w, bytes).unwrap();
    }
    let two = w.finish().unwrap().into_inner();
    assert_eq!(
        CapFile::from_bytes(&two),
        Err(CapError::MultiplePackages(
            "a/javacard/".into(),
            "b/javacard/".into()
        ))
    );
}

#[test]
fn load_file_errors_name_the_offset() {
    let cap = CapFile::from_bytes(HELLO).unwrap();
    let lfdb = cap.load_file_data_block();
    // Truncated inside the Directory component (starts at 18).
    match LoadFile::parse(&lfdb[..30]) {
        Err(CapError::LoadFile { offset: 18, reason }) => {
            assert!(reason.contains("Directory"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Not starting with Header.
    assert!(matches!(
        LoadFile::parse(&lfdb[18..]),
        Err(CapError::LoadFile { offset: 0, .. })
    ));
    // Unknown tag after Header.
    let mut bad = lfdb.clone();
    bad[18] = 0x42;
    assert!(matches!(
        LoadFile::parse(&bad),
        Err(CapError::LoadFile { offset: 18, .. })
    ));
    // Every prefix: no panic; prefixes that cut a component are errors.
    let mut boundaries = vec![0usize];
    let lf = LoadFile::parse(&lfdb).unwrap();
    boundaries.extend(lf.components.iter().map(|(_, at)| *at));
    for n in 0..lfdb.len() {
        let r = LoadFile::parse(&lfdb[..n]);
        if !boundaries.contains(&n) {
            assert!(r.is_err(), "prefix {n}");
        }
    }
}
