//! The conflict rule of leases, in one place: which path patterns a lease
//! may name, and whether two patterns could cover a common path. Pure
//! functions, no I/O and no broker state, unit-tested by the table below.
//!
//! A pattern is repo-relative and `/`-separated: a file (`src/api/users.rs`),
//! a directory ending in `/` (`src/db/`, everything below it), or a glob
//! (`src/**/*.sql`, in [globset]'s syntax, `*` and `?` never crossing a `/`;
//! a glob ending in `/` or `**` names directories and covers what is below
//! them, any other glob covers exactly the paths it matches).
//!
//! A glob character is matched literally inside brackets (`[*]`, `[[]`,
//! `[]]`, `[{]`): a pattern whose only glob syntax is such one-character
//! classes of glob characters names one plain path (`app/[[]id[]]/` is the
//! directory `app/[id]/`), and is compared as that path.
//!
//! Two patterns overlap when some path could be covered by both:
//!
//! - **Two plain paths** overlap when they are the same or one is below the
//!   other, with or without the `/`: a path that something lies below is a
//!   directory, whatever its holder wrote.
//! - **A plain path and a glob**: the glob matches the path or a directory
//!   above it (decided exactly, for the same reason), or it could match
//!   something below the path: below a directory (`src/db/`), compared as
//!   two globs are; below a file, only where the glob names the file as a
//!   directory (see below).
//! - **Two globs** cannot always be compared exactly and cheaply, so the
//!   rule is conservative: segments are compared one by one (`**` spanning
//!   any number of them), and two glob segments are taken to overlap unless
//!   their literal beginnings or endings already differ (`*.rs` and `*.md`
//!   cannot both match one name; `a*` and `*b` may). A brace group that
//!   spans a `/` makes the pattern cover everything from there.
//!
//! What a pattern matches may be a directory, but only where the other
//! pattern names one: when the segments of one pattern match, in order, the
//! beginning of the other's, its last segment meeting a named segment of the
//! other (a name or a one-segment glob, not `**`), and the other has more
//! segments after that one, they overlap. So `src/*` meets `src/db/*.rs`
//! (`src/*` may match the directory `src/db`), `{a,b}/db` meets `a/db/*.rs`,
//! and the plain path `a/db` meets `a/db/*.rs`, as it meets `a/db/x.rs`. A
//! last segment that only the other's `**` reaches is never taken for a
//! directory: `**/*.sql` meets neither `src/main.rs` nor `src/*.rs`, and
//! `src/*.rs` does not meet `src/**/x.sql`.
//!
//! Where the rule cannot tell, it says "overlap": a false alarm costs a
//! message, a miss costs lost work.

use globset::{GlobBuilder, GlobMatcher};

/// The longest pattern, in characters.
pub const MAX_PATTERN_LEN: usize = 1024;

/// The characters that make a pattern a glob.
const GLOB_CHARS: &[char] = &['*', '?', '[', ']', '{', '}'];

/// What to write instead, said after every refusal of a pattern.
const SHAPES: &str = "give a path relative to the repository's top level, with / between directories: a file (src/main.rs), a directory ending in / (src/db/), or a glob (src/**/*.sql)";

/// A pattern that passed [`PathPattern::parse`], ready to compare.
#[derive(Debug, Clone)]
pub struct PathPattern {
    /// The pattern without its trailing `/`.
    body: String,
    /// It names directories: it ends in `/` (or `**`), so it covers what
    /// is below what it matches.
    dir: bool,
    /// The whole glob, for matching literal paths (`None` for a literal).
    whole: Option<GlobMatcher>,
    /// The segments; a directory pattern's end in [`Seg::AnyDirs`].
    segs: Vec<Seg>,
}

/// One `/`-separated piece of a pattern.
#[derive(Debug, Clone)]
enum Seg {
    /// A name, matched exactly.
    Lit(String),
    /// `**`: any number of segments, none included.
    AnyDirs,
    /// A glob within one segment (`*.rs`, `v[0-9]`); `None` matches any
    /// one segment (a piece too complex to compare).
    Glob(Option<SegGlob>),
}

/// A one-segment glob with its literal beginning and ending.
#[derive(Debug, Clone)]
struct SegGlob {
    matcher: GlobMatcher,
    prefix: String,
    suffix: String,
}

