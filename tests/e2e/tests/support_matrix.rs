//! The README's support matrix is a claim about the tests: every proof it names must be a test that exists, the
//! kind a cell claims (traffic, api, unit) must be the kind of its proof, and every provider must have a row that
//! agrees with validation (a provider validation refuses is "not implemented" everywhere; one it accepts has a
//! proven canary or blue/green cell; a feature it refuses, such as session affinity before a router writes the
//! cookie rules, may say "not implemented"). Runs without a cluster.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail, ensure};
use flagger_api::canary::PROVIDERS;
use flagger_api::validate::provider_runs;

const KINDS: [&str; 3] = ["traffic", "api", "unit"];

struct Proof {
    kind: String,
    file: String,
    test: String,
}

fn readme() -> anyhow::Result<String> {
    let path = e2e::repo_path("README.md");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

fn section(readme: &str) -> anyhow::Result<&str> {
    let start = readme
        .find("## Support matrix")
        .context("README has no '## Support matrix' section")?;
    let rest = &readme[start + 3..];
    let end = rest.find("\n## ").map_or(rest.len(), |i| i);
    Ok(&rest[..end])
}

/// `N. kind: `path::test`` lines.
fn proofs(section: &str) -> anyhow::Result<BTreeMap<u32, Proof>> {
    let mut out = BTreeMap::new();
    for line in section.lines() {
        let Some((n, rest)) = line.split_once(". ") else {
            continue;
        };
        let Ok(n) = n.trim().parse::<u32>() else {
            continue;
        };
        let (kind, rest) = rest
            .split_once(':')
            .with_context(|| format!("proof {n} has no kind: {line}"))?;
        let reference = rest
            .split('`')
            .nth(1)
            .with_context(|| format!("proof {n} names no test in backquotes: {line}"))?;
        let (file, test) = reference
            .rsplit_once("::")
            .with_context(|| format!("proof {n}: {reference} is not path::test"))?;
        out.insert(
            n,
            Proof {
                kind: kind.trim().to_string(),
                file: file.to_string(),
                test: test.to_string(),
            },
        );
    }
    Ok(out)
}

/// Table rows: provider → cells.
fn rows(section: &str) -> BTreeMap<String, Vec<String>> {
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            let provider = cells.first()?.trim_matches('`').to_string();
            Some((provider, cells[1..].to_vec()))
        })
        .collect()
}

/// `traffic [4], progressive traffic [5]` → [("traffic", 4), ("traffic", 5)].
fn claims(cell: &str) -> anyhow::Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for part in cell.split(',') {
        let Some((before, after)) = part.split_once('[') else {
            continue;
        };
        let n: u32 = after
            .trim_end_matches(|c: char| c == ']' || c.is_whitespace())
            .parse()
            .with_context(|| format!("bad reference in cell {cell:?}"))?;
        let kind = before
            .split_whitespace()
            .last()
            .with_context(|| format!("no kind before [{n}] in cell {cell:?}"))?;
        out.push((kind.to_string(), n));
    }
    Ok(out)
}

#[test]
fn every_proof_exists_and_every_provider_has_an_honest_row() -> anyhow::Result<()> {
    let readme = readme()?;
    let section = section(&readme)?;
    let proofs = proofs(section)?;
    ensure!(!proofs.is_empty(), "no proofs listed under the matrix");
    for (n, proof) in &proofs {
        ensure!(
            KINDS.contains(&proof.kind.as_str()),
            "proof {n}: kind {:?} is not one of {KINDS:?}",
            proof.kind
        );
        let path = e2e::repo_path(&proof.file);
        let source = std::fs::read_to_string(&path)
            .with_context(|| format!("proof {n}: reading {}", path.display()))?;
        ensure!(
            source.contains(&format!("fn {}(", proof.test)),
            "proof {n}: {} has no fn {}",
            proof.file,
            proof.test
        );
    }
    let rows = rows(section);
    for provider in PROVIDERS {
        let Some(cells) = rows.get(*provider) else {
            bail!("the support matrix has no row for {provider}");
        };
        ensure!(
            cells.len() == 5,
            "{provider}: expected 5 cells, got {cells:?}"
        );
        if !provider_runs(provider) {
            ensure!(
                cells.iter().all(|c| c == "not implemented" || c == "—"),
                "{provider} is refused by validation but its row claims support: {cells:?}"
            );
            continue;
        }
        let mut proven_run = false;
        for (i, cell) in cells.iter().enumerate() {
            for (kind, n) in claims(cell)? {
                let proof = proofs
                    .get(&n)
                    .with_context(|| format!("{provider}: [{n}] is not listed under Proofs"))?;
                ensure!(
                    proof.kind == kind,
                    "{provider}: cell {cell:?} claims {kind} but proof {n} is {}",
                    proof.kind
                );
                // canary or blue/green
                if i == 0 || i == 2 {
                    proven_run = true;
                }
            }
        }
        ensure!(
            proven_run,
            "{provider} runs but neither its canary nor its blue/green cell names a proof"
        );
    }
    Ok(())
}
