//! Credentials for the NATS connection: `NATS_USER` with `NATS_PASSWORD`, or `NATS_TOKEN`, from the
//! environment (never from the URL, which is logged). `Debug` never shows a secret.

use super::NatsError;

/// How the client authenticates. `Debug` never shows a secret.
#[derive(Clone, Default)]
pub(super) enum Auth {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("none"),
            Auth::UserPassword(user, _) => write!(f, "user {user:?} with a password"),
            Auth::Token(_) => f.write_str("a token"),
        }
    }
}

impl Auth {
    /// `NATS_USER` with `NATS_PASSWORD`, or `NATS_TOKEN`, read through `get`.
    pub(super) fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Auth, NatsError> {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        match (var("NATS_USER"), var("NATS_PASSWORD"), var("NATS_TOKEN")) {
            (None, None, None) => Ok(Auth::None),
            (Some(u), Some(p), None) => Ok(Auth::UserPassword(u, p)),
            (None, None, Some(t)) => Ok(Auth::Token(t)),
            (Some(_), None, _) => Err(NatsError::Config(
                "NATS_USER is set but NATS_PASSWORD is not: set both, or NATS_TOKEN alone".into(),
            )),
            (None, Some(_), _) => Err(NatsError::Config(
                "NATS_PASSWORD is set but NATS_USER is not: set both, or NATS_TOKEN alone".into(),
            )),
            (Some(_), Some(_), Some(_)) => Err(NatsError::Config(
                "both NATS_USER/NATS_PASSWORD and NATS_TOKEN are set: set one way to authenticate"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueueError;
    use crate::url::tests::vars as env;

    #[test]
    fn credentials_come_from_the_environment_one_way_at_a_time() {
        assert!(matches!(Auth::from_env(&env(&[])), Ok(Auth::None)));
        let a = Auth::from_env(&env(&[("NATS_USER", "u"), ("NATS_PASSWORD", "hunter2")])).unwrap();
        assert!(matches!(&a, Auth::UserPassword(u, p) if u == "u" && p == "hunter2"));
        assert!(!format!("{a:?}").contains("hunter2"));
        let t = Auth::from_env(&env(&[("NATS_TOKEN", "s3cret")])).unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        for (vars, needle) in [
            (&[("NATS_USER", "u")][..], "NATS_PASSWORD is not"),
            (&[("NATS_PASSWORD", "p")][..], "NATS_USER is not"),
            (
                &[
                    ("NATS_USER", "u"),
                    ("NATS_PASSWORD", "p"),
                    ("NATS_TOKEN", "t"),
                ][..],
                "set one way",
            ),
        ] {
            let vars: &'static [(&'static str, &'static str)] = vars;
            let e = Auth::from_env(&env(vars)).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            assert_eq!(QueueError::from(e).kind(), crate::ErrorKind::Invalid);
        }
    }
}
