//! Text a client sent, made safe to put in a log line.
//!
//! A request path, a header or a close reason is whatever the client chose
//! to send, and a log line is read in a terminal or parsed by a collector.
//! Written raw, a line feed or NEL (U+0085) would start a forged log line, a
//! CSI (U+009B, or ESC `[`) would drive the terminal showing the log, and a
//! right-to-left override would make a line read differently from what it
//! holds. So every such string goes into a log line through [`Untrusted`],
//! which writes those characters as escapes (`\u{85}`), and cuts a long one
//! short: a client cannot fill the log with one request either.

use std::fmt::{self, Write};

/// The most characters of one client-supplied string that reach a log
/// line; the rest is left out, and the line says how many were.
pub(crate) const MAX_CHARS: usize = 200;

/// A client-supplied string, written for a log line: control characters,
/// line and paragraph separators, bidirectional controls and invisible
/// format characters as `\u{..}` escapes (line feed, carriage return and tab
/// as `\n`, `\r`, `\t`), the backslash as `\\` so that an escape cannot be
/// forged, and at most [`MAX_CHARS`] characters. An ordinary ASCII path is
/// written as it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Untrusted<'a>(pub(crate) &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_CHARS) {
            write_safely(f, c)?;
        }
        let left_out = chars.count();
        if left_out > 0 {
            write!(f, "... ({left_out} more characters)")?;
        }
        Ok(())
    }
}

/// Text a peer sent, written for a terminal as [`Untrusted`] writes it, but
/// whole: what the client library shows of the server's messages, whose
/// reader wants all of each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.chars().try_for_each(|c| write_safely(f, c))
    }
}

/// Writes `c`, or its escape if it may not be written raw.
fn write_safely(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        '\\' => f.write_str("\\\\"),
        c if is_unsafe(c) => write!(f, "{}", c.escape_unicode()),
        c => f.write_char(c),
    }
}

/// Returns true if and only if `c` may not be written raw in a log line:
/// it could end the line, drive a terminal, reorder what is shown, or hide.
fn is_unsafe(c: char) -> bool {
    // C0, DEL and C1: line feeds, NEL (U+0085), ESC and CSI (U+009B).
    c.is_control()
        || matches!(
            c,
            // The Arabic letter mark, a bidirectional control.
            '\u{061c}'
            // Zero-width space and joiners; left-to-right and right-to-left marks.
            | '\u{200b}'..='\u{200f}'
            // Line and paragraph separators; bidirectional embeddings and
            // overrides (U+202A to U+202E).
            | '\u{2028}'..='\u{202e}'
            // Word joiner, invisible operators; bidirectional isolates
            // (U+2066 to U+2069); deprecated format characters.
            | '\u{2060}'..='\u{206f}'
            // Byte order mark (zero-width no-break space).
            | '\u{feff}'
            // Interlinear annotation controls.
            | '\u{fff9}'..='\u{fffb}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(text: &str) -> String {
        Untrusted(text).to_string()
    }

    #[test]
    fn an_ordinary_path_is_written_as_it_is() {
        assert_eq!(logged("/ws/lobby"), "/ws/lobby");
        assert_eq!(logged("/ws/caf%C3%A9 and café, 日本"), "/ws/caf%C3%A9 and café, 日本");
    }

    #[test]
    fn line_breaks_and_terminal_controls_are_escaped() {
        assert_eq!(logged("/a\r\nINFO forged"), "/a\\r\\nINFO forged");
        assert_eq!(logged("/a\u{85}b"), "/a\\u{85}b");
        assert_eq!(logged("/\u{1b}[31mred\u{9b}2J"), "/\\u{1b}[31mred\\u{9b}2J");
        assert_eq!(logged("\0\u{7f}\t"), "\\u{0}\\u{7f}\\t");
        assert_eq!(logged("a\u{2028}b\u{2029}c"), "a\\u{2028}b\\u{2029}c");
    }

    #[test]
    fn bidirectional_controls_are_escaped() {
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}').chain(['\u{200e}', '\u{200f}']) {
            let text = logged(&format!("/x{c}y"));
            assert!(!text.contains(c), "{c:?} written raw: {text}");
            assert_eq!(text, format!("/x{}y", c.escape_unicode()));
        }
    }

    #[test]
    fn a_backslash_is_doubled_so_that_no_escape_can_be_forged() {
        assert_eq!(logged("/\\u{85}"), "/\\\\u{85}");
    }

    #[test]
    fn a_long_string_is_cut_short_and_says_so() {
        let long = format!("/{}", "a".repeat(999));
        let text = logged(&long);
        assert_eq!(text, format!("/{}... (800 more characters)", "a".repeat(MAX_CHARS - 1)));
        assert_eq!(logged(&"b".repeat(MAX_CHARS)), "b".repeat(MAX_CHARS), "at the bound, nothing is cut");
    }
}
