//! The `--output` formats the cluster commands share, and how a result reaches stdout.

use std::io::Write;

use serde::Serialize;

use crate::cluster::CliError;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
    Yaml,
}

/// `value` as JSON or YAML (`text` is each command's own rendering).
pub fn structured<T: Serialize>(value: &T, output: Output) -> Result<String, CliError> {
    let text = match output {
        Output::Json | Output::Text => {
            serde_json::to_string_pretty(value).map_err(|e| CliError::Usage(e.to_string()))?
        }
        Output::Yaml => {
            serde_saphyr::to_string(value).map_err(|e| CliError::Usage(e.to_string()))?
        }
    };
    Ok(text)
}

/// Prints `text` with one trailing newline. A closed pipe (`| head`) is the reader's choice, not
/// an error worth reporting.
pub fn print(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{}", text.trim_end());
}
