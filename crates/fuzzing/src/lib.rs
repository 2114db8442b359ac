//! The fuzz targets of `fuzz/` as ordinary functions.
//!
//! Each `fuzz/fuzz_targets/<name>.rs` is one line that calls the function of the same
//! name here, and `tests/corpus.rs` runs every function over its committed seed corpus
//! `fuzz/corpus/<name>/` on stable Rust, so a target that stops compiling or starts
//! panicking on a known input fails `cargo test`. [`TARGETS`] lists them all; that test
//! also checks that it matches `fuzz/fuzz_targets/`.
//!
//! Every function must not panic on any input: a panic (or a failed `assert!`) is the
//! bug the fuzzer reports.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod http;
mod key_set;
mod key_store;
mod ota;
mod outlet;
mod package;
mod parsers;
mod piv_applet;
mod registration;
mod scp11;
mod session;

pub use http::{http_bodies, http_routes};
pub use key_set::{
    key_set_importer, wrapped_key_set, KEY_SET_TRANSPORT_LABEL, KEY_SET_TRANSPORT_PKCS8,
};
pub use key_store::{key_store_file, KEY_STORE_MASTER};
pub use ota::{cat_tlv, ota_command_packet, ota_response_packet, sms_tpdu};
pub use outlet::outlet_records;
pub use package::{
    package_archive, package_parts_input, package_policy, PACKAGE_ANCHOR, PACKAGE_GRANTABLE,
    PACKAGE_NOW,
};
pub use parsers::{
    cap_parse, command_parse, dm_confirmation, gp_responses, init_update_parse, put_key_parse,
    response_parse, tlv_parse,
};
pub use piv_applet::piv_applet;
pub use registration::registration_applet;
pub use scp11::{scp11_auth_card, scp11_auth_host, scp11_certificates, scp11_pso};
pub use session::{
    card_transmit, scp02_session, scp03_session, store_data, CARD_MANAGER_INS, HOST_PUT_KEY,
};

/// The body of a fuzz target: panics (or fails an assertion) only on a bug.
pub type Target = fn(&[u8]);

/// Every fuzz target: its name (the file `fuzz/fuzz_targets/<name>.rs` and the corpus
/// directory `fuzz/corpus/<name>/`) and its body.
pub const TARGETS: &[(&str, Target)] = &[
    ("command_parse", command_parse),
    ("response_parse", response_parse),
    ("tlv_parse", tlv_parse),
    ("cap_parse", cap_parse),
    ("gp_responses", gp_responses),
    ("init_update_parse", init_update_parse),
    ("put_key_parse", put_key_parse),
    ("dm_confirmation", dm_confirmation),
    ("card_transmit", card_transmit),
    ("scp02_session", scp02_session),
    ("scp03_session", scp03_session),
    ("store_data", store_data),
    ("piv_applet", piv_applet),
    ("registration_applet", registration_applet),
    ("key_store_file", key_store_file),
    ("wrapped_key_set", wrapped_key_set),
    ("http_bodies", http_bodies),
    ("scp11_certificates", scp11_certificates),
    ("scp11_pso", scp11_pso),
    ("scp11_auth_card", scp11_auth_card),
    ("scp11_auth_host", scp11_auth_host),
    ("package_archive", package_archive),
    ("outlet_records", outlet_records),
    ("ota_command_packet", ota_command_packet),
    ("ota_response_packet", ota_response_packet),
    ("sms_tpdu", sms_tpdu),
    ("cat_tlv", cat_tlv),
];
