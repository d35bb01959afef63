//! Control characters in what users type (addresses, names, ssh destinations): found,
//! named and placed, so every refusal says which character and where. A newline that got
//! through would split a unit file, a config line or a log line in two.

use std::fmt;

/// The first control character (Unicode category Cc: U+0000–U+001F, U+007F–U+009F) in a
/// text, and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlChar {
    pub ch: char,
    /// 1-based, in characters, as a person counts them.
    pub position: usize,
}

impl ControlChar {
    /// The first control character in `text`, if any.
    pub fn find(text: &str) -> Option<ControlChar> {
        text.chars()
            .enumerate()
            .find(|(_, c)| c.is_control())
            .map(|(i, ch)| ControlChar {
                ch,
                position: i + 1,
            })
    }

    /// Its name in words: "a line feed", "the control character U+001B".
    pub fn name(&self) -> String {
        match self.ch {
            '\n' => "a line feed".into(),
            '\r' => "a carriage return".into(),
            '\t' => "a tab".into(),
            '\0' => "a NUL".into(),
            '\u{1b}' => "an escape".into(),
            '\u{7f}' => "a delete character".into(),
            c => format!("the control character U+{:04X}", u32::from(c)),
        }
    }
}

impl fmt::Display for ControlChar {
    /// "a line feed at position 7".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.name(), self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_and_counts_characters_not_bytes() {
        assert_eq!(ControlChar::find("plain text, ünïcode ✔"), None);
        assert_eq!(ControlChar::find(""), None);
        let found = ControlChar::find("/tmp/a\nb\r").unwrap();
        assert_eq!((found.ch, found.position), ('\n', 7));
        assert_eq!(found.to_string(), "a line feed at position 7");
        // Two-byte characters before it still count as one each.
        assert_eq!(ControlChar::find("ää\tx").unwrap().position, 3);
    }

    #[test]
    fn every_control_character_is_found_and_named() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let found = ControlChar::find(&format!("a{c}")).unwrap();
            assert_eq!(found.position, 2);
            assert!(!found.name().is_empty());
        }
        assert_eq!(
            ControlChar::find("\u{1b}[31m").unwrap().to_string(),
            "an escape at position 1"
        );
        assert_eq!(
            ControlChar::find("x\u{85}").unwrap().name(),
            "the control character U+0085"
        );
        // Not control characters: spaces and other separators are left to each rule.
        assert_eq!(ControlChar::find(" \u{a0}\u{2028}"), None);
    }
}
