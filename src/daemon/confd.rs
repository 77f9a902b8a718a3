/*!
`/etc/conf.d/distccd`: `KEY=VALUE` lines as systemd's `EnvironmentFile=`
reads them, of which `DISTCC_ARGS` is split into words with shell quoting.
(systemd's own `$DISTCC_ARGS` expansion splits at spaces and ignores quotes,
so `--log-file '/var/log/a b.log'` could never work through it.) Pure; the
caller reads the file.
*/

/// The value of `key`, with quotes removed as systemd does; errors name the line.
pub fn value_of(text: &str, key: &str) -> Result<Option<String>, String> {
    let mut found = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=VALUE: {raw}", n + 1));
        };
        if k.trim() != key {
            continue;
        }
        found = Some(unquote(v.trim()).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(found)
}

fn unquote(v: &str) -> Result<String, String> {
    let Some(q) = v.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return Ok(v.to_owned());
    };
    let mut out = String::new();
    let mut chars = v[1..].chars();
    loop {
        match chars.next() {
            None => return Err(format!("unterminated {q}")),
            Some(c) if c == q => break,
            Some('\\') if q == '"' => match chars.next() {
                Some(c @ ('"' | '\\' | '$' | '`')) => out.push(c),
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("unterminated \"".into()),
            },
            Some(c) => out.push(c),
        }
    }
    if !chars.as_str().trim().is_empty() {
        return Err(format!("text after the closing {q}"));
    }
    Ok(out)
}

/// `DISTCC_ARGS` as words.
pub fn distcc_args(text: &str) -> Result<Vec<String>, String> {
    match value_of(text, "DISTCC_ARGS")? {
        None => Ok(Vec::new()),
        Some(v) => shell_words::split(&v).map_err(|e| format!("DISTCC_ARGS: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_wiki_examples() {
        let cases: &[(&str, &[&str])] = &[
            ("DISTCC_ARGS=\"--allow 127.0.0.1\"\n", &["--allow", "127.0.0.1"]),
            (
                "# comment\nDISTCC_ARGS=\"--allow 192.168.0.0/24 --log-level error --log-file /tmp/distccd.log\"\n",
                &[
                    "--allow",
                    "192.168.0.0/24",
                    "--log-level",
                    "error",
                    "--log-file",
                    "/tmp/distccd.log",
                ],
            ),
            (
                "DISTCC_ARGS=\"--log-file '/var/log/a b.log' --allow ::1\"",
                &["--log-file", "/var/log/a b.log", "--allow", "::1"],
            ),
            (
                "DISTCC_ARGS='--allow 10.0.0.0/8 --jobs 8'",
                &["--allow", "10.0.0.0/8", "--jobs", "8"],
            ),
            (
                "export DISTCC_ARGS=\"--allow \\\"quoted\\\"\"",
                &["--allow", "quoted"],
            ),
            ("DISTCC_ARGS=--allow 127.0.0.1", &["--allow", "127.0.0.1"]),
            ("DISTCC_ARGS=\"--a\"\nDISTCC_ARGS=\"--b\"", &["--b"]),
            ("OTHER=1\n", &[]),
            ("", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(distcc_args(text).unwrap(), *want, "{text}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        for (text, want) in [
            ("A=1\nDISTCC_ARGS=\"--allow 1.2.3.4\n", "line 2: unterminated \""),
            ("garbage\n", "line 1: expected KEY=VALUE"),
            ("DISTCC_ARGS=\"a\" b", "line 1: text after the closing"),
            ("DISTCC_ARGS=\"--log-file 'a b\"", "DISTCC_ARGS"),
        ] {
            let err = distcc_args(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
