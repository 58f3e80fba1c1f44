//! Globs over repository names, as `[[access]] repositories` writes them.
//!
//! A pattern is `/`-separated components. In a component `*` matches any run of characters
//! and `?` one character, never a `/`; a component that is exactly `**` matches any number of
//! whole components: at least one at the end (`team-a/**` matches `team-a/app` and
//! `team-a/x/app`, not `team-a` itself), zero or more elsewhere (`**/cache` matches `cache`),
//! and `**` alone matches every name. Patterns are validated when parsed, and one glob can be
//! asked whether it covers another (for the "rule can never match" check). Retention rules
//! (`registry::gc::retention`) use the same globs.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Component {
    /// `**`: any number of whole components.
    Any,
    /// A component pattern of literal characters, `*` and `?`.
    Pattern(Vec<Piece>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Char(u8),
    /// `*`: any run within a component.
    Run,
    /// `?`: one character within a component.
    One,
}

/// A parsed, valid repository glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoGlob {
    text: String,
    components: Vec<Component>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pattern:?} is not a repository glob: {reason}")]
pub struct GlobError {
    pub pattern: String,
    pub reason: &'static str,
}

impl RepoGlob {
    pub fn parse(pattern: &str) -> Result<RepoGlob, GlobError> {
        let error = |reason| GlobError {
            pattern: pattern.to_owned(),
            reason,
        };
        if pattern.is_empty() {
            return Err(error("it is empty"));
        }
        let mut components = Vec::new();
        for component in pattern.split('/') {
            if component.is_empty() {
                return Err(error("a component between slashes is empty"));
            }
            if component == "**" {
                // `**/**` says nothing more than `**` and would make matching quadratic.
                if components.last() == Some(&Component::Any) {
                    return Err(error("`**/**` repeats itself; write `**`"));
                }
                components.push(Component::Any);
                continue;
            }
            if component.contains("**") {
                return Err(error("`**` must be a whole component, as in `team/**`"));
            }
            let mut pieces = Vec::with_capacity(component.len());
            for b in component.bytes() {
                pieces.push(match b {
                    b'*' => Piece::Run,
                    b'?' => Piece::One,
                    b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => Piece::Char(b),
                    b'A'..=b'Z' => {
                        return Err(error("repository names are lower case"));
                    }
                    _ => {
                        return Err(error(
                            "only a-z, 0-9, '.', '_', '-', '/' and the wildcards * ? ** may appear",
                        ))
                    }
                });
            }
            components.push(Component::Pattern(pieces));
        }
        Ok(RepoGlob {
            text: pattern.to_owned(),
            components,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, name: &str) -> bool {
        let names: Vec<&[u8]> = name.split('/').map(str::as_bytes).collect();
        match_components(&self.components, &names, &|pattern, name| {
            match_pieces(pattern, name)
        })
    }

    /// `a.covers(b)`: every name `b` matches, `a` matches too. Sound (a `true` is always right); it may
    /// say `false` for exotic pairs whose inclusion needs more than piece-by-piece reasoning.
    pub fn covers(&self, other: &RepoGlob) -> bool {
        covers_components(&self.components, &other.components)
    }
}

impl fmt::Display for RepoGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Matches pattern components against name components; `component` matches one against one.
fn match_components(
    pattern: &[Component],
    names: &[&[u8]],
    component: &dyn Fn(&[Piece], &[u8]) -> bool,
) -> bool {
    match pattern {
        [] => names.is_empty(),
        [Component::Any] => !names.is_empty(),
        [Component::Any, rest @ ..] => {
            (0..=names.len()).any(|skip| match_components(rest, &names[skip..], component))
        }
        [Component::Pattern(pieces), rest @ ..] => match names {
            [first, tail @ ..] => {
                component(pieces, first) && match_components(rest, tail, component)
            }
            [] => false,
        },
    }
}

fn match_pieces(pattern: &[Piece], name: &[u8]) -> bool {
    match pattern {
        [] => name.is_empty(),
        [Piece::Run, rest @ ..] => (0..=name.len()).any(|i| match_pieces(rest, &name[i..])),
        [Piece::One, rest @ ..] => !name.is_empty() && match_pieces(rest, &name[1..]),
        [Piece::Char(c), rest @ ..] => name.first() == Some(c) && match_pieces(rest, &name[1..]),
    }
}

/// Whether component pattern `outer` matches every component `inner` matches: `inner`'s
/// wildcards are treated as symbols only a wildcard of `outer` can absorb.
fn covers_pieces(outer: &[Piece], inner: &[Piece]) -> bool {
    match outer {
        [] => inner.is_empty(),
        [Piece::Run, rest @ ..] => (0..=inner.len()).any(|i| covers_pieces(rest, &inner[i..])),
        [Piece::One, rest @ ..] => {
            matches!(inner.first(), Some(Piece::One | Piece::Char(_)))
                && covers_pieces(rest, &inner[1..])
        }
        [Piece::Char(c), rest @ ..] => {
            inner.first() == Some(&Piece::Char(*c)) && covers_pieces(rest, &inner[1..])
        }
    }
}

fn covers_components(outer: &[Component], inner: &[Component]) -> bool {
    match (outer, inner) {
        ([], []) => true,
        ([], _) => false,
        // A trailing `**` takes one or more components; any non-empty rest of `inner` matches
        // at least one (an inner `**` there is trailing too, or followed by more).
        ([Component::Any], inner) => !inner.is_empty(),
        ([Component::Any, rest @ ..], inner) => {
            (0..=inner.len()).any(|skip| covers_components(rest, &inner[skip..]))
        }
        ([Component::Pattern(_), ..], [Component::Any, ..]) => false,
        ([Component::Pattern(o), orest @ ..], [Component::Pattern(i), irest @ ..]) => {
            covers_pieces(o, i) && covers_components(orest, irest)
        }
        ([Component::Pattern(_), ..], []) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> RepoGlob {
        RepoGlob::parse(s).unwrap()
    }

    #[test]
    fn star_stays_in_a_component_and_double_star_crosses() {
        let team = g("team-a/**");
        assert!(team.matches("team-a/app"));
        assert!(team.matches("team-a/x/app"));
        assert!(
            !team.matches("team-a"),
            "a trailing ** takes at least one component"
        );
        assert!(!team.matches("team-ab/app"));
        assert!(!team.matches("other/team-a/app"));
        let one = g("team-a/*");
        assert!(one.matches("team-a/app"));
        assert!(!one.matches("team-a/x/app"));
        assert!(g("**").matches("a"));
        assert!(g("**").matches("a/b/c"));
        assert!(g("**/cache").matches("cache"));
        assert!(g("**/cache").matches("a/b/cache"));
        assert!(!g("**/cache").matches("a/cachex"));
        assert!(g("a/**/z").matches("a/z"));
        assert!(g("a/**/z").matches("a/b/c/z"));
        assert!(g("app-?").matches("app-1"));
        assert!(!g("app-?").matches("app-12"));
        assert!(g("*-prod").matches("web-prod"));
        assert!(!g("*-prod").matches("x/web-prod"));
        assert!(g("exact/name").matches("exact/name"));
        assert!(!g("exact/name").matches("exact/name2"));
    }

    #[test]
    fn invalid_patterns_say_why() {
        for bad in [
            "", "a//b", "/a", "a/", "a**", "**x/y", "Team/**", "a b", "a/**/**", "a[0]",
        ] {
            let e = RepoGlob::parse(bad).unwrap_err();
            assert_eq!(e.pattern, bad);
            assert!(!e.reason.is_empty());
        }
    }

    #[test]
    fn covers_is_inclusion() {
        let yes = [
            ("**", "team/**"),
            ("**", "a"),
            ("**", "**"),
            ("team/**", "team/**"),
            ("team/**", "team/a/**"),
            ("team/**", "team/*"),
            ("team/*", "team/app-?"),
            ("team/*", "team/app"),
            ("*", "a*b"),
            ("**/cache", "team/cache"),
            ("a/**/z", "a/z"),
        ];
        for (outer, inner) in yes {
            assert!(g(outer).covers(&g(inner)), "{outer} covers {inner}");
        }
        let no = [
            ("team/**", "**"),
            ("team/**", "team"),
            ("team/*", "team/**"),
            ("team/app", "team/*"),
            ("a?", "a*"),
            ("other/**", "team/**"),
            ("*", "a/b"),
        ];
        for (outer, inner) in no {
            assert!(
                !g(outer).covers(&g(inner)),
                "{outer} does not cover {inner}"
            );
        }
    }
}