impl PathPattern {
    /// Checks `raw` and prepares it for comparison; the error is one
    /// sentence that says what is wrong and what to write instead.
    pub fn parse(raw: &str) -> Result<PathPattern, String> {
        if raw.trim().is_empty() {
            return Err(format!("a path is empty; {SHAPES}"));
        }
        let len = raw.chars().count();
        if len > MAX_PATTERN_LEN {
            return Err(format!(
                "the path {:?}... is {len} characters long; at most {MAX_PATTERN_LEN} (lease a directory, e.g. src/db/, instead of a long list of names)",
                raw.chars().take(40).collect::<String>()
            ));
        }
        if let Some(c) = raw.chars().find(|c| c.is_control()) {
            return Err(format!(
                "the path {raw:?} contains the control character U+{:04X}; {SHAPES}",
                u32::from(c)
            ));
        }
        if raw.contains('\\') {
            return Err(format!(
                "the path {raw:?} contains a backslash: separate directories with / (as git shows paths, also on Windows), and match a glob character literally inside brackets ([*]) instead of escaping it"
            ));
        }
        let bytes = raw.as_bytes();
        let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
        if raw.starts_with('/') || drive {
            return Err(format!(
                "the path {raw:?} is absolute; make it relative to the repository's top level (src/main.rs, not /home/me/repo/src/main.rs)"
            ));
        }
        let body = raw.strip_suffix('/').unwrap_or(raw);
        for seg in body.split('/') {
            let why = match seg {
                "" => "has an empty segment (//)",
                "." => "has a . segment (drop the ./)",
                ".." => "has a .. segment: a lease cannot reach outside the repository",
                _ => continue,
            };
            return Err(format!("the path {raw:?} {why}; {SHAPES}"));
        }
        let dir = raw.ends_with('/') || body == "**" || body.ends_with("/**");
        if !body.contains(GLOB_CHARS) {
            return Ok(PathPattern::plain(body.to_string(), dir));
        }
        let matcher = glob(body)
            .map_err(|e| format!("the path {raw:?} is not a valid glob ({e}); {SHAPES}"))?;
        if let Some(path) = escaped_plain_path(body) {
            return Ok(PathPattern::plain(path, dir));
        }
        Ok(PathPattern {
            body: body.to_string(),
            dir,
            whole: Some(matcher),
            segs: segments(body, true, dir),
        })
    }

    /// A plain path (a file, or a directory when `dir`), `body` without its
    /// trailing `/`.
    fn plain(body: String, dir: bool) -> PathPattern {
        let segs = segments(&body, false, dir);
        PathPattern {
            body,
            dir,
            whole: None,
            segs,
        }
    }

    /// A pattern read back from the store: it was checked when the lease
    /// was taken, but should a rule have tightened since, it covers
    /// everything (a false alarm, never a miss).
    pub fn stored(raw: &str) -> PathPattern {
        PathPattern::parse(raw).unwrap_or_else(|_| PathPattern {
            body: raw.to_string(),
            dir: true,
            whole: None,
            segs: vec![Seg::AnyDirs],
        })
    }

    /// True for a plain path (a file or a directory), false for a glob.
    pub fn is_literal(&self) -> bool {
        self.whole.is_none() && !matches!(self.segs.as_slice(), [Seg::AnyDirs])
    }

    /// Whether some path could be covered by both patterns (see the module
    /// comment for what a pattern covers, and where this is conservative).
    pub fn could_overlap(&self, other: &PathPattern) -> bool {
        match (self.is_literal(), other.is_literal()) {
            (true, true) => nested(&self.body, &other.body),
            (true, false) => literal_meets_glob(self, other),
            (false, true) => literal_meets_glob(other, self),
            (false, false) => segments_overlap(&self.segs, &other.segs),
        }
    }

