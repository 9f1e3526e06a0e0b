//! Screening one message against a full sender list: every rule matched one
//! by one (the reference: what boxtrap did before lists were compiled into
//! `RegexSet`s) against one compiled `RuleList`, measured in the same run,
//! so the ratio is what to quote, not the absolute figures.
//!
//! ```sh
//! cargo bench --bench lists                  # lists of 1000, 5000 and 22002 rules
//! cargo bench --bench lists -- 100000        # only this size
//! ```
//!
//! For two lists (see [`rule_lines`]) and each size it prints the time to
//! load the list (read every rule, as the store does, and compile: the
//! first message after a list changes pays it), the time to screen one
//! message against it (a stranger that matches nothing, so every rule is
//! tried; the last rule's sender; a message with 20,000 `Cc:` addresses)
//! and the memory the loaded list holds after screening, each measured in a
//! child process of its own so that one measurement's freed memory does
//! not hide another's.

use boxtrap::policy::facts::MessageFacts;
use boxtrap::policy::rules::{RuleList, RuleMatch, SenderRule};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The sizes measured when none are given: the default limit of 5,000
/// and the 22,002 rules the attack of issue 10 added.
const SIZES: [usize; 3] = [1000, 5000, 22_002];

/// The two lists measured. "typical": an owner's allow list as it grows,
/// mostly exact senders (added on release, by association and by `list add
/// ADDRESS`), some domains, a few recipients and subjects. "regex": no
/// exact sender at all, every rule a pattern (the worst case for the
/// compiled list). Every line reads as `list import` reads it.
fn rule_lines(shape: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match (shape, i % 100) {
            ("typical", 0..=89) => format!("from ^person{i}@domain{}\\.example$", i % 300),
            ("typical", 90..=94) | ("regex", 0..=49) => format!("from .*@company{i}\\.example"),
            ("typical", 95 | 96) => format!("to ^list{i}@lists\\.example$"),
            ("typical", 97) => format!("cc ^team{i}@corp\\.example$"),
            ("regex", 50..=79) => format!("from ^person{i}[.-]?\\w*@domain{}\\.example$", i % 300),
            ("regex", 80..=89) => format!("cc team{i}@"),
            _ => format!("subject \\[project-{i}\\]|urgent-{i}"),
        })
        .collect()
}

/// The address the last `from` rule of a list matches.
fn last_sender(shape: &str, n: usize) -> String {
    match shape {
        "typical" => {
            let i = (0..n).rev().find(|i| i % 100 <= 89).unwrap_or(0);
            format!("person{i}@domain{}.example", i % 300)
        }
        _ => {
            let i = (0..n)
                .rev()
                .find(|i| (50..=79).contains(&(i % 100)))
                .unwrap_or(0);
            format!("person{i}-x@domain{}.example", i % 300)
        }
    }
}

fn message(from: &str, cc: usize) -> MessageFacts {
    let cc: Vec<String> = (0..cc).map(|i| format!("cc{i}@evil.example")).collect();
    let mut text = format!(
        "From: {from}\r\nTo: alice@example.test, bob@example.test\r\nSubject: Lunch on Friday?\r\n"
    );
    if !cc.is_empty() {
        text.push_str(&format!("Cc: {}\r\n", cc.join(",\r\n ")));
    }
    text.push_str("Message-ID: <bench@example.org>\r\n\r\nhello\r\n");
    MessageFacts::parse(text.as_bytes())
}

/// The rules as the store read them before: each parsed and compiled.
fn load(lines: &[String]) -> Vec<SenderRule> {
    lines
        .iter()
        .map(|l| SenderRule::parse(l).expect("a bench rule"))
        .collect()
}

/// The rules as the store reads them now, for a `RuleList`: no regex
/// compiled per rule.
fn load_stored(lines: &[String]) -> Vec<SenderRule> {
    lines
        .iter()
        .map(|l| {
            let (field, pattern) = l.split_once(' ').expect("a bench rule");
            SenderRule::stored(field.parse().expect("a field"), pattern).expect("a bench rule")
        })
        .collect()
}

