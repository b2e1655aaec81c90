//! Errors of loading and compiling rule files, and the place in a file they point at.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A place in a rule file: the file's name as given to the loader, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Why a rule file could not be loaded or compiled. Every variant but [`Error::Io`] names the
/// place (`file:line:column`) and the offending text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read rule file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{at}: invalid YAML: {message}")]
    Yaml { at: Location, message: String },
    /// The YAML is valid but an item is not a valid rule, macro or list.
    #[error("{at}: {message}")]
    Schema { at: Location, message: String },
    /// A condition or output does not parse. `token` is the offending text (empty at the end).
    #[error("{at}: syntax error at {token:?}: {message}")]
    Syntax {
        at: Location,
        token: String,
        message: String,
    },
    /// A condition names a field that Falco and Rampart do not know.
    #[error("{at}: unknown field {field:?}{hint}")]
    UnknownField {
        at: Location,
        field: String,
        /// `" (did you mean ...?)"` or empty.
        hint: String,
    },
    /// A value or operator does not fit the field's type (`proc.pid = abc`, `proc.pid contains 1`).
    #[error("{at}: {field} {op} {value:?}: {message}")]
    Type {
        at: Location,
        field: String,
        op: String,
        value: String,
        message: String,
    },
    /// A condition refers to a macro that is not defined, or macros refer to each other in a loop.
    #[error("{at}: {message} {name:?}")]
    Macro {
        at: Location,
        name: String,
        message: &'static str,
    },
    /// `append` or `override` of a rule, macro or list that no earlier file defined.
    #[error("{at}: {kind} {name:?} has {how} but no earlier definition")]
    NothingToAppend {
        at: Location,
        kind: &'static str,
        name: String,
        how: &'static str,
    },
}

impl Error {
    /// The place the error points at, when it has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Io { .. } => None,
            Error::Yaml { at, .. }
            | Error::Schema { at, .. }
            | Error::Syntax { at, .. }
            | Error::UnknownField { at, .. }
            | Error::Type { at, .. }
            | Error::Macro { at, .. }
            | Error::NothingToAppend { at, .. } => Some(at),
        }
    }
}
