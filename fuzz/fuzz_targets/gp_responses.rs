//! Every GlobalPlatform response parser the host runs on card output: never panics.
#![no_main]
#![forbid(unsafe_code)]

use gp::commands::{
    CardData, Cplc, Fci, GpCommand, KeyInfo, RegistryEntry, StatusFormat, StatusSubset,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Fci::parse(data);
    let _ = Cplc::parse(data);
    let _ = CardData::parse(data);
    let _ = KeyInfo::parse(data);
    for subset in [
        StatusSubset::IssuerSecurityDomain,
        StatusSubset::Applications,
        StatusSubset::LoadFiles,
        StatusSubset::LoadFilesAndModules,
    ] {
        for format in [StatusFormat::Legacy, StatusFormat::Tlv] {
            let _ = RegistryEntry::parse_all(subset, format, data);
        }
    }
    // The card side parses commands from the host.
    if let Ok(cmd) = apdu::Command::parse(data) {
        let _ = GpCommand::parse(&cmd);
    }
});
