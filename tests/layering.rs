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

/// Lines with the `unsafe` keyword in code (comments and string literals
/// stripped roughly; attributes such as `#[unsafe(no_mangle)]` are not code).
fn unsafe_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("#["))
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or("");
            let code: String = code.split('"').step_by(2).collect();
            code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|w| w == "unsafe")
        })
        .map(|(n, _)| n + 1)
        .collect()
}

/// Whether the `unsafe {` block opened at line `n` (1-based) has a
/// `// SAFETY:` comment on its line or in the lines just above it.
fn says_why(lines: &[&str], n: usize) -> bool {
    let line = lines[n - 1];
    !line.contains("unsafe {")
        || line.contains("SAFETY:")
        || lines[..n - 1]
            .iter()
            .rev()
            .take(8)
            .take_while(|l| !l.trim().is_empty())
            .any(|l| l.contains("SAFETY:"))
}

#[test]
fn unsafe_code_lives_only_in_the_loader_and_the_sdk_ffi_layer_and_says_why() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for root in [
        "src/lib.rs",
        "src/main.rs",
        "plugins/sdk/src/lib.rs",
        "plugins/wsgi/src/lib.rs",
    ] {
        let text = fs::read_to_string(manifest.join(root)).unwrap();
        assert!(
            text.contains("#![deny(unsafe_code)]"),
            "{root} must deny unsafe_code"
        );
    }
    let allowed = [
        manifest.join("src/components/plugin"),
        manifest.join("plugins/sdk/src/abi.rs"),
        manifest.join("plugins/sdk/src/ffi.rs"),
        // The WSGI bridge's libpython promotion (dlopen RTLD_GLOBAL).
        manifest.join("plugins/wsgi/src/ffi.rs"),
    ];
    let mut files = Vec::new();
    sources(&manifest.join("src"), &mut files);
    sources(&manifest.join("plugins/sdk/src"), &mut files);
    sources(&manifest.join("plugins/wsgi/src"), &mut files);
    let mut wrong = Vec::new();
    let mut found = 0;
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let rel = file.strip_prefix(manifest).unwrap().display();
        let inside = allowed.iter().any(|a| file.starts_with(a));
        for n in unsafe_lines(&text) {
            if !inside {
                wrong.push(format!(
                    "{rel}:{n}: unsafe outside the loader and the SDK's FFI layer"
                ));
            } else if !says_why(&lines, n) {
                wrong.push(format!("{rel}:{n}: an unsafe block with no SAFETY comment"));
            } else {
                found += 1;
            }
        }
    }
    assert!(
        found > 0,
        "the scan found no unsafe code at all, even in the loader"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_unsafe_scan_sees_unsafe_code_and_missing_reasons() {
    let text = "let x = unsafe { f() };\n// unsafe { in a comment }\nEvent::BypassUnsafePath\npub unsafe fn g() {}\nlet s = \"unsafe\";\n#[unsafe(no_mangle)]\n";
    assert_eq!(unsafe_lines(text), vec![1, 4]);
    let lines = [
        "fn f() {",
        "    // SAFETY: g has no preconditions.",
        "    unsafe { g() }",
        "}",
        "",
        "    unsafe { h() }",
    ];
    assert!(says_why(&lines, 3));
    assert!(!says_why(&lines, 6));
}

#[test]
fn the_checker_sees_an_upward_import() {
    let text = "use crate::core::Body;\nuse crate::edge::server; // no\n// crate::assembly in a comment\nuse crate::components_x;\n";
    assert_eq!(upward_imports(text, 1), vec![(2, "edge")]);
    assert!(upward_imports(text, 3).is_empty());
}
