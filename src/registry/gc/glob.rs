//! Globs over repository names: `*` and `?` stay inside one path component, `**` crosses `/`.
//! `ci/**` matches every repository under `ci/`; `*` matches only single-component names.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob(pattern.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        matches(self.0.as_bytes(), name.as_bytes())
    }
}

fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern {
        [] => name.is_empty(),
        [b'*', b'*', rest @ ..] => {
            // `a/**` also matches `a` itself? No: registry names under a prefix only. But
            // `**/x` matches `x` at the top: the slash after `**` is optional there.
            let rest_without_slash = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=name.len()).any(|i| {
                matches(rest, &name[i..])
                    || (rest_without_slash.len() != rest.len()
                        && matches(rest_without_slash, &name[i..]))
            })
        }
        [b'*', rest @ ..] => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != b'/')
            .any(|i| matches(rest, &name[i..])),
        [b'?', rest @ ..] => matches!(name, [c, tail @ ..] if *c != b'/' && matches(rest, tail)),
        [c, rest @ ..] => matches!(name, [n, tail @ ..] if n == c && matches(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_in_a_component_and_double_star_crosses() {
        let ci = Glob::new("ci/**");
        assert!(ci.matches("ci/app"));
        assert!(ci.matches("ci/team/app"));
        assert!(!ci.matches("cix/app"));
        assert!(!ci.matches("prod/ci/app"));
        let one = Glob::new("ci/*");
        assert!(one.matches("ci/app"));
        assert!(!one.matches("ci/team/app"));
        assert!(Glob::new("**").matches("a/b/c"));
        assert!(Glob::new("**/cache").matches("cache"));
        assert!(Glob::new("**/cache").matches("a/b/cache"));
        assert!(Glob::new("app-?").matches("app-1"));
        assert!(!Glob::new("app-?").matches("app-12"));
        assert!(Glob::new("exact/name").matches("exact/name"));
        assert!(!Glob::new("exact/name").matches("exact/name2"));
    }
}
