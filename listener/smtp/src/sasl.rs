//! The server side of SMTP AUTH (RFC 4954) for the PLAIN (RFC 4616) and LOGIN
//! mechanisms: decoding the client's base64 lines into an identity and a password.
//! Pure functions; the password is held in a [`Secret`] that never prints.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A SASL mechanism the server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: one message, `[authzid] NUL authcid NUL passwd`.
    Plain,
    /// The LOGIN convention: a username line, then a password line.
    Login,
}

impl Mechanism {
    /// The mechanism named by an AUTH command (case-insensitive), if offered.
    pub fn parse(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Self::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Self::Login)
        } else {
            None
        }
    }
}

/// A password from the client: `Debug` hides it and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password, for verification only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a completed exchange claims: who the client is and who it acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The authorization identity (authzid); the authentication identity when the
    /// client gave none.
    pub authz: String,
    /// The authentication identity (authcid), checked against the password.
    pub authn: String,
    /// The password.
    pub password: Secret,
}

/// Why a client's SASL line was refused (each maps to `501`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*` (RFC 4954 §4).
    Cancelled,
    /// Not base64.
    BadBase64,
    /// Base64, but not what the mechanism expects (field count, empty identity, NUL).
    Malformed,
    /// A decoded field is not UTF-8.
    BadUtf8,
}

/// Decodes one client line of an exchange: `*` cancels, else base64 (`=` alone is the
/// empty initial response, RFC 4954 §4).
pub fn decode_line(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_end();
    if line == "*" {
        return Err(SaslError::Cancelled);
    }
    if line == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(line).map_err(|_| SaslError::BadBase64)
}

/// Decodes an AUTH PLAIN message (already base64-decoded): `[authzid] NUL authcid NUL
/// passwd`, every field UTF-8 and the authcid non-empty.
pub fn parse_plain(message: &[u8]) -> Result<Claim, SaslError> {
    let fields: Vec<&[u8]> = message.split(|&b| b == 0).collect();
    let [authz, authn, password] = fields[..] else {
        return Err(SaslError::Malformed);
    };
    let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_owned);
    let (Ok(authz), Ok(authn), Ok(password)) = (text(authz), text(authn), text(password)) else {
        return Err(SaslError::BadUtf8);
    };
    if authn.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(Claim {
        authz: if authz.is_empty() {
            authn.clone()
        } else {
            authz
        },
        authn,
        password: Secret(password),
    })
}

/// Decodes the LOGIN username line (already base64-decoded).
pub fn parse_login_username(decoded: &[u8]) -> Result<String, SaslError> {
    let name = std::str::from_utf8(decoded).map_err(|_| SaslError::BadUtf8)?;
    if name.is_empty() || name.contains('\0') {
        return Err(SaslError::Malformed);
    }
    Ok(name.to_owned())
}

/// Decodes the LOGIN password line (already base64-decoded) into the claim.
pub fn parse_login_password(username: String, decoded: &[u8]) -> Result<Claim, SaslError> {
    let password = std::str::from_utf8(decoded).map_err(|_| SaslError::BadUtf8)?;
    if password.contains('\0') {
        return Err(SaslError::Malformed);
    }
    Ok(Claim {
        authz: username.clone(),
        authn: username,
        password: Secret(password.to_owned()),
    })
}

/// The `334` challenge text of a LOGIN step: base64 of `Username:` or `Password:`.
pub fn login_prompt(password: bool) -> String {
    STANDARD.encode(if password { "Password:" } else { "Username:" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_follows_rfc_4616() {
        // RFC 4616 §4: "\0tim\0tanstaaftanstaaf".
        let claim = parse_plain(&decode_line("AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap()).unwrap();
        assert_eq!((claim.authz.as_str(), claim.authn.as_str()), ("tim", "tim"));
        assert_eq!(claim.password.expose(), "tanstaaftanstaaf");
        // "Ursel\0Kurt\0xipj3plmq": Kurt acting as Ursel.
        let claim = parse_plain(b"Ursel\0Kurt\0xipj3plmq").unwrap();
        assert_eq!(
            (claim.authz.as_str(), claim.authn.as_str()),
            ("Ursel", "Kurt")
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        let cases: [(&[u8], SaslError); 5] = [
            (b"tim\0pw", SaslError::Malformed),
            (b"\0tim\0pw\0extra", SaslError::Malformed),
            (b"\0\0pw", SaslError::Malformed),
            (b"\0tim\0\xff", SaslError::BadUtf8),
            (b"", SaslError::Malformed),
        ];
        for (message, error) in cases {
            assert_eq!(parse_plain(message), Err(error), "{message:?}");
        }
        assert_eq!(decode_line("not base64!"), Err(SaslError::BadBase64));
        assert_eq!(decode_line("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_line("="), Ok(Vec::new()));
    }

    #[test]
    fn login_steps() {
        assert_eq!(login_prompt(false), "VXNlcm5hbWU6");
        assert_eq!(login_prompt(true), "UGFzc3dvcmQ6");
        let user = parse_login_username(&decode_line("dGlt").unwrap()).unwrap();
        let claim = parse_login_password(user, &decode_line("cHc=").unwrap()).unwrap();
        assert_eq!(
            (claim.authn.as_str(), claim.password.expose()),
            ("tim", "pw")
        );
        assert_eq!(parse_login_username(b""), Err(SaslError::Malformed));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let claim = parse_plain(b"\0tim\0s3cret-pw").unwrap();
        assert!(!format!("{claim:?}").contains("s3cret-pw"));
    }

    #[test]
    fn mechanisms() {
        assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("LOGIN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
    }
}
