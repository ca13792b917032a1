//! Lookup of per-domain settings keyed like `domains`: exact keys and `*.` wildcards.

use std::collections::BTreeMap;

/// Values keyed by domain, where an exact key beats a `*.` wildcard and the longest
/// matching wildcard wins. `*.example.com` matches `a.example.com` and
/// `a.b.example.com`, never `example.com` itself. Keys are compared in lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainMap<T> {
    exact: BTreeMap<String, T>,
    /// Wildcards keyed by their suffix without `*.`.
    wildcard: BTreeMap<String, T>,
}

impl<T> Default for DomainMap<T> {
    fn default() -> Self {
        Self {
            exact: BTreeMap::new(),
            wildcard: BTreeMap::new(),
        }
    }
}

impl<T> DomainMap<T> {
    /// Builds the map from configuration keys (`example.com`, `*.example.com`).
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a String, T)>) -> Self {
        let mut map = Self::default();
        for (key, value) in entries {
            let key = key.to_ascii_lowercase();
            match key.strip_prefix("*.") {
                Some(suffix) => map.wildcard.insert(suffix.to_owned(), value),
                None => map.exact.insert(key, value),
            };
        }
        map
    }

    /// The value for a lowercase ASCII domain: the exact entry, else the wildcard with
    /// the longest matching suffix.
    pub fn lookup(&self, domain: &str) -> Option<&T> {
        if let Some(value) = self.exact.get(domain) {
            return Some(value);
        }
        domain
            .match_indices('.')
            .find_map(|(dot, _)| self.wildcard.get(&domain[dot + 1..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_wildcard_and_the_longest_wildcard_wins() {
        let keys = [
            ("*.example.com".to_owned(), 1),
            ("www.example.com".to_owned(), 2),
            ("*.in.example.com".to_owned(), 3),
            ("Example.ORG".to_owned(), 4),
        ];
        let map = DomainMap::new(keys.iter().map(|(k, v)| (k, *v)));
        for (domain, expected) in [
            ("a.example.com", Some(1)),
            ("a.b.example.com", Some(1)),
            ("www.example.com", Some(2)),
            ("x.in.example.com", Some(3)),
            ("example.com", None),
            ("example.org", Some(4)),
            ("other.net", None),
        ] {
            assert_eq!(map.lookup(domain).copied(), expected, "{domain}");
        }
    }
}
