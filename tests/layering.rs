//! The floor plan as a test: every module under `src/` imports only from its
//! own floor or the floors below it (core < components < assembly < edge), and
//! `unsafe` appears only in the plugin loader.

use std::fs;
use std::path::{Path, PathBuf};

const FLOORS: [&str; 4] = ["core", "components", "assembly", "edge"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The floor of a file under `src/`, by its first folder.
fn floor_of(rel: &Path) -> Option<usize> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    FLOORS.iter().position(|f| *f == first)
}

/// Every `crate::FLOOR` path in `text` whose floor is above `floor`, as
/// (line number, floor named).
fn upward_imports(text: &str, floor: usize) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            for (f, name) in FLOORS.iter().enumerate() {
                let named = rest.starts_with(name)
                    && !rest[name.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_');
                if named && f > floor {
                    found.push((n + 1, *name));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_imports_from_a_floor_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut wrong = Vec::new();
    let mut seen = 0;
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap();
        let Some(floor) = floor_of(rel) else { continue };
        seen += 1;
        let text = fs::read_to_string(file).unwrap();
        for (line, name) in upward_imports(&text, floor) {
            wrong.push(format!(
                "src/{}:{line}: a {} module uses crate::{name}",
                rel.display(),
                FLOORS[floor]
            ));
        }
    }
    assert!(seen > 40, "only {seen} modules found under src/");
    assert!(
        wrong.is_empty(),
        "imports against the floor plan:\n{}",
        wrong.join("\n")
    );
}

/// Lines of `text` that open an `unsafe` block, fn, impl or extern block.
fn unsafe_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or("");
            [
                "unsafe {",
                "unsafe fn",
                "unsafe impl",
                "unsafe extern",
                "unsafe trait",
            ]
            .iter()
            .any(|p| code.contains(p))
        })
        .map(|(n, _)| n + 1)
        .collect()
}

#[test]
fn unsafe_code_lives_only_in_the_loader_and_the_sdk_ffi_layer() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let allowed = [
        manifest.join("src/components/plugin"),
        manifest.join("plugins/sdk/src/abi.rs"),
        manifest.join("plugins/sdk/src/ffi.rs"),
    ];
    let mut files = Vec::new();
    sources(&manifest.join("src"), &mut files);
    sources(&manifest.join("plugins/sdk/src"), &mut files);
    let mut wrong = Vec::new();
    let mut found = 0;
    for file in &files {
        let lines = unsafe_lines(&fs::read_to_string(file).unwrap());
        if allowed.iter().any(|a| file.starts_with(a)) {
            found += lines.len();
            continue;
        }
        for line in lines {
            wrong.push(format!(
                "{}:{line}",
                file.strip_prefix(manifest).unwrap().display()
            ));
        }
    }
    assert!(
        found > 0,
        "the scan found no unsafe code at all, even in the loader"
    );
    assert!(
        wrong.is_empty(),
        "unsafe outside the loader and the SDK's FFI layer:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_unsafe_scan_sees_unsafe_code() {
    let text = "let x = unsafe { f() };\n// unsafe { in a comment }\nEvent::BypassUnsafePath\npub unsafe fn g() {}\n";
    assert_eq!(unsafe_lines(text), vec![1, 4]);
}

#[test]
fn the_checker_sees_an_upward_import() {
    let text = "use crate::core::Body;\nuse crate::edge::server; // no\n// crate::assembly in a comment\nuse crate::components_x;\n";
    assert_eq!(upward_imports(text, 1), vec![(2, "edge")]);
    assert!(upward_imports(text, 3).is_empty());
}
