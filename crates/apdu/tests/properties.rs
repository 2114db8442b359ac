//! Property tests: encoders and parsers agree, and parsers never panic.

use apdu::tlv::{self, ParseOptions, Tag, Tlv, TlvRef};
use apdu::{Command, Response, Status, StatusWord};
use proptest::prelude::*;

/// Any valid command: Nc in 0..=65535 (kept small mostly), Ne in 1..=65536 or absent.
fn command() -> impl Strategy<Value = Command> {
    let data = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..=300),
        1 => proptest::collection::vec(any::<u8>(), 0..=70_000).prop_map(|mut v| {
            v.truncate(65_535);
            v
        }),
    ];
    let le = prop_oneof![
        Just(None),
        (1u32..=65_536).prop_map(Some),
        (1u32..=256).prop_map(Some)
    ];
    (any::<[u8; 4]>(), data, le).prop_map(|(h, data, le)| Command {
        cla: h[0],
        ins: h[1],
        p1: h[2],
        p2: h[3],
        data,
        le,
    })
}

/// Any valid tag of one, two or three bytes.
fn tag() -> impl Strategy<Value = Tag> {
    let first = any::<u8>();
    prop_oneof![
        first.prop_filter_map("one-byte tag", |b| Tag::try_new(b as u32).ok()),
        // Class and constructed bits, then 11111 (FF, private constructed, is left out: it
        // is padding when padding is skipped).
        (0u8..7, 0x00u8..=0x7F).prop_map(|(class_bits, second)| {
            let first = (class_bits << 5) | 0x1F;
            Tag::new(u32::from_be_bytes([0, 0, first, second]))
        }),
        (0u8..7, 0x81u8..=0xFF, 0u8..=0x7F).prop_map(|(class_bits, second, third)| {
            let first = (class_bits << 5) | 0x1F;
            Tag::new(u32::from_be_bytes([0, first, second, third]))
        }),
    ]
}

