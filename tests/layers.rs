//! The modules of `src/` form layers (docs/decisions/0012): a module
//! imports only from modules of a lower rank. This reads every source file
//! and fails on an import that points up or sideways, naming the file.

use std::collections::BTreeMap;
use std::path::Path;

/// Each module of `src/` and its rank; a module may use ranks below its own.
const RANKS: &[(&str, u8)] = &[
    ("protocol", 0),
    ("config", 0),
    ("authz", 1),
    ("logging", 1),
    ("client", 1),
    ("db", 1),
    ("cluster", 2),
    ("raft", 3),
    ("meta", 4),
    ("auth", 5),
    ("partition", 5),
    ("delivery", 6),
    ("backup", 6),
    ("messaging", 7),
    ("groups", 8),
    ("lists", 8),
    ("notices", 8),
    ("search", 8),
    ("files", 8),
    ("admin", 9),
    ("api", 10),
    ("node", 11),
];

fn rank(module: &str) -> Option<u8> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// Returns the modules a source file names through `crate::…`, outside
/// comments.
fn imports(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
            rest = after;
        }
    }
    found
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut wrong: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut modules = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = rank(&module) else {
            panic!("src/{module} has no rank in this test: give it one (docs/decisions/0012)");
        };
        modules += 1;
        let source = std::fs::read_to_string(file).unwrap();
        for import in imports(&source) {
            if import == module {
                continue;
            }
            match rank(&import) {
                Some(theirs) if theirs < own => {}
                _ => wrong
                    .entry(relative.display().to_string())
                    .or_default()
                    .push(import),
            }
        }
    }
    assert!(modules > 50, "read only {modules} files under {src:?}");
    assert!(
        wrong.is_empty(),
        "imports against the layers (file: modules): {wrong:#?}"
    );
}

#[test]
fn the_reader_finds_imports_and_skips_comments() {
    let source = "use crate::meta::Meta;\n// crate::node is only named\nlet x = crate::db::open(); crate::raft::x";
    assert_eq!(imports(source), vec!["meta", "db", "raft"]);
}
