//! What the test files show, read from their source (tests/tests/coverage.rs
//! is the guard): which reasons each test proves by a counted verdict, and
//! which settings it changes before traffic shows what they do.
//!
//! A test shows a reason
//! - in a verdict test (a file that drives `tests::bpf::Filter`): by an
//!   expected counter move `(Reason::X, PACKETS, BYTES)` whose packets are
//!   not the literal `0` (what `Filter::assert_moved` and its siblings take:
//!   every other counter must stay still);
//! - end to end: by `STATS.assert_shown(Reason::X, ...)`
//!   (`harness::ctl::Stats::assert_shown`), which asserts a positive count
//!   equal to one the filter has no part in (nftables at the stack, what a
//!   sender sent).
//!
//! A test changes a setting by a valid assignment in a string literal:
//! `"KEY=VALUE"` (`filter-ctl set`), `("KEY", "VALUE")` (`Filter::set`) or a
//! `KEY = VALUE` line of a TOML text (`apply`, `--config`); values the
//! settings table refuses are not changes. The change is shown when, later
//! in the test, a reason is shown (as above), or (in a verdict test) a frame
//! runs through the programs (`filter.ingress(..)`) and an `assert*!`
//! follows.
//!
//! A test's body includes the functions of its file it calls (helpers),
//! inlined where they are called, so that "later" follows the code.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    str::FromStr as _,
};

use filter_common::Reason;
use filter_ctl_api::settings::{Assignment, Assignments};
use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// How a test shows a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proof {
    /// A verdict test's expected counter move.
    Verdict,
    /// An end-to-end test's `assert_shown`.
    EndToEnd,
}

/// What one `#[test]` function shows.
#[derive(Clone, Debug, Default)]
pub struct Shown {
    /// `file::name` (the file's stem).
    pub test: String,
    pub reasons: Vec<(Reason, Proof)>,
    /// Setting keys changed before traffic showed a result.
    pub settings: BTreeSet<&'static str>,
}

/// One thing a function body does, in order.
#[derive(Clone, Debug)]
enum Event {
    Shown(Reason, Proof),
    Set(&'static str),
    /// A frame run through the programs (a verdict test's).
    Traffic,
    /// An `assert*!`.
    Assert,
}

/// Calls that run a frame through the programs in a verdict test.
const TRAFFIC_CALLS: &[&str] = &[
    "ingress",
    "try_ingress",
    "ingress_output",
    "egress",
    "try_egress",
];

/// Every test of the `*.rs` files in `dir`.
pub fn scan_dir(dir: &Path) -> anyhow::Result<Vec<Shown>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|e| e == "rs"));
    files.sort();
    let mut all = Vec::new();
    for path in files {
        let source = std::fs::read_to_string(&path)?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        all.extend(
            scan(stem, &source).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?,
        );
    }
    Ok(all)
}

/// Every test of one file (`stem` names it).
pub fn scan(stem: &str, source: &str) -> anyhow::Result<Vec<Shown>> {
    let tokens = TokenStream::from_str(source).map_err(|err| anyhow::anyhow!("{err}"))?;
    let mut functions = Vec::new();
    collect_functions(tokens, &mut functions);
    let verdict_file = source.contains("tests::bpf::");
    let helpers: BTreeMap<&str, Vec<&Function>> =
        functions
            .iter()
            .filter(|f| !f.test)
            .fold(BTreeMap::new(), |mut map, f| {
                map.entry(f.name.as_str()).or_default().push(f);
                map
            });
    let reader = Reader {
        helpers,
        verdict_file,
    };
    Ok(functions
        .iter()
        .filter(|f| f.test)
        .map(|f| {
            let mut events = Vec::new();
            let mut stack = vec![f.name.as_str()];
            reader.events(&f.body, &Bindings::new(), &mut stack, &mut events);
            summarize(format!("{stem}::{}", f.name), &events)
        })
        .collect())
}

