//! `flagger-rs plan FILE --replay SERIES.csv` as a user runs it on a recording.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn recording(test: &str, canary_latency: f64, canary_errors: u32, intervals: u32) -> PathBuf {
    let mut text = String::from("interval,metric,side,value,total\n");
    for i in 1..=intervals {
        for k in 0..12 {
            let jitter = f64::from(k % 5);
            text.push_str(&format!("{i},latency,canary,{}\n", canary_latency + jitter));
            text.push_str(&format!("{i},latency,primary,{}\n", 100.0 + jitter));
        }
        text.push_str(&format!(
            "{i},errors,canary,{canary_errors},2000\n{i},errors,primary,4,2000\n"
        ));
    }
    let file = std::env::temp_dir().join(format!(
        "flagger-rs-replay-{}-{test}.csv",
        std::process::id()
    ));
    std::fs::write(&file, text).unwrap();
    file
}

fn replay(series: &Path) -> Output {
    let canary = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/canary.yaml");
    Command::new(env!("CARGO_BIN_EXE_flagger-rs"))
        .args([
            "plan",
            canary.to_str().unwrap(),
            "--replay",
            series.to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_canary_like_its_primary_would_promote() {
    let text = stdout(&replay(&recording("healthy", 100.0, 4, 30)));
    assert!(text.contains("threshold 5"), "{text}");
    assert!(
        text.contains("Outcome: would promote at interval"),
        "{text}"
    );
    assert!(!text.contains(" Fail "), "{text}");
}

#[test]
fn twenty_percent_slower_rolls_back_at_the_threshold() {
    // Well inside the example's fixed 500 ms limit, and still rolled back.
    let text = stdout(&replay(&recording("slower", 120.0, 4, 30)));
    assert!(
        text.contains("Outcome: would roll back at interval 5"),
        "{text}"
    );
    assert!(text.contains("latency High"), "{text}");
}

#[test]
fn five_times_the_errors_rolls_back() {
    let text = stdout(&replay(&recording("errors", 100.0, 20, 30)));
    assert!(text.contains("Outcome: would roll back"), "{text}");
    assert!(text.contains("errors High"), "{text}");
}

#[test]
fn a_short_recording_is_undecided_and_a_bad_row_is_named() {
    let text = stdout(&replay(&recording("short", 100.0, 4, 2)));
    assert!(
        text.contains("undecided when the recording ends: 2 of"),
        "{text}"
    );

    let bad =
        std::env::temp_dir().join(format!("flagger-rs-replay-{}-bad.csv", std::process::id()));
    std::fs::write(&bad, "1,latency,baseline,3\n").unwrap();
    let out = replay(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("baseline"), "{err}");
}
