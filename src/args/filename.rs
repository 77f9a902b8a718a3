//! File-name tables (distcc src/filename.c).

/// The text after the last `.` of the last path component, if non-empty.
pub fn extension(name: &str) -> Option<&str> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let dot = base.rfind('.')?;
    let ext = &base[dot + 1..];
    (!ext.is_empty()).then_some(ext)
}

/// Files distcc can compile remotely (case-sensitive, as distcc).
pub fn is_source(name: &str) -> bool {
    matches!(
        extension(name),
        Some("i" | "ii" | "c" | "cc" | "cpp" | "cxx" | "cp" | "c++" | "C" | "m" | "mm" | "mi" | "mii" | "M")
    )
}

/// Sources that need no preprocessing.
pub fn is_preprocessed(name: &str) -> bool {
    matches!(extension(name), Some("i" | "ii" | "mi" | "mii"))
}

/// The extension of the preprocessed form of `name` (distcc's `dcc_preproc_exten`).
pub fn preprocessed_extension(name: &str) -> Option<&'static str> {
    Some(match extension(name)? {
        "c" | "i" => "i",
        "cc" | "cpp" | "cxx" | "cp" | "c++" | "C" | "ii" => "ii",
        "m" | "mi" => "mi",
        "mm" | "M" | "mii" => "mii",
        e if e.eq_ignore_ascii_case("s") => "s",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distcc_vectors() {
        // test/testdistcc.py IsSource_Case and ExtractExtension_Case.
        assert!(is_source("hello.c") && is_source("hello.2.4.4.i") && is_preprocessed("hello.2.4.4.i"));
        for not in ["hello.foo", "gcc", "boot.s", "boot.S", "hello.h", "dir.c/file"] {
            assert!(!is_source(not), "{not}");
        }
        assert_eq!(extension("hello.2.4.4.4.c"), Some("c"));
        assert_eq!(extension(".foo"), Some("foo"));
        assert_eq!(extension("gcc"), None);
        assert_eq!(extension("trailing."), None);
    }

    #[test]
    fn preprocessed_extension_table() {
        let cases = [
            ("a.c", Some("i")),
            ("a.i", Some("i")),
            ("a.cc", Some("ii")),
            ("a.cpp", Some("ii")),
            ("a.cxx", Some("ii")),
            ("a.cp", Some("ii")),
            ("a.c++", Some("ii")),
            ("a.C", Some("ii")),
            ("a.ii", Some("ii")),
            ("a.m", Some("mi")),
            ("a.mi", Some("mi")),
            ("a.mm", Some("mii")),
            ("a.M", Some("mii")),
            ("a.mii", Some("mii")),
            ("a.S", Some("s")),
            ("a.s", Some("s")),
            ("a.h", None),
            ("Makefile", None),
        ];
        for (name, want) in cases {
            assert_eq!(preprocessed_extension(name), want, "{name}");
        }
    }
}
