//! Full-text analysis of chat messages written in Chinese, English or a mix of both.
//!
//! A message is indexed into two fields:
//!
//! * [`WORDS`]: Latin/digit words (lowercased, English-stemmed) and Chinese words as jieba's
//!   search mode segments them. It serves word queries and quoted phrases.
//! * [`GRAMS`]: overlapping character bigrams of every CJK run. It lets a query find any CJK
//!   substring of two or more characters, whatever words jieba chose for the document.
//!
//! [`parse_query`] turns what a user types into a query over both fields, and [`highlight`]
//! marks what that query matched in a message.

use std::collections::HashSet;
use std::sync::LazyLock;

use jieba_rs::Jieba;
use tantivy::Term;
use tantivy::query::{BooleanQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, Token,
    TokenStream, Tokenizer, TokenizerManager,
};

/// Name of the word tokenizer: stemmed Latin words and jieba-segmented CJK words.
pub const WORDS: &str = "chorus_words";

/// Name of the bigram tokenizer: overlapping character bigrams of CJK runs only.
pub const GRAMS: &str = "chorus_grams";

/// Longest token kept, in bytes; longer ones are hashes, URLs or base64 nobody searches for.
const MAX_TOKEN_BYTES: usize = 40;

/// Unused positions left between two CJK runs in [`GRAMS`], so that a phrase of consecutive
/// bigrams can never join the end of one run to the start of the next.
const RUN_GAP: usize = 2;

/// Jieba's dictionary takes a noticeable time and memory to load, so a process loads it once.
static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// Tells whether a character belongs to a CJK run: Han, kana and hangul. Scripts written
/// without spaces are all treated alike, since splitting them on punctuation is not enough.
fn is_cjk(c: char) -> bool {
    matches!(
        c as u32,
        0x1100..=0x11FF
            | 0x2E80..=0x2FDF
            | 0x3005..=0x3007
            | 0x3021..=0x3029
            | 0x3041..=0x309F
            | 0x30A1..=0x30FA
            | 0x30FC..=0x30FF
            | 0x3130..=0x318F
            | 0x31F0..=0x31FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA960..=0xA97F
            | 0xAC00..=0xD7FF
            | 0xF900..=0xFAFF
            | 0xFF66..=0xFF9F
            | 0x20000..=0x3FFFF
    )
}

/// A maximal stretch of text that is either all CJK or all non-CJK.
struct Run<'a> {
    start: usize,
    text: &'a str,
    cjk: bool,
}

/// Splits text into alternating CJK and non-CJK runs covering it entirely.
fn script_runs(text: &str) -> Vec<Run<'_>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut current: Option<bool> = None;
    for (i, c) in text.char_indices() {
        let cjk = is_cjk(c);
        match current {
            Some(prev) if prev != cjk => {
                runs.push(Run {
                    start,
                    text: &text[start..i],
                    cjk: prev,
                });
                start = i;
                current = Some(cjk);
            }
            None => current = Some(cjk),
            Some(_) => {}
        }
    }
    if let Some(cjk) = current {
        runs.push(Run {
            start,
            text: &text[start..],
            cjk,
        });
    }
    runs
}

/// Builds the analyzer applied to non-CJK runs. `SimpleTokenizer` splits on anything that is
/// not alphanumeric, which keeps "Q3" whole; it only ever sees non-CJK text, so it never
/// glues Han characters to the Latin word next to them.
fn latin_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES + 1))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Appends the analysed words of a non-CJK run, with offsets into the whole text.
fn push_latin(analyzer: &mut TextAnalyzer, run: &Run<'_>, out: &mut Vec<Token>) {
    // Punctuation between CJK runs is common and the stemmer is not free to set up.
    if !run.text.chars().any(char::is_alphanumeric) {
        return;
    }
    let mut stream = analyzer.token_stream(run.text);
    while stream.advance() {
        let token = stream.token();
        out.push(Token {
            offset_from: run.start + token.offset_from,
            offset_to: run.start + token.offset_to,
            position: 0,
            text: token.text.clone(),
            position_length: 1,
        });
    }
}

/// Returns the analysed words of a non-CJK piece of text.
fn latin_words(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    push_latin(
        analyzer,
        &Run {
            start: 0,
            text,
            cjk: false,
        },
        &mut tokens,
    );
    tokens.into_iter().map(|t| t.text).collect()
}

