//! `exchange` against scripted fake cards: GET RESPONSE, 6Cxx, limits, chaining.

use apdu::{
    exchange, exchange_chained, exchange_with, Command, ExchangeError, ExchangeOptions, Status,
    StatusWord,
};

/// A fake card answering from a script and recording what it received.
struct FakeCard {
    answers: std::vec::IntoIter<Vec<u8>>,
    sent: Vec<Vec<u8>>,
}

impl FakeCard {
    fn new(answers: &[&str]) -> Self {
        let answers: Vec<Vec<u8>> = answers
            .iter()
            .map(|a| apdu::parse_hex(a).unwrap())
            .collect();
        Self {
            answers: answers.into_iter(),
            sent: Vec::new(),
        }
    }
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, &'static str> {
        self.sent.push(apdu.to_vec());
        self.answers.next().ok_or("card mute")
    }
    fn sent_hex(&self) -> Vec<String> {
        self.sent.iter().map(|s| apdu::hex(s)).collect()
    }
}

#[test]
fn get_response_keeps_logical_channel() {
    // SELECT on channel 2 through a GP class byte with secure messaging (CLA 86).
    let mut card = FakeCard::new(&[
        "6100",
        &format!("{}6105", "11".repeat(256)),
        "22222222229000",
    ]);
    let cmd = Command::new(0x86, 0xCA, 0x00, 0x66).with_le(256);
    let resp = exchange(&cmd, |a| card.transmit(a)).unwrap();
    assert_eq!(card.sent_hex(), ["86CA006600", "02C0000000", "02C0000005"]);
    assert_eq!(resp.data.len(), 261);
    assert_eq!(resp.sw, StatusWord::SUCCESS);
    // Further interindustry class: channel 5 is CLA 41.
    let mut card = FakeCard::new(&["6101", "AA9000"]);
    exchange(&Command::new(0x41, 0xB0, 0, 0).with_le(1), |a| {
        card.transmit(a)
    })
    .unwrap();
    assert_eq!(card.sent_hex()[1], "41C0000001");
}

#[test]
fn data_before_61xx_is_kept() {
    let mut card = FakeCard::new(&["01026102", "03049000"]);
    let resp = exchange(&Command::new(0, 0xB0, 0, 0).with_le(256), |a| {
        card.transmit(a)
    })
    .unwrap();
    assert_eq!(resp.data, vec![1, 2, 3, 4]);
}

#[test]
fn wrong_le_resent_once() {
    // 6C00 means 256.
    let mut card = FakeCard::new(&["6C00", "9000"]);
    exchange(&Command::new(0, 0xB0, 0, 0).with_le(1), |a| {
        card.transmit(a)
    })
    .unwrap();
    assert_eq!(card.sent_hex(), ["00B0000001", "00B0000000"]);

    // A second 6Cxx for the same command is the answer.
    let mut card = FakeCard::new(&["6C04", "6C05"]);
    let resp = exchange(&Command::new(0, 0xB0, 0, 0).with_le(1), |a| {
        card.transmit(a)
    })
    .unwrap();
    assert_eq!(resp.sw.status(), Status::WrongLe(5));
    assert_eq!(card.sent.len(), 2);

    // 6Cxx on a GET RESPONSE resends that GET RESPONSE, and the counter restarts
    // for the next one.
    let mut card = FakeCard::new(&["6108", "6C02", "AAAA6102", "6C02", "BBBB9000"]);
    let resp = exchange(&Command::new(0, 0xCA, 0, 0x66).with_le(256), |a| {
        card.transmit(a)
    })
    .unwrap();
    assert_eq!(
        card.sent_hex(),
        [
            "00CA006600",
            "00C0000008",
            "00C0000002",
            "00C0000002",
            "00C0000002"
        ]
    );
    assert_eq!(resp.data, vec![0xAA, 0xAA, 0xBB, 0xBB]);

    // A case 3 command answered 6Cxx is resent as case 4.
    let mut card = FakeCard::new(&["6C02", "01029000"]);
    let cmd = Command::new(0x80, 0xCA, 0, 0).with_data(vec![0x5C]);
    exchange(&cmd, |a| card.transmit(a)).unwrap();
    assert_eq!(card.sent_hex()[1], "80CA0000015C02");
}

