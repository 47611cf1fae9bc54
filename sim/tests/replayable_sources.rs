//! The code the simulator runs must replay the same from a seed. An unbiased `tokio::select!`
//! picks the branch it polls first at random, from a source the simulator does not seed: every
//! `select!` in that code says `biased;` (it caught one on 2026-12-07 only by chance, through
//! the determinism check of seed 0).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Each `tokio::select!` of `source` (outside comments) whose first line inside is not
/// `biased;`, as line numbers.
fn unbiased_selects(source: &str) -> Vec<usize> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    for (number, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") || !code.contains("tokio::select!") {
            continue;
        }
        let first_inside = lines[number + 1..]
            .iter()
            .map(|line| line.trim())
            .find(|line| !line.is_empty() && !line.starts_with("//"));
        if first_inside != Some("biased;") {
            found.push(number + 1);
        }
    }
    found
}

#[test]
fn every_select_in_the_simulated_code_is_biased() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for crate_dir in [
        "core/src",
        "server/src",
        "client/src",
        "proto/src",
        "sim/src",
    ] {
        rust_files(&root.join(crate_dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut unbiased = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for line in unbiased_selects(&source) {
            unbiased.push(format!("{}:{line}", file.display()));
        }
    }
    assert!(unbiased.is_empty(), "select! without biased;: {unbiased:?}");
}

#[test]
fn the_check_finds_an_unbiased_select_and_passes_a_biased_one() {
    let unbiased = "fn f() {\n    tokio::select! {\n        _ = a => {}\n    }\n}\n";
    let biased = "fn f() {\n    tokio::select! {\n        // why\n        biased;\n    }\n}\n";
    let commented = "/// tokio::select! { _ = a => {} }\n";
    assert_eq!(unbiased_selects(unbiased), vec![2]);
    assert!(unbiased_selects(biased).is_empty());
    assert!(unbiased_selects(commented).is_empty());
}
