//! The README's command examples, run as written.
//!
//! Every ```` ```sh ```` block of README.md preceded by the line `<!-- readme-test -->` is
//! run with `bash -euo pipefail`, in document order, in one temporary directory (so later
//! examples find the card and files earlier ones made, as for a reader following along),
//! with the `cardwright` under test first on `PATH` and `crates/` of the repository linked
//! into the directory (for the test CAP files the examples name). Each block must exit 0;
//! `<!-- readme-test expect="TEXT" … -->` also requires TEXT in what it printed.
//! Examples that need PC/SC readers, a PostgreSQL server, an HSM or a browser are not
//! marked.

use std::path::{Path, PathBuf};
use std::process::Command;

const MARK: &str = "<!-- readme-test";

#[derive(Debug)]
struct Example {
    line: usize,
    script: String,
    expect: Vec<String>,
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The marked examples of `text`, in order.
fn examples(text: &str) -> Vec<Example> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        if let Some(rest) = l.strip_prefix(MARK) {
            let expect = rest
                .split("expect=\"")
                .skip(1)
                .map(|s| s.split('"').next().unwrap_or_default().to_string())
                .collect();
            let fence = lines.get(i + 1).map(|s| s.trim()).unwrap_or_default();
            assert_eq!(
                fence,
                "```sh",
                "README line {}: {MARK} must be followed by a ```sh block",
                i + 1
            );
            let start = i + 2;
            let end = (start..lines.len())
                .find(|&j| lines[j].trim() == "```")
                .unwrap_or_else(|| panic!("README line {}: unterminated block", i + 2));
            out.push(Example {
                line: start,
                script: lines[start..end].join("\n"),
                expect,
            });
            i = end;
        }
        i += 1;
    }
    out
}

#[test]
fn readme_examples_run_as_written() {
    let readme = std::fs::read_to_string(repository().join("README.md")).expect("README.md");
    let all = examples(&readme);
    assert!(all.len() >= 8, "only {} marked examples", all.len());

    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(repository().join("crates"), dir.path().join("crates"))
        .expect("link crates/");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_cardwright"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for ex in &all {
        let mut cmd = Command::new("bash");
        cmd.args(["-euo", "pipefail", "-c", &ex.script])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("CARDWRIGHT_LOG", "warn");
        for (k, _) in std::env::vars() {
            if k.starts_with("CARDWRIGHT_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd.output().expect("run bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "README example at line {} failed ({}):\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            ex.line,
            out.status,
            ex.script
        );
        for e in &ex.expect {
            assert!(
                stdout.contains(e.as_str()) || stderr.contains(e.as_str()),
                "README example at line {} should print {e:?}:\n{stdout}\n{stderr}",
                ex.line
            );
        }
        eprintln!("README line {}: ok", ex.line);
    }
}

#[test]
fn the_marker_parser_finds_blocks_and_expectations() {
    let text = "x\n<!-- readme-test expect=\"a b\" expect=\"c\" -->\n```sh\necho a b c\n```\n```sh\nnot marked\n```\n";
    let ex = examples(text);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].script, "echo a b c");
    assert_eq!(ex[0].expect, vec!["a b".to_string(), "c".to_string()]);
}
