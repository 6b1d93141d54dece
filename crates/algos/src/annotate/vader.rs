//! VADER sentiment (Hutto & Gilbert, ICWSM 2014), implemented to agree with the reference Python
//! package vaderSentiment 3.3.2: `SentimentIntensityAnalyzer().polarity_scores(text)["compound"]`,
//! rounded to 4 decimals as there. The two lexicons are that package's files, embedded unchanged
//! (MIT, see `assets/LICENSE-vader.txt`).
//!
//! The reference's quirks are part of its behaviour and are kept: the "but" rule rescales by
//! value (`list.index`), idioms are only looked for when three earlier words exist and the third is
//! not in the lexicon, a capitalised word of valence 0 is pushed negative, and so on. Python's
//! string semantics are kept where they matter: whitespace is `str.isspace`, "in capitals" is
//! `str.isupper`, lowercasing is `str.lower` (full case mapping, final sigma). Rust's Unicode
//! tables are newer than Python 3.11's (14.0), so only letters added or recategorised since then
//! (e.g. U+0295 `ʕ`, no longer lowercase) can make a difference.

use std::collections::HashMap;

const LEXICON: &str = include_str!("../../assets/vader_lexicon.txt");
const EMOJI: &str = include_str!("../../assets/vader_emoji_utf8_lexicon.txt");

/// Effect of a booster ("very") or, negated, of a dampener ("slightly") on the next word.
const BOOST: f64 = 0.293;
/// Emphasis of a word in capitals in a text where not every word is.
const SHOUT: f64 = 0.733;
/// Factor of a negated valence.
const NEGATE: f64 = -0.74;

/// Booster (> 0) or dampener (< 0) effect of a word or two-word phrase, lowercase.
fn booster(word: &str) -> Option<f64> {
    match word {
        "absolutely" | "amazingly" | "awfully" | "completely" | "considerable" | "considerably"
        | "decidedly" | "deeply" | "effing" | "enormous" | "enormously" | "entirely"
        | "especially" | "exceptional" | "exceptionally" | "extreme" | "extremely"
        | "fabulously" | "flipping" | "flippin" | "frackin" | "fracking" | "fricking"
        | "frickin" | "frigging" | "friggin" | "fully" | "fuckin" | "fucking" | "fuggin"
        | "fugging" | "greatly" | "hella" | "highly" | "hugely" | "incredible" | "incredibly"
        | "intensely" | "major" | "majorly" | "more" | "most" | "particularly" | "purely"
        | "quite" | "really" | "remarkably" | "so" | "substantially" | "thoroughly" | "total"
        | "totally" | "tremendous" | "tremendously" | "uber" | "unbelievably" | "unusually"
        | "utter" | "utterly" | "very" => Some(BOOST),
        "almost" | "barely" | "hardly" | "just enough" | "kind of" | "kinda" | "kindof"
        | "kind-of" | "less" | "little" | "marginal" | "marginally" | "occasional"
        | "occasionally" | "partly" | "scarce" | "scarcely" | "slight" | "slightly"
        | "somewhat" | "sort of" | "sorta" | "sortof" | "sort-of" => Some(-BOOST),
        _ => None,
    }
}

/// Words that negate what follows them (as does any word containing "n't").
const NEGATIONS: [&str; 37] = [
    "aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt", "dont", "hadnt",
    "hasnt", "havent", "isnt", "mightnt", "mustnt", "neither", "neednt", "never", "none", "nope",
    "nor", "not", "nothing", "nowhere", "oughtnt", "shant", "shouldnt", "uhuh", "wasnt", "werent",
    "uh-uh", "without", "wont", "wouldnt", "rarely", "seldom", "despite",
];

/// Whether a lowercase word negates what follows it.
fn is_negation(word: &str) -> bool {
    word.contains("n't") || NEGATIONS.contains(&word)
}

/// Fixed valence of an idiom containing lexicon words, lowercase words joined by one space.
/// (The reference also lists the single word "badass", which no phrase can equal.)
fn idiom(phrase: &str) -> Option<f64> {
    match phrase {
        "the shit" | "the bomb" | "to die for" => Some(3.0),
        "bad ass" => Some(1.5),
        "bus stop" => Some(0.0),
        "yeah right" => Some(-2.0),
        "kiss of death" => Some(-1.5),
        "beating heart" => Some(3.5),
        _ => None,
    }
}

/// Python's `str.isspace`: Unicode White_Space plus the separators U+001C..U+001F.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.isupper`: some uppercase letter, and no lowercase or titlecase one.
fn is_upper(word: &str) -> bool {
    let titlecase = |c: char| {
        matches!(c, '\u{1c5}' | '\u{1c8}' | '\u{1cb}' | '\u{1f2}' | '\u{1f88}'..='\u{1f8f}'
            | '\u{1f98}'..='\u{1f9f}' | '\u{1fa8}'..='\u{1faf}' | '\u{1fbc}' | '\u{1fcc}'
            | '\u{1ffc}')
    };
    word.chars().any(char::is_uppercase) && !word.chars().any(|c| c.is_lowercase() || titlecase(c))
}

