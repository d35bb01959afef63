//! POSIX shell words both ways: splitting `SLUICE_SSH_COMMAND` as `sh` would (quotes,
//! backslashes; no expansions), and quoting a word so the far end's shell reads it back
//! unchanged.

/// Why a command line could not be split into words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("a {0} quote is not closed: close it, or escape it with a backslash")]
    UnclosedQuote(&'static str),
    #[error("it ends with a lone backslash: remove it, or escape it as \\\\")]
    TrailingBackslash,
    #[error("it is empty: give a command such as `ssh -F ~/.ssh/other_config`")]
    Empty,
}

/// Splits `line` into words the way a POSIX shell does before expansions: blanks
/// separate words; `'…'` keeps everything literally; `"…"` keeps everything except that
/// a backslash escapes `$`, `` ` ``, `"`, `\` and a newline; an unquoted backslash escapes
/// the next character (and removes a newline). Variables, `~` and globs are not expanded.
pub fn split_words(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has started: `''` is an empty word, blanks alone are none.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnclosedQuote("single")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('$' | '`' | '"' | '\\')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::UnclosedQuote("double")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnclosedQuote("double")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(SplitError::TrailingBackslash),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

/// Quotes for a POSIX shell when needed (brackets are glob characters).
pub fn quote(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain && !word.is_empty() {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<String> {
        split_words(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn blanks_separate_words() {
        assert_eq!(split("ssh"), ["ssh"]);
        assert_eq!(split("  ssh \t -F\nfile  "), ["ssh", "-F", "file"]);
    }

    #[test]
    fn quotes_and_backslashes() {
        assert_eq!(
            split(r#"ssh -F '/my dir/config' -o "ProxyJump=a b""#),
            ["ssh", "-F", "/my dir/config", "-o", "ProxyJump=a b"]
        );
        assert_eq!(split(r"a\ b c\\d"), ["a b", r"c\d"]);
        assert_eq!(split(r#""a\"b" "\$x" "\q""#), [r#"a"b"#, "$x", r"\q"]);
        assert_eq!(split(r#"'it'\''s' '$HOME' "~""#), ["it's", "$HOME", "~"]);
        assert_eq!(split("x'' '' \"\""), ["x", "", ""]);
        assert_eq!(split("con'cat'\"enated\""), ["concatenated"]);
        assert_eq!(split("a\\\nb"), ["ab"]);
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert_eq!(
            split_words("ssh 'open"),
            Err(SplitError::UnclosedQuote("single"))
        );
        assert_eq!(
            split_words("ssh \"open"),
            Err(SplitError::UnclosedQuote("double"))
        );
        assert_eq!(split_words("ssh \\"), Err(SplitError::TrailingBackslash));
        assert_eq!(split_words("  "), Err(SplitError::Empty));
    }

    #[test]
    fn quote_round_trips_through_split() {
        for word in [
            "plain",
            "[127.0.0.1]:80",
            "it's",
            "a b",
            "",
            "$HOME",
            "x\\y",
        ] {
            assert_eq!(split(&quote(word)), [word], "{word:?}");
        }
        assert_eq!(quote("/home/me/k.key"), "/home/me/k.key");
    }
}
