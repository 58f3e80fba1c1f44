//! Reporting every problem of a configuration file, each with its line and key.
//!
//! serde stops at the first error, so each `section.key` is first deserialized on its own (a
//! document holding just that key): each bad key yields its own error, and the line comes from
//! `toml_edit`'s spans. Only a file whose every key passes is deserialized whole.

use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One or more problems; `Display` prints one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn single(error: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn line_at(text: &str, span: Option<Range<usize>>) -> Option<usize> {
    let offset = span?.start.min(text.len());
    Some(text[..offset].matches('\n').count() + 1)
}

/// The span of `section.key` (or of `section` alone) in the document.
fn key_span(
    doc: &toml_edit::ImDocument<&str>,
    section: &str,
    key: Option<&str>,
) -> Option<Range<usize>> {
    // A nested section ("storage.s3") is a table in its parent's.
    let (parents, last) = match section.rsplit_once('.') {
        Some((parents, last)) => (Some(parents), last),
        None => (None, section),
    };
    let mut table = doc.as_table();
    for name in parents.into_iter().flat_map(|p| p.split('.')) {
        table = table.get(name)?.as_table()?;
    }
    match key {
        None => table.key(last)?.span(),
        Some(key) => table.get(last)?.as_table()?.key(key)?.span(),
    }
}

/// The span of `section[index].key` in an array of tables (`[[retention]]`).
fn array_key_span(
    doc: &toml_edit::ImDocument<&str>,
    section: &str,
    index: usize,
    key: Option<&str>,
) -> Option<Range<usize>> {
    let table = doc
        .as_table()
        .get(section)?
        .as_array_of_tables()?
        .get(index)?;
    match key {
        Some(key) => table.key(key)?.span().or_else(|| table.span()),
        None => table.span(),
    }
}

/// Finds where a key is written, for errors found after deserialization (a missing or
/// contradictory value).
pub(super) struct Locator<'a> {
    text: &'a str,
    origin: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
}

impl Locator<'_> {
    /// An error about `section.key`, or about `section` when `key` is None.
    pub fn error(
        &self,
        section: &str,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> ConfigError {
        let span = self
            .doc
            .as_ref()
            .and_then(|d| key_span(d, section, key).or_else(|| key_span(d, section, None)));
        ConfigError {
            origin: self.origin.to_owned(),
            line: line_at(self.text, span),
            key: Some(match key {
                Some(key) => format!("{section}.{key}"),
                None => section.to_owned(),
            }),
            message: message.into(),
        }
    }
}

impl Locator<'_> {
    /// An error about `section[index].key` of an array of tables.
    pub fn error_in_array(
        &self,
        section: &str,
        index: usize,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let span = self
            .doc
            .as_ref()
            .and_then(|d| array_key_span(d, section, index, Some(key)));
        // toml_edit keeps no span for an array element's header: find the n-th one.
        let header = format!("[[{section}]]");
        let header_line = || {
            self.text
                .lines()
                .enumerate()
                .filter(|(_, line)| line.trim_start().starts_with(&header))
                .nth(index)
                .map(|(number, _)| number + 1)
        };
        ConfigError {
            origin: self.origin.to_owned(),
            line: line_at(self.text, span).or_else(header_line),
            key: Some(format!("{section}[{index}].{key}")),
            message: message.into(),
        }
    }
}