/// A whitespace-separated token without its leading and trailing ASCII punctuation, unless
/// that leaves at most two characters (then it is likely an emoticon, kept whole).
fn strip_punctuation(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    if stripped.chars().count() <= 2 {
        token
    } else {
        stripped
    }
}

/// Emphasis from exclamation marks (up to 4) and question marks (2 or more).
fn punctuation_emphasis(text: &str) -> f64 {
    let bangs = text.matches('!').count().min(4);
    let questions = match text.matches('?').count() {
        n @ 2..=3 => n as f64 * 0.18,
        n if n > 3 => 0.96,
        _ => 0.0,
    };
    bangs as f64 * 0.292 + questions
}

/// Python's `round(x, 4)`: correctly rounded, ties to even (Rust's formatting is exact).
fn round4(x: f64) -> f64 {
    format!("{x:.4}").parse().unwrap_or(x)
}

/// The embedded lexicons, parsed once.
pub(super) struct Analyzer {
    /// Mean valence of each (lowercase) word or emoticon; later duplicates win, as in Python.
    valence: HashMap<&'static str, f64>,
    /// Description replacing each emoji; only single code points, the only ones that can match.
    emoji: HashMap<char, &'static str>,
}

impl Analyzer {
    /// Parses the embedded vaderSentiment 3.3.2 lexicons.
    pub(super) fn new() -> Self {
        let fields = |line: &'static str| {
            let mut fields = line.trim_matches(is_space).split('\t');
            Some((fields.next()?, fields.next()?))
        };
        let valence = LEXICON
            .lines()
            .filter_map(fields)
            .filter_map(|(word, value)| Some((word, value.parse().ok()?)))
            .collect();
        let emoji = EMOJI
            .lines()
            .filter_map(fields)
            .filter_map(|(emoji, description)| {
                let mut chars = emoji.chars();
                let c = chars.next()?;
                chars.next().is_none().then_some((c, description))
            })
            .collect();
        Analyzer { valence, emoji }
    }

    /// vaderSentiment 3.3.2's compound score of `text`, in [-1, 1], rounded to 4 decimals.
    pub(super) fn compound(&self, text: &str) -> f64 {
        let described = self.describe_emoji(text);
        let text = described.trim_matches(is_space);
        let words: Vec<&str> = text
            .split(is_space)
            .filter(|w| !w.is_empty())
            .map(strip_punctuation)
            .collect();
        if words.is_empty() {
            return 0.0;
        }
        let shouted = words.iter().filter(|w| is_upper(w)).count();
        let sentence = Sentence {
            valence: &self.valence,
            lower: words.iter().map(|w| w.to_lowercase()).collect(),
            caps_emphasis: shouted > 0 && shouted < words.len(),
            words,
        };
        let mut valences: Vec<f64> = (0..sentence.words.len())
            .map(|i| sentence.valence_at(i))
            .collect();
        sentence.contrast(&mut valences);
        let sum = valences.iter().fold(0.0, |sum, v| sum + v);
        let emphasis = punctuation_emphasis(text);
        let total = if sum > 0.0 {
            sum + emphasis
        } else if sum < 0.0 {
            sum - emphasis
        } else {
            sum
        };
        round4((total / (total * total + 15.0).sqrt()).clamp(-1.0, 1.0))
    }

    /// `text` with every emoji replaced by its description, separated from a preceding
    /// non-space character by a space.
    fn describe_emoji(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut after_space = true;
        for c in text.chars() {
            match self.emoji.get(&c) {
                Some(description) => {
                    if !after_space {
                        out.push(' ');
                    }
                    out.push_str(description);
                    after_space = false;
                }
                None => {
                    out.push(c);
                    after_space = c == ' ';
                }
            }
        }
        out
    }
}

/// The tokens of one text and what the rules need to know about them.
struct Sentence<'a> {
    valence: &'a HashMap<&'static str, f64>,
    words: Vec<&'a str>,
    lower: Vec<String>,
    /// Some but not all words are in capitals: capitals then mean emphasis.
    caps_emphasis: bool,
}

