/*!
Computed includes: what `#include MACRO` may name. The tokens are expanded
as the preprocessor expands them (object- and function-like macros,
variadic ones, `#`, `##`, `__VA_OPT__`, GNU's `, ## __VA_ARGS__`, hide sets
so a macro does not expand inside itself), but with *every* definition of
each macro the build has shown: which one holds at the `#include` depends
on conditionals the scan does not evaluate, so each counts, and the names
are the union (`A.B` with two definitions of each gives four). A value that
is not a header name is dropped: the compiler would have refused it, so no
compile takes that path. Bounded: too many values or too deep a nesting is
an error, and the closure then gives up.
*/

use std::collections::HashMap;
use std::rc::Rc;

use super::directives::{Define, Kind, Spelling, Token};

/// Every definition of each macro.
#[derive(Default)]
pub struct Table {
    defs: HashMap<Vec<u8>, Vec<Define>>,
}

impl Table {
    pub fn add(&mut self, d: &Define) {
        let v = self.defs.entry(d.name.clone()).or_default();
        if !v.contains(d) {
            v.push(d.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpandError {
    /// More values, or more work, than the limit.
    TooMany,
    /// Arguments nested deeper than the limit.
    TooDeep,
}

/// The header names `tokens` (a computed include's) may expand to, at most
/// `limit` values.
pub fn header_names(tokens: &[Token], table: &Table, limit: usize) -> Result<Vec<Spelling>, ExpandError> {
    let mut x = Expander {
        table,
        limit,
        work: 0,
    };
    let input = tokens
        .iter()
        .map(|t| T {
            tok: t.clone(),
            hide: Rc::new(Vec::new()),
        })
        .collect();
    let mut out = Vec::new();
    for value in x.expand(input, 0)? {
        if let Some(s) = header_name(&value)
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    Ok(out)
}

/// `"name"` as one plain string, or `<` … `>` with the tokens between
/// spelled as GCC does (a blank kept where the source had one, but none
/// before `>`).
fn header_name(value: &[T]) -> Option<Spelling> {
    match value {
        [t] if t.tok.kind == Kind::Str
            && t.tok.text.len() >= 2
            && t.tok.text[0] == b'"'
            && t.tok.text.ends_with(b"\"") =>
        {
            Some(Spelling::Quote(t.tok.text[1..t.tok.text.len() - 1].to_vec()))
        }
        [open, inner @ .., close] if open.tok.text == b"<" && close.tok.text == b">" => {
            let mut name = Vec::new();
            for t in inner {
                if t.tok.space_before {
                    name.push(b' ');
                }
                name.extend_from_slice(&t.tok.text);
            }
            Some(Spelling::Angle(name))
        }
        _ => None,
    }
}

const MAX_DEPTH: usize = 64;
/// Tokens handled in all, over every value.
const MAX_WORK: usize = 1 << 20;

/// A token and the macros it must not expand (its hide set).
#[derive(Clone, Debug)]
struct T {
    tok: Token,
    hide: Rc<Vec<Vec<u8>>>,
}

/// A piece of a substituted body before `##` is done.
#[derive(Clone)]
enum Piece {
    Tok(T),
    Paste,
    /// An empty argument next to `##`; `va` if it was the variable one.
    Empty {
        va: bool,
    },
}

struct Expander<'a> {
    table: &'a Table,
    limit: usize,
    work: usize,
}

impl Expander<'_> {
    fn tick(&mut self, n: usize) -> Result<(), ExpandError> {
        self.work += n;
        if self.work > MAX_WORK {
            return Err(ExpandError::TooMany);
        }
        Ok(())
    }

    /// Every value of `input`, rescanned until nothing expands.
    fn expand(&mut self, input: Vec<T>, depth: usize) -> Result<Vec<Vec<T>>, ExpandError> {
        if depth > MAX_DEPTH {
            return Err(ExpandError::TooDeep);
        }
        let mut values: Vec<Vec<T>> = Vec::new();
        // Each state: what is done, and what is left (reversed: the next
        // token is last), so a replacement is pushed back and rescanned
        // with the rest, as the preprocessor rescans.
        let mut rest = input;
        rest.reverse();
        let mut states = vec![(Vec::new(), rest)];
        while let Some((mut out, mut rest)) = states.pop() {
            let mut forked = false;
            while let Some(t) = rest.pop() {
                self.tick(1)?;
                let defs = match self.table.defs.get(&t.tok.text) {
                    Some(defs) if t.tok.kind == Kind::Ident && !t.hide.contains(&t.tok.text) => defs,
                    _ => {
                        out.push(t);
                        continue;
                    }
                };
                let mut forks: Vec<Vec<T>> = Vec::new();
                let mut not_called = false;
                for def in defs {
                    match &def.params {
                        None => {
                            let mut hide = (*t.hide).clone();
                            hide.push(def.name.clone());
                            let hide = Rc::new(hide);
                            let body = def.body.iter().enumerate().map(|(n, b)| T {
                                tok: Token {
                                    space_before: if n == 0 {
                                        t.tok.space_before
                                    } else {
                                        b.space_before
                                    },
                                    ..b.clone()
                                },
                                hide: hide.clone(),
                            });
                            let mut next = rest.clone();
                            next.extend(body.rev());
                            self.tick(next.len())?;
                            forks.push(next);
                        }
                        Some(params) => {
                            let Some((args, rparen_hide, left)) =
                                arguments(&rest, params.len(), def.variadic)
                            else {
                                not_called = true;
                                continue;
                            };
                            // A call the compiler refuses is a path no compile takes.
                            if !arity_fits(args.len(), params.len(), def.variadic) {
                                continue;
                            }
                            let mut hide: Vec<Vec<u8>> = t
                                .hide
                                .iter()
                                .filter(|n| rparen_hide.contains(n))
                                .cloned()
                                .collect();
                            hide.push(def.name.clone());
                            let hide = Rc::new(hide);
                            for value in self.substitute(def, &args, &hide, t.tok.space_before, depth)? {
                                let mut next = rest[..left].to_vec();
                                next.extend(value.into_iter().rev());
                                self.tick(next.len())?;
                                forks.push(next);
                            }
                        }
                    }
                    if forks.len() + states.len() + values.len() > self.limit {
                        return Err(ExpandError::TooMany);
                    }
                }
                // The done part is copied only for a second value on:
                // one value (the usual case) moves it.
                if not_called {
                    forks.push(Vec::new());
                }
                let n = forks.len();
                for (k, f) in forks.into_iter().enumerate() {
                    let mut done = if k + 1 == n {
                        std::mem::take(&mut out)
                    } else {
                        self.tick(out.len())?;
                        out.clone()
                    };
                    if not_called && k + 1 == n {
                        done.push(t.clone());
                        states.push((done, std::mem::take(&mut rest)));
                    } else {
                        states.push((done, f));
                    }
                }
                forked = true;
                break;
            }
            if !forked {
                values.push(out);
                if values.len() > self.limit {
                    return Err(ExpandError::TooMany);
                }
            }
        }
        Ok(values)
    }

    /// The body of a function-like macro with its arguments in place.
    fn substitute(
        &mut self,
        def: &Define,
        args: &[Vec<T>],
        hide: &Rc<Vec<Vec<u8>>>,
        space_before: bool,
        depth: usize,
    ) -> Result<Vec<Vec<T>>, ExpandError> {
        let params = def.params.as_deref().unwrap_or_default();
        let param = |t: &Token| {
            (t.kind == Kind::Ident)
                .then(|| params.iter().position(|p| *p == t.text))
                .flatten()
        };
        let arg = |n: usize| args.get(n).map(Vec::as_slice).unwrap_or_default();
        let va_empty = !def.variadic || arg(params.len().saturating_sub(1)).is_empty();
        let body = va_opt(&def.body, va_empty);
        let is_paste = |t: &Token| t.text == b"##" || t.text == b"%:%:";
        let mut values: Vec<Vec<Piece>> = vec![Vec::new()];
        let mut j = 0;
        while j < body.len() {
            let b = &body[j];
            let next_pastes = body.get(j + 1).is_some_and(is_paste);
            let prev_pastes = j > 0 && is_paste(&body[j - 1]);
            let space = if j == 0 { space_before } else { b.space_before };
            if (b.text == b"#" || b.text == b"%:")
                && let Some(n) = body.get(j + 1).and_then(param)
            {
                let s = stringify(arg(n), space);
                for v in &mut values {
                    v.push(Piece::Tok(T {
                        tok: s.clone(),
                        hide: hide.clone(),
                    }));
                }
                j += 2;
                continue;
            }
            if is_paste(b) && j > 0 && j + 1 < body.len() {
                for v in &mut values {
                    v.push(Piece::Paste);
                }
            } else if let Some(n) = param(b) {
                let raw = arg(n);
                if next_pastes || prev_pastes {
                    let va = def.variadic && n + 1 == params.len();
                    for v in &mut values {
                        if raw.is_empty() {
                            v.push(Piece::Empty { va });
                        }
                        for (k, t) in raw.iter().enumerate() {
                            v.push(Piece::Tok(with_hide(t, hide, (k == 0).then_some(space))));
                        }
                    }
                } else {
                    let expanded = self.expand(raw.to_vec(), depth + 1)?;
                    let mut product = Vec::new();
                    for v in values {
                        for e in &expanded {
                            self.tick(v.len() + e.len())?;
                            let mut w = v.clone();
                            for (k, t) in e.iter().enumerate() {
                                w.push(Piece::Tok(with_hide(t, hide, (k == 0).then_some(space))));
                            }
                            product.push(w);
                        }
                        if product.len() > self.limit {
                            return Err(ExpandError::TooMany);
                        }
                    }
                    values = product;
                }
            } else {
                let t = T {
                    tok: Token {
                        space_before: space,
                        ..b.clone()
                    },
                    hide: hide.clone(),
                };
                for v in &mut values {
                    v.push(Piece::Tok(t.clone()));
                }
            }
            j += 1;
        }
        Ok(values.into_iter().map(|v| paste(v, hide)).collect())
    }
}

/// `t` with `hide` added to its hide set (and its leading blank set).
fn with_hide(t: &T, hide: &Rc<Vec<Vec<u8>>>, space: Option<bool>) -> T {
    let mut h = (*t.hide).clone();
    for n in hide.iter() {
        if !h.contains(n) {
            h.push(n.clone());
        }
    }
    T {
        tok: Token {
            space_before: space.unwrap_or(t.tok.space_before),
            ..t.tok.clone()
        },
        hide: Rc::new(h),
    }
}

/// `__VA_OPT__(…)` kept (without the wrapper) if the variable arguments
/// are not empty, else removed.
fn va_opt(body: &[Token], va_empty: bool) -> Vec<Token> {
    let mut out = Vec::with_capacity(body.len());
    let mut j = 0;
    while j < body.len() {
        if body[j].text == b"__VA_OPT__" && body.get(j + 1).is_some_and(|t| t.text == b"(") {
            let mut depth = 0usize;
            let mut k = j + 2;
            while k < body.len() {
                match body[k].text.as_slice() {
                    b"(" => depth += 1,
                    b")" if depth == 0 => break,
                    b")" => depth -= 1,
                    _ => {}
                }
                k += 1;
            }
            if !va_empty {
                out.extend_from_slice(&body[j + 2..k.min(body.len())]);
            }
            j = k + 1;
            continue;
        }
        out.push(body[j].clone());
        j += 1;
    }
    out
}

/// `##` done: the tokens either side joined into one (an empty argument
/// leaves the other side; GNU's `, ## __VA_ARGS__` with no variable
/// arguments drops the comma).
fn paste(pieces: Vec<Piece>, hide: &Rc<Vec<Vec<u8>>>) -> Vec<T> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    let mut pending = false;
    for p in pieces {
        match p {
            Piece::Paste => pending = true,
            right if pending => {
                pending = false;
                let left = out.pop();
                out.push(match (left, right) {
                    (Some(Piece::Tok(l)), Piece::Empty { va: true }) if l.tok.text == b"," => {
                        Piece::Empty { va: true }
                    }
                    (None | Some(Piece::Empty { .. }), r) => r,
                    (Some(l), Piece::Empty { .. }) => l,
                    (Some(Piece::Tok(l)), Piece::Tok(r)) => {
                        let mut text = l.tok.text.clone();
                        text.extend_from_slice(&r.tok.text);
                        Piece::Tok(T {
                            tok: Token {
                                kind: kind_of(&text),
                                text,
                                space_before: l.tok.space_before,
                            },
                            hide: hide.clone(),
                        })
                    }
                    (Some(Piece::Paste), r) | (Some(Piece::Tok(_)), r @ Piece::Paste) => r,
                });
            }
            p => out.push(p),
        }
    }
    out.into_iter()
        .filter_map(|p| match p {
            Piece::Tok(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// The kind of a pasted token, by its first byte.
fn kind_of(text: &[u8]) -> Kind {
    match text.first() {
        Some(b'"' | b'\'') => Kind::Str,
        Some(c) if c.is_ascii_digit() => Kind::Number,
        Some(&c) if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
            if text.iter().any(|&b| b == b'"' || b == b'\'') {
                Kind::Str
            } else {
                Kind::Ident
            }
        }
        _ => Kind::Punct,
    }
}

/// `#x`: the argument spelled, blanks made one space, as a string literal.
fn stringify(arg: &[T], space_before: bool) -> Token {
    let mut text = vec![b'"'];
    for (n, t) in arg.iter().enumerate() {
        if n > 0 && t.tok.space_before {
            text.push(b' ');
        }
        for &c in &t.tok.text {
            if t.tok.kind == Kind::Str && (c == b'"' || c == b'\\') {
                text.push(b'\\');
            }
            text.push(c);
        }
    }
    text.push(b'"');
    Token {
        kind: Kind::Str,
        text,
        space_before,
    }
}

fn arity_fits(args: usize, params: usize, variadic: bool) -> bool {
    if variadic {
        args + 1 >= params
    } else {
        args == params || (params == 0 && args == 1)
    }
}

/// The arguments of a call whose `(` is next in `rest` (reversed), with the
/// `)`'s hide set and how much of `rest` is left after it. `None` if no
/// `(` follows, or the call is unclosed.
type Call = (Vec<Vec<T>>, Rc<Vec<Vec<u8>>>, usize);
fn arguments(rest: &[T], params: usize, variadic: bool) -> Option<Call> {
    let mut at = rest.len();
    if at == 0 || rest[at - 1].tok.text != b"(" {
        return None;
    }
    at -= 1;
    let mut args: Vec<Vec<T>> = vec![Vec::new()];
    let mut depth = 0usize;
    while at > 0 {
        at -= 1;
        let t = &rest[at];
        match t.tok.text.as_slice() {
            b")" if depth == 0 => {
                // `F()` is one empty argument, which no parameters take.
                if params == 0 && args.len() == 1 && args[0].is_empty() {
                    args.clear();
                }
                return Some((args, t.hide.clone(), at));
            }
            b")" => depth -= 1,
            b"(" => depth += 1,
            b"," if depth == 0 && !(variadic && args.len() >= params) => {
                args.push(Vec::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = args.last_mut() {
            last.push(t.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pump::directives::scan;

    fn table(src: &str) -> Table {
        let mut t = Table::default();
        for d in scan(src.as_bytes()).defines {
            t.add(&d);
        }
        t
    }

    fn names(defs: &str, include: &str) -> Result<Vec<String>, ExpandError> {
        let d = scan(format!("#include {include}\n").as_bytes());
        let Spelling::Computed(tokens) = &d.includes[0].spelling else {
            panic!("{include} is not computed");
        };
        let got = header_names(tokens, &table(defs), 64)?;
        let mut got: Vec<String> = got
            .into_iter()
            .map(|s| match s {
                Spelling::Quote(n) => format!("\"{}\"", String::from_utf8_lossy(&n)),
                Spelling::Angle(n) => format!("<{}>", String::from_utf8_lossy(&n)),
                Spelling::Computed(_) => unreachable!(),
            })
            .collect();
        got.sort();
        Ok(got)
    }

    #[test]
    fn computed_includes() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            ("object-like", "#define H \"h.h\"\n", "H", &["\"h.h\""]),
            (
                "angle tokens",
                "#define H <sys/types.h>\n",
                "H",
                &["<sys/types.h>"],
            ),
            (
                "blank after < kept, before > not",
                "#define H < a b.h >\n",
                "H",
                &["< a b.h>"],
            ),
            ("chained", "#define A B\n#define B \"b.h\"\n", "A", &["\"b.h\""]),
            (
                "every definition counts",
                "#define H \"a.h\"\n#define H \"b.h\"\n",
                "H",
                &["\"a.h\"", "\"b.h\""],
            ),
            ("undefined is dropped", "", "NOPE", &[]),
            (
                "empty is dropped",
                "#define H\n#define H \"x.h\"\n",
                "H",
                &["\"x.h\""],
            ),
            (
                "stringified",
                "#define S(x) #x\n#define X(x) S(x)\n#define D dir\n",
                "X(D/f.h)",
                &["\"dir/f.h\""],
            ),
            (
                "# does not expand",
                "#define S(x) #x\n#define D dir\n",
                "S(D/f.h)",
                &["\"D/f.h\""],
            ),
            (
                "pasted",
                "#define P(a,b) a##b\n#define H P(\"x\",)\n#define Q P(<x.,h>)\n",
                "P(,\"p.h\")",
                &["\"p.h\""],
            ),
            (
                "pasted into a name",
                "#define CAT(a,b) a##b\n#define cfg_linux \"l.h\"\n#define cfg_bsd \"b.h\"\n#define OS linux\n#define OS bsd\n#define X(o) CAT(cfg_,o)\n",
                "X(OS)",
                &["\"l.h\"", "\"b.h\""],
            ),
            (
                "multi-valued product",
                "#define S(x) #x\n#define X(x) S(x)\n#define A a\n#define A b\n#define B 1\n#define B 2\n",
                "X(A/B.h)",
                &["\"a/1.h\"", "\"a/2.h\"", "\"b/1.h\"", "\"b/2.h\""],
            ),
            (
                "function-like without ( stays a name",
                "#define F(x) \"f.h\"\n",
                "F",
                &[],
            ),
            (
                "call over the rest of the line",
                "#define F(x) x\n#define G F\n",
                "G(\"g.h\")",
                &["\"g.h\""],
            ),
            ("variadic", "#define V(...) __VA_ARGS__\n", "V(<a.h>)", &["<a.h>"]),
            (
                "variadic with commas",
                "#define V(f, ...) f\n",
                "V(\"a.h\", 1, 2)",
                &["\"a.h\""],
            ),
            (
                "named variadic",
                "#define V(f, rest...) rest\n",
                "V(1, \"r.h\")",
                &["\"r.h\""],
            ),
            (
                "VA_OPT",
                "#define O(x, ...) __VA_OPT__(\"y.h\") x\n",
                "O(\"n.h\")",
                &["\"n.h\""],
            ),
            (
                "GNU comma paste",
                "#define L(x, ...) <x , ## __VA_ARGS__>\n",
                "L(a.h)",
                &["<a.h>"],
            ),
            (
                "self-reference stops",
                "#define H H\n#define H \"h.h\"\n",
                "H",
                &["\"h.h\""],
            ),
            (
                "mutual recursion stops",
                "#define A B\n#define B A\n#define B \"b.h\"\n",
                "A",
                &["\"b.h\""],
            ),
            (
                "wrong arity is dropped",
                "#define F(a,b) \"f.h\"\n#define F(a) \"g.h\"\n",
                "F(1)",
                &["\"g.h\""],
            ),
            (
                "nested call in arguments",
                "#define S(x) #x\n#define X(x) S(x)\n#define J(a,b) a/b\n",
                "X(J(d, e.h))",
                &["\"d/e.h\""],
            ),
            (
                "Boost-style",
                "#define BOOST_PP_STRINGIZE(t) BOOST_PP_S(t)\n#define BOOST_PP_S(t) #t\n#define BOOST_PP_CAT(a, b) a ## b\n#define F(n) BOOST_PP_STRINGIZE(BOOST_PP_CAT(iter, n).hpp)\n",
                "F(3)",
                &["\"iter3.hpp\""],
            ),
        ];
        for (what, defs, inc, want) in cases {
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(names(defs, inc), Ok(want), "{what}");
        }
    }

    #[test]
    fn bounded() {
        // 2^20 values: refused, not computed.
        let mut defs = String::new();
        for n in 0..20 {
            defs += &format!("#define A{n} x\n#define A{n} y\n");
        }
        defs += "#define S(x) #x\n#define X(x) S(x)\n";
        let all: Vec<String> = (0..20).map(|n| format!("A{n}")).collect();
        assert_eq!(
            names(&defs, &format!("X({})", all.join(" "))),
            Err(ExpandError::TooMany)
        );
        // Exponential growth of one value.
        let mut defs = String::from("#define D0 <x.h>\n");
        for n in 1..40 {
            defs += &format!("#define D{n} D{} D{}\n", n - 1, n - 1);
        }
        assert_eq!(names(&defs, "D39"), Err(ExpandError::TooMany));
        // Deep nesting of arguments.
        let defs = "#define F(x) x\n";
        let deep = "F(".repeat(100) + "\"a.h\"" + &")".repeat(100);
        assert_eq!(names(defs, &deep), Err(ExpandError::TooDeep));
        let shallow = "F(".repeat(20) + "\"a.h\"" + &")".repeat(20);
        assert_eq!(names(defs, &shallow), Ok(vec!["\"a.h\"".to_string()]));
    }
}
