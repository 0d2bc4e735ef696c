//! Splits a command line the way `sh` would for simple commands, so that a `hey …` string can be
//! run in-process; anything that needs a real shell (pipes, `&&`, expansions) is reported as such
//! and left to `sh -c`.

#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    Words(Vec<String>),
    /// The line uses shell features (operators, variables, substitutions, comments).
    NeedsShell,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("unterminated {0} quote")]
    UnterminatedQuote(&'static str),
    #[error("trailing backslash")]
    TrailingBackslash,
}

pub fn split(line: &str) -> Result<Split, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word can be empty yet present (`''`), so track that separately from `word.is_empty()`.
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
                        None => return Err(SplitError::UnterminatedQuote("single")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('$' | '`') => return Ok(Split::NeedsShell),
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::UnterminatedQuote("double")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedQuote("double")),
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
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' => return Ok(Split::NeedsShell),
            '#' if !in_word => return Ok(Split::NeedsShell),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(Split::Words(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        match split(line) {
            Ok(Split::Words(w)) => w,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn splits_like_sh() {
        assert_eq!(
            words("hey  -n 5\thttp://a/"),
            ["hey", "-n", "5", "http://a/"]
        );
        assert_eq!(
            words(r#"hey -H "Host: x y" -d '{"a": 1}'"#),
            ["hey", "-H", "Host: x y", "-d", r#"{"a": 1}"#]
        );
        assert_eq!(words(r#"a\ b "c\"d" ''"#), ["a b", "c\"d", ""]);
        assert_eq!(
            words("hey http://a/?x=1#frag"),
            ["hey", "http://a/?x=1#frag"]
        );
    }

    #[test]
    fn reports_shell_features() {
        for line in [
            "hey -n 1 http://a/ && echo ok",
            "hey $URL",
            "hey \"$URL\"",
            "a | b",
            "a; b",
            "# c",
            "a > f",
        ] {
            assert_eq!(split(line), Ok(Split::NeedsShell), "{line}");
        }
    }

    #[test]
    fn refuses_broken_quoting() {
        assert_eq!(
            split("hey 'abc"),
            Err(SplitError::UnterminatedQuote("single"))
        );
        assert_eq!(
            split("hey \"abc"),
            Err(SplitError::UnterminatedQuote("double"))
        );
        assert_eq!(split("hey abc\\"), Err(SplitError::TrailingBackslash));
    }
}
