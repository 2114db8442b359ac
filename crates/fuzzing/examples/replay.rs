//! Runs one fuzz target on files, without libFuzzer: `cargo run -p fuzzing --example
//! replay -- <target> <file>…` (with `FUZZ_TRACE=1`, the session targets print each
//! command's status word). For looking at a seed or a crash on stable Rust.

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().expect("usage: replay <target> <file>…");
    let (_, target) = fuzzing::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    for file in args {
        let data = std::fs::read(&file).expect("readable input");
        eprintln!("== {file}");
        target(&data);
    }
}
