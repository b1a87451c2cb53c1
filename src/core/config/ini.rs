//! The INI dialect of Paste Deploy (Python's ConfigParser as Paste sets it up).
//!
//! Rules: section headers `[text]` kept exactly as written (case-sensitive);
//! `key = value` or `key: value`, split at the first `=` or `:`, key right-trimmed,
//! value trimmed; case-sensitive keys; whole-line comments only (`#` or `;` as the
//! first non-blank character), also inside multi-line values, where they are dropped;
//! a line indented deeper than its key's line continues the value (joined with
//! `\n`, inner blank lines kept, trailing ones dropped); duplicate sections and
//! duplicate keys in a section are errors.
//!
//! Why not rust-ini: it records no line numbers (every error here must name
//! file:line), keeps duplicate keys silently as multi-values, and with indented
//! multi-line values on it folds indented comment lines into the value. Those are
//! exactly the places this dialect differs, so a small parser written to the rules
//! above is simpler than wrapping it and re-scanning the file for positions.

use std::fmt;
use std::path::{Path, PathBuf};

/// A parsed file: its sections in order.
#[derive(Debug, Clone)]
pub struct IniFile {
    pub path: PathBuf,
    pub sections: Vec<Section>,
}

/// One `[header]` and its entries, in file order.
#[derive(Debug, Clone)]
pub struct Section {
    /// The text between the brackets, exactly as written.
    pub header: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// One key and its (raw, uninterpolated) value.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A syntax error, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

impl std::error::Error for SyntaxError {}

impl IniFile {
    /// Parse `text`, naming `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<IniFile, SyntaxError> {
        Parser {
            path,
            sections: Vec::new(),
            open_key: None,
        }
        .run(text)
    }

    /// The section with this exact header.
    pub fn section(&self, header: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.header == header)
    }
}

impl Section {
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.as_str())
    }

    /// The entry of a key.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// The key whose value may still take continuation lines.
struct OpenKey {
    indent: usize,
    /// Blank lines seen since the last continuation, kept only if more text follows.
    pending_blank: usize,
}

struct Parser<'a> {
    path: &'a Path,
    sections: Vec<Section>,
    open_key: Option<OpenKey>,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