/// A data object tree of bounded depth, as an owned `Tlv`.
fn tlv_tree() -> impl Strategy<Value = Tlv> {
    // Leaves are primitive, so every constructed object's value is well-formed.
    let leaf = (
        tag().prop_filter("primitive", |t| !t.is_constructed()),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(t, v)| Tlv::new(t, v));
    leaf.prop_recursive(4, 64, 6, |inner| {
        (
            tag().prop_filter("constructed", |t| t.is_constructed()),
            proptest::collection::vec(inner, 0..6),
        )
            .prop_map(|(t, kids)| Tlv::constructed(t, &kids))
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn command_round_trip(cmd in command()) {
        let bytes = cmd.to_bytes().unwrap();
        let back = Command::parse(&bytes).unwrap();
        prop_assert_eq!(&back, &cmd);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn command_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        // Whatever parses re-encodes to an equivalent command, never longer: the
        // extended form of a command that fits the short form (e.g. Le `000100`) is
        // accepted but re-encoded short.
        if let Ok(cmd) = Command::parse(&bytes) {
            let again = cmd.to_bytes().unwrap();
            prop_assert!(again.len() <= bytes.len());
            prop_assert_eq!(Command::parse(&again).unwrap(), cmd.clone());
            if again.len() == bytes.len() {
                prop_assert_eq!(again, bytes);
            }
        }
    }

    #[test]
    fn chain_reassembles(cmd in command(), max in 1usize..400) {
        let parts = cmd.chain(max);
        let joined: Vec<u8> = parts.iter().flat_map(|c| c.data.iter().copied()).collect();
        prop_assert_eq!(&joined, &cmd.data);
        let (last, init) = parts.split_last().unwrap();
        prop_assert_eq!(last.le, cmd.le);
        prop_assert_eq!(last.cla, cmd.cla);
        for p in init {
            prop_assert!(p.is_chained());
            prop_assert_eq!(p.le, None);
            prop_assert_eq!(p.data.len(), max);
        }
        prop_assert!(last.data.len() <= max || parts.len() == 1);
    }

    #[test]
    fn response_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        match Response::parse(&bytes) {
            Ok(r) => prop_assert_eq!(r.to_bytes(), bytes),
            Err(_) => prop_assert!(bytes.len() < 2),
        }
    }

    #[test]
    fn status_round_trip(v in any::<u16>()) {
        let sw = StatusWord(v);
        prop_assert_eq!(StatusWord::from(sw.status()), sw);
        prop_assert_eq!(Status::from(sw), Status::from_u16(v));
    }

    #[test]
    fn tlv_round_trip(tree in tlv_tree()) {
        let bytes = tree.encode();
        prop_assert_eq!(bytes.len(), tree.encoded_len());
        let back = Tlv::parse(&bytes).unwrap();
        prop_assert_eq!(&back, &tree);
        let (r, rest) = TlvRef::parse_one(&bytes).unwrap();
        prop_assert!(rest.is_empty());
        prop_assert_eq!(r.raw(), &bytes[..]);
        if tree.is_constructed() {
            // Children parse back to what built them.
            let kids = back.children().unwrap();
            prop_assert_eq!(tlv::encode_all(&kids), tree.value.clone());
        }
    }

    #[test]
    fn tlv_sequence_round_trip(seq in proptest::collection::vec(tlv_tree(), 0..5)) {
        let bytes = tlv::encode_all(&seq);
        prop_assert_eq!(tlv::parse_all(&bytes).unwrap(), seq.clone());
        // Padding anywhere between objects is skipped only on request.
        let mut padded = vec![0x00, 0xFF];
        for t in &seq {
            padded.extend(t.encode());
            padded.push(0x00);
        }
        prop_assert_eq!(tlv::parse_all_with(&padded, ParseOptions::SKIP_PADDING).unwrap(), seq);
        prop_assert!(tlv::parse_all(&padded).is_err());
    }

    #[test]
    fn tag_round_trip(t in tag()) {
        let bytes = t.to_bytes();
        prop_assert_eq!(bytes.len(), t.encoded_len());
        prop_assert_eq!(Tag::parse(&bytes).unwrap(), (t, bytes.len()));
        prop_assert_eq!(Tag::try_new(t.value()).unwrap(), t);
    }

    #[test]
    fn length_round_trip(n in prop_oneof![0usize..300, 0usize..70_000, 0usize..=0xFFFF_FFFF]) {
        let enc = tlv::encode_length(n);
        prop_assert_eq!(tlv::read_length(&enc).unwrap(), (n, enc.len()));
    }

    #[test]
    fn tlv_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let strict = tlv::parse_all(&bytes);
        let _ = tlv::parse_all_with(&bytes, ParseOptions::SKIP_PADDING);
        let _ = Tlv::parse_one(&bytes);
        let _ = tlv::read_length(&bytes);
        let _ = Tag::parse(&bytes);
        // Walk every constructed object down to the leaves; whatever parses re-encodes
        // to the same number of objects.
        let mut stack: Vec<TlvRef<'_>> = tlv::iter(&bytes).filter_map(Result::ok).collect();
        while let Some(t) = stack.pop() {
            if let Ok(kids) = t.children() {
                stack.extend(kids.filter_map(Result::ok));
            }
        }
        if let Ok(v) = strict {
            prop_assert!(tlv::encode_all(&v).len() <= bytes.len());
        }
    }

    #[test]
    fn tlv_parse_never_panics_on_tlv_like_input(
        parts in proptest::collection::vec((tag(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
    ) {
        // Well-formed tags with arbitrary length bytes: exercises the length paths.
        let mut bytes = Vec::new();
        for (t, len, value) in &parts {
            bytes.extend(t.to_bytes());
            bytes.push(*len);
            bytes.extend(value);
        }
        let _ = tlv::parse_all(&bytes);
        let _ = tlv::find_in(&bytes, &[parts.first().map_or(Tag::new(0x4F), |p| p.0), Tag::new(0x4F)]);
    }
}
