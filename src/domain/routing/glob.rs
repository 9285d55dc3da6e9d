//! Event-type globs (`invoice.*`), matched in time linear in the type's length.

/// An event-type pattern: `*` matches within one segment (segments end at `.` or
/// `/`), or anything at all when it ends the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeGlob(String);

impl TypeGlob {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    pub fn matches(&self, event_type: &str) -> bool {
        glob(self.0.as_bytes(), event_type.as_bytes())
    }
}

/// `*` matches any run of characters within a segment (no `.` or `/`), or anything
/// at all as the pattern's last character. Matched as a set of pattern positions
/// stepped once per character of the text: time is the text's length times the
/// pattern's, whatever the pattern (a backtracking matcher is exponential in the
/// number of `*` in a segment).
pub(super) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let last = pattern.len();
    // `active[p]`: the text read so far can leave the pattern at position `p`.
    let mut active = vec![false; last + 1];
    let mut next = vec![false; last + 1];
    active[0] = true;
    close_over_stars(pattern, &mut active);
    for &c in text {
        next.fill(false);
        for p in 0..last {
            if !active[p] {
                continue;
            }
            match pattern[p] {
                b'*' if p + 1 == last || !matches!(c, b'.' | b'/') => next[p] = true,
                b'*' => {}
                literal if literal == c => next[p + 1] = true,
                _ => {}
            }
        }
        close_over_stars(pattern, &mut next);
        if !next.contains(&true) {
            return false;
        }
        std::mem::swap(&mut active, &mut next);
    }
    active[last]
}

/// A `*` may match nothing: whoever is at a star is also just past it.
pub(super) fn close_over_stars(pattern: &[u8], active: &mut [bool]) {
    for p in 0..pattern.len() {
        if active[p] && pattern[p] == b'*' {
            active[p + 1] = true;
        }
    }
}