/// A token stream over tokens computed up front: chat messages are short, and jieba returns
/// its words as a vector anyway.
struct VecTokenStream {
    tokens: Vec<Token>,
    cursor: Option<usize>,
    // Returned by `token()` before the first `advance()`, instead of panicking.
    none: Token,
}

impl VecTokenStream {
    fn new(tokens: Vec<Token>) -> Self {
        VecTokenStream {
            tokens,
            cursor: None,
            none: Token::default(),
        }
    }
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        let next = self.cursor.map_or(0, |c| c + 1);
        if next < self.tokens.len() {
            self.cursor = Some(next);
            true
        } else {
            self.cursor = Some(self.tokens.len());
            false
        }
    }

    fn token(&self) -> &Token {
        self.cursor
            .and_then(|c| self.tokens.get(c))
            .unwrap_or(&self.none)
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.cursor {
            Some(c) if c < self.tokens.len() => &mut self.tokens[c],
            _ => &mut self.none,
        }
    }
}

/// The [`WORDS`] tokenizer.
#[derive(Clone)]
struct WordsTokenizer {
    latin: TextAnalyzer,
}

impl Tokenizer for WordsTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let mut tokens = Vec::new();
        for run in script_runs(text) {
            if !run.cjk {
                push_latin(&mut self.latin, &run, &mut tokens);
                continue;
            }
            for word in JIEBA.cut_for_search(run.text, true) {
                if word.word.trim().is_empty() || word.word.len() > MAX_TOKEN_BYTES {
                    continue;
                }
                tokens.push(Token {
                    offset_from: run.start + word.byte_start,
                    offset_to: run.start + word.byte_end,
                    position: 0,
                    text: word.word.to_string(),
                    position_length: 1,
                });
            }
        }
        for (position, token) in tokens.iter_mut().enumerate() {
            token.position = position;
        }
        VecTokenStream::new(tokens)
    }
}

/// The [`GRAMS`] tokenizer.
#[derive(Clone)]
struct GramsTokenizer;

/// Appends the bigrams of one CJK run (or its only character) at consecutive positions from
/// `position`, which it leaves just past the last one.
fn push_grams(run: &Run<'_>, position: &mut usize, out: &mut Vec<Token>) {
    let bounds: Vec<usize> = run
        .text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(run.text.len()))
        .collect();
    let chars = bounds.len() - 1;
    let mut push = |from: usize, to: usize| {
        out.push(Token {
            offset_from: run.start + bounds[from],
            offset_to: run.start + bounds[to],
            position: *position,
            text: run.text[bounds[from]..bounds[to]].to_string(),
            position_length: 1,
        });
        *position += 1;
    };
    if chars == 1 {
        push(0, 1);
    }
    for i in 0..chars.saturating_sub(1) {
        push(i, i + 2);
    }
}

impl Tokenizer for GramsTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let mut tokens = Vec::new();
        let mut position = 0;
        for run in script_runs(text).iter().filter(|r| r.cjk) {
            push_grams(run, &mut position, &mut tokens);
            position += RUN_GAP;
        }
        VecTokenStream::new(tokens)
    }
}

/// Registers the [`WORDS`] and [`GRAMS`] tokenizers with a tokenizer manager, typically
/// `index.tokenizers()`, before documents are indexed or queries are run.
pub fn register(manager: &TokenizerManager) {
    manager.register(
        WORDS,
        WordsTokenizer {
            latin: latin_analyzer(),
        },
    );
    manager.register(GRAMS, GramsTokenizer);
}

/// Returns options for a text field analysed by `tokenizer` ([`WORDS`] or [`GRAMS`]),
/// indexed with frequencies and positions so that phrase queries work, stored if asked.
pub fn text_options(tokenizer: &str, stored: bool) -> TextOptions {
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(tokenizer)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let options = TextOptions::default().set_indexing_options(indexing);
    if stored {
        options.set_stored()
    } else {
        options
    }
}

/// One sub-clause of a query part: the analysed words of a non-CJK run, or a CJK run as typed.
enum Clause {
    Latin(Vec<String>),
    Cjk(String),
}

/// Tells whether a character opens or closes a quoted part; Chinese input methods type the
/// curly quotes, so they count too.
fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201C}' | '\u{201D}' | '\u{FF02}')
}