#[test]
fn endless_61xx_is_bounded() {
    let mut sent = 0usize;
    let err = exchange(&Command::new(0, 0xC0, 0, 0).with_le(1), |_| {
        sent += 1;
        Ok::<_, ()>(vec![0x61, 0x01])
    })
    .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::TooManyGetResponses { limit: 4096 }
    ));
    assert_eq!(sent, 4097);

    let mut options = ExchangeOptions::default();
    options.max_get_responses = 3;
    let mut sent = 0usize;
    let err = exchange_with(&Command::new(0, 0xC0, 0, 0).with_le(1), &options, |_| {
        sent += 1;
        Ok::<_, ()>(vec![0x61, 0x01])
    })
    .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::TooManyGetResponses { limit: 3 }
    ));
    assert_eq!(sent, 4);
}

#[test]
fn response_size_is_bounded() {
    let mut part = vec![0x55; 256];
    part.extend_from_slice(&[0x61, 0x00]);
    let err = exchange(&Command::new(0, 0xB0, 0, 0).with_le(256), |_| {
        Ok::<_, ()>(part.clone())
    })
    .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::ResponseTooLarge { limit: 1_048_576 }
    ));

    let mut options = ExchangeOptions::default();
    options.max_response_len = 4;
    let mut card = FakeCard::new(&["0102036102", "04059000"]);
    let err = exchange_with(&Command::new(0, 0xB0, 0, 0).with_le(3), &options, |a| {
        card.transmit(a)
    })
    .unwrap_err();
    assert!(matches!(err, ExchangeError::ResponseTooLarge { limit: 4 }));
    // Exactly at the limit is fine.
    let mut card = FakeCard::new(&["0102036101", "049000"]);
    let resp = exchange_with(&Command::new(0, 0xB0, 0, 0).with_le(3), &options, |a| {
        card.transmit(a)
    })
    .unwrap();
    assert_eq!(resp.data, vec![1, 2, 3, 4]);
}

#[test]
fn transport_and_format_errors() {
    let err = exchange(&Command::new(0, 0xA4, 4, 0), |_| {
        Err::<Vec<u8>, _>("reader gone")
    })
    .unwrap_err();
    assert!(matches!(err, ExchangeError::Transmit("reader gone")));
    assert_eq!(err.to_string(), "transmit failed: reader gone");
    let err = exchange(&Command::new(0, 0xA4, 4, 0), |_| Ok::<_, ()>(vec![0x90])).unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::BadResponse(apdu::Error::ResponseTooShort(1))
    ));
    let too_long = Command::new(0, 0xD6, 0, 0).with_data(vec![0; 70_000]);
    let err = exchange(&too_long, |_| Ok::<_, ()>(vec![0x90, 0x00])).unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::Encode(apdu::Error::DataTooLong(70_000))
    ));
}

#[test]
fn chained_exchange() {
    let cmd = Command::new(0x80, 0xE2, 0x00, 0x00)
        .with_data(vec![1, 2, 3, 4, 5])
        .with_le(256);
    let mut card = FakeCard::new(&["9000", "9000", "6102", "AABB9000"]);
    let resp =
        exchange_chained(&cmd, 2, &ExchangeOptions::default(), |a| card.transmit(a)).unwrap();
    assert_eq!(
        card.sent_hex(),
        [
            "90E20000020102",
            "90E20000020304",
            "80E20000010500",
            "00C0000002"
        ]
    );
    assert_eq!(resp.data, vec![0xAA, 0xBB]);

    // A card that does not support chaining stops the chain.
    let mut card = FakeCard::new(&["6884"]);
    let resp =
        exchange_chained(&cmd, 2, &ExchangeOptions::default(), |a| card.transmit(a)).unwrap();
    assert_eq!(resp.sw.status(), Status::ChainingNotSupported);
    assert_eq!(card.sent.len(), 1);
}
