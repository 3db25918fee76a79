//! `switchyard demo` end to end: reproducible output, every strategy reported, clear errors.
#![allow(clippy::expect_used)] // a test: failing loudly is the point

use std::process::Command;

fn demo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("demo")
        .args(args)
        .output()
        .expect("the switchyard binary runs")
}

#[test]
fn same_seed_prints_the_same_report() {
    let args = [
        "--seed",
        "7",
        "--tasks",
        "3000",
        "--workers",
        "6",
        "--no-progress",
    ];
    let first = demo(&args);
    let second = demo(&args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(first.stdout, second.stdout);
    let text = String::from_utf8_lossy(&first.stdout);
    for strategy in [
        "round-robin",
        "random",
        "weighted",
        "least-loaded",
        "affinity",
        "pull",
    ] {
        assert!(
            text.contains(&format!("\n{strategy} ")),
            "no row for {strategy}:\n{text}"
        );
    }
    assert!(text.contains("Jain"), "{text}");
    let other = demo(&[
        "--seed",
        "8",
        "--tasks",
        "3000",
        "--workers",
        "6",
        "--no-progress",
    ]);
    assert_ne!(
        first.stdout, other.stdout,
        "a different seed gives a different workload"
    );
}

#[test]
fn policy_classes_are_reported() {
    let out = demo(&[
        "--tasks",
        "2000",
        "--policy",
        "sjf",
        "-s",
        "weighted",
        "--load",
        "1.2",
        "--no-progress",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mean wait by cost"), "{text}");
}

#[test]
fn bad_flags_are_explained() {
    let out = demo(&["--load", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--load"));
    let out = demo(&["--strategy", "fastest"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected round-robin"));
    let out = demo(&["--policy", "sjf:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("aging factor"));
}
