/*!
Where the compiler looks for headers, in its own words: `CC <search options>
-x LANG -E -v -dM -` prints the `"…"` and `<…>` search lists as it will use
them (and, on its standard output, the macros it predefines for those
options, which computed includes may use), after its own rules (`-I` dirs that duplicate system dirs dropped,
nonexistent ones ignored, `-nostdinc`, sysroot and target flags applied).
Asked once per distinct set of options and cached for the build; asked again
without the user's directories, it names the directories that are the
compiler's own, whose headers the server has too.
*/

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::directives::{self, Define};
use crate::args::classify::Lang;

/// The search lists, each directory as the compiler names it (relative
/// ones from the compile's directory; not normalised, as `..` after a link
/// is the link's target's parent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lists {
    /// `#include "…"` only (after the includer's directory).
    pub quote: Vec<PathBuf>,
    /// `#include <…>`, and `"…"` after `quote`.
    pub angle: Vec<PathBuf>,
    /// The compiler's predefined macros.
    pub predefined: Arc<Vec<Define>>,
}

/// Reads `-v`'s search lists. `None` if the output has none. Pure.
pub fn parse_verbose(stderr: &str) -> Option<Lists> {
    enum In {
        Before,
        Quote,
        Angle,
    }
    let mut at = In::Before;
    let mut lists = Lists::default();
    for line in stderr.lines() {
        if line.starts_with("#include \"...\" search starts here") {
            at = In::Quote;
        } else if line.starts_with("#include <...> search starts here") {
            at = In::Angle;
        } else if line.starts_with("End of search list") {
            return Some(lists);
        } else if let Some(dir) = line.strip_prefix(' ') {
            let dir = dir.strip_suffix(" (framework directory)").unwrap_or(dir);
            let dir = PathBuf::from(dir);
            match at {
                In::Quote => lists.quote.push(dir),
                In::Angle => lists.angle.push(dir),
                In::Before => {}
            }
        }
    }
    None
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    compiler: PathBuf,
    cwd: PathBuf,
    lang: &'static str,
    words: Vec<String>,
}

/// The compiler's answers for this build.
#[derive(Default)]
pub struct Probes {
    seen: HashMap<Key, Result<Lists, String>>,
}

impl Probes {
    /// The search lists for `words`; an error says why they are unknown.
    pub fn lists(
        &mut self,
        compiler: &Path,
        cwd: &Path,
        lang: Lang,
        words: &[String],
    ) -> Result<Lists, String> {
        let key = Key {
            compiler: compiler.to_owned(),
            cwd: cwd.to_owned(),
            lang: lang.source_name(),
            words: words.to_vec(),
        };
        self.seen
            .entry(key)
            .or_insert_with_key(|k| ask(&k.compiler, &k.cwd, k.lang, &k.words))
            .clone()
    }
}

fn ask(compiler: &Path, cwd: &Path, lang: &str, words: &[String]) -> Result<Lists, String> {
    let out = Command::new(compiler)
        .args(words)
        .args(["-x", lang, "-E", "-v", "-dM", "-"])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", compiler.display()))?;
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let first = text.lines().find(|l| l.contains("error")).unwrap_or("");
        return Err(format!("{} -v failed: {first}", compiler.display()));
    }
    let mut lists =
        parse_verbose(&text).ok_or_else(|| format!("{} -v printed no search list", compiler.display()))?;
    lists.predefined = Arc::new(directives::scan(&out.stdout).defines);
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gcc_and_clang_lists() {
        let gcc = "Using built-in specs.\n\
ignoring nonexistent directory \"/usr/local/include/x86_64-linux-gnu\"\n\
#include \"...\" search starts here:\n q\n\
#include <...> search starts here:\n include\n /abs/inc\n /usr/lib/gcc/x86_64-linux-gnu/14/include\n /usr/include\n\
End of search list.\n# 0 \"<stdin>\"\n";
        let l = parse_verbose(gcc).unwrap();
        assert_eq!(l.quote, vec![PathBuf::from("q")]);
        assert_eq!(
            l.angle,
            [
                "include",
                "/abs/inc",
                "/usr/lib/gcc/x86_64-linux-gnu/14/include",
                "/usr/include"
            ]
            .map(PathBuf::from)
        );
        let clang = "#include <...> search starts here:\n \
/usr/bin/../lib/gcc/x86_64-linux-gnu/14/../../../../include/c++/14\n ../up\n /Sys/F (framework directory)\nEnd of search list.\n";
        let l = parse_verbose(clang).unwrap();
        assert!(l.quote.is_empty());
        assert_eq!(
            l.angle,
            [
                "/usr/bin/../lib/gcc/x86_64-linux-gnu/14/../../../../include/c++/14",
                "../up",
                "/Sys/F"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(parse_verbose("gcc: error\n"), None);
    }
}