    /// Whether every path `other` covers is covered by this pattern too, so
    /// that a holder of this one shares what another holds of `other`.
    /// Exact when `other` is a plain path; for a glob, only when this
    /// pattern covers the plain directory the glob begins with (or is the
    /// same glob), and otherwise false: it excuses a shared lease at a
    /// check, so a wrong "no" costs a refusal, never a miss.
    pub fn covers(&self, other: &PathPattern) -> bool {
        if self.body == other.body {
            return true;
        }
        let lead = if other.is_literal() {
            other.body.clone()
        } else {
            let names: Vec<&str> = other
                .segs
                .iter()
                .map_while(|s| match s {
                    Seg::Lit(name) => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            names.join("/")
        };
        if lead.is_empty() {
            return false;
        }
        match &self.whole {
            None => self.is_literal() && nested_below(&lead, &self.body),
            Some(m) => lead
                .match_indices('/')
                .map(|(i, _)| &lead[..i])
                .chain([lead.as_str()])
                .any(|dir| m.is_match(dir)),
        }
    }
}

/// Whether two sets of patterns conflict: at least one side exclusive and
/// some pattern of one could overlap some pattern of the other. (Same repo,
/// different holders: the broker's part of the rule.)
pub fn conflict(
    a: &[PathPattern],
    a_exclusive: bool,
    b: &[PathPattern],
    b_exclusive: bool,
) -> bool {
    (a_exclusive || b_exclusive) && a.iter().any(|p| b.iter().any(|q| p.could_overlap(q)))
}

/// `path`, a file's repo-relative name, as the pattern that names exactly
/// that file: each glob character written as a one-character class (`[*]`,
/// `[[]`, `[]]`, ...), which [`PathPattern::parse`] reads as the plain path.
/// Sent as it is, a file named `page{x.tsx` would be read as a glob, or
/// refused as a bad one and the edit or commit let through unchecked.
pub fn literal_pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if GLOB_CHARS.contains(&c) {
            out.extend(['[', c, ']']);
        } else {
            out.push(c);
        }
    }
    out
}

/// A globset matcher in the lease syntax: `*` and `?` stay within a
/// segment, no backslash escapes.
fn glob(text: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(false)
        .build()?
        .compile_matcher())
}

/// Literal paths `a` and `b` (no trailing `/`) cover a common path: one is
/// the other or a directory above it.
fn nested(a: &str, b: &str) -> bool {
    nested_below(a, b) || nested_below(b, a)
}

