//! What the library promises about itself: every public function shows how it is called (a
//! doc example that `cargo test --doc` compiles), and it depends on no command-line parser or
//! application error crate.

use std::path::Path;

/// Public functions whose doc comment has no example, as `file: name`.
fn without_examples(source: &str, file: &str) -> Vec<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut missing = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed
            .strip_prefix("pub fn ")
            .or_else(|| trimmed.strip_prefix("pub async fn "))
        else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let doc = lines[..index]
            .iter()
            .rev()
            .skip_while(|line| line.trim_start().starts_with("#["))
            .take_while(|line| line.trim_start().starts_with("///"));
        if !doc.into_iter().any(|line| line.contains("```")) {
            missing.push(format!("{file}: {name}"));
        }
    }
    missing
}

#[test]
fn every_public_function_has_a_doc_example() {
    let source_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    // The files of the public API (`connection` and `silence` are private modules).
    for file in [
        "lib.rs",
        "config.rs",
        "error.rs",
        "txn.rs",
        "watch.rs",
        "recipes/queue.rs",
        "recipes/lock.rs",
        "recipes/election.rs",
    ] {
        let source = std::fs::read_to_string(source_dir.join(file)).unwrap();
        missing.extend(without_examples(&source, file));
    }
    assert!(missing.is_empty(), "no doc example: {missing:#?}");
}

#[test]
fn the_checker_finds_a_function_without_an_example() {
    let source = "/// Does a thing.\npub fn bare() {}\n\n/// ```\n/// shown();\n/// ```\n#[must_use]\npub fn shown() {}\n";
    assert_eq!(without_examples(source, "x.rs"), ["x.rs: bare"]);
}

#[test]
fn the_library_depends_on_no_argument_parser_or_application_error_crate() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    for forbidden in ["clap", "anyhow"] {
        assert!(
            !dependencies
                .lines()
                .any(|line| line.trim_start().starts_with(forbidden)),
            "{forbidden} in the client's dependencies"
        );
    }
}
