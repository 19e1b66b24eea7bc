//! What characters user-supplied strings may hold. Names (display, group,
//! department, profile fields) are shown next to other people's, so they may
//! hold nothing that a terminal or a renderer would act on instead of show:
//! no control character (C0, DEL, C1), no format character (bidi overrides,
//! embeddings and isolates, zero-width spaces, the BOM, tags, …) and no
//! line or paragraph separator. Message text is content, not an identifier:
//! it may hold tab and line breaks, and the bidi marks, embeddings and
//! isolates that right-to-left writing uses, but no other control and no
//! bidi override (U+202D, U+202E), which shows characters in another order
//! than the one stored (the "Trojan Source" trick).
//!
//! Every path that stores a name or a text calls [`check_name`] or
//! [`check_text`]; the terminal client escapes what [`is_unsafe_in_name`]
//! flags in anything it prints.

use std::borrow::Cow;
use std::fmt::Write as _;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::ProtocolError;

/// Zero-width joiner and non-joiner: format characters that emoji sequences
/// (👩‍💻) and Persian or Indic spelling need, and that reorder nothing.
const JOINERS: [char; 2] = ['\u{200C}', '\u{200D}'];

/// Left-to-right and right-to-left override.
const BIDI_OVERRIDES: [char; 2] = ['\u{202D}', '\u{202E}'];

/// Returns whether `c` may not appear in a name: a control, a format
/// character other than the joiners, or a line or paragraph separator.
pub fn is_unsafe_in_name(c: char) -> bool {
    match c.general_category() {
        GeneralCategory::Control
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator => true,
        GeneralCategory::Format => !JOINERS.contains(&c),
        _ => false,
    }
}

/// Returns whether `c` may not appear in message text: a control other than
/// tab, line feed and carriage return, or a bidi override.
pub fn is_unsafe_in_text(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || BIDI_OVERRIDES.contains(&c)
}

fn refuse(
    field: &str,
    value: &str,
    unsafe_char: impl Fn(char) -> bool,
    what: &str,
) -> Result<(), ProtocolError> {
    match value.chars().enumerate().find(|(_, c)| unsafe_char(*c)) {
        None => Ok(()),
        Some((at, c)) => Err(ProtocolError::invalid(format!(
            "{field} holds U+{:04X} at character {}: {what}",
            u32::from(c),
            at + 1
        ))),
    }
}

/// Checks a name or another short label (`field` names it in the error):
/// INVALID if it holds a character [`is_unsafe_in_name`] flags.
pub fn check_name(field: &str, value: &str) -> Result<(), ProtocolError> {
    refuse(
        field,
        value,
        is_unsafe_in_name,
        "names may not hold control, bidi or other invisible format characters",
    )
}

/// Checks message text: INVALID if it holds a character
/// [`is_unsafe_in_text`] flags.
pub fn check_text(field: &str, value: &str) -> Result<(), ProtocolError> {
    refuse(
        field,
        value,
        is_unsafe_in_text,
        "text may not hold control characters other than tab and line breaks, nor bidi overrides",
    )
}

/// Returns `s` fit to print on a terminal: every character that
/// [`is_unsafe_in_name`] flags (line breaks and tabs included, so that a
/// peer cannot forge a line of output) is shown as an escape, `\n`, `\t`,
/// `\r`, `\e` or `\u{202e}`, and a backslash as `\\` so that an escape
/// cannot be faked.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_unsafe_in_name(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if is_unsafe_in_name(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: [&str; 12] = [
        "nul\0",
        "esc\u{1b}[31mred",
        "del\u{7f}",
        "c1\u{9b}2J",
        "rlo\u{202E}gpj.exe",
        "lre\u{202A}",
        "pdf\u{202C}",
        "lri\u{2066}",
        "pdi\u{2069}",
        "zwsp\u{200B}",
        "bom\u{FEFF}",
        "tag\u{E0041}",
    ];

    #[test]
    fn names_refuse_controls_bidi_and_format_characters() {
        for bad in HOSTILE
            .iter()
            .chain(&["tab\there", "line\nbreak", "ls\u{2028}", "lrm\u{200E}"])
        {
            let err = check_name("display_name", bad).unwrap_err();
            assert_eq!(err.code, crate::protocol::ErrorCode::Invalid, "{bad:?}");
            assert!(err.message.starts_with("display_name holds U+"), "{err}");
        }
        for good in [
            "Alice Wang",
            "张伟",
            "Zoë-Ann O'Neil",
            "👩\u{200D}💻 dev",
            "می\u{200C}خواهم",
            "עברית",
        ] {
            check_name("display_name", good).unwrap();
        }
    }

    #[test]
    fn text_refuses_controls_and_overrides_but_keeps_line_breaks_and_isolates() {
        for bad in [
            "nul\0",
            "esc\u{1b}[2J",
            "del\u{7f}",
            "c1\u{85}",
            "rlo\u{202E}",
            "lro\u{202D}",
        ] {
            assert!(check_text("text", bad).is_err(), "{bad:?}");
        }
        for good in [
            "line one\nline two\r\n\tindented",
            "mixed \u{2067}עברית\u{2069} text",
            "rlm\u{200F}",
        ] {
            check_text("text", good).unwrap();
        }
    }

    #[test]
    fn terminal_rendering_escapes_every_hostile_character() {
        assert_eq!(
            terminal_safe("a\u{1b}[2Jb\0c\u{202E}d\ne\\f"),
            "a\\e[2Jb\\u{0}c\\u{202e}d\\ne\\\\f"
        );
        for hostile in HOSTILE {
            let shown = terminal_safe(hostile);
            assert!(
                !shown.chars().any(is_unsafe_in_name),
                "{hostile:?} shown as {shown:?}"
            );
        }
        assert!(matches!(
            terminal_safe("plain 张伟 👩\u{200D}💻"),
            Cow::Borrowed(_)
        ));
    }
}
