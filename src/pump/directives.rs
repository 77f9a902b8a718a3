//! TEMPORARY stand-in, replaced by the real scanner (branch wt-scan).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Token {
    pub kind: Kind,
    pub text: Vec<u8>,
    pub space_before: bool,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Ident,
    Number,
    Str,
    Punct,
    Other,
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spelling {
    Quote(Vec<u8>),
    Angle(Vec<u8>),
    Computed(Vec<Token>),
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    Include,
    IncludeNext,
    Import,
    HasInclude,
    HasIncludeNext,
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    pub how: How,
    pub spelling: Spelling,
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Define {
    pub name: Vec<u8>,
    pub params: Option<Vec<Vec<u8>>>,
    pub variadic: bool,
    pub body: Vec<Token>,
}
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    pub includes: Vec<Include>,
    pub defines: Vec<Define>,
}
pub fn scan(text: &[u8]) -> Directives {
    let mut d = Directives::default();
    for line in text.split(|&b| b == b'\n') {
        let t = String::from_utf8_lossy(line);
        let t = t.trim_start();
        let Some(rest) = t.strip_prefix('#') else { continue };
        let rest = rest.trim_start();
        for (kw, how) in [
            ("include_next", How::IncludeNext),
            ("include", How::Include),
            ("import", How::Import),
        ] {
            if let Some(op) = rest.strip_prefix(kw) {
                let op = op.trim();
                let sp = if let Some(q) = op.strip_prefix('"') {
                    q.split('"')
                        .next()
                        .map(|s| Spelling::Quote(s.as_bytes().to_vec()))
                } else if let Some(q) = op.strip_prefix('<') {
                    q.split('>')
                        .next()
                        .map(|s| Spelling::Angle(s.as_bytes().to_vec()))
                } else {
                    None
                };
                if let Some(spelling) = sp {
                    d.includes.push(Include { how, spelling });
                }
                break;
            }
        }
    }
    d
}
impl Define {
    pub fn from_command_line(_arg: &str) -> Option<Define> {
        None
    }
}
