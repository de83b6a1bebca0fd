//! The mock model's words: deterministic text derived from the prompt, in word-sized tokens.

const VOCABULARY: &[&str] = &[
    "the",
    "stream",
    "gateway",
    "relays",
    "every",
    "token",
    "as",
    "soon",
    "as",
    "it",
    "arrives",
    "a",
    "browser",
    "reads",
    "events",
    "over",
    "plain",
    "HTTP",
    "and",
    "resumes",
    "from",
    "its",
    "last",
    "id",
    "model",
    "answer",
    "latency",
    "matters",
    "more",
    "than",
    "throughput",
    "here",
    "each",
    "delta",
    "is",
    "written",
    "once",
    "with",
    "no",
    "buffering",
    "between",
    "upstream",
    "client",
    "proxies",
    "keep",
    "connection",
    "open",
    "while",
    "heartbeats",
    "flow",
    "quietly",
    "words",
    "appear",
    "one",
    "by",
    "in",
    "order",
    "never",
    "lost",
    "or",
    "repeated",
    "server",
    "sent",
    "simple",
    "reliable",
    "fast",
    "small",
    "careful",
    "request",
    "response",
    "chat",
];

const CODE_BLOCK: &[&str] = &[
    "\n\n```rust\n",
    "fn",
    " main()",
    " {\n",
    "    println!(\"",
    "hello,",
    " stream\");\n",
    "}\n```\n\n",
];

/// A small, fast, deterministic generator (xorshift64*), seeded from the prompt.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// FNV-1a: a stable hash, so the same prompt gives the same answer on every machine and run.
fn seed(prompt: &str) -> u64 {
    let hash = prompt.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash | 1
}

/// The first `count` tokens of the answer to `prompt`. Tokens after the first carry their
/// leading space, as real tokenizers' do, so concatenating them gives the text.
pub fn answer(prompt: &str, count: usize) -> Vec<String> {
    let mut rng = Rng(seed(prompt));
    let echo: Vec<&str> = prompt
        .split_whitespace()
        .take(6)
        .map(|w| w.trim_end_matches(['?', '.', '!', ',', ':', ';']))
        .filter(|w| !w.is_empty())
        .collect();
    let mut words: Vec<String> = Vec::with_capacity(count);
    words.push("You".into());
    words.push(" asked".into());
    words.push(" about".into());
    for word in &echo {
        words.push(format!(" {word}"));
    }
    if echo.is_empty() {
        words.push(" nothing".into());
    }
    words.push(".".into());
    if prompt.to_ascii_lowercase().contains("code") {
        words.extend(CODE_BLOCK.iter().map(|s| (*s).to_owned()));
    }
    while words.len() < count {
        let sentence = 5 + rng.below(10);
        for i in 0..sentence {
            let word = VOCABULARY[rng.below(VOCABULARY.len())];
            words.push(if i == 0 {
                let mut chars = word.chars();
                let first: String = chars
                    .next()
                    .map(|c| c.to_uppercase().collect())
                    .unwrap_or_default();
                format!(" {first}{}", chars.as_str())
            } else {
                format!(" {word}")
            });
        }
        words.push(if rng.below(5) == 0 {
            ",".into()
        } else {
            ".".into()
        });
    }
    words.truncate(count);
    words
}

/// Tokens a prompt counts as: its words, plus a few per message as chat formats add.
pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_prompt_gives_the_same_answer() {
        assert_eq!(answer("hello there", 50), answer("hello there", 50));
        assert_ne!(answer("hello there", 50), answer("hello where", 50));
    }

    #[test]
    fn answers_have_exactly_the_tokens_asked_for() {
        for n in [0, 1, 5, 128, 1000] {
            assert_eq!(answer("x", n).len(), n);
        }
    }

    #[test]
    fn a_prompt_about_code_gets_a_code_block() {
        let text: String = answer("show me code", 40).concat();
        assert!(text.contains("```rust\n"), "{text}");
    }
}
