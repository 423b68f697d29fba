//! Located errors: every bad-config fixture names its file, line and key and
//! says what is allowed; the error's display; an unreadable file.

use std::path::{Path, PathBuf};

use tftproxy::config::{Config, ConfigError};

/// Bad configurations are fixture files, one per case: `tests/fixtures/
/// bad-config/<case>.toml` is the whole configuration, headed by comments
/// stating what the error must say (format in the README there):
///
/// ```text
/// # expect-key: tftp.max_block_size
/// # expect-line: 6
/// # expect-message: must be between 512 and 65464, got 70000
/// ```
///
/// The line counts the header: it is the real line of the file. Every case is
/// plain text, so none is left in code (`root-is-a-file.toml` names
/// `Cargo.toml`, found in the crate root where `cargo test` runs).
const BAD_CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bad-config");

/// The number of cases when they moved to files; fewer means files were lost.
const MIN_BAD_CONFIGS: usize = 72;

/// What a fixture's header says the error is.
struct Expectation {
    key: String,
    line: usize,
    message: String,
}

/// Reads the `# expect-FIELD: value` lines that open a fixture.
fn read_expectation(text: &str) -> Result<Expectation, String> {
    let (mut key, mut line, mut message) = (None, None, None);
    for header in text.lines() {
        let Some(rest) = header.strip_prefix("# expect-") else {
            break;
        };
        let Some((field, value)) = rest.split_once(':') else {
            return Err(format!("header line without `:`: {header:?}"));
        };
        let slot = match field {
            "key" => &mut key,
            "line" => &mut line,
            "message" => &mut message,
            _ => return Err(format!("unknown header field `expect-{field}`")),
        };
        if slot.replace(value.trim().to_owned()).is_some() {
            return Err(format!("`expect-{field}` given twice"));
        }
    }
    let missing = |field: &str| format!("header has no `# expect-{field}:` line");
    let line = line.ok_or_else(|| missing("line"))?;
    Ok(Expectation {
        key: key.ok_or_else(|| missing("key"))?,
        line: line
            .parse()
            .map_err(|_| format!("`expect-line` is not a line number: {line:?}"))?,
        message: message.ok_or_else(|| missing("message"))?,
    })
}

#[test]
fn bad_configs_name_key_line_and_what_is_allowed() {
    let dir = Path::new(BAD_CONFIG_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= MIN_BAD_CONFIGS,
        "{}: {} fixtures, expected at least {MIN_BAD_CONFIGS}",
        dir.display(),
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                failures.push(format!("{name}: cannot read: {e}"));
                continue;
            }
        };
        let expect = match read_expectation(&text) {
            Ok(expect) => expect,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if name.starts_with("crlf-") && !text.contains("\r\n") {
            failures.push(format!("{name}: has lost its CRLF line endings"));
        }
        match Config::parse(&text, file) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(ConfigError::Invalid {
                path,
                line,
                key,
                message,
            }) => {
                if path != *file {
                    failures.push(format!("{name}: error names path {}", path.display()));
                }
                if key != expect.key || line != expect.line || !message.contains(&expect.message) {
                    failures.push(format!(
                        "{name}:\n  expected {}: {}: …{}…\n  got      {line}: {key}: {message}",
                        expect.line, expect.key, expect.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: unexpected error {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures in {} failed:\n{}",
        failures.len(),
        files.len(),
        dir.display(),
        failures.join("\n")
    );
}

#[test]
fn error_display_names_file_line_key() {
    let err = Config::parse(
        "[tftp]\n\nmax_block_size = 70000\n",
        Path::new("config/x.toml"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "config/x.toml:3: tftp.max_block_size: must be between 512 and 65464, got 70000"
    );
}

#[test]
fn load_of_missing_file_is_a_read_error() {
    let err = Config::load(Path::new("/nonexistent/tftproxy.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("/nonexistent/tftproxy.toml: cannot read"));
}
