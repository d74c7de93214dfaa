//! Nothing panics on any input: random bytes, random YAML-ish text and mutated copies of every
//! shipped example go through the loader (and, when valid, the compiler, the reference evaluator
//! and the cases parser). Every rejection must carry a position inside the input.

use bulkhead_control::cases::parse_cases;
use bulkhead_control::{compile, load_str};
use proptest::prelude::*;
use std::path::Path;

fn examples() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("config");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    out.sort();
    out
}

/// Lines as YAML counts them: `\n`, `\r\n` and a lone `\r` each end a line (YAML 1.2 §5.4), so
/// a file with old Mac line ends has more lines than `str::lines` sees.
fn yaml_lines(text: &str) -> u32 {
    let b = text.as_bytes();
    let breaks = b
        .iter()
        .enumerate()
        .filter(|&(i, &c)| c == b'\n' || (c == b'\r' && b.get(i + 1) != Some(&b'\n')))
        .count();
    breaks as u32 + 1
}

fn exercise(text: &str) {
    let lines = yaml_lines(text) + 1;
    match load_str("fuzz.yaml", text) {
        Ok(p) => {
            if let Ok(c) = compile(&p, 1) {
                let q = bulkhead_tables::FlowQuery {
                    src: "198.18.1.10".parse().unwrap(),
                    dst: "198.19.1.10".parse().unwrap(),
                    proto: 6,
                    sport: 40000,
                    dport: 443,
                };
                let _ = c.tables.judge(&q);
                let _ = bulkhead_control::reference::judge(&p, &q);
            }
        }
        Err(d) => {
            assert!(!d.is_empty());
            for e in &d.0 {
                assert!(e.loc.line <= lines, "line {} beyond input ({lines} lines): {e}", e.loc.line);
                assert!(!e.message.is_empty());
            }
        }
    }
    let _ = parse_cases("fuzz-cases.yaml", text);
}

const TOKENS: &[&str] = &[
    "apiVersion: bulkhead.io/v1\n",
    "kind: Identity\n",
    "kind: Policy\n",
    "kind: Settings\n",
    "kind: Quarantine\n",
    "kind: AclTier\n",
    "metadata:\n",
    "  name: x\n",
    "spec:\n",
    "  rules:\n",
    "    - name: r\n",
    "      from: [{}]\n",
    "      to: [{world: true}]\n",
    "      action: allow\n",
    "      ports: [{protocol: tcp, port: 1-2}]\n",
    "  labels: {zone: a}\n",
    "  addresses: [198.18.0.0/15]\n",
    "---\n",
    "[",
    "]",
    "{",
    "}",
    ":",
    "- ",
    "&a ",
    "*a ",
    "!!str ",
    "\"",
    "'",
    "\t",
    "\n",
    "  ",
    "#",
    "|\n",
    ">\n",
    "? ",
    "cases:\n",
    "  - {from: a, to: b, port: 1, expect: deny}\n",
    "\u{feff}",
    "é",
    "\0",
    "  mode: monitor\n",
    "  segments: {a: {mode: enforce}}\n",
    "      cidr: 0.0.0.0/0\n",
    "      except: [1.0.0.0/8]\n",
];

/// Found by `random_bytes`: lone carriage returns are line breaks, and the error's line (4) is
/// inside the input by YAML's count.
#[test]
fn carriage_return_line_ends_give_positions_inside_the_input() {
    exercise("\u{1}\r\r#\r\u{1}");
    assert_eq!(yaml_lines("a\r\r#\rb"), 4);
    assert_eq!(yaml_lines("a\r\nb\n"), 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_token_soup(idx in proptest::collection::vec(0..TOKENS.len(), 0..60)) {
        let s: String = idx.iter().map(|&i| TOKENS[i]).collect();
        exercise(&s);
    }

    #[test]
    fn mutated_examples(which in any::<usize>(), edits in proptest::collection::vec((any::<usize>(), 0..4u8, any::<u8>()), 1..8)) {
        let ex = examples();
        let mut bytes = ex[which % ex.len()].clone().into_bytes();
        for (pos, op, b) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = pos % bytes.len();
            match op {
                0 => bytes[i] = b,
                1 => { bytes.remove(i); }
                2 => bytes.insert(i, b),
                _ => { let j = (i + (b as usize)).min(bytes.len()); bytes.drain(i..j); }
            }
        }
        exercise(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn every_example_file_loads_alone_or_fails_positioned() {
    for ex in examples() {
        exercise(&ex);
    }
}
