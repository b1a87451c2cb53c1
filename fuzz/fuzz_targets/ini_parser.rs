//! `IniFile::parse` on arbitrary text: never panics, and every line number it
//! reports (sections, entries, errors) is a line of the input.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use plughost::config::ini::IniFile;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    let path = Path::new("fuzz.ini");
    match IniFile::parse(path, &text) {
        Ok(ini) => {
            let mut last = 0;
            for section in &ini.sections {
                assert!(
                    section.line > last && section.line <= lines,
                    "section [{}] at line {} (previous item {last}, {lines} lines)",
                    section.header,
                    section.line
                );
                last = section.line;
                for entry in &section.entries {
                    assert!(
                        entry.line > last && entry.line <= lines,
                        "key `{}` at line {} (previous item {last}, {lines} lines)",
                        entry.key,
                        entry.line
                    );
                    last = entry.line;
                    assert!(!entry.key.is_empty());
                    assert_eq!(entry.key, entry.key.trim_end());
                }
            }
        }
        Err(e) => {
            assert!(
                e.line >= 1 && e.line <= lines,
                "error at line {} of {lines}: {e}",
                e.line
            );
            assert!(e.to_string().starts_with("fuzz.ini:"), "{e}");
        }
    }
});
