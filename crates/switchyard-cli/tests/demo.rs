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

const STRATEGIES: [&str; 6] = [
    "round-robin",
    "random",
    "weighted",
    "least-loaded",
    "affinity",
    "pull",
];

/// The default demo (16 workers, 20,000 tasks, every strategy) twice with the same seed: the
/// same bytes on standard output. Standard error is not a terminal here, so no progress bar is
/// drawn and no wall-time line is printed either: `2>&1` output is reproducible too.
#[test]
fn same_seed_prints_the_same_report() {
    let first = demo(&["--seed", "7"]);
    let second = demo(&["--seed", "7"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(first.stdout, second.stdout);
    assert!(
        first.stderr.is_empty() && second.stderr.is_empty(),
        "nothing on stderr without progress bars: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("20000 tasks"), "{text}");
    assert!(text.contains("16 workers"), "{text}");
    assert_eq!(
        text.matches("\npolicy ").count(),
        1,
        "one policy by default"
    );
    assert!(text.contains("\npolicy fcfs\n"), "{text}");
    for strategy in STRATEGIES {
        assert!(
            text.contains(&format!("\n{strategy} ")),
            "no row for {strategy}:\n{text}"
        );
    }
    assert!(text.contains("Jain"), "{text}");
    let small = |seed: &str| demo(&["--seed", seed, "--tasks", "3000", "--workers", "6"]).stdout;
    assert_ne!(
        small("7"),
        small("8"),
        "a different seed gives a different workload"
    );
}

/// `--policy` takes a list: every strategy runs under each policy, one table per policy, in
/// the order given, each named; still reproducible.
#[test]
fn several_policies_each_get_a_table() {
    let args = [
        "--tasks",
        "1500",
        "--policy",
        "fcfs,priority:50,sjf",
        "-s",
        "weighted,pull",
        "--load",
        "1.2",
        "--seed",
        "3",
        "--no-progress",
    ];
    let out = demo(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    assert_eq!(out.stdout, demo(&args).stdout, "same seed, same output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("policies fcfs, priority+aging(50ms), sjf"),
        "{text}"
    );
    let headings: Vec<usize> = ["fcfs", "priority+aging(50ms)", "sjf"]
        .iter()
        .map(|p| {
            text.find(&format!("\npolicy {p}\n"))
                .unwrap_or_else(|| panic!("no table for {p}:\n{text}"))
        })
        .collect();
    assert!(headings.is_sorted(), "tables in the order given");
    // Each table has a row per strategy, and its own class breakdown.
    let tables = [
        &text[headings[0]..headings[1]],
        &text[headings[1]..headings[2]],
        &text[headings[2]..],
    ];
    for table in tables {
        for strategy in ["weighted", "pull"] {
            assert!(table.contains(&format!("\n{strategy} ")), "{table}");
        }
    }
    assert!(tables[1].contains("mean wait by priority"), "{}", tables[1]);
    assert!(tables[2].contains("mean wait by cost"), "{}", tables[2]);
    assert!(!tables[0].contains("mean wait by"), "{}", tables[0]);
    // The verdict names, per policy, the strategy with the most tasks/s in its table.
    let verdict = &text[text.find("\nverdict (this run)\n").expect("a verdict")..];
    for (policy, table) in ["fcfs", "priority+aging(50ms)", "sjf"].iter().zip(tables) {
        let fastest = ["weighted", "pull"]
            .iter()
            .map(|s| {
                let row = table
                    .lines()
                    .find(|l| l.starts_with(&format!("{s} ")))
                    .unwrap();
                let rate: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
                (rate, *s)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap()
            .1;
        let line = verdict
            .lines()
            .find(|l| l.starts_with(&format!("{policy} ")))
            .unwrap_or_else(|| panic!("{policy} missing from the verdict:\n{verdict}"));
        assert!(line.contains(&format!("fastest {fastest} (")), "{line}");
        assert!(line.contains("fairest "), "{line}");
    }
    assert!(
        verdict.contains("across policies: lowest mean wait"),
        "{verdict}"
    );
}

/// `demo --help` names and explains every flag.
#[test]
fn help_mentions_every_flag() {
    let out = demo(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, explained_by) in [
        ("-w, --workers", "simulated workers"),
        ("-n, --tasks", "Number of tasks"),
        ("-s, --strategy", "Dispatch strategies"),
        ("-p, --policy", "Scheduling policies"),
        ("--load", "Offered load"),
        ("--seed", "same seed"),
        ("--keys", "affinity keys"),
        ("--no-progress", "progress bars"),
        ("-h, --help", "Print help"),
    ] {
        let line = help
            .lines()
            .find(|l| l.contains(flag))
            .unwrap_or_else(|| panic!("{flag} is not in --help:\n{help}"));
        assert!(line.contains(explained_by), "{flag}: {line}");
    }
    assert!(help.contains("comma-separated"), "{help}");
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