/// Splits a query into parts: whitespace-separated words, or the text between two quotes
/// (an unclosed quote runs to the end).
fn split_parts(query: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = query;
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            break;
        };
        if is_quote(first) {
            let inner = &rest[first.len_utf8()..];
            match inner.char_indices().find(|&(_, c)| is_quote(c)) {
                Some((end, close)) => {
                    parts.push(&inner[..end]);
                    rest = &inner[end + close.len_utf8()..];
                }
                None => {
                    parts.push(inner);
                    rest = "";
                }
            }
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || is_quote(c))
                .unwrap_or(rest.len());
            parts.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    parts
}

/// Splits a query into its sub-clauses, dropping runs that analyse to nothing.
fn query_clauses(query: &str) -> Vec<Clause> {
    let mut latin = latin_analyzer();
    let mut clauses = Vec::new();
    for part in split_parts(query) {
        for run in script_runs(part) {
            if run.cjk {
                clauses.push(Clause::Cjk(run.text.to_string()));
            } else {
                let words = latin_words(&mut latin, run.text);
                if !words.is_empty() {
                    clauses.push(Clause::Latin(words));
                }
            }
        }
    }
    clauses
}

fn term_query(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::WithFreqs,
    ))
}

/// A single term, or the phrase of several consecutive terms.
fn sequence_query(field: Field, terms: &[String]) -> Box<dyn Query> {
    match terms {
        [single] => term_query(field, single),
        _ => Box::new(PhraseQuery::new(
            terms
                .iter()
                .map(|t| Term::from_field_text(field, t))
                .collect(),
        )),
    }
}

/// Builds the query for what a user typed.
///
/// Whitespace separates parts and every part must match. A part in double quotes is one
/// phrase: its words must stand next to each other in [`WORDS`]. Within a part, each script
/// run must match too:
///
/// * a non-CJK run matches its analysed words, as a phrase when there are several ("e-mail");
/// * a CJK run of two or more characters matches as a substring, through the phrase of its
///   bigrams in [`GRAMS`], however jieba segmented the document;
/// * a single CJK character matches where it formed a run of its own, or where jieba made it
///   a word of its own. Limitation: a character inside a longer word ("库" in "数据库") is not
///   found, since indexing every character alone would double the bigram field's size.
///
/// Returns `None` when nothing in the text can be searched for (empty, only punctuation).
pub fn parse_query(words: Field, grams: Field, text: &str) -> Option<Box<dyn Query>> {
    let mut subqueries: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for clause in query_clauses(text) {
        let query = match clause {
            Clause::Latin(terms) => sequence_query(words, &terms),
            Clause::Cjk(run) => {
                let chars: Vec<char> = run.chars().collect();
                if chars.len() == 1 {
                    Box::new(BooleanQuery::new(vec![
                        (Occur::Should, term_query(grams, &run)),
                        (Occur::Should, term_query(words, &run)),
                    ]))
                } else {
                    let bigrams: Vec<String> =
                        chars.windows(2).map(|pair| pair.iter().collect()).collect();
                    sequence_query(grams, &bigrams)
                }
            }
        };
        subqueries.push((Occur::Must, query));
    }
    if subqueries.len() > 1 {
        return Some(Box::new(BooleanQuery::new(subqueries)));
    }
    subqueries.pop().map(|(_, query)| query)
}

/// A window of a message with what a query matched in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Highlight {
    /// At most `max_chars` characters of the message, around its first match.
    pub fragment: String,
    /// Byte ranges within `fragment` of what matched: sorted, non-overlapping, and on
    /// character boundaries.
    pub ranges: Vec<(usize, usize)>,
}

/// Tells whether a character cannot start a visible character: combining marks, variation
/// selectors, emoji modifiers and tags, or anything glued on by a zero-width joiner. Cutting
/// a window there would leave a dangling accent or half an emoji family.
fn joins_previous(prev: char, c: char) -> bool {
    let regional = |c: char| matches!(c as u32, 0x1F1E6..=0x1F1FF);
    prev == '\u{200D}'
        || (regional(prev) && regional(c))
        || matches!(
            c as u32,
            0x0300..=0x036F
                | 0x1AB0..=0x1AFF
                | 0x1DC0..=0x1DFF
                | 0x200C..=0x200D
                | 0x20D0..=0x20FF
                | 0xFE00..=0xFE0F
                | 0xFE20..=0xFE2F
                | 0x1F3FB..=0x1F3FF
                | 0xE0020..=0xE007F
                | 0xE0100..=0xE01EF
        )
}

