//! The starting points: every manifest of the repository's examples and the every-field
//! fixtures, as documents and as text; the templates they hold.

use std::path::{Path, PathBuf};

use flagger_api::decode::{is_flagger_document, parse_documents};
use serde_json::Value;

pub struct Seeds {
    /// Every document, donors of subtrees.
    pub documents: Vec<Value>,
    /// The flagger.app objects among them, where mutation starts.
    pub objects: Vec<Value>,
    pub texts: Vec<Vec<u8>>,
    pub templates: Vec<String>,
}

/// The directories searched when none is named: the examples and the decoder's fixtures.
pub fn default_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    vec![
        root.join("examples"),
        root.join("crates/api/tests/fixtures"),
    ]
}

pub fn load(dirs: &[PathBuf]) -> Result<Seeds, String> {
    let mut seeds = Seeds {
        documents: Vec::new(),
        objects: Vec::new(),
        texts: Vec::new(),
        templates: Vec::new(),
    };
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            if !file.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                continue;
            }
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let docs = parse_documents(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            for doc in &docs {
                collect_templates(doc, &mut seeds.templates);
                if is_flagger_document(doc) {
                    seeds.objects.push(doc.clone());
                }
            }
            seeds.documents.extend(docs);
            seeds.texts.push(bytes);
        }
    }
    if seeds.objects.is_empty() {
        return Err("no flagger.app manifests among the seeds".into());
    }
    Ok(seeds)
}

/// Every string that holds a template action: queries, message templates.
fn collect_templates(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.contains("{{") => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_templates(i, out)),
        Value::Object(m) => m.values().for_each(|i| collect_templates(i, out)),
        _ => {}
    }
}
