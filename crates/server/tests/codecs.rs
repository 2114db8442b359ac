//! Property tests of the server's small codecs: decimal amounts, base64 and PEM.

use proptest::prelude::*;
use server::{amount, ca_files};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn amount_round_trip(minor in 1u64..=u64::MAX / 10_000, cur in prop::sample::select(vec!["EUR", "JPY", "KWD", "CLF", "USD"])) {
        let text = amount::format_amount(minor, cur);
        prop_assert_eq!(amount::parse_amount(&text, cur), Ok(minor));
    }

    #[test]
    fn amount_parser_never_panics(text in ".{0,40}", cur in "[A-Z]{3}") {
        let _ = amount::parse_amount(&text, &cur);
    }

    #[test]
    fn amount_parser_accepts_only_digits_and_one_dot(text in "[0-9.]{1,25}") {
        if let Ok(m) = amount::parse_amount(&text, "EUR") {
            prop_assert!(m > 0);
            prop_assert!(text.matches('.').count() <= 1);
        }
    }

    #[test]
    fn base64_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = ca_files::base64_encode(&bytes);
        prop_assert_eq!(text.len() % 4, 0);
        prop_assert_eq!(ca_files::base64_decode(&text), Some(bytes));
    }

    #[test]
    fn base64_decoder_never_panics(text in "[A-Za-z0-9+/=]{0,64}") {
        let _ = ca_files::base64_decode(&text);
    }

    #[test]
    fn pem_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let pem = ca_files::pem_encode(&bytes, "CERTIFICATE");
        prop_assert_eq!(ca_files::pem_decode(&pem, "CERTIFICATE"), Ok(bytes));
    }

    #[test]
    fn pem_decoder_never_panics(text in "(-----BEGIN CERTIFICATE-----)?[ -~\n]{0,200}(-----END CERTIFICATE-----)?") {
        let _ = ca_files::pem_decode(&text, "CERTIFICATE");
    }
}
