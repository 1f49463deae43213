//! A streaming ANSI escape-sequence stripper: sequences may arrive split across reads.

/// Longest OSC/DCS string we swallow before deciding it was garbage and resuming output.
const MAX_STRING_SEQUENCE: usize = 4096;
/// Longest CSI sequence: parameters beyond this are garbage.
const MAX_CSI: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Escape,
    EscapeIntermediate,
    Csi,
    /// OSC, DCS, SOS, PM, APC: ended by BEL or ST (`ESC \`).
    String,
    StringEscape,
}

/// Removes CSI (colours, cursor moves), OSC (window titles), DCS/SOS/PM/APC strings, other
/// escape sequences and stray control characters (keeping `\t`, `\n`, `\r`).
#[derive(Debug, Clone)]
pub struct AnsiStripper {
    state: State,
    string_len: usize,
}

impl Default for AnsiStripper {
    fn default() -> Self {
        AnsiStripper {
            state: State::Ground,
            string_len: 0,
        }
    }
}

impl AnsiStripper {
    /// A stripper in its initial state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the printable part of `input` to `out`, remembering any unfinished sequence.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &byte in input {
            self.state = match self.state {
                State::Ground => match byte {
                    0x1b => State::Escape,
                    b'\t' | b'\n' | b'\r' => {
                        out.push(byte);
                        State::Ground
                    }
                    0x00..=0x1f | 0x7f => State::Ground,
                    _ => {
                        out.push(byte);
                        State::Ground
                    }
                },
                State::Escape => match byte {
                    b'[' => {
                        self.string_len = 0;
                        State::Csi
                    }
                    b']' | b'P' | b'X' | b'^' | b'_' => {
                        self.string_len = 0;
                        State::String
                    }
                    0x1b => State::Escape,
                    0x20..=0x2f => State::EscapeIntermediate,
                    _ => State::Ground,
                },
                State::EscapeIntermediate => match byte {
                    0x20..=0x2f => State::EscapeIntermediate,
                    _ => State::Ground,
                },
                // A line end always ends a sequence and is kept: a malformed or unterminated
                // sequence can hide at most the rest of its own line, never the console.
                State::Csi | State::String | State::StringEscape if byte == b'\n' => {
                    out.push(byte);
                    State::Ground
                }
                State::Csi => {
                    self.string_len += 1;
                    match byte {
                        0x40..=0x7e => State::Ground,
                        0x1b => State::Escape,
                        _ if self.string_len > MAX_CSI => State::Ground,
                        _ => State::Csi,
                    }
                }
                State::String => {
                    self.string_len += 1;
                    match byte {
                        0x07 => State::Ground,
                        0x1b => State::StringEscape,
                        _ if self.string_len > MAX_STRING_SEQUENCE => State::Ground,
                        _ => State::String,
                    }
                }
                State::StringEscape => match byte {
                    b'\\' => State::Ground,
                    _ => State::String,
                },
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_in_pieces(input: &[u8], piece: usize) -> String {
        let mut stripper = AnsiStripper::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            stripper.feed(chunk, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strips_colours_titles_and_charset_switches_split_anywhere() {
        let input = "\x1b[1;32m[ OK ]\x1b[0m booted\r\n\x1b]0;title\x07plain \x1b(Bdone \x1b]2;t\x1b\\end\x1b[?25h";
        for piece in 1..8 {
            assert_eq!(
                strip_in_pieces(input.as_bytes(), piece),
                "[ OK ] booted\r\nplain done end"
            );
        }
    }

    /// An unterminated sequence of every kind hides at most the rest of its line.
    #[test]
    fn unterminated_sequences_cannot_hide_later_lines() {
        for opener in [
            "\x1b]0;title",
            "\x1bP1$r",
            "\x1b_apc",
            "\x1b^pm",
            "\x1bXsos",
            "\x1b[12;34",
            "\x1b]0;\x1b",
        ] {
            let input = format!("before{opener} never ended\nbanner: ok\nlast\n");
            for piece in [1, 3, 64] {
                let out = strip_in_pieces(input.as_bytes(), piece);
                assert!(
                    out.ends_with("\nbanner: ok\nlast\n"),
                    "{opener:?} in {piece}s: {out:?}"
                );
                assert!(out.starts_with("before"), "{opener:?}: {out:?}");
            }
        }
        // A sequence without any line end is still bounded.
        let long = format!("\x1b[{}mvisible", "1;".repeat(100));
        assert!(strip_in_pieces(long.as_bytes(), 7).contains("visible"));
    }

    #[test]
    fn keeps_utf8_and_drops_stray_controls() {
        assert_eq!(
            strip_in_pieces("héllo\x07 wörld\x08".as_bytes(), 1),
            "héllo wörld"
        );
    }
}