/// Returns every byte range where `needle` occurs in `text`, overlapping ones included.
fn find_all(text: &str, needle: &str, out: &mut Vec<(usize, usize)>) {
    let mut from = 0;
    while let Some(found) = text[from..].find(needle) {
        let start = from + found;
        out.push((start, start + needle.len()));
        // Steps one character, not the needle's length, so "哈哈" marks all of "哈哈哈".
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
}

/// Sorts ranges and merges those that overlap or touch.
fn merge(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Marks in `text` what `query` matches and cuts a window of at most `max_chars` characters
/// around the first match (the start of the text when nothing matches).
///
/// Latin words match by their analysed form, so "reviews" matches the query "review"; the
/// words of a phrase are marked one by one. CJK runs match as substrings, a single character
/// wherever it occurs. The window is cut on character boundaries and avoids splitting an
/// accent or an emoji sequence from its base where it can.
pub fn highlight(text: &str, query: &str, max_chars: usize) -> Highlight {
    let mut stems = HashSet::new();
    let mut ranges = Vec::new();
    for clause in query_clauses(query) {
        match clause {
            Clause::Latin(words) => stems.extend(words),
            Clause::Cjk(run) => find_all(text, &run, &mut ranges),
        }
    }
    if !stems.is_empty() {
        let mut latin = latin_analyzer();
        let mut tokens = Vec::new();
        for run in script_runs(text).iter().filter(|r| !r.cjk) {
            push_latin(&mut latin, run, &mut tokens);
        }
        ranges.extend(
            tokens
                .iter()
                .filter(|t| stems.contains(&t.text))
                .map(|t| (t.offset_from, t.offset_to)),
        );
    }
    let ranges = merge(ranges);

    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max_chars {
        return Highlight {
            fragment: text.to_string(),
            ranges,
        };
    }
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let (first_start, first_end) = ranges.first().copied().unwrap_or((0, 0));
    let match_from = bounds.partition_point(|&b| b < first_start);
    let match_to = bounds.partition_point(|&b| b < first_end);
    // A third of the spare room goes before the match: enough to read it in context while
    // keeping it near the front, where a result list is read.
    let spare = max_chars.saturating_sub(match_to - match_from);
    let mut start = match_from.saturating_sub(spare / 3);
    let mut end = (start + max_chars).min(chars.len());
    start = start.min(end.saturating_sub(max_chars));
    while start > 0 && start < match_from && joins_previous(chars[start - 1], chars[start]) {
        start += 1;
    }
    while end < chars.len()
        && end > match_to.max(start)
        && joins_previous(chars[end - 1], chars[end])
    {
        end -= 1;
    }
    let (from, to) = (bounds[start], bounds[end]);
    let ranges = ranges
        .into_iter()
        .map(|(s, e)| (s.max(from), e.min(to)))
        .filter(|(s, e)| s < e)
        .map(|(s, e)| (s - from, e - from))
        .collect();
    Highlight {
        fragment: text[from..to].to_string(),
        ranges,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::LazyLock;

    use tantivy::collector::DocSetCollector;
    use tantivy::schema::{STORED, Schema, Value};
    use tantivy::{Index, IndexReader, TantivyDocument, doc};

    use super::*;

    /// Messages planted among the filler, by id; every expectation below names them.
    const PLANTED: &[&str] = &[
        "Q3预算review下周一开始",                  // 0
        "年度预算审批已经通过",                    // 1
        "Please send the budget review by Friday", // 2
        "Two reviews are still pending",           // 3
        "I reviewed the 数据库 schema yesterday",  // 4
        "数据库迁移计划",                          // 5
        "The budget is fine, the review is late",  // 6
        "Send me an e-mail please",                // 7
        "预，算 are two characters apart",         // 8: punctuation between, not 预算
        "仓位：库",                                // 9: 库 as a run of its own
        "预测算法",                                // 10: 预 and 算 not adjacent
        "预算",                                    // 11
        "Q3 budget",                               // 12
        "“预算审批”流程",                          // 13
    ];

    /// Each query with the planted ids it must find, and nothing else.
    const EXPECTED: &[(&str, &[u64])] = &[
        ("预算", &[0, 1, 11, 13]),
        ("算审", &[1, 13]),
        ("预算审批", &[1, 13]),
        ("“预算审批”", &[1, 13]),
        ("review", &[0, 2, 3, 4, 6]),
        ("Reviews", &[0, 2, 3, 4, 6]),
        ("Q3", &[0, 12]),
        ("q3", &[0, 12]),
        ("\"budget review\"", &[2]),
        ("budget review", &[2, 6]),
        ("budget", &[2, 6, 12]),
        ("数据库", &[4, 5]),
        ("数据库 reviewed", &[4]),
        ("Q3预算review", &[0]),
        ("Q3 预算", &[0]),
        ("预算 budget", &[]),
        ("e-mail", &[7]),
        ("库", &[9]),
    ];

    /// SplitMix64: a fixed seed gives the same corpus on every run and machine.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    // The pool holds every character of the CJK queries, so their absence from the filler
    // is the filter's doing, not the pool's.
    const HAN: &str = "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴预审批库迁移划仓位";
    const LATIN: &[&str] = &[
        "the", "team", "will", "ship", "release", "tomorrow", "please", "check", "meeting",
        "notes", "deploy", "server", "client", "ticket", "sprint", "plan", "design", "doc",
        "update", "status", "thanks", "call", "later", "today", "sales", "report", "draft",
        "merge", "branch", "test", "fix", "bug", "login", "cache", "latency", "lunch", "coffee",
        "office", "customer", "contract", "invoice", "schedule", "week", "project", "roadmap",
    ];

    fn filler(rng: &mut Rng) -> String {
        let han: Vec<char> = HAN.chars().collect();
        let chinese = |rng: &mut Rng, len: usize| -> String {
            let mut s = String::new();
            for i in 0..len {
                s.push(han[rng.below(han.len())]);
                if i % 9 == 8 {
                    s.push(if rng.below(2) == 0 { '，' } else { '。' });
                }
            }
            s
        };
        let english = |rng: &mut Rng, words: usize| -> String {
            (0..words)
                .map(|_| LATIN[rng.below(LATIN.len())])
                .collect::<Vec<_>>()
                .join(" ")
        };
        match rng.below(3) {
            0 => {
                let len = 6 + rng.below(30);
                chinese(rng, len)
            }
            1 => {
                let words = 4 + rng.below(12);
                english(rng, words)
            }
            _ => {
                let (a, b) = (6 + rng.below(12), 2 + rng.below(6));
                format!(
                    "{}{} {}",
                    chinese(rng, a),
                    english(rng, b),
                    chinese(rng, a / 2 + 1)
                )
            }
        }
    }

    /// Tells whether a filler message would match some query by chance: it contains a CJK
    /// run of a query, or one of a query's analysed Latin words.
    fn could_match(text: &str, cjk: &[String], latin: &HashSet<String>) -> bool {
        cjk.iter().any(|run| text.contains(run.as_str()))
            || latin_words(&mut latin_analyzer(), text)
                .iter()
                .any(|w| latin.contains(w))
    }

    struct Fixture {
        reader: IndexReader,
        body: Field,
        grams: Field,
        id: Field,
        fillers: Vec<String>,
    }

    const FILLER_COUNT: usize = 20_000;

    static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| build().expect("test index builds"));

    fn build() -> tantivy::Result<Fixture> {
        let mut builder = Schema::builder();
        let body = builder.add_text_field("body", text_options(WORDS, true));
        let grams = builder.add_text_field("grams", text_options(GRAMS, false));
        let id = builder.add_u64_field("id", STORED);
        let index = Index::create_in_ram(builder.build());
        register(index.tokenizers());
        let mut writer = index.writer(64_000_000)?;

        let (mut cjk, mut latin) = (Vec::new(), HashSet::new());
        for clause in EXPECTED.iter().flat_map(|(q, _)| query_clauses(q)) {
            match clause {
                Clause::Cjk(run) => cjk.push(run),
                Clause::Latin(words) => latin.extend(words),
            }
        }
        let mut rng = Rng(0xC40_2A5);
        let mut fillers = Vec::with_capacity(FILLER_COUNT);
        while fillers.len() < FILLER_COUNT {
            let text = filler(&mut rng);
            if !could_match(&text, &cjk, &latin) {
                fillers.push(text);
            }
        }
        // Planted ids come first; filler ids start past them and are never expected.
        let all = PLANTED
            .iter()
            .copied()
            .chain(fillers.iter().map(String::as_str));
        for (n, text) in all.enumerate() {
            writer.add_document(doc!(body => text, grams => text, id => n as u64))?;
        }
        writer.commit()?;
        let reader = index.reader()?;
        Ok(Fixture {
            reader,
            body,
            grams,
            id,
            fillers,
        })
    }

    fn search(query: &str) -> Option<BTreeSet<u64>> {
        let f = &*FIXTURE;
        let query = parse_query(f.body, f.grams, query)?;
        let searcher = f.reader.searcher();
        let hits = searcher
            .search(&*query, &DocSetCollector)
            .expect("search runs");
        let ids = hits
            .into_iter()
            .map(|address| {
                let doc: TantivyDocument = searcher.doc(address).expect("stored doc");
                doc.get_first(f.id)
                    .and_then(|v| v.as_u64())
                    .expect("id stored")
            })
            .collect();
        Some(ids)
    }

    fn words(text: &str) -> Vec<(String, usize)> {
        analyse(WORDS, text)
    }

    fn analyse(name: &str, text: &str) -> Vec<(String, usize)> {
        let manager = TokenizerManager::default();
        register(&manager);
        let mut analyzer = manager.get(name).expect("registered");
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            let token = stream.token();
            assert!(!text[token.offset_from..token.offset_to].is_empty());
            out.push((token.text.clone(), token.position));
        }
        out
    }

    fn texts(tokens: &[(String, usize)]) -> Vec<&str> {
        tokens.iter().map(|(t, _)| t.as_str()).collect()
    }

    #[test]
    fn words_split_scripts_and_keep_alphanumerics_whole() {
        let tokens = words("Q3预算review");
        assert_eq!(texts(&tokens), ["q3", "预算", "review"]);
        assert_eq!(tokens.iter().map(|t| t.1).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(
            texts(&words("Reviews, e-mail! Running")),
            ["review", "e", "mail", "run"]
        );
    }

    #[test]
    fn words_segment_cjk_for_search_with_consecutive_positions() {
        let tokens = words("我们的数据库 and 年度预算审批");
        let list = texts(&tokens);
        for word in ["数据库", "预算", "审批", "and"] {
            assert!(list.contains(&word), "{word} missing from {list:?}");
        }
        let positions: Vec<usize> = tokens.iter().map(|t| t.1).collect();
        assert_eq!(positions, (0..tokens.len()).collect::<Vec<_>>());
    }

    #[test]
    fn words_drop_long_tokens_without_a_position_hole() {
        let text = format!("{} ok {} fine", "a".repeat(41), "b".repeat(40));
        assert_eq!(
            words(&text),
            [("ok".into(), 0), ("b".repeat(40), 1), ("fine".into(), 2)]
        );
    }

    #[test]
    fn grams_are_bigrams_per_run_with_a_gap_between_runs() {
        let tokens = analyse(GRAMS, "预算审批，数据库 ok 库");
        let expected = [
            ("预算", 0),
            ("算审", 1),
            ("审批", 2),
            ("数据", 5),
            ("据库", 6),
            ("库", 9),
        ];
        let expected: Vec<(String, usize)> =
            expected.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        assert_eq!(tokens, expected);
        assert!(analyse(GRAMS, "only latin, 123").is_empty());
        assert!(analyse(GRAMS, "").is_empty());
    }

    #[test]
    fn tokenizers_survive_odd_input() {
        for text in [
            "",
            " ",
            "👨‍👩‍👧 e\u{301}",
            "مرحبا بالعالم",
            "ｶﾀｶﾅ한국어かな",
            "\u{0}\u{FFFF}",
        ] {
            analyse(WORDS, text);
            analyse(GRAMS, text);
        }
    }

    #[test]
    fn every_query_finds_exactly_its_planted_messages() {
        for (query, expected) in EXPECTED {
            let found = search(query).unwrap_or_default();
            let expected: BTreeSet<u64> = expected.iter().copied().collect();
            assert_eq!(found, expected, "query {query:?}");
        }
    }

    #[test]
    fn filler_holds_the_query_characters_apart() {
        // Guards the negatives above from being trivially true: 预 and 算 do occur in the
        // filler, just never next to each other.
        let fillers = &FIXTURE.fillers;
        assert_eq!(fillers.len(), FILLER_COUNT);
        let indexed = FIXTURE.reader.searcher().num_docs();
        assert_eq!(indexed, (PLANTED.len() + FILLER_COUNT) as u64);
        for c in ['预', '算', '审', '批', '数', '据'] {
            assert!(fillers.iter().any(|f| f.contains(c)), "{c} never in filler");
        }
    }

    #[test]
    fn unsearchable_queries_give_none() {
        let f = &*FIXTURE;
        for query in ["", "   ", "，。！", "?!... --", "\"\"", "“ ”"] {
            assert!(parse_query(f.body, f.grams, query).is_none(), "{query:?}");
        }
    }

    fn marked(h: &Highlight) -> Vec<&str> {
        h.ranges.iter().map(|&(s, e)| &h.fragment[s..e]).collect()
    }

    #[test]
    fn highlight_marks_cjk_substrings_and_stemmed_words() {
        let h = highlight("年度预算审批 and two reviews", "算审 review", 100);
        assert_eq!(h.fragment, "年度预算审批 and two reviews");
        assert_eq!(marked(&h), ["算审", "reviews"]);

        let h = highlight("Q3预算review", "Q3预算review", 100);
        assert_eq!(marked(&h), ["Q3预算review"]);

        let h = highlight("哈哈哈 ok", "哈哈", 100);
        assert_eq!(marked(&h), ["哈哈哈"]);

        let h = highlight(
            "Reviewed the BUDGET; budget reviews",
            "\"budget review\"",
            100,
        );
        assert_eq!(marked(&h), ["Reviewed", "BUDGET", "budget", "reviews"]);

        let h = highlight("nothing here", "预算", 100);
        assert!(h.ranges.is_empty());
        assert_eq!(h.fragment, "nothing here");
    }

    #[test]
    fn highlight_cuts_a_window_on_char_boundaries() {
        let text = format!("{}预算审批{}", "很长的前文".repeat(20), "后文".repeat(50));
        let h = highlight(&text, "审批", 30);
        assert_eq!(h.fragment.chars().count(), 30);
        assert!(text.contains(&h.fragment));
        assert_eq!(marked(&h), ["审批"]);

        // Near the end the window slides back to stay full.
        let h = highlight(&text, "后文", 10);
        assert_eq!(h.fragment.chars().count(), 10);
        assert!(h.fragment.starts_with("预算审批") || h.fragment.contains("后文"));

        let h = highlight("abc", "abc", 0);
        assert_eq!((h.fragment.as_str(), h.ranges.len()), ("", 0));
    }

    #[test]
    fn highlight_never_splits_emoji_or_accents() {
        let family = "👨\u{200D}👩\u{200D}👧";
        let text = format!(
            "{} e\u{301}e\u{301} review {}{}",
            family.repeat(10),
            family,
            "🇨🇳".repeat(10)
        );
        for max in 0..40 {
            let h = highlight(&text, "review", max);
            assert!(h.fragment.chars().count() <= max);
            assert!(!h.fragment.starts_with('\u{200D}') && !h.fragment.ends_with('\u{200D}'));
            assert!(!h.fragment.starts_with('\u{301}'));
            for &(s, e) in &h.ranges {
                assert!(h.fragment.is_char_boundary(s) && h.fragment.is_char_boundary(e));
            }
        }
    }

    #[test]
    fn highlight_never_panics() {
        let samples = [
            "",
            "👍",
            "e\u{301}\u{302}\u{303}",
            "שלום עולם review",
            "\u{202E}预算\u{202C}",
            "🇨🇳🇺🇸预算🎉budget",
            "\u{0}\u{FEFF}\u{FFFD}",
            "ｑ３ Q3 q3",
            "İstanbul review",
        ];
        let queries = [
            "",
            "预算",
            "review",
            "q3",
            "\"budget",
            "👍",
            "\u{301}",
            "İ",
            "“预算”",
        ];
        let mut rng = Rng(7);
        for text in samples {
            for query in queries {
                for max in [0, 1, 2, 3, 5, 8, 100] {
                    let h = highlight(text, query, max);
                    assert!(h.fragment.chars().count() <= max || h.fragment == text);
                    assert!(h.ranges.windows(2).all(|w| w[0].1 < w[1].0));
                    for &(s, e) in &h.ranges {
                        assert!(s < e && e <= h.fragment.len());
                        assert!(h.fragment.is_char_boundary(s) && h.fragment.is_char_boundary(e));
                    }
                }
            }
        }
        // Random mixes of the samples, cut at random widths.
        for _ in 0..500 {
            let text: String = (0..4).map(|_| samples[rng.below(samples.len())]).collect();
            let h = highlight(&text, queries[rng.below(queries.len())], rng.below(12));
            assert!(
                h.ranges
                    .iter()
                    .all(|&(s, e)| h.fragment.get(s..e).is_some())
            );
        }
    }
}
