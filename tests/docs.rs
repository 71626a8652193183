//! The documentation stays in step with the code: the CLI reference names every subcommand
//! and option `--help` prints, the README's example is the crate's, the README stays a short
//! front door, and every relative link in the Markdown pages leads somewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::process::OutputWithinLimit;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `xception ARGS`' standard output, which must be a success.
fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xception"))
        .args(args)
        .output_within_limit();
    assert!(out.status.success(), "xception {args:?} failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// Every `--option` in `text`, once each, in order of appearance.
fn long_options(text: &str) -> Vec<String> {
    let mut options = Vec::new();
    for (at, _) in text.match_indices("--") {
        let name: String = text[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let starts_a_word = !text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '-');
        if starts_a_word && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            let option = format!("--{name}");
            if !options.contains(&option) {
                options.push(option);
            }
        }
    }
    options
}

#[test]
fn the_cli_reference_documents_every_subcommand_and_option() {
    let docs = read(&root().join("docs/cli.md"));
    let documented = long_options(&docs);
    let top = help(&["--help"]);
    let subcommands: Vec<&str> = top
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    assert!(subcommands.len() >= 9, "subcommands in:\n{top}");
    let mut missing = Vec::new();
    for subcommand in subcommands {
        if !docs.contains(&format!("xception {subcommand}")) {
            missing.push(format!("xception {subcommand}"));
        }
        let text = help(&[subcommand, "--help"]);
        let options = long_options(&text);
        assert!(
            options.len() > 1,
            "{subcommand} --help lists options:\n{text}"
        );
        for option in options {
            if option != "--help" && !documented.contains(&option) {
                missing.push(format!("{subcommand} {option}"));
            }
        }
    }
    assert!(missing.is_empty(), "not in docs/cli.md: {missing:?}");
}

/// The lines of the first fenced Rust block of a Markdown text.
fn first_rust_block(markdown: &str) -> Vec<&str> {
    markdown
        .lines()
        .skip_while(|line| !line.starts_with("```rust"))
        .skip(1)
        .take_while(|line| !line.starts_with("```"))
        .collect()
}

#[test]
fn the_readme_example_is_the_crate_docs_example() {
    let readme = read(&root().join("README.md"));
    let lib = read(&root().join("src/lib.rs"));
    let crate_docs: String = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let ours = first_rust_block(&readme);
    let theirs: Vec<&str> = crate_docs
        .lines()
        .skip_while(|line| !line.starts_with("```no_run"))
        .skip(1)
        .take_while(|line| !line.starts_with("```"))
        .collect();
    assert!(ours.len() > 3, "the README has a Rust example");
    assert_eq!(ours, theirs, "README.md's example and src/lib.rs's differ");
}

#[test]
fn the_readme_is_a_short_front_door() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= 150,
        "README.md has {lines} lines; details belong in docs/"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's headings (outside code blocks).
fn anchors(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// The targets of a Markdown text's inline links `[text](target)`.
fn link_targets(markdown: &str) -> Vec<&str> {
    markdown
        .match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &markdown[at + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_leads_somewhere() {
    let mut pages: Vec<PathBuf> = [
        "README.md",
        "BENCHMARKS.md",
        "python/README.md",
        "weights/README.md",
    ]
    .iter()
    .map(|page| root().join(page))
    .collect();
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = read(page);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let linked = if file.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a page's folder").join(file)
            };
            if !linked.exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
            } else if !fragment.is_empty()
                && linked.extension().is_some_and(|e| e == "md")
                && !anchors(&read(&linked)).iter().any(|a| a == fragment)
            {
                broken.push(format!("{}: {target} (no such heading)", page.display()));
            }
        }
    }
    assert!(pages.len() >= 8, "the pages: {pages:?}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
