//! CAP files (ZIP archives of components) and card-side load file data blocks: never panic;
//! a CAP that parses yields a load file data block that the card-side parser accepts.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cap) = gp::cap::CapFile::from_bytes(data) {
        let block = cap.load_file_data_block();
        let lf = gp::cap::LoadFile::parse(&block).expect("a parsed CAP's load file parses");
        assert_eq!(lf.package_aid(), cap.package_aid());
        let _ = cap.load_file_hash(gp::cap::HashAlgorithm::Sha256);
    }
    let _ = gp::cap::LoadFile::parse(data);
});
