//! docs/flagger-scenarios.md maps each of Flagger's end-to-end scripts to the test of ours that covers it, or
//! says why none can. The page is only worth reading if its names are real: every test it names must exist, and
//! every row must either name one, say it is pending on a router being written, or give a reason. Runs without a
//! cluster.

use anyhow::{Context as _, ensure};

const DOC: &str = "docs/flagger-scenarios.md";

/// One table row: the script, and the backquoted `path.rs::test` references of its last cell.
struct Row {
    script: String,
    last_cell: String,
}

fn rows(doc: &str) -> Vec<Row> {
    doc.lines()
        .filter(|l| l.starts_with("| `test/"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            let script = cells.first()?.trim_matches('`').to_string();
            let last_cell = cells.last()?.to_string();
            Some(Row { script, last_cell })
        })
        .collect()
}

/// `(file, test)` for every backquoted `<file>.rs::<test>` in `text`.
fn references(text: &str) -> Vec<(String, String)> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| {
            let (file, test) = quoted.rsplit_once("::")?;
            file.ends_with(".rs")
                .then(|| (file.to_string(), test.to_string()))
        })
        .collect()
}

#[test]
fn every_named_test_exists_and_every_row_says_something() -> anyhow::Result<()> {
    let path = e2e::repo_path(DOC);
    let doc =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let rows = rows(&doc);
    ensure!(
        rows.len() >= 20,
        "only {} scenario rows in {DOC}",
        rows.len()
    );
    let mut scripts = std::collections::BTreeSet::new();
    for row in &rows {
        ensure!(
            row.script.ends_with(".sh") && row.script.contains("/test-"),
            "{}: not a scenario script path",
            row.script
        );
        ensure!(
            scripts.insert(row.script.clone()),
            "{} is listed twice",
            row.script
        );
        let refs = references(&row.last_cell);
        ensure!(
            !refs.is_empty()
                || row.last_cell.starts_with("pending: ")
                || row.last_cell.starts_with("cannot run here"),
            "{}: names no test, is not pending and gives no reason: {:?}",
            row.script,
            row.last_cell
        );
        for (file, test) in refs {
            ensure_test_exists(&row.script, &file, &test)?;
        }
    }
    Ok(())
}

fn ensure_test_exists(context: &str, file: &str, test: &str) -> anyhow::Result<()> {
    let source = std::fs::read_to_string(e2e::repo_path(file))
        .with_context(|| format!("{context}: reading {file}"))?;
    ensure!(
        source.contains(&format!("fn {test}(")),
        "{context}: {file} has no fn {test}"
    );
    Ok(())
}

/// The page also names tests in its prose; those must exist too (the legend's `<file>.rs::<test>` is a
/// placeholder).
#[test]
fn every_test_named_anywhere_on_the_page_exists() -> anyhow::Result<()> {
    let doc =
        std::fs::read_to_string(e2e::repo_path(DOC)).with_context(|| format!("reading {DOC}"))?;
    for line in doc.lines() {
        let refs = references(line)
            .into_iter()
            .filter(|(file, _)| !file.contains('<'));
        for (file, test) in refs {
            ensure_test_exists(DOC, &file, &test)?;
        }
    }
    Ok(())
}

#[test]
fn references_are_read_from_backquotes_only() {
    let cell = "part: `tests/e2e/tests/a.rs::one` and `tests/e2e/tests/b.rs::two`; \
                not `kubectl get` nor a.rs::three";
    let refs = references(cell);
    assert_eq!(
        refs,
        vec![
            ("tests/e2e/tests/a.rs".to_string(), "one".to_string()),
            ("tests/e2e/tests/b.rs".to_string(), "two".to_string()),
        ]
    );
}