impl Sentence<'_> {
    fn lower(&self, i: usize) -> &str {
        &self.lower[i]
    }

    fn in_lexicon(&self, i: usize) -> bool {
        self.valence.contains_key(self.lower(i))
    }

    /// The valence of word `i` in its context (0 for words outside the lexicon, boosters and
    /// the "kind" of "kind of").
    fn valence_at(&self, i: usize) -> f64 {
        let word = self.lower(i);
        let next = self.lower.get(i + 1).map(String::as_str);
        if booster(word).is_some() || (word == "kind" && next == Some("of")) {
            return 0.0;
        }
        let Some(&base) = self.valence.get(word) else {
            return 0.0;
        };
        let mut v = base;
        // "no" before a lexicon word negates that word rather than counting itself
        if word == "no" && next.is_some_and(|n| self.valence.contains_key(n)) {
            v = 0.0;
        }
        if self.follows_no(i) {
            v = base * NEGATE;
        }
        if self.caps_emphasis && is_upper(self.words[i]) {
            v += if v > 0.0 { SHOUT } else { -SHOUT };
        }
        for distance in 1..=i.min(3) {
            if self.in_lexicon(i - distance) {
                continue;
            }
            v += self.modifier(i - distance, v) * [1.0, 0.95, 0.9][distance - 1];
            v = self.negation(i, distance, v);
            if distance == 3 {
                v = self.idioms(i, v);
            }
        }
        self.least(i, v)
    }

    /// "no" one or two words before word `i`, or three before with "or"/"nor" just before it.
    fn follows_no(&self, i: usize) -> bool {
        (1..=i.min(2)).any(|d| self.lower(i - d) == "no")
            || (i >= 3 && self.lower(i - 3) == "no" && matches!(self.lower(i - 1), "or" | "nor"))
    }

    /// What booster word `j` adds to a word of valence `v` (0 if `j` is no booster).
    fn modifier(&self, j: usize, v: f64) -> f64 {
        let Some(boost) = booster(self.lower(j)) else {
            return 0.0;
        };
        let mut scalar = if v < 0.0 { -boost } else { boost };
        if self.caps_emphasis && is_upper(self.words[j]) {
            scalar += if v > 0.0 { SHOUT } else { -SHOUT };
        }
        scalar
    }

    /// Valence `v` of word `i` after looking for a negation `distance` words before it; "never
    /// so/this" intensifies instead, and "without doubt" does not negate.
    fn negation(&self, i: usize, distance: usize, v: f64) -> f64 {
        let w = |d: usize| self.lower(i - d);
        let so_or_this = |d: usize| matches!(w(d), "so" | "this");
        let (intensified, kept) = match distance {
            1 => (false, false),
            2 => (
                w(2) == "never" && so_or_this(1),
                w(2) == "without" && w(1) == "doubt",
            ),
            _ => (
                (w(3) == "never" && so_or_this(2)) || so_or_this(1),
                w(3) == "without" && (w(2) == "doubt" || w(1) == "doubt"),
            ),
        };
        if intensified {
            v * 1.25
        } else if !kept && is_negation(w(distance)) {
            v * NEGATE
        } else {
            v
        }
    }

    /// Valence `v` of word `i` (`i >= 3`) after the idioms around it and a two-word dampener
    /// ("kind of", "sort of", "just enough") among the three words before it.
    fn idioms(&self, i: usize, mut v: f64) -> f64 {
        let phrase = |from: usize, to: usize| self.lower[from..to].join(" ");
        let before = [
            (i - 1, i + 1),
            (i - 2, i + 1),
            (i - 2, i),
            (i - 3, i),
            (i - 3, i - 1),
        ];
        if let Some(fixed) = before
            .iter()
            .find_map(|&(from, to)| idiom(&phrase(from, to)))
        {
            v = fixed;
        }
        for to in [i + 2, i + 3] {
            if to <= self.lower.len()
                && let Some(fixed) = idiom(&phrase(i, to))
            {
                v = fixed;
            }
        }
        for (from, to) in [(i - 3, i - 1), (i - 2, i)] {
            if let Some(boost) = booster(&phrase(from, to)) {
                v += boost;
            }
        }
        v
    }

    /// Valence `v` of word `i` negated by a preceding "least" (but not "at least", "very least").
    fn least(&self, i: usize, v: f64) -> f64 {
        let after_least = i >= 1 && self.lower(i - 1) == "least" && !self.in_lexicon(i - 1);
        if after_least && (i == 1 || !matches!(self.lower(i - 2), "at" | "very")) {
            v * NEGATE
        } else {
            v
        }
    }

    /// The contrastive "but": valences before the first "but" are halved, those after it
    /// raised by half. As in the reference, each step rescales the first entry *equal* to the
    /// current one, which is not always the current position.
    fn contrast(&self, valences: &mut [f64]) {
        let Some(but) = self.lower.iter().position(|w| w == "but") else {
            return;
        };
        for k in 0..valences.len() {
            let v = valences[k];
            let first = valences.iter().position(|&x| x == v).unwrap_or(k);
            if first < but {
                valences[first] = v * 0.5;
            } else if first > but {
                valences[first] = v * 1.5;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_lexicons_parse_completely() {
        let analyzer = Analyzer::new();
        // 7520 lines, 14 of them repeat an earlier word
        assert_eq!(analyzer.valence.len(), 7506);
        assert_eq!(analyzer.valence["good"], 1.9);
        assert_eq!(analyzer.emoji[&'😁'], "beaming face with smiling eyes");
    }

    #[test]
    fn reference_examples() {
        // scores of vaderSentiment 3.3.2 on examples of its own demo
        let analyzer = Analyzer::new();
        for (text, compound) in [
            (
                "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
                0.9469,
            ),
            ("The book was only kind of good.", 0.3832),
            ("Catch utf-8 emoji such as 💘 and 💋 and 😁", 0.875),
            (
                "Roger Dodger is one of the least compelling variations on this theme.",
                -0.1695,
            ),
            ("With VADER, sentiment analysis is the shit!", 0.6476),
            ("", 0.0),
        ] {
            assert_eq!(analyzer.compound(text), compound, "{text:?}");
        }
    }
}
