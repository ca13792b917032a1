//! SMTP AUTH credentials (RFC 4954) and the PLAIN and LOGIN encodings of them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A username and password for AUTH PLAIN or LOGIN. `Debug` shows the username only;
/// there is no `Display`, and the password can only be read in encoded AUTH lines.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Credentials from a username and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The AUTH PLAIN initial response (RFC 4616): base64 of NUL username NUL password.
    pub(crate) fn plain_response(&self) -> String {
        let mut raw = Vec::with_capacity(self.username.len() + self.password.len() + 2);
        raw.push(0);
        raw.extend_from_slice(self.username.as_bytes());
        raw.push(0);
        raw.extend_from_slice(self.password.as_bytes());
        STANDARD.encode(raw)
    }

    /// The AUTH LOGIN username line, base64.
    pub(crate) fn login_username(&self) -> String {
        STANDARD.encode(&self.username)
    }

    /// The AUTH LOGIN password line, base64.
    pub(crate) fn login_password(&self) -> String {
        STANDARD.encode(&self.password)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let creds = Credentials::new("relay-user", "s3cret-pw");
        let shown = format!("{creds:?} {creds:#?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("relay-user"), "{shown}");
    }

    #[test]
    fn encodings_follow_rfc_4616_and_the_login_convention() {
        // RFC 4616 §4's example: authcid "tim", password "tanstaaftanstaaf".
        let creds = Credentials::new("tim", "tanstaaftanstaaf");
        assert_eq!(creds.plain_response(), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
        assert_eq!(creds.login_username(), "dGlt");
        assert_eq!(creds.login_password(), "dGFuc3RhYWZ0YW5zdGFhZg==");
    }
}
