/*!
A file's includes and definitions, as the preprocessor would see them if
every conditional were true: `#include`, `#include_next`, `#import` and
`#embed` with their header names (or the tokens of a computed one),
`__has_include` in any directive, and every `#define`. Conditionals are not
evaluated: taking every branch over-approximates, which is what the closure
needs (a header sent but not read costs bytes; one not sent costs the job).

Bytes, not text: a header in Latin-1 or with a BOM is scanned as it is.
Translation phases 1–3 as GCC does them: CR LF and a lone CR end a line, a
backslash and a newline (with blanks between, as GCC allows) are removed,
comments are blanks and a block comment may carry a directive over lines;
string, character and raw-string literals hide what looks like a comment or
a directive; `%:` and `??=` spell `#`. One pass, linear in the input, and no
input makes it panic.
*/

use std::borrow::Cow;

/// A preprocessing token, spelled as in the file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Token {
    pub kind: Kind,
    pub text: Vec<u8>,
    /// Whitespace (or a comment) came before it on its line.
    pub space_before: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Ident,
    Number,
    /// A string or character literal, prefix and quotes included.
    Str,
    Punct,
    Other,
}

/// What an include names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spelling {
    Quote(Vec<u8>),
    Angle(Vec<u8>),
    /// Macro-expanded before it names a header.
    Computed(Vec<Token>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// `#include`, and `#embed`, which reads a file the same way.
    Include,
    IncludeNext,
    Import,
    /// `__has_include` (and `__has_embed`): probed, perhaps not read.
    HasInclude,
    HasIncludeNext,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    pub how: How,
    pub spelling: Spelling,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Define {
    pub name: Vec<u8>,
    /// `None` for an object-like macro. A variadic macro's last parameter
    /// is its variable one (`__VA_ARGS__` for `...`).
    pub params: Option<Vec<Vec<u8>>>,
    pub variadic: bool,
    pub body: Vec<Token>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    pub includes: Vec<Include>,
    pub defines: Vec<Define>,
}

/// The directives of a file's bytes.
pub fn scan(text: &[u8]) -> Directives {
    let s = splice(text);
    let s: &[u8] = &s;
    let mut d = Directives::default();
    let mut i = 0;
    // A UTF-8 byte order mark is not a token (GCC skips it).
    if s.starts_with(b"\xEF\xBB\xBF") {
        i = 3;
    }
    let mut line_start = true;
    while i < s.len() {
        let b = s[i];
        match b {
            b'\n' => {
                line_start = true;
                i += 1;
            }
            b' ' | b'\t' | 0x0b | 0x0c | 0 => i += 1,
            b'/' if s.get(i + 1) == Some(&b'*') => i = block_comment_end(s, i),
            b'/' if s.get(i + 1) == Some(&b'/') => i = line_end(s, i),
            b'#' if line_start => i = directive(s, i + 1, &mut d),
            b'%' if line_start && s.get(i + 1) == Some(&b':') => i = directive(s, i + 2, &mut d),
            b'?' if line_start && s[i..].starts_with(b"??=") => i = directive(s, i + 3, &mut d),
            _ => {
                line_start = false;
                i = token_end(s, i);
            }
        }
    }
    d
}

impl Define {
    /// A `-D` argument: `X` (defined as 1), `X=`, `X=BODY`, `F(a)=BODY`.
    pub fn from_command_line(arg: &str) -> Option<Define> {
        let (head, body) = match arg.split_once('=') {
            Some((h, b)) => (h.as_bytes(), b.as_bytes()),
            None => (arg.as_bytes(), &b"1"[..]),
        };
        let mut line = head.to_vec();
        line.push(b' ');
        line.extend(body.iter().map(|&c| if c == b'\n' { b' ' } else { c }));
        let mut d = Directives::default();
        define(&line, 0, &mut d);
        let def = d.defines.pop()?;
        // Nothing but the name and its parameters before `=`.
        let named = head.len() == def.name.len() || (head.last() == Some(&b')') && def.params.is_some());
        named.then_some(def)
    }
}

/// Phases 1–2: line ends made `\n`, backslash-newlines removed.
fn splice(text: &[u8]) -> Cow<'_, [u8]> {
    if !text.iter().any(|&b| b == b'\\' || b == b'\r') {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\r' => {
                out.push(b'\n');
                i += if text.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            }
            b'\\' => {
                let mut j = i + 1;
                while matches!(text.get(j), Some(b' ' | b'\t' | 0x0b | 0x0c)) {
                    j += 1;
                }
                match text.get(j) {
                    Some(b'\n') => i = j + 1,
                    Some(b'\r') => i = j + if text.get(j + 1) == Some(&b'\n') { 2 } else { 1 },
                    _ => {
                        out.push(b'\\');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// Past a block comment starting at `i` (all of the input if unclosed).
fn block_comment_end(s: &[u8], i: usize) -> usize {
    let mut j = i + 2;
    while j + 1 < s.len() {
        if s[j] == b'*' && s[j + 1] == b'/' {
            return j + 2;
        }
        j += 1;
    }
    s.len()
}

/// The `\n` ending the line at `i`, or the end.
fn line_end(s: &[u8], i: usize) -> usize {
    s[i..].iter().position(|&b| b == b'\n').map_or(s.len(), |p| i + p)
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_ident(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0b | 0x0c | 0)
}

/// Past the token at `i` (not a blank, comment or newline).
fn token_end(s: &[u8], i: usize) -> usize {
    lex(s, i).0
}

/// The token at `i`: its end and kind.
fn lex(s: &[u8], i: usize) -> (usize, Kind) {
    let b = s[i];
    if is_ident_start(b) {
        let mut j = i + 1;
        while j < s.len() && is_ident(s[j]) {
            j += 1;
        }
        let word = &s[i..j];
        match s.get(j) {
            Some(b'"') if matches!(word, b"R" | b"LR" | b"uR" | b"UR" | b"u8R") => {
                if let Some(end) = raw_string_end(s, j) {
                    return (end, Kind::Str);
                }
            }
            Some(&q @ (b'"' | b'\'')) if matches!(word, b"L" | b"u" | b"U" | b"u8") => {
                return (quoted_end(s, j, q), Kind::Str);
            }
            _ => {}
        }
        return (j, Kind::Ident);
    }
    if b.is_ascii_digit() || (b == b'.' && s.get(i + 1).is_some_and(u8::is_ascii_digit)) {
        let mut j = i + 1;
        while j < s.len() {
            let c = s[j];
            if matches!(c, b'+' | b'-') && matches!(s[j - 1], b'e' | b'E' | b'p' | b'P') {
                j += 1;
            } else if c == b'\'' && s.get(j + 1).is_some_and(|&n| is_ident(n)) {
                // A digit separator (C++14, C23).
                j += 2;
            } else if is_ident(c) || c == b'.' {
                j += 1;
            } else {
                break;
            }
        }
        return (j, Kind::Number);
    }
    if b == b'"' || b == b'\'' {
        return (quoted_end(s, i, b), Kind::Str);
    }
    const PUNCTS: &[&[u8]] = &[
        b"%:%:", b"...", b"<<=", b">>=", b"<=>", b"->*", b"##", b"%:", b"::", b"<<", b">>", b"<=", b">=",
        b"==", b"!=", b"&&", b"||", b"++", b"--", b"+=", b"-=", b"*=", b"/=", b"%=", b"&=", b"|=", b"^=",
        b"->", b".*", b"#", b"(", b")", b",", b"<", b">", b"+", b"-", b"*", b"/", b"%", b"&", b"|", b"^",
        b"!", b"~", b"=", b"?", b":",
    ];
    for &p in PUNCTS {
        if s[i..].starts_with(p) {
            return (i + p.len(), Kind::Punct);
        }
    }
    if matches!(b, b'[' | b']' | b'{' | b'}' | b';' | b'.') {
        return (i + 1, Kind::Punct);
    }
    (i + 1, Kind::Other)
}

/// Past a quoted literal opened at `i`; an unclosed one ends its line.
fn quoted_end(s: &[u8], i: usize, q: u8) -> usize {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' => j += 2,
            b'\n' => return j,
            c if c == q => return j + 1,
            _ => j += 1,
        }
    }
    s.len()
}

/// Past a raw string whose `"` is at `i`, if it is one: `"delim(…)delim"`.
fn raw_string_end(s: &[u8], i: usize) -> Option<usize> {
    let open = i + 1 + s.get(i + 1..)?.iter().take(17).position(|&b| b == b'(')?;
    let delim = &s[i + 1..open];
    if delim
        .iter()
        .any(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\\' | b')' | 0x0b | 0x0c))
    {
        return None;
    }
    let mut close = Vec::with_capacity(delim.len() + 2);
    close.push(b')');
    close.extend_from_slice(delim);
    close.push(b'"');
    let body = &s[open + 1..];
    let at = body.windows(close.len()).position(|w| w == close.as_slice());
    Some(at.map_or(s.len(), |p| open + 1 + p + close.len()))
}

/// Skips blanks and comments within a logical line; `.1` is whether any.
fn skip_blanks(s: &[u8], mut i: usize) -> (usize, bool) {
    let start = i;
    loop {
        match s.get(i) {
            Some(&b) if is_blank(b) => i += 1,
            Some(b'/') if s.get(i + 1) == Some(&b'*') => i = block_comment_end(s, i),
            Some(b'/') if s.get(i + 1) == Some(&b'/') => i = line_end(s, i),
            _ => return (i, i != start),
        }
    }
}

/// The tokens of the rest of the logical line from `i`, and its end.
fn line_tokens(s: &[u8], i: usize) -> (Vec<Token>, usize) {
    let (tokens, _, end) = line_tokens_at(s, i);
    (tokens, end)
}

/// As `line_tokens`, with where each token starts.
fn line_tokens_at(s: &[u8], mut i: usize) -> (Vec<Token>, Vec<usize>, usize) {
    let (mut out, mut at) = (Vec::new(), Vec::new());
    loop {
        let (j, space_before) = skip_blanks(s, i);
        match s.get(j) {
            None | Some(b'\n') => return (out, at, j),
            Some(_) => {
                let (end, kind) = lex(s, j);
                out.push(Token {
                    kind,
                    text: s[j..end].to_vec(),
                    space_before,
                });
                at.push(j);
                i = end;
            }
        }
    }
}

/// A directive whose name starts at `i` (after `#`); returns its line's end.
fn directive(s: &[u8], i: usize, d: &mut Directives) -> usize {
    let (j, _) = skip_blanks(s, i);
    let name_end = match s.get(j) {
        Some(&b) if is_ident_start(b) => token_end(s, j),
        _ => j,
    };
    let how = match &s[j..name_end] {
        b"include" | b"embed" => Some(How::Include),
        b"include_next" => Some(How::IncludeNext),
        b"import" => Some(How::Import),
        b"define" => return define(s, name_end, d),
        _ => None,
    };
    match how {
        Some(how) => {
            let (k, _) = skip_blanks(s, name_end);
            match header_name(s, k) {
                Some((spelling, end)) => {
                    d.includes.push(Include { how, spelling });
                    // `#embed "f" limit(…)`: the rest of the line is not read.
                    line_end_skipping_comments(s, end)
                }
                // An unclosed name: the compiler refuses it.
                None if matches!(s.get(k), Some(b'"' | b'<')) => line_end_skipping_comments(s, k + 1),
                None => {
                    let (tokens, end) = line_tokens(s, k);
                    if !tokens.is_empty() {
                        d.includes.push(Include {
                            how,
                            spelling: Spelling::Computed(tokens),
                        });
                    }
                    end
                }
            }
        }
        None => {
            let (tokens, at, end) = line_tokens_at(s, name_end);
            has_includes(s, &tokens, &at, d);
            end
        }
    }
}

/// The end of a logical line, past any block comment that carries it over.
fn line_end_skipping_comments(s: &[u8], mut i: usize) -> usize {
    loop {
        let (j, _) = skip_blanks(s, i);
        match s.get(j) {
            None | Some(b'\n') => return j,
            Some(b'"' | b'\'') => i = quoted_end(s, j, s[j]),
            Some(_) => i = j + 1,
        }
    }
}

/// `"name"` or `<name>` at `i`, with the index past it.
fn header_name(s: &[u8], i: usize) -> Option<(Spelling, usize)> {
    let close = match s.get(i)? {
        b'"' => b'"',
        b'<' => b'>',
        _ => return None,
    };
    let len = s[i + 1..].iter().position(|&b| b == close || b == b'\n')?;
    if s[i + 1 + len] != close {
        return None;
    }
    let name = s[i + 1..i + 1 + len].to_vec();
    let spelling = if close == b'"' {
        Spelling::Quote(name)
    } else {
        Spelling::Angle(name)
    };
    Some((spelling, i + len + 2))
}

/// `__has_include(…)` and its kin among a directive's tokens (`at`: where
/// each starts). A header name is read again from the bytes, as the
/// preprocessor reads one there (`<a//b.h>` is a name, not a comment).
fn has_includes(s: &[u8], tokens: &[Token], at: &[usize], d: &mut Directives) {
    let mut k = 0;
    while k < tokens.len() {
        let t = &tokens[k];
        k += 1;
        let how = match t.text.as_slice() {
            _ if t.kind != Kind::Ident => continue,
            b"__has_include" | b"__has_include__" | b"__has_embed" => How::HasInclude,
            b"__has_include_next" | b"__has_include_next__" => How::HasIncludeNext,
            _ => continue,
        };
        if tokens.get(k).is_none_or(|t| t.text != b"(") {
            continue;
        }
        let first = k + 1;
        let mut depth = 0usize;
        let mut close = tokens.len();
        for (n, t) in tokens.iter().enumerate().skip(first) {
            match t.text.as_slice() {
                b"(" => depth += 1,
                b")" if depth == 0 => {
                    close = n;
                    break;
                }
                b")" => depth -= 1,
                _ => {}
            }
        }
        k = close;
        let args = &tokens[first..close];
        let Some(head) = args.first() else { continue };
        let spelling = match header_name(s, at[first]) {
            Some((spelling, _)) if head.kind == Kind::Str || head.text == b"<" => spelling,
            _ => Spelling::Computed(args.to_vec()),
        };
        d.includes.push(Include { how, spelling });
    }
}

/// A `#define` whose name starts at or after `i`; returns its line's end.
fn define(s: &[u8], i: usize, d: &mut Directives) -> usize {
    let (j, _) = skip_blanks(s, i);
    let Some(&b) = s.get(j) else {
        return j;
    };
    if !is_ident_start(b) {
        return line_tokens(s, j).1;
    }
    let name_end = token_end(s, j);
    let name = s[j..name_end].to_vec();
    let mut k = name_end;
    let mut params = None;
    let mut variadic = false;
    if s.get(k) == Some(&b'(') {
        let mut list = Vec::new();
        k += 1;
        loop {
            let (p, _) = skip_blanks(s, k);
            match s.get(p) {
                Some(b')') => {
                    k = p + 1;
                    break;
                }
                Some(b',') => k = p + 1,
                Some(b'.') if s[p..].starts_with(b"...") => {
                    list.push(b"__VA_ARGS__".to_vec());
                    variadic = true;
                    k = p + 3;
                }
                Some(&c) if is_ident_start(c) => {
                    let e = token_end(s, p);
                    list.push(s[p..e].to_vec());
                    k = e;
                    let (q, _) = skip_blanks(s, k);
                    if s[q..].starts_with(b"...") {
                        variadic = true;
                        k = q + 3;
                    }
                }
                // Not a parameter list GCC accepts: no definition.
                _ => return line_tokens(s, p).1,
            }
        }
        params = Some(list);
    }
    let (mut body, at, end) = line_tokens_at(s, k);
    has_includes(s, &body, &at, d);
    if let Some(t) = body.first_mut() {
        t.space_before = false;
    }
    d.defines.push(Define {
        name,
        params,
        variadic,
        body,
    });
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: &str) -> Include {
        Include {
            how: How::Include,
            spelling: Spelling::Quote(n.as_bytes().to_vec()),
        }
    }
    fn a(n: &str) -> Include {
        Include {
            how: How::Include,
            spelling: Spelling::Angle(n.as_bytes().to_vec()),
        }
    }
    fn with(how: How, i: Include) -> Include {
        Include { how, ..i }
    }
    fn computed(how: How, src: &str, want: &[&str]) -> Include {
        let Spelling::Computed(t) = scan(format!("#include {src}\n").as_bytes()).includes[0]
            .spelling
            .clone()
        else {
            panic!("{src}")
        };
        let texts: Vec<&[u8]> = t.iter().map(|t| t.text.as_slice()).collect();
        assert_eq!(
            texts,
            want.iter().map(|w| w.as_bytes()).collect::<Vec<_>>(),
            "{src}"
        );
        Include {
            how,
            spelling: Spelling::Computed(t),
        }
    }

    #[test]
    fn includes_as_the_preprocessor_sees_them() {
        use How::{HasInclude, HasIncludeNext, Import, IncludeNext};
        let cases: Vec<(&str, &[u8], Vec<super::Include>)> = vec![
            ("plain", b"#include \"a.h\"\n#include <b.h>\n", vec![q("a.h"), a("b.h")]),
            ("no space, no newline at the end", b"#include\"a.h\"", vec![q("a.h")]),
            ("blanks around #", b"  #  include <a.h>\n\t#\tinclude\t\"b.h\"", vec![a("a.h"), q("b.h")]),
            ("next, import, embed", b"#include_next <a.h>\n#import \"b.h\"\n#embed \"c.bin\" limit(4)\n",
             vec![with(IncludeNext, a("a.h")), with(Import, q("b.h")), q("c.bin")]),
            ("in every branch", b"#if 0\n#include \"a.h\"\n#else\n#include \"b.h\"\n#endif\n", vec![q("a.h"), q("b.h")]),
            ("not a directive mid-line", b"int x; #include \"a.h\"\n", vec![]),
            ("not #includes", b"#includes \"a.h\"\n#pragma include \"b.h\"\n", vec![]),
            ("in a line comment", b"// #include \"a.h\"\n#include \"b.h\"\n", vec![q("b.h")]),
            ("in a block comment", b"/*\n#include \"a.h\"\n*/\n#include \"b.h\"\n", vec![q("b.h")]),
            ("after a block comment", b"/* x */ #include \"a.h\"\n/* \n */ # include <b.h>\n", vec![q("a.h"), a("b.h")]),
            ("comment between # and name", b"#/**/include/**/\"a.h\"\n", vec![q("a.h")]),
            ("comment in the name is not", b"#include \"a/*b*/.h\"\n#include <c//d.h>\n", vec![q("a/*b*/.h"), a("c//d.h")]),
            ("block comment carries the line", b"#include \"a.h\" /* x\n#include \"no.h\" */\n#include \"b.h\"\n", vec![q("a.h"), q("b.h")]),
            ("line comment spliced", b"// x \\\n#include \"a.h\"\n#include \"b.h\"\n", vec![q("b.h")]),
            ("splice in the name", b"#inc\\\nlude \"a\\\n.h\"\n", vec![q("a.h")]),
            ("splice with blanks after \\", b"#include \\  \n \"a.h\"\n", vec![q("a.h")]),
            ("CR LF", b"#include \"a.h\"\r\n#include \"b.h\"\r\n", vec![q("a.h"), q("b.h")]),
            ("lone CR ends a line", b"int x;\r#include \"a.h\"\r", vec![q("a.h")]),
            ("splice by backslash CR", b"#define X \\\r1\r#include \"a.h\"\r", vec![q("a.h")]),
            ("in a string", b"char *s = \"\\\n#include \\\"a.h\\\"\";\n#include \"b.h\"\n", vec![q("b.h")]),
            ("quote in a char", b"char c = '\"'; /* x */\n#include \"a.h\"\n", vec![q("a.h")]),
            ("comment opener in a string", b"s = \"/*\";\n#include \"a.h\"\n", vec![q("a.h")]),
            ("unclosed string ends at the line", b"s = \"abc\n#include \"a.h\"\n", vec![q("a.h")]),
            ("raw string", b"s = R\"x(\n#include \"a.h\"\n)\" /*)x\";\n#include \"b.h\"\n", vec![q("b.h")]),
            ("prefixed raw string", b"s = u8R\"(\n#include \"a.h\"\n)\";\n#include \"b.h\"\n", vec![q("b.h")]),
            ("R in a word is not raw", b"FOOR\"(\";\n#include \"a.h\"\n", vec![q("a.h")]),
            ("digit separator", b"x = 1'000; /* c\n*/\n#include \"a.h\"\n", vec![q("a.h")]),
            ("digraph and trigraph", b"%:include \"a.h\"\n??=include <b.h>\n", vec![q("a.h"), a("b.h")]),
            ("BOM", b"\xEF\xBB\xBF#include \"a.h\"\n", vec![q("a.h")]),
            ("non-ASCII bytes", b"#include \"caf\xc3\xa9.h\"\n#include \"\xe9t\xe9.h\"\n", vec![
                Include { how: How::Include, spelling: Spelling::Quote(b"caf\xc3\xa9.h".to_vec()) },
                Include { how: How::Include, spelling: Spelling::Quote(b"\xe9t\xe9.h".to_vec()) }]),
            ("NUL is a blank", b"\0#include \"a.h\"\n", vec![q("a.h")]),
            ("unclosed names", b"#include \"a.h\n#include <b.h\n", vec![]),
            ("has_include", b"#if __has_include(\"a.h\") && __has_include( <b/c.h> )\n#elif __has_include_next(<d.h>)\n#endif\n",
             vec![with(HasInclude, q("a.h")), with(HasInclude, a("b/c.h")), with(HasIncludeNext, a("d.h"))]),
            ("has_include old spelling and in a define", b"#define H __has_include__(<a.h>)\n#ifdef __has_include\n", vec![with(HasInclude, a("a.h"))]),
            ("computed", b"#include MACRO\n#include_next HDR(x)\n", vec![computed(How::Include, "MACRO", &["MACRO"]), computed(IncludeNext, "HDR(x)", &["HDR", "(", "x", ")"])]),
            ("computed has_include", b"#if __has_include(H)\n", vec![Include { how: HasInclude, spelling: Spelling::Computed(vec![
                Token { kind: Kind::Ident, text: b"H".to_vec(), space_before: false }]) }]),
        ];
        for (what, text, want) in cases {
            assert_eq!(scan(text).includes, want, "{what}");
        }
    }

    fn def(text: &[u8]) -> Define {
        let d = scan(text);
        assert_eq!(d.defines.len(), 1, "{}", String::from_utf8_lossy(text));
        d.defines[0].clone()
    }

    fn body(d: &Define) -> Vec<String> {
        d.body
            .iter()
            .map(|t| String::from_utf8_lossy(&t.text).into_owned())
            .collect()
    }

    #[test]
    fn definitions() {
        type Row<'a> = (&'a [u8], &'a str, Option<Vec<&'a str>>, bool, Vec<&'a str>);
        let cases: Vec<Row> = vec![
            (b"#define X 1\n", "X", None, false, vec!["1"]),
            (b"#define X\n", "X", None, false, vec![]),
            (b"#define X (a) // c\n", "X", None, false, vec!["(", "a", ")"]),
            (
                b"#define F(a, b) a ## b\n",
                "F",
                Some(vec!["a", "b"]),
                false,
                vec!["a", "##", "b"],
            ),
            (
                b"#define F() <x.h>\n",
                "F",
                Some(vec![]),
                false,
                vec!["<", "x", ".", "h", ">"],
            ),
            (
                b"#define V(a, ...) a __VA_ARGS__\n",
                "V",
                Some(vec!["a", "__VA_ARGS__"]),
                true,
                vec!["a", "__VA_ARGS__"],
            ),
            (
                b"#define G(a, rest...) rest\n",
                "G",
                Some(vec!["a", "rest"]),
                true,
                vec!["rest"],
            ),
            (b"#define S(x) #x\n", "S", Some(vec!["x"]), false, vec!["#", "x"]),
            (
                b"#define D %:%: \\\n  \"s\\\"t\" 'c' L\"w\" 1.5e+3 ...\n",
                "D",
                None,
                false,
                vec!["%:%:", "\"s\\\"t\"", "'c'", "L\"w\"", "1.5e+3", "..."],
            ),
            (
                b"# define /* c */ P \xc3\xa9 @\n",
                "P",
                None,
                false,
                vec!["é", "@"],
            ),
        ];
        for (text, name, params, variadic, want) in cases {
            let d = def(text);
            assert_eq!(d.name, name.as_bytes(), "{}", String::from_utf8_lossy(text));
            assert_eq!(
                d.params,
                params.map(|p| p.iter().map(|p| p.as_bytes().to_vec()).collect()),
                "{}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(d.variadic, variadic);
            assert_eq!(body(&d), want, "{}", String::from_utf8_lossy(text));
        }
        // Not definitions GCC would make.
        for bad in [&b"#define 1 x\n"[..], b"#define F(1) x\n", b"#define\n"] {
            assert!(scan(bad).defines.is_empty(), "{}", String::from_utf8_lossy(bad));
        }
        let spaced = def(b"#define W a  b/**/c\n");
        assert_eq!(
            spaced.body.iter().map(|t| t.space_before).collect::<Vec<_>>(),
            [false, true, true]
        );
    }

    #[test]
    fn command_line_definitions() {
        for (arg, name, params, want) in [
            ("X", "X", None, vec!["1"]),
            ("X=", "X", None, vec![]),
            ("X=a b", "X", None, vec!["a", "b"]),
            ("H=\"h.h\"", "H", None, vec!["\"h.h\""]),
            ("F(a)=<a.h>", "F", Some(vec!["a"]), vec!["<", "a", ".", "h", ">"]),
        ] {
            let d = Define::from_command_line(arg).unwrap_or_else(|| panic!("{arg}"));
            assert_eq!(d.name, name.as_bytes());
            assert_eq!(
                d.params,
                params.map(|p: Vec<&str>| p.iter().map(|p| p.as_bytes().to_vec()).collect())
            );
            assert_eq!(body(&d), want, "{arg}");
        }
        for bad in ["", "=1", "1X", "X Y=1"] {
            assert_eq!(Define::from_command_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn any_bytes_and_linear_time() {
        // Every prefix of a tricky text, and long runs of what could be
        // quadratic: unclosed comments, strings, raw strings, splices.
        let tricky: &[u8] = b"#include \"a\\\r\n.h\" /* R\"x( ' \" \\ \r ??= %:%: */ // \\\n#define F(a,...) #a ## __VA_ARGS__ u8R\"(\n)\" 1'2\n";
        for n in 0..=tricky.len() {
            scan(&tricky[..n]);
            let _ = Define::from_command_line(&String::from_utf8_lossy(&tricky[..n]));
        }
        let n = 1 << 20;
        for unit in [
            &b"/*"[..],
            b"\"",
            b"R\"(",
            b"\\ ",
            b"#define F(",
            b"#if __has_include(",
            b"'",
            b"\\\n",
        ] {
            let big: Vec<u8> = unit.iter().copied().cycle().take(n).collect();
            let t = std::time::Instant::now();
            scan(&big);
            assert!(
                t.elapsed() < std::time::Duration::from_secs(5),
                "{:?}",
                String::from_utf8_lossy(unit)
            );
        }
        let many: Vec<u8> = b"#include \"a.h\"\n".iter().copied().cycle().take(n).collect();
        assert_eq!(scan(&many).includes.len(), n / 15);
    }
}