fn summarize(test: String, events: &[Event]) -> Shown {
    let mut shown = Shown {
        test,
        ..Shown::default()
    };
    // Settings changed, and of them those a frame ran through since.
    let (mut changed, mut run) = (BTreeSet::new(), BTreeSet::new());
    for event in events {
        match event {
            Event::Set(key) => {
                changed.insert(*key);
            }
            Event::Traffic => run.append(&mut changed),
            Event::Assert => shown.settings.append(&mut run),
            Event::Shown(reason, proof) => {
                if !shown.reasons.contains(&(*reason, *proof)) {
                    shown.reasons.push((*reason, *proof));
                }
                shown.settings.append(&mut run);
                shown.settings.append(&mut changed);
            }
        }
    }
    shown
}

struct Function {
    name: String,
    test: bool,
    /// The names of its parameters (`None`: a pattern), `self` left out.
    params: Vec<Option<String>>,
    body: TokenStream,
}

/// The functions of a file, at any depth of `impl` and `mod` blocks (not
/// inside function bodies).
fn collect_functions(tokens: TokenStream, out: &mut Vec<Function>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut test_attribute = false;
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                if let Some(TokenTree::Group(g)) = trees.get(i + 1)
                    && g.delimiter() == Delimiter::Bracket
                {
                    if g.stream().to_string().trim() == "test" {
                        test_attribute = true;
                    }
                    i += 2;
                    continue;
                }
            }
            TokenTree::Ident(ident) if *ident == "fn" => {
                if let Some(TokenTree::Ident(name)) = trees.get(i + 1) {
                    let body = trees[i + 2..].iter().position(
                        |t| matches!(t, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace),
                    );
                    // A declaration without a body (in a trait) ends at `;`.
                    let semicolon = trees[i + 2..]
                        .iter()
                        .position(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ';'));
                    if let Some(at) = body.filter(|at| semicolon.is_none_or(|s| s > *at)) {
                        let TokenTree::Group(group) = &trees[i + 2 + at] else {
                            unreachable!("found as a brace group");
                        };
                        let params = trees[i + 2..i + 2 + at]
                            .iter()
                            .find_map(|t| match t {
                                TokenTree::Group(g) if g.delimiter() == Delimiter::Parenthesis => {
                                    Some(param_names(g.stream()))
                                }
                                _ => None,
                            })
                            .unwrap_or_default();
                        out.push(Function {
                            name: name.to_string(),
                            test: test_attribute,
                            params,
                            body: group.stream(),
                        });
                        test_attribute = false;
                        i += 3 + at;
                        continue;
                    }
                }
            }
            TokenTree::Punct(p) if p.as_char() == ';' => test_attribute = false,
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                // An impl, mod or trait block.
                collect_functions(g.stream(), out);
                test_attribute = false;
            }
            _ => {}
        }
        i += 1;
    }
}

struct Reader<'a> {
    helpers: BTreeMap<&'a str, Vec<&'a Function>>,
    verdict_file: bool,
}