impl Parser<'_> {
    fn error(&self, line: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            path: self.path.to_owned(),
            line,
            message: message.into(),
        }
    }

    fn run(mut self, text: &str) -> Result<IniFile, SyntaxError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                if let Some(open) = &mut self.open_key {
                    open.pending_blank += 1;
                }
                continue;
            }
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let indent = indent_of(raw);
            if let Some(open) = &self.open_key {
                if indent > open.indent {
                    let blanks = open.pending_blank;
                    self.continue_value(trimmed, blanks);
                    continue;
                }
            }
            self.open_key = None;
            if trimmed.starts_with('[') {
                let header = self.section_header(trimmed, number)?;
                self.start_section(header, number)?;
                continue;
            }
            self.start_entry(trimmed, indent, number)?;
        }
        Ok(IniFile {
            path: self.path.to_owned(),
            sections: self.sections,
        })
    }

    /// The header of a line that starts with `[`: up to its last `]`, as
    /// ConfigParser reads it, followed by nothing or by a comment. Anything
    /// else is an error here, where ConfigParser would read a missing `]` as
    /// a key and report it (if at all) against another section.
    fn section_header<'t>(&self, text: &'t str, line: usize) -> Result<&'t str, SyntaxError> {
        let Some(close) = text.rfind(']') else {
            return Err(self.error(
                line,
                format!("malformed section header {text:?}: missing the closing `]`"),
            ));
        };
        let after = text[close + 1..].trim_start();
        if !(after.is_empty() || after.starts_with(';') || after.starts_with('#')) {
            return Err(self.error(
                line,
                format!("malformed section header {text:?}: text after the closing `]`"),
            ));
        }
        Ok(&text[1..close])
    }

    fn start_section(&mut self, header: &str, line: usize) -> Result<(), SyntaxError> {
        if header.is_empty() {
            return Err(self.error(line, "empty section header `[]`"));
        }
        if let Some(first) = self.sections.iter().find(|s| s.header == header) {
            return Err(self.error(
                line,
                format!(
                    "duplicate section [{header}] (first defined at line {})",
                    first.line
                ),
            ));
        }
        self.sections.push(Section {
            header: header.to_owned(),
            line,
            entries: Vec::new(),
        });
        Ok(())
    }

    fn start_entry(&mut self, text: &str, indent: usize, line: usize) -> Result<(), SyntaxError> {
        let Some(split) = text.find(['=', ':']) else {
            return Err(self.error(
                line,
                format!("expected `key = value` or a [section], found {text:?}"),
            ));
        };
        let key = text[..split].trim_end();
        let value = text[split + 1..].trim();
        if key.is_empty() {
            return Err(self.error(line, format!("a value with no key: {text:?}")));
        }
        let path = self.path.to_owned();
        let Some(section) = self.sections.last_mut() else {
            return Err(SyntaxError {
                path,
                line,
                message: format!("key `{key}` before the first [section] header"),
            });
        };
        if let Some(first) = section.entries.iter().find(|e| e.key == key) {
            return Err(SyntaxError {
                path,
                line,
                message: format!(
                    "duplicate key `{key}` in [{}] (first set at line {})",
                    section.header, first.line
                ),
            });
        }
        section.entries.push(Entry {
            key: key.to_owned(),
            value: value.to_owned(),
            line,
        });
        self.open_key = Some(OpenKey {
            indent,
            pending_blank: 0,
        });
        Ok(())
    }

    fn continue_value(&mut self, text: &str, blanks: usize) {
        let entry = self
            .sections
            .last_mut()
            .and_then(|s| s.entries.last_mut())
            .expect("an open key always has an entry");
        for _ in 0..blanks {
            entry.value.push('\n');
        }
        entry.value.push('\n');
        entry.value.push_str(text);
        if let Some(open) = &mut self.open_key {
            open.pending_blank = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> IniFile {
        IniFile::parse(Path::new("t.ini"), text).unwrap()
    }

    fn err(text: &str) -> String {
        IniFile::parse(Path::new("t.ini"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn keys_split_at_first_delimiter_and_keep_case() {
        let f = parse("[app:main]\nKey = a\nkey: b\nhttp://x/ = app\nempty =\n");
        let s = f.section("app:main").unwrap();
        assert_eq!(s.get("Key"), Some("a"));
        assert_eq!(s.get("key"), Some("b"));
        assert_eq!(s.get("http"), Some("//x/ = app"));
        assert_eq!(s.get("empty"), Some(""));
    }

    #[test]
    fn no_inline_comments_and_comment_lines_dropped_inside_values() {
        let f =
            parse("[s]\na = x ; y\nb = v # c\npipeline = one\n  # gone\n  two\n\n  three\n\n[t]\n");
        let s = f.section("s").unwrap();
        assert_eq!(s.get("a"), Some("x ; y"));
        assert_eq!(s.get("b"), Some("v # c"));
        assert_eq!(s.get("pipeline"), Some("one\ntwo\n\nthree"));
    }

    #[test]
    fn value_starting_on_next_line_starts_with_newline() {
        let f = parse("[s]\nk =\n    a\n    b\n");
        assert_eq!(f.section("s").unwrap().get("k"), Some("\na\nb"));
    }

    #[test]
    fn headers_are_exact_and_lines_are_recorded() {
        let f = parse("# c\n[app: main ]\n\nx = 1\n");
        let s = &f.sections[0];
        assert_eq!(s.header, "app: main ");
        assert_eq!(s.line, 2);
        assert_eq!(s.entries[0].line, 4);
    }

    #[test]
    fn a_malformed_section_header_is_an_error_at_its_line() {
        assert_eq!(
            err("[app:main]\nx = 1\n[filter:auth\ny = 2\n"),
            "t.ini:3: malformed section header \"[filter:auth\": missing the closing `]`"
        );
        assert_eq!(
            err("[app:main\n"),
            "t.ini:1: malformed section header \"[app:main\": missing the closing `]`"
        );
        assert_eq!(
            err("[app:main] use = egg:x\n"),
            "t.ini:1: malformed section header \"[app:main] use = egg:x\": text after the closing `]`"
        );
    }

    #[test]
    fn a_header_may_end_in_a_comment_and_keeps_inner_brackets() {
        let f = parse("[app:main] ; the app\n[filter:a]b] # x\n");
        assert_eq!(f.sections[0].header, "app:main");
        assert_eq!(f.sections[1].header, "filter:a]b");
    }

    #[test]
    fn errors_name_file_and_line() {
        assert_eq!(
            err("x = 1\n"),
            "t.ini:1: key `x` before the first [section] header"
        );
        assert_eq!(
            err("[a]\n[a]\n"),
            "t.ini:2: duplicate section [a] (first defined at line 1)"
        );
        assert_eq!(
            err("[a]\nk = 1\nk = 2\n"),
            "t.ini:3: duplicate key `k` in [a] (first set at line 2)"
        );
        assert!(err("[a]\njunk\n").starts_with("t.ini:2: expected `key = value`"));
    }

    #[test]
    fn indented_header_after_blank_is_still_a_continuation_of_an_open_key() {
        // ConfigParser treats a deeper-indented line as a continuation, even `[x]`.
        let f = parse("[a]\nk = 1\n  [x]\n[b]\n");
        assert_eq!(f.section("a").unwrap().get("k"), Some("1\n[x]"));
        assert!(f.section("b").is_some());
    }
}
