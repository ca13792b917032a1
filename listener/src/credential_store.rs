//! The AUTH credentials: `username:hash` lines parsed into a table, and the (CPU-heavy,
//! blocking) check of a password against a user's argon2 or bcrypt hash.

use std::collections::HashMap;

use argon2::{Argon2, PasswordHash, PasswordVerifier};

/// One user's password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Hash {
    /// A PHC string of an argon2 variant (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    Argon2(String),
    /// A bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`).
    Bcrypt(String),
}

impl Hash {
    fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("$argon2") {
            let phc =
                PasswordHash::new(text).map_err(|e| format!("not an argon2 PHC string ({e})"))?;
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err("not an argon2 PHC string (no salt or no hash)".into());
            }
            argon2::Params::try_from(&phc)
                .map_err(|e| format!("not an argon2 PHC string ({e})"))?;
            return Ok(Self::Argon2(text.to_owned()));
        }
        if ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| text.starts_with(p))
        {
            if text.len() != 60 {
                return Err("a bcrypt hash has 60 characters".into());
            }
            return Ok(Self::Bcrypt(text.to_owned()));
        }
        Err("expected an argon2 PHC string ($argon2id$…) or a bcrypt hash ($2b$…)".into())
    }

    fn verify(&self, password: &str) -> bool {
        match self {
            Self::Argon2(phc) => PasswordHash::new(phc).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            }),
            Self::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }
}

/// The users that may authenticate, with their password hashes. `Debug` shows the
/// number of users only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CredentialStore {
    users: HashMap<String, Hash>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore")
            .field("users", &self.users.len())
            .finish()
    }
}

impl CredentialStore {
    /// Parses the credentials text: one `username:hash` per line; blank lines and lines
    /// starting with `#` are skipped. The error names the line (never its hash).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = number + 1;
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {at}: expected username:hash"));
            };
            let user = user.trim();
            if user.is_empty() {
                return Err(format!("line {at}: the username is empty"));
            }
            let hash = Hash::parse(hash.trim()).map_err(|e| format!("line {at} ({user}): {e}"))?;
            if users.insert(user.to_owned(), hash).is_some() {
                return Err(format!("line {at}: user '{user}' is listed twice"));
            }
        }
        Ok(Self { users })
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. Blocking and slow on purpose (the hash's cost):
    /// call it off the async reactor. An unknown user is checked against another
    /// user's hash, so that it costs as much as a wrong password.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.verify(password),
            None => {
                if let Some(other) = self.users.values().next() {
                    let _ = other.verify(password);
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, SaltString};

    use super::*;

    /// Cheap argon2id parameters, so the test is quick.
    fn argon2_hash(password: &str) -> String {
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let hasher = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap();
        hasher
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn bcrypt_hash(password: &str) -> String {
        bcrypt::hash_with_salt(password, 4, [7; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB)
    }

    #[test]
    fn argon2_and_bcrypt_users_verify() {
        let text = format!(
            "# submission users\n\napp:{}\n  device : {}\n",
            argon2_hash("app-pw"),
            bcrypt_hash("device-pw")
        );
        let store = CredentialStore::parse(&text).unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.verify("app", "app-pw"));
        assert!(!store.verify("app", "device-pw"));
        assert!(store.verify("device", "device-pw"));
        assert!(!store.verify("device", "Device-pw"));
        assert!(!store.verify("nobody", "app-pw"));
    }

    #[test]
    fn bad_lines_are_named_without_their_hash() {
        let cases = [
            ("app", "line 1: expected username:hash"),
            (":$2b$", "line 1: the username is empty"),
            ("app:plaintext-password", "line 1 (app): expected an argon2"),
            ("app:$2b$04$short", "line 1 (app): a bcrypt hash has 60"),
            ("app:$argon2id$nonsense", "line 1 (app): not an argon2 PHC"),
        ];
        for (text, expected) in cases {
            let err = CredentialStore::parse(text).unwrap_err();
            assert!(err.starts_with(expected), "{text}: {err}");
            assert!(!err.contains("plaintext-password"), "{err}");
        }
        let twice = format!("a:{h}\na:{h}", h = bcrypt_hash("x"));
        assert!(
            CredentialStore::parse(&twice)
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn debug_shows_only_the_count() {
        let store = CredentialStore::parse(&format!("a:{}", bcrypt_hash("x"))).unwrap();
        assert_eq!(format!("{store:?}"), "CredentialStore { users: 1 }");
    }
}