impl Reader<'_> {
    /// The events of `tokens` in order, with the helpers it calls inlined
    /// (`stack`: the functions being read, never inlined again; `bound`:
    /// the arguments the innermost of them was called with).
    fn events<'a>(
        &'a self,
        tokens: &TokenStream,
        bound: &Bindings,
        stack: &mut Vec<&'a str>,
        out: &mut Vec<Event>,
    ) {
        let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
        let group_at = |i: usize, delimiter: Delimiter| match trees.get(i) {
            Some(TokenTree::Group(g)) if g.delimiter() == delimiter => Some(g.stream()),
            _ => None,
        };
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(group) => {
                    if group.delimiter() == Delimiter::Parenthesis {
                        self.tuple(group.stream(), bound, out);
                    }
                    self.events(&group.stream(), bound, stack, out);
                }
                TokenTree::Literal(literal) => {
                    if let Some(text) = string_value(&literal.to_string()) {
                        out.extend(assignments(&text).into_iter().map(Event::Set));
                    }
                }
                TokenTree::Ident(ident) => {
                    let name = ident.to_string();
                    let bang =
                        matches!(trees.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '!');
                    if bang
                        && name.starts_with("assert")
                        && let Some(args) = group_at(i + 2, Delimiter::Parenthesis)
                    {
                        // Its arguments, then the assertion.
                        self.events(&args, bound, stack, out);
                        out.push(Event::Assert);
                        i += 3;
                        continue;
                    }
                    if let Some(args) = group_at(i + 1, Delimiter::Parenthesis) {
                        if self.verdict_file && TRAFFIC_CALLS.contains(&name.as_str()) {
                            // The frame is built first (in the arguments).
                            self.events(&args, bound, stack, out);
                            out.push(Event::Traffic);
                            i += 2;
                            continue;
                        }
                        if name == "assert_shown"
                            && let Some(reason) = leading_reason(&split_args(args.clone()), bound)
                        {
                            out.push(Event::Shown(reason, Proof::EndToEnd));
                        }
                        if let Some((key, functions)) = self.helpers.get_key_value(name.as_str())
                            && !stack.contains(key)
                        {
                            // The arguments, then the helper's body.
                            self.tuple(args.clone(), bound, out);
                            self.events(&args, bound, stack, out);
                            let args: Vec<TokenStream> = split_args(args)
                                .into_iter()
                                .map(|arg| resolve(arg, bound))
                                .collect();
                            stack.push(key);
                            for function in functions {
                                let inner: Bindings = function
                                    .params
                                    .iter()
                                    .zip(args.clone())
                                    .filter_map(|(name, arg)| Some((name.clone()?, arg)))
                                    .collect();
                                self.events(&function.body, &inner, stack, out);
                            }
                            stack.pop();
                            i += 2;
                            continue;
                        }
                    }
                }
                TokenTree::Punct(_) => {}
            }
            i += 1;
        }
    }

    /// A parenthesized group: a counter move `(Reason::X, N, BYTES)` (in a
    /// verdict test) or a setting `("KEY", "VALUE")`.
    fn tuple(&self, tokens: TokenStream, bound: &Bindings, out: &mut Vec<Event>) {
        let args = split_args(tokens);
        if self.verdict_file
            && args.len() == 3
            && let Some(reason) = leading_reason(&args, bound)
            && args[1].to_string().trim() != "0"
        {
            out.push(Event::Shown(reason, Proof::Verdict));
        }
        if let [key, value] = &args[..]
            && let (Some(key), Some(value)) = (
                string_value(key.to_string().trim()),
                string_value(value.to_string().trim()),
            )
            && let Ok(assignment) = Assignment::text(&key, &value)
        {
            out.push(Event::Set(assignment.key()));
        }
    }
}

/// A helper's parameters and the arguments it was called with.
type Bindings = BTreeMap<String, TokenStream>;

/// `arg`, or what it is bound to if it is one of the caller's parameters.
fn resolve(arg: TokenStream, bound: &Bindings) -> TokenStream {
    let trees: Vec<TokenTree> = arg.clone().into_iter().collect();
    match &trees[..] {
        [TokenTree::Ident(name)] => bound.get(&name.to_string()).cloned().unwrap_or(arg),
        _ => arg,
    }
}

/// The names of a parameter list's parameters (`a: T, mut b: U`), `None`
/// for a pattern (`(x, y): (T, U)`), `self` (in any form) left out.
fn param_names(tokens: TokenStream) -> Vec<Option<String>> {
    split_args(tokens)
        .into_iter()
        .filter_map(|param| {
            let trees: Vec<TokenTree> = param.into_iter().collect();
            let Some(colon) = trees
                .iter()
                .position(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ':'))
            else {
                return None; // `self`, `&self`, `&mut self`
            };
            match trees[..colon].last() {
                Some(TokenTree::Ident(name)) if *name == "self" => None,
                Some(TokenTree::Ident(name)) => Some(Some(name.to_string())),
                _ => Some(None),
            }
        })
        .collect()
}