pub(super) fn deserialize_reporting_every_key<'a, T: DeserializeOwned>(
    text: &'a str,
    origin: &'a str,
) -> Result<(T, Locator<'a>), ConfigErrors> {
    let error = |line, key: Option<String>, message: String| ConfigError {
        origin: origin.to_owned(),
        line,
        key,
        message,
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        ConfigErrors::single(error(line_at(text, e.span()), None, e.message().to_owned()))
    })?;
    let doc = toml_edit::ImDocument::parse(text).ok();
    let span =
        |section: &str, key: Option<&str>| doc.as_ref().and_then(|d| key_span(d, section, key));
    let doc_span_in_array = |section: &str, index: usize, key: Option<&str>| {
        doc.as_ref()
            .and_then(|d| array_key_span(d, section, index, key))
    };

    let mut errors = Vec::new();
    for (section, value) in &table {
        // An unknown section is one error, not one per key inside it.
        let mut empty = toml::Table::new();
        empty.insert(section.clone(), toml::Value::Table(toml::Table::new()));
        if let Err(e) = T::deserialize(toml::Value::Table(empty)) {
            if e.message().starts_with("unknown field") {
                let line = line_at(text, span(section, None));
                errors.push(error(line, Some(section.clone()), e.message().to_owned()));
                continue;
            }
        }
        if let toml::Value::Array(elements) = value {
            // An array of tables (`[[retention]]`): each key of each element on its own.
            for (index, element) in elements.iter().enumerate() {
                for (key, partial) in one_key_each(element) {
                    let mut doc = toml::Table::new();
                    doc.insert(section.clone(), toml::Value::Array(vec![partial]));
                    if let Err(e) = T::deserialize(toml::Value::Table(doc)) {
                        let span = doc_span_in_array(section, index, key);
                        errors.push(error(
                            line_at(text, span),
                            Some(match key {
                                Some(key) => format!("{section}[{index}].{key}"),
                                None => format!("{section}[{index}]"),
                            }),
                            e.message().to_owned(),
                        ));
                    }
                }
            }
            continue;
        }
        for (key, partial) in one_key_each(value) {
            let mut doc = toml::Table::new();
            doc.insert(section.clone(), partial);
            if let Err(e) = T::deserialize(toml::Value::Table(doc)) {
                let name = match key {
                    Some(key) => format!("{section}.{key}"),
                    None => section.clone(),
                };
                errors.push(error(
                    line_at(text, span(section, key)),
                    Some(name),
                    e.message().to_owned(),
                ));
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(ConfigErrors(errors));
    }
    let value = T::deserialize(toml::Value::Table(table))
        .map_err(|e| ConfigErrors::single(error(None, None, e.message().to_owned())))?;
    Ok((value, Locator { text, origin, doc }))
}

impl Locator<'_> {
    /// An error about `key` of entry `index` of an array of tables (`[[access]]` is
    /// `path = ["access"]`, `[[auth.groups]]` is `["auth", "groups"]`), at the key's line or,
    /// without it, the entry's.
    pub fn error_in_entry(
        &self,
        path: &[&str],
        index: usize,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (entry_line, key_line) = self.entry_lines(path, index, key);
        ConfigError {
            origin: self.origin.to_owned(),
            line: key_line.or(entry_line),
            key: Some(format!("{}[{}].{key}", path.join("."), index + 1)),
            message: message.into(),
        }
    }

    /// `file:line` of entry `index` of an array of tables, for messages that point at a rule.
    pub fn entry_origin(&self, path: &[&str], index: usize) -> String {
        match self.entry_lines(path, index, "").0 {
            Some(line) => format!("{}:{line}", self.origin),
            None => self.origin.to_owned(),
        }
    }

    /// The lines of an entry and of one of its keys, whether the array is written as `[[…]]`
    /// tables or inline (`groups = [{ name = "ci", … }]`).
    fn entry_lines(
        &self,
        path: &[&str],
        index: usize,
        key: &str,
    ) -> (Option<usize>, Option<usize>) {
        let Some(doc) = self.doc.as_ref() else {
            return (None, None);
        };
        let mut item = doc.as_item();
        for part in path {
            match item.get(part) {
                Some(inner) => item = inner,
                None => return (None, None),
            }
        }
        let (entry, key_span) = if let Some(tables) = item.as_array_of_tables() {
            let Some(table) = tables.get(index) else {
                return (None, None);
            };
            (table.span(), table.key(key).and_then(|k| k.span()))
        } else if let Some(table) = item
            .as_array()
            .and_then(|a| a.get(index))
            .and_then(|v| v.as_inline_table())
        {
            (table.span(), table.key(key).and_then(|k| k.span()))
        } else {
            (None, None)
        };
        (line_at(self.text, entry), line_at(self.text, key_span))
    }
}

/// A table split into one-key tables, each with its key, so every key is checked on its own
/// (and blamed on its own line); anything else, whole, with no key.
fn one_key_each(value: &toml::Value) -> Vec<(Option<&str>, toml::Value)> {
    match value {
        toml::Value::Table(inner) if !inner.is_empty() => inner
            .iter()
            .map(|(key, v)| {
                let mut one = toml::Table::new();
                one.insert(key.clone(), v.clone());
                (Some(key.as_str()), toml::Value::Table(one))
            })
            .collect(),
        other => vec![(None, other.clone())],
    }
}