/// Mean time per call of `f`, over at least `at_least` and 3 calls.
fn time(at_least: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut calls = 0u32;
    while calls < 3 || start.elapsed() < at_least {
        f();
        calls += 1;
    }
    start.elapsed() / calls
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// In a child process: the memory one loaded list holds after screening
/// three messages, in KiB.
fn memory_child(kind: &str, shape: &str, n: usize) {
    let lines = rule_lines(shape, n);
    let messages = [
        message("stranger@nowhere.example", 0),
        message(&last_sender(shape, n), 0),
        message("stranger@nowhere.example", 200),
    ];
    let before = rss_kib();
    let matcher: Box<dyn RuleMatch> = match kind {
        "one-by-one" => Box::new(load(&lines)),
        _ => Box::new(RuleList::new(load_stored(&lines))),
    };
    for m in &messages {
        black_box(matcher.first_match(m, "stranger@nowhere.example"));
    }
    println!("{}", rss_kib().saturating_sub(before));
    drop(lines);
}

fn memory(kind: &str, shape: &str, n: usize) -> u64 {
    let exe = std::env::current_exe().expect("the bench binary");
    let out = std::process::Command::new(exe)
        .args(["--memory", kind, shape, &n.to_string()])
        .output()
        .expect("run the bench binary again");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ratio(new: Duration, old: Duration) -> String {
    format!("{:.3}x", new.as_secs_f64() / old.as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--memory") {
        let n = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(1000);
        let kind = args.get(1).map_or("compiled", String::as_str);
        memory_child(kind, args.get(2).map_or("typical", String::as_str), n);
        return;
    }
    // `cargo bench` passes `--bench`; any number is a size.
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = SIZES.to_vec();
    }
    let budget = Duration::from_millis(300);
    println!(
        "| list | rules | load, one by one | load, compiled | ratio | message | screen, one by one | screen, compiled | ratio | memory, one by one | memory, compiled |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for shape in ["typical", "regex"] {
        for &n in &sizes {
            measure(shape, n, budget);
        }
    }
}

/// One line per message for a list of `n` rules of this shape.
fn measure(shape: &str, n: usize, budget: Duration) {
    let lines = rule_lines(shape, n);
    let load_old = time(budget, || {
        black_box(load(&lines));
    });
    let load_new = time(budget, || {
        black_box(RuleList::new(load_stored(&lines)));
    });
    let old = load(&lines);
    let new = RuleList::new(load_stored(&lines));
    let cases = [
        ("stranger", message("stranger@nowhere.example", 0)),
        ("last rule's sender", message(&last_sender(shape, n), 0)),
        ("20,000 Cc", message("stranger@nowhere.example", 20_000)),
    ];
    let (mem_old, mem_new) = (memory("one-by-one", shape, n), memory("compiled", shape, n));
    for (i, (name, m)) in cases.iter().enumerate() {
        let env = "stranger@nowhere.example";
        let want = old.as_slice().first_match(m, env).map(SenderRule::to_line);
        let got = new.first_match(m, env).map(SenderRule::to_line);
        assert_eq!(
            got, want,
            "{name}: the compiled list must find the same rule"
        );
        if i == 1 {
            assert!(got.is_some(), "{name} must match a rule");
        }
        let screen_old = time(budget, || {
            black_box(old.as_slice().first_match(m, env));
        });
        let screen_new = time(budget, || {
            black_box(new.first_match(m, env));
        });
        let first = |text: String| if i == 0 { text } else { String::new() };
        println!(
            "| {} | {} | {} | {} | {} | {name} | {} | {} | {} | {} | {} |",
            first(shape.to_string()),
            first(n.to_string()),
            first(ms(load_old)),
            first(ms(load_new)),
            first(ratio(load_new, load_old)),
            us(screen_old),
            us(screen_new),
            ratio(screen_new, screen_old),
            first(format!("{:.1} MiB", mem_old as f64 / 1024.0)),
            first(format!("{:.1} MiB", mem_new as f64 / 1024.0)),
        );
    }
}