/// The comma-separated parts of a group's contents.
fn split_args(tokens: TokenStream) -> Vec<TokenStream> {
    let mut parts = vec![TokenStream::new()];
    for tree in tokens {
        match &tree {
            TokenTree::Punct(p) if p.as_char() == ',' => parts.push(TokenStream::new()),
            _ => parts.last_mut().expect("one part at least").extend([tree]),
        }
    }
    if parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

/// The reason of a first argument that is exactly `Reason::Variant` (or a
/// parameter bound to it).
fn leading_reason(args: &[TokenStream], bound: &Bindings) -> Option<Reason> {
    let first: Vec<TokenTree> = resolve(args.first()?.clone(), bound).into_iter().collect();
    let [
        TokenTree::Ident(path),
        TokenTree::Punct(a),
        TokenTree::Punct(b),
        TokenTree::Ident(variant),
    ] = &first[..]
    else {
        return None;
    };
    if *path != "Reason" || a.as_char() != ':' || b.as_char() != ':' {
        return None;
    }
    let variant = variant.to_string();
    Reason::ALL
        .into_iter()
        .find(|reason| format!("{reason:?}") == variant)
}

/// The setting keys a string assigns validly: `KEY=VALUE` (the whole
/// string), or `KEY = VALUE` lines of a TOML text.
fn assignments(text: &str) -> Vec<&'static str> {
    if let Ok(assignment) = text.parse::<Assignment>() {
        return vec![assignment.key()];
    }
    text.lines()
        .filter(|line| line.contains(" = "))
        .filter_map(|line| toml::from_str::<Assignments>(line).ok())
        .flat_map(|assignments| {
            assignments
                .0
                .iter()
                .map(Assignment::key)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The value of a string literal as written in source (`"..."` with
/// escapes, or a raw `r#"..."#`); `None` for other literals.
fn string_value(literal: &str) -> Option<String> {
    if let Some(raw) = literal.strip_prefix('r') {
        let hashes = raw.len() - raw.trim_start_matches('#').len();
        let inner = raw.get(hashes..raw.len().checked_sub(hashes)?)?;
        return inner
            .strip_prefix('"')?
            .strip_suffix('"')
            .map(str::to_owned);
    }
    let inner: Vec<char> = literal
        .strip_prefix('"')?
        .strip_suffix('"')?
        .chars()
        .collect();
    let mut value = String::new();
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        i += 1;
        if c != '\\' {
            value.push(c);
            continue;
        }
        let escaped = *inner.get(i)?;
        i += 1;
        match escaped {
            'n' => value.push('\n'),
            't' => value.push('\t'),
            '0' => value.push('\0'),
            // A line continuation: the next line's leading blanks go too.
            '\n' => {
                while inner.get(i).is_some_and(|c| c.is_whitespace()) {
                    i += 1;
                }
            }
            other => value.push(other),
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(source: &str, verdict: bool) -> Shown {
        let source = if verdict {
            format!("use tests::bpf::Filter;\n{source}")
        } else {
            source.to_owned()
        };
        let mut tests = scan("file", &source).unwrap();
        assert_eq!(tests.len(), 1, "{source}");
        tests.remove(0)
    }

    #[test]
    fn counter_moves_show_their_reasons_unless_zero() {
        let shown = one(
            r#"
            #[test]
            fn t() {
                filter.assert_moved(&before, &[(Reason::PassIpv4, 2, 2 * len), (Reason::DropFragment, 0, 0)], "x");
                assert_eq!(moved(Reason::PassNotIp), 3);
            }
            "#,
            true,
        );
        assert_eq!(shown.test, "file::t");
        assert_eq!(shown.reasons, [(Reason::PassIpv4, Proof::Verdict)]);
        // Not in a verdict test.
        let shown = one(
            "#[test] fn t() { check(&[(Reason::PassIpv4, 2, 2)]); }",
            false,
        );
        assert!(shown.reasons.is_empty());
    }

    #[test]
    fn assert_shown_is_end_to_end_and_helpers_count() {
        let shown = one(
            r#"
            fn helper(delta: &Stats) { delta.assert_shown(Reason::PassFragment, stack, "x"); }
            /// Doc.
            #[test]
            fn t() { helper(&delta); delta.assert_shown(reason, 1, "not a literal reason"); }
            #[cfg(test)]
            fn not_a_test() { delta.assert_shown(Reason::PassNotIp, 1, "x"); }
            "#,
            false,
        );
        assert_eq!(shown.reasons, [(Reason::PassFragment, Proof::EndToEnd)]);
    }

    #[test]
    fn reasons_passed_to_helpers_are_followed() {
        let shown = one(
            r#"
            fn inbound(filter: &Filter, frame: &Frame, reason: Reason) {
                filter.assert_moved(&before, &[(reason, 1, frame.len() as u64)], "x");
            }
            impl Conn {
                fn open(self, filter: &Filter, completed: Reason) {
                    inbound(filter, &self.syn(), Reason::PassSyn);
                    inbound(filter, &self.ack(), completed);
                }
            }
            #[test]
            fn t() { conn.open(&filter, Reason::PassConnEvicted); }
            "#,
            true,
        );
        assert_eq!(
            shown.reasons,
            [
                (Reason::PassSyn, Proof::Verdict),
                (Reason::PassConnEvicted, Proof::Verdict)
            ]
        );
    }

    #[test]
    fn settings_count_when_traffic_and_an_assertion_follow() {
        let shown = one(
            r#"
            fn tuned(filter: &mut Filter) { filter.set(&[("fragment_lifetime", "100ms")]); }
            #[test]
            fn t() {
                filter.set(&[("ntp_ports", "124"), ("monitor", "maybe")]);
                tuned(&mut filter);
                assert_eq!(filter.ingress(&frame), XDP_DROP);
                filter.set(&[("dns_ports", "none")]);
                assert_eq!(filter.config().dns_ports, 0);
                filter.set(&[("orphan_fragments", "pass")]);
                filter.ingress(&frame);
            }
            "#,
            true,
        );
        assert_eq!(
            shown.settings.into_iter().collect::<Vec<_>>(),
            ["fragment_lifetime", "ntp_ports"],
            "monitor=maybe is refused; dns_ports is only read back, \
             orphan_fragments has no assertion after its traffic"
        );
    }

    #[test]
    fn end_to_end_settings_come_from_set_arguments_and_toml_texts() {
        let shown = one(
            r#"
            #[test]
            fn t() {
                lab.set(&["syn_global_rate=5/s", "syn_prefix_v4=7"]);
                write(&file, "conn_limit = \"25:3\"\n\
                              syn_halfopen_budget = 24\n");
                let bad = format!("sample_rate={value}");
                delta.assert_shown(Reason::DropSynGlobal, sent - reached, "x");
                lab.set(&["dns_slip=3"]);
            }
            "#,
            false,
        );
        assert_eq!(
            shown.settings.into_iter().collect::<Vec<_>>(),
            ["conn_limit", "syn_global_rate", "syn_halfopen_budget"]
        );
    }

    #[test]
    fn string_literals_are_read_as_written() {
        assert_eq!(string_value(r#""a=b""#).as_deref(), Some("a=b"));
        assert_eq!(
            string_value("\"x = 1\\n\\\n      y = \\\"z\\\"\"").as_deref(),
            Some("x = 1\ny = \"z\"")
        );
        assert_eq!(
            string_value(r####"r#"q="1""#"####).as_deref(),
            Some(r#"q="1""#)
        );
        assert_eq!(string_value("42"), None);
    }
}