/// Literal path `long` is `short` or below it.
fn nested_below(long: &str, short: &str) -> bool {
    long.strip_prefix(short)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A literal path against a glob, exactly: the glob matches the path or a
/// directory above it (which covers the path), or, when the path is a
/// directory, something below it.
fn literal_meets_glob(lit: &PathPattern, glob: &PathPattern) -> bool {
    let Some(m) = &glob.whole else {
        // A stored pattern that no longer parses covers everything.
        return true;
    };
    let mut at = 0;
    loop {
        let end = lit.body[at..].find('/').map_or(lit.body.len(), |i| at + i);
        if m.is_match(&lit.body[..end]) {
            return true;
        }
        if end == lit.body.len() {
            break;
        }
        at = end + 1;
    }
    if lit.dir {
        segments_overlap(&lit.segs, &glob.segs)
    } else {
        names_below(&lit.segs, &glob.segs)
    }
}

/// The plain path a glob names when its only glob syntax is one-character
/// classes of glob characters (`app/[[]id[]]` is `app/[id]`), as the edit
/// hook writes a file's name; `None` for any other glob.
fn escaped_plain_path(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '[' {
            let inner = chars.next()?;
            if !GLOB_CHARS.contains(&inner) || chars.next()? != ']' {
                return None;
            }
            out.push(inner);
        } else if GLOB_CHARS.contains(&c) {
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The segments of a checked pattern, ending in `**` when it names
/// directories (`dir`). A brace group that spans a `/` (`{src/a,docs}`)
/// cannot be split into segments: the pattern is cut before it and covers
/// everything from there.
fn segments(body: &str, is_glob: bool, dir: bool) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for piece in body.split('/') {
        if depth > 0 {
            // A brace opened in an earlier segment is still open: drop the
            // segment that opened it, and cover everything from there.
            out.pop();
            out.push(Seg::AnyDirs);
            return out;
        }
        for c in piece.chars().filter(|_| is_glob) {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        out.push(segment(piece, is_glob));
    }
    if dir && !matches!(out.last(), Some(Seg::AnyDirs)) {
        out.push(Seg::AnyDirs);
    }
    out
}

fn segment(piece: &str, is_glob: bool) -> Seg {
    if !is_glob || !piece.contains(GLOB_CHARS) {
        return Seg::Lit(piece.to_string());
    }
    if piece == "**" {
        return Seg::AnyDirs;
    }
    let matcher = glob(piece).ok();
    Seg::Glob(matcher.map(|matcher| {
        SegGlob {
            matcher,
            prefix: piece
                .split(GLOB_CHARS)
                .next()
                .unwrap_or_default()
                .to_string(),
            suffix: piece
                .rsplit(GLOB_CHARS)
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    }))
}

/// Could one segment name match both pieces?
fn segment_overlap(a: &Seg, b: &Seg) -> bool {
    match (a, b) {
        (Seg::Lit(x), Seg::Lit(y)) => x == y,
        (Seg::Lit(name), Seg::Glob(g)) | (Seg::Glob(g), Seg::Lit(name)) => {
            g.as_ref().is_none_or(|g| g.matcher.is_match(name))
        }
        (Seg::Glob(Some(x)), Seg::Glob(Some(y))) => {
            // A name matching both starts with both beginnings and ends with
            // both endings, so one of each pair extends the other.
            let starts = x.prefix.starts_with(&y.prefix) || y.prefix.starts_with(&x.prefix);
            let ends = x.suffix.ends_with(&y.suffix) || y.suffix.ends_with(&x.suffix);
            starts && ends
        }
        _ => true,
    }
}

/// Could one path be covered by both segment lists (`**` spanning any
/// number of segments)? Either both match it whole, or one ends on a
/// segment that meets a named segment of the other, which goes on below
/// it (what the first matched may be that directory; see the module
/// comment).
fn segments_overlap(a: &[Seg], b: &[Seg]) -> bool {
    walk(a, b, true)
}

/// Could `b` cover a path below one `a` matches, with `b` naming the
/// directory `a` ends on? For a plain file `a`, whose other overlaps
/// (`b` matching it, or a directory above it) are decided exactly.
fn names_below(a: &[Seg], b: &[Seg]) -> bool {
    walk(a, b, false)
}

/// The segment walk of [`segments_overlap`] (`both`) and [`names_below`]
/// (not `both`: only `a` ending with `b` going on below counts). Dynamic
/// programming over (position in `a`, position in `b`), from the ends back.
fn walk(a: &[Seg], b: &[Seg], both: bool) -> bool {
    let (n, m) = (a.len(), b.len());
    let width = m + 1;
    // meets[i * width + j]: can a[i..] and b[j..] match one path?
    let mut meets = vec![false; (n + 1) * width];
    meets[n * width + m] = both;
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            if i == n && j == m {
                continue;
            }
            let at = |i: usize, j: usize| meets[i * width + j];
            let v = match (a.get(i), b.get(j)) {
                (Some(Seg::AnyDirs), _) => at(i + 1, j) || (j < m && at(i, j + 1)),
                (_, Some(Seg::AnyDirs)) => at(i, j + 1) || (i < n && at(i + 1, j)),
                // Neither is `**` here: the end of one meets a named
                // segment of the other.
                (Some(x), Some(y)) => {
                    segment_overlap(x, y)
                        && (at(i + 1, j + 1)
                            || (i + 1 == n && j + 1 < m)
                            || (both && j + 1 == m && i + 1 < n))
                }
                _ => false,
            };
            meets[i * width + j] = v;
        }
    }
    meets[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> PathPattern {
        PathPattern::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    /// (a, b, overlap): the rule is symmetric, so each row is checked both ways.
    const OVERLAP: &[(&str, &str, bool)] = &[
        // file vs file
        ("src/main.rs", "src/main.rs", true),
        ("src/main.rs", "src/lib.rs", false),
        ("src/main.rs", "src/main.rs.bak", false),
        // a directory covers what is below it
        ("src/db/", "src/db/x.sql", true),
        ("src/db/", "src/db/migrations/1.sql", true),
        ("src/db/", "src/dbx/x.sql", false),
        ("src/db/", "src/db", true),
        ("src/db", "src/db/x.sql", true),
        ("src/db/", "src/", true),
        ("src/db/", "docs/", false),
        // ** vs file
        ("**", "README.md", true),
        ("**", "src/a/b/c.rs", true),
        ("src/**", "src/a/b/c.rs", true),
        ("src/**", "docs/a.md", false),
        ("**/*.sql", "src/db/x.sql", true),
        ("**/*.sql", "x.sql", true),
        ("**/*.sql", "src/db/x.rs", false),
        ("**/*.sql", "src/main.rs", false),
        ("**/*.sql", "src/", true),
        ("src/*/", "src/db/x.sql", true),
        ("src/**", "src/db/x.sql", true),
        ("src/**/*.sql", "src/db/x.sql", true),
        ("src/**/*.sql", "src/x.sql", true),
        ("src/**/*.sql", "src/db/x.rs", false),
        ("src/**/*.sql", "docs/x.sql", false),
        // a glob matching a directory covers what is below it
        ("src/*", "src/db/x.sql", true),
        ("src/*.rs", "src/db/x.rs", false),
        ("src/*/mod.rs", "src/db/", true),
        ("src/*/mod.rs", "src/", true),
        ("src/*/mod.rs", "src/db/x.rs", false),
        ("src/?b/x.rs", "src/db/x.rs", true),
        ("src/[a-c]b/", "src/db/x.rs", false),
        ("src/{db,api}/x.rs", "src/api/x.rs", true),
        ("src/{db,api}/x.rs", "src/web/x.rs", false),
        // glob vs glob
        ("src/*.rs", "docs/*.md", false),
        ("src/*.rs", "src/*.md", false),
        ("src/*.rs", "src/m*", true),
        ("**/*.sql", "src/*.rs", false),
        ("src/*/", "src/db/*.rs", true),
        ("src/a*", "src/*b", true),
        ("src/a*", "src/b*", false),
        ("src/**", "**/*.md", true),
        ("src/**/*.sql", "**/db/*", true),
        ("src/**/*.sql", "docs/**", false),
        ("src/*/x.rs", "src/db/*", true),
        ("src/*/x.rs", "src/*/y.rs", false),
        ("*.md", "docs/*.md", false),
        ("**/*.md", "docs/*.md", true),
        ("src/{a/b,c}/x.rs", "src/a/b/x.rs", true),
        ("src/{a/b,c}/x.rs", "src/q.rs", false),
        ("src/{a/b,c}/x.rs", "src/", true),
        ("src/{a/b,c}/x.rs", "src/*.rs", true),
        ("src/{a/b,c}/x.rs", "docs/*.md", false),
        // what one glob ends on may be a directory the other names
        ("src/*", "src/db/*.rs", true),
        ("src/*", "src/db/**", true),
        ("src/*", "src/*/x.rs", true),
        ("{a,b}/db", "a/db/*.rs", true),
        ("{a,b}/db", "c/db/*.rs", false),
        ("src/*.rs", "src/db/*.rs", false),
        ("src/*.rs", "src/**/x.sql", false),
        ("*.md", "src/*.md", false),
        // ... and so may a plain path
        ("a/db", "a/db/*.rs", true),
        ("src/main.rs", "src/*/x.rs", true),
        ("src/db", "src/**/x.sql", false),
        ("src/main.rs", "src/**/*.sql", false),
        // glob characters in one-character classes name a plain path
        ("app/[[]id[]]/page[{]x.tsx", "app/", true),
        ("app/[[]id[]]/page[{]x.tsx", "app/[id]/*.tsx", false),
        ("app/[[]id[]]/", "app/[[]id[]]/page.tsx", true),
        ("app/[[]id[]]/page.tsx", "app/*.md", false),
        ("app/[[]id[]]/page.tsx", "app/*/*.tsx", true),
        ("app/[[]id[]]/", "app/[id]/", false),
        ("[*][*]", "src/a.rs", false),
    ];

    #[test]
    fn which_patterns_overlap() {
        for (a, b, want) in OVERLAP {
            assert_eq!(p(a).could_overlap(&p(b)), *want, "{a} vs {b}");
            assert_eq!(p(b).could_overlap(&p(a)), *want, "{b} vs {a}");
        }
    }

    /// (a, b, a covers every path b covers)
    const COVERS: &[(&str, &str, bool)] = &[
        ("docs/", "docs/a.md", true),
        ("docs/", "docs/guide/", true),
        ("docs/", "docs/", true),
        ("docs", "docs/a.md", true),
        ("docs/a.md", "docs/a.md", true),
        ("docs/a.md", "docs/", false),
        ("docs/a.md", "docs/b.md", false),
        ("docs/", "docsx/a.md", false),
        ("docs/**", "docs/a.md", true),
        ("docs/*.md", "docs/a.md", true),
        ("docs/*.md", "docs/a.rs", false),
        ("src/*", "src/db/x.rs", true),
        ("**", "src/db/x.rs", true),
        ("docs/", "docs/**/*.md", true),
        ("docs/*", "docs/a/*.md", true),
        ("docs/*.md", "docs/*.md", true),
        // a glob below a glob is not told apart: "no"
        ("docs/**/*.md", "docs/a/*.md", false),
        ("docs/a.md", "docs/*.md", false),
        ("docs/", "**/*.md", false),
    ];

    #[test]
    fn which_patterns_cover_another() {
        for (a, b, want) in COVERS {
            assert_eq!(p(a).covers(&p(b)), *want, "{a} covers {b}");
        }
        assert!(!PathPattern::stored("../x").covers(&p("a.rs")));
    }

    /// (holder A's patterns, exclusive, holder B's patterns, exclusive, conflict)
    type LeaseRow = (
        &'static [&'static str],
        bool,
        &'static [&'static str],
        bool,
        bool,
    );
    const LEASES: &[LeaseRow] = &[
        (&["src/a.rs"], true, &["src/a.rs"], true, true),
        (&["src/a.rs"], false, &["src/a.rs"], false, false),
        (&["src/a.rs"], false, &["src/a.rs"], true, true),
        (&["src/"], true, &["src/a.rs"], false, true),
        (&["src/a.rs", "docs/"], true, &["docs/x.md"], true, true),
        (
            &["src/a.rs", "docs/"],
            true,
            &["tests/", "README.md"],
            true,
            false,
        ),
        (&["src/*.rs"], true, &["docs/*.md"], true, false),
        (&["src/*"], true, &["src/db/*.rs"], true, true),
        (&["src/*"], false, &["src/db/*.rs"], false, false),
    ];

    #[test]
    fn which_leases_conflict() {
        for (a, ax, b, bx, want) in LEASES {
            let a: Vec<PathPattern> = a.iter().map(|r| p(r)).collect();
            let b: Vec<PathPattern> = b.iter().map(|r| p(r)).collect();
            assert_eq!(conflict(&a, *ax, &b, *bx), *want, "{a:?} vs {b:?}");
            assert_eq!(conflict(&b, *bx, &a, *ax), *want, "{b:?} vs {a:?}");
        }
    }

    /// (pattern, a word the refusal must contain)
    const REFUSED: &[(&str, &str)] = &[
        ("", "empty"),
        ("   ", "empty"),
        ("/etc/passwd", "absolute"),
        ("C:/src/a.rs", "absolute"),
        ("../other/a.rs", ".."),
        ("src/../../a.rs", ".."),
        ("./src/a.rs", "./"),
        ("src//a.rs", "//"),
        ("src\\a.rs", "backslash"),
        ("src/a\u{7}.rs", "control"),
        ("src/a\n.rs", "control"),
        ("src/[a.rs", "glob"),
        ("src/{a,b.rs", "glob"),
    ];

    #[test]
    fn bad_patterns_are_refused_with_what_to_do() {
        for (raw, word) in REFUSED {
            let e = PathPattern::parse(raw).expect_err(raw);
            assert!(e.contains(word), "{raw:?}: {e}");
        }
        let long = "a/".repeat(600);
        let e = PathPattern::parse(&long).expect_err("too long");
        assert!(e.contains("at most 1024"), "{e}");
        for ok in [
            "src/",
            "a",
            "**",
            "src/**/*.{rs,toml}",
            "dir with space/f.txt",
            "ünï/cödé.rs",
        ] {
            p(ok);
        }
    }

    /// The edit hook writes each glob character of a file's name as a
    /// one-character class; globset, as [`glob`] configures it, reads
    /// each as that character alone.
    #[test]
    fn a_glob_character_in_brackets_matches_itself() {
        for (class, c) in [
            ("[*]", "*"),
            ("[?]", "?"),
            ("[[]", "["),
            ("[]]", "]"),
            ("[{]", "{"),
            ("[}]", "}"),
        ] {
            let m = glob(&format!("a{class}b")).unwrap_or_else(|e| panic!("{class}: {e}"));
            assert!(m.is_match(format!("a{c}b")), "{class} matches {c}");
            assert!(!m.is_match("axb"), "{class} matches only {c}");
        }
        let m = glob("app/[[]id[]]/page[{]x[}].tsx").expect("a glob");
        assert!(m.is_match("app/[id]/page{x}.tsx"));
        assert!(!m.is_match("app/i/pagex.tsx"));
    }

    #[test]
    fn a_glob_of_escaped_characters_only_is_the_plain_path_it_names() {
        let page = p("app/[[]id[]]/page[{]x.tsx");
        assert!(page.is_literal());
        assert_eq!(page.body, "app/[id]/page{x.tsx");
        let dir = p("app/[[]id[]]/");
        assert!(dir.is_literal() && dir.dir);
        for glob in ["app/[id]/x", "src/[ab].rs", "a/[*]*.rs", "[*"] {
            assert_eq!(escaped_plain_path(glob), None, "{glob}");
        }
    }

    #[test]
    fn a_stored_pattern_that_no_longer_parses_covers_everything() {
        let odd = PathPattern::stored("../x");
        assert!(odd.could_overlap(&p("anything/at/all.rs")));
        assert!(!odd.is_literal());
    }
}
