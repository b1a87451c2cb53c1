//! `config::load` on arbitrary files: the input is `deploy.ini`, and after the
//! first NUL byte (if any) `other.ini`, which `config:other.ini` includes.
//! Never panics, always terminates (cycles are errors), and every error starts
//! with the absolute path of the file it is about.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One directory per fuzzing process, reused for every input.
fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("plughost-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let (main, other) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let dir = dir();
    let path = dir.join("deploy.ini");
    let other_path = dir.join("other.ini");
    // Lossy, so that inputs exercise the resolver rather than the UTF-8 check.
    let main = String::from_utf8_lossy(main);
    let other = other.map(String::from_utf8_lossy);
    std::fs::write(&path, main.as_bytes()).unwrap();
    match &other {
        Some(text) => std::fs::write(&other_path, text.as_bytes()).unwrap(),
        None => {
            let _ = std::fs::remove_file(&other_path);
        }
    }

    match plughost::load(&path, None, None, &[]) {
        Ok(deployment) => {
            assert_eq!(deployment.files[0], path);
            for c in deployment.app.components() {
                assert!(c.file.is_absolute(), "{}", c.location());
                assert!(c.line >= 1, "{}", c.location());
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(e.at.file.is_absolute(), "{message}");
            let file = format!("{}:", e.at.file.display());
            assert!(message.starts_with(&file), "{message}");
            // A line, when given, is a line of the file named.
            let text = if e.at.file == path {
                Some(&*main)
            } else if e.at.file == other_path {
                other.as_deref()
            } else {
                None
            };
            if let (Some(line), Some(text)) = (e.at.line, text) {
                assert!(line >= 1 && line <= text.lines().count(), "{message}");
            }
        }
    }
});
