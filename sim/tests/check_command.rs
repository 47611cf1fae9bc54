//! `kv-sim check` on hand-written histories: the linearizable ones pass (exit 0), each
//! violation is caught (exit 1) and a malformed file is refused (exit 2).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a panic is the failure report

use std::path::Path;
use std::process::Command;

fn check(file: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kv-sim"))
        .arg("check")
        .arg(file)
        .output()
        .expect("kv-sim runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().expect("an exit code"), text)
}

#[test]
fn every_hand_written_history_gets_its_verdict() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 7, "the histories are there: {files:?}");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let expected = if name.starts_with("ok-") {
            0
        } else if name.starts_with("bad-") {
            1
        } else {
            2
        };
        let (code, text) = check(&file);
        assert_eq!(code, expected, "{name}: {text}");
        if expected == 1 {
            assert!(text.contains("key \"k\""), "{name} names the key: {text}");
        }
    }
}
