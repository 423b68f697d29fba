//! Locating keys in the text: dotted path → line (for validation errors),
//! error span → dotted path (for serde errors), and a best-effort key for
//! TOML syntax errors.

use std::collections::HashMap;
use std::ops::Range;

pub(super) struct Locator {
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// (path, span of the key or, for array elements, of the value).
    spans: Vec<(String, Range<usize>)>,
    /// path → 1-based line.
    lines: HashMap<String, usize>,
}

impl Locator {
    pub(super) fn new(text: &str, doc: &toml_edit::ImDocument<&str>) -> Locator {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut loc = Locator {
            line_starts,
            spans: Vec::new(),
            lines: HashMap::new(),
        };
        loc.walk_table(doc.as_table(), "");
        loc
    }

    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    /// Records `path`; its line is that of the first span given.
    fn record(&mut self, path: &str, spans: &[Option<Range<usize>>]) {
        let mut first = true;
        for span in spans.iter().flatten() {
            if first {
                let line = self.line(span.start);
                self.lines.entry(path.to_owned()).or_insert(line);
                first = false;
            }
            self.spans.push((path.to_owned(), span.clone()));
        }
    }

    fn walk_table(&mut self, table: &toml_edit::Table, prefix: &str) {
        for (k, item) in table.iter() {
            let path = join(prefix, k);
            let key_span = table.key(k).and_then(|k| k.span());
            // A table's line is its header's; a key-value's the key's.
            let spans = match item {
                toml_edit::Item::Table(t) if t.span().is_some() => [t.span(), key_span],
                _ => [key_span, item.span()],
            };
            self.record(&path, &spans);
            self.walk_item(item, &path);
        }
    }

    fn walk_item(&mut self, item: &toml_edit::Item, path: &str) {
        match item {
            toml_edit::Item::Table(t) => self.walk_table(t, path),
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    let p = format!("{path}[{}]", i + 1);
                    self.record(&p, &[t.span()]);
                    self.walk_table(t, &p);
                }
            }
            toml_edit::Item::Value(v) => self.walk_value(v, path),
            toml_edit::Item::None => {}
        }
    }

    fn walk_value(&mut self, value: &toml_edit::Value, path: &str) {
        match value {
            toml_edit::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    let p = format!("{path}[{}]", i + 1);
                    self.record(&p, &[v.span()]);
                    self.walk_value(v, &p);
                }
            }
            toml_edit::Value::InlineTable(t) => {
                for (k, v) in t.iter() {
                    let p = join(path, k);
                    self.record(&p, &[t.key(k).and_then(|k| k.span()), v.span()]);
                    self.walk_value(v, &p);
                }
            }
            _ => {}
        }
    }

    /// The line of `path`, or of its nearest present ancestor (a table
    /// header), or 1.
    pub(super) fn line_of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(&line) = self.lines.get(p) {
                return line;
            }
            match p.rfind(['.', '[']) {
                Some(i) if i > 0 => p = &p[..i],
                _ => return 1,
            }
        }
    }

    /// The most specific key whose span contains the start of `span`.
    pub(super) fn key_at(&self, span: &Range<usize>) -> Option<String> {
        self.spans
            .iter()
            .filter(|(_, s)| s.start <= span.start && (span.start < s.end || s.start == span.start))
            .min_by_key(|(_, s)| s.end - s.start)
            .map(|(p, _)| p.clone())
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(super) fn line_of_offset(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Best-effort key for a TOML syntax error at `offset`: the table header in
/// force and the last `key =` at or before the error's line.
pub(super) fn syntax_error_key(text: &str, offset: usize) -> String {
    let error_line = line_of_offset(text, offset);
    let mut table = String::new();
    let mut key: Option<String> = None;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in text.lines().take(error_line) {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("[[") {
            let name = rest.split("]]").next().unwrap_or("").trim().to_owned();
            let n = counts.entry(name.clone()).or_insert(0);
            *n += 1;
            table = format!("{name}[{n}]");
            key = None;
        } else if let Some(rest) = t.strip_prefix('[') {
            table = rest.split(']').next().unwrap_or("").trim().to_owned();
            key = None;
        } else if let Some((k, _)) = t.split_once('=') {
            let k = k.trim();
            if !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            {
                key = Some(k.to_owned());
            }
        }
    }
    match key {
        Some(k) => join(&table, &k),
        None if !table.is_empty() => table,
        None => "(document)".into(),
    }
}
