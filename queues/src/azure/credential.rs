//! Which credential a queue uses, chosen from the URL's `auth=` and the environment, and the [`Secret`] type
//! that keeps keys and SAS tokens out of logs, errors and `Debug` output.
//!
//! `auth=auto` (the default) takes the first that is set:
//! 1. `AZURE_STORAGE_CONNECTION_STRING`: its `AccountKey`, else its `SharedAccessSignature`;
//! 2. `AZURE_STORAGE_ACCOUNT_KEY`: Shared Key (the original demo's variable);
//! 3. `AZURE_STORAGE_SAS_TOKEN`: a SAS appended to every request;
//! 4. otherwise Entra ID: workload identity when `AZURE_FEDERATED_TOKEN_FILE` is set, managed identity when
//!    `IDENTITY_ENDPOINT` or `MSI_ENDPOINT` is, else the developer tools (Azure CLI, azd).
//!
//! `auth=key|sas|entra` forces one and fails clearly when its variable is missing.

use super::config::{AuthMode, ConnectionString};

/// Keys and SAS tokens: the suite's one secret type, which never prints its value.
pub use workload::redact::Secret;

/// The Entra ID credential kinds we build with `azure_identity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntraKind {
    Workload,
    ManagedIdentity,
    DeveloperTools,
}

/// The chosen credential, with where it came from (for `describe()` and errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    Key { key: Secret, from: &'static str },
    Sas { token: Secret, from: &'static str },
    Entra(EntraKind),
}

impl Choice {
    /// A short name for logs: never the secret.
    pub fn describe(&self) -> String {
        match self {
            Choice::Key { from, .. } => format!("account key from {from}"),
            Choice::Sas { from, .. } => format!("SAS from {from}"),
            Choice::Entra(k) => format!("Entra ID ({k:?})"),
        }
    }
}

/// Picks the credential (see the module docs). `env` reads a variable; tests pass a map.
///
/// Returns the choice and the parsed connection string, if one was set (its endpoint is used when the URL
/// has none).
pub fn select(
    mode: AuthMode,
    account: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Choice, Option<ConnectionString>), String> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let conn = match var("AZURE_STORAGE_CONNECTION_STRING") {
        Some(s) => {
            let c = ConnectionString::parse(&s)?;
            if c.account != account {
                return Err(format!(
                    "AZURE_STORAGE_CONNECTION_STRING is for account {:?}, but the queue URL names {account:?}",
                    c.account
                ));
            }
            Some(c)
        }
        None => None,
    };
    const CS: &str = "AZURE_STORAGE_CONNECTION_STRING";
    let key = || {
        conn.as_ref()
            .and_then(|c| c.key.clone())
            .map(|key| Choice::Key { key, from: CS })
            .or_else(|| {
                var("AZURE_STORAGE_ACCOUNT_KEY").map(|k| Choice::Key {
                    key: Secret::new(k),
                    from: "AZURE_STORAGE_ACCOUNT_KEY",
                })
            })
    };
    let sas = || {
        conn.as_ref()
            .and_then(|c| c.sas.clone())
            .map(|token| Choice::Sas { token, from: CS })
            .or_else(|| {
                var("AZURE_STORAGE_SAS_TOKEN").map(|t| Choice::Sas {
                    token: Secret::new(t.trim_start_matches('?').to_string()),
                    from: "AZURE_STORAGE_SAS_TOKEN",
                })
            })
    };
    let entra = || {
        if var("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            EntraKind::Workload
        } else if var("IDENTITY_ENDPOINT").is_some() || var("MSI_ENDPOINT").is_some() {
            EntraKind::ManagedIdentity
        } else {
            EntraKind::DeveloperTools
        }
    };
    let choice = match mode {
        AuthMode::Auto => key().or_else(sas).unwrap_or_else(|| Choice::Entra(entra())),
        AuthMode::Key => key().ok_or(
            "auth=key but no account key: set AZURE_STORAGE_ACCOUNT_KEY (or an AZURE_STORAGE_CONNECTION_STRING with AccountKey)",
        )?,
        AuthMode::Sas => sas().ok_or(
            "auth=sas but no SAS token: set AZURE_STORAGE_SAS_TOKEN (or an AZURE_STORAGE_CONNECTION_STRING with SharedAccessSignature)",
        )?,
        AuthMode::Entra => Choice::Entra(entra()),
    };
    if let Choice::Key { key, from } = &choice
        && azure_core::base64::decode(key.expose()).is_err()
    {
        return Err(format!(
            "the account key in {from} is not base64 (it is shown in the portal under Access keys)"
        ));
    }
    Ok((choice, conn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pick(mode: AuthMode, vars: &[(&str, &str)]) -> Result<Choice, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        select(mode, "acct1", &|k| map.get(k).cloned()).map(|(c, _)| c)
    }

    #[test]
    fn auto_prefers_connection_string_then_key_then_sas_then_entra() {
        let cs = (
            "AZURE_STORAGE_CONNECTION_STRING",
            "AccountName=acct1;AccountKey=a2V5MQ==",
        );
        let key = ("AZURE_STORAGE_ACCOUNT_KEY", "a2V5Mg==");
        let sas = ("AZURE_STORAGE_SAS_TOKEN", "?sv=x&sig=y");
        let auto = AuthMode::Auto;
        assert!(matches!(
            pick(auto, &[cs, key, sas]),
            Ok(Choice::Key {
                from: "AZURE_STORAGE_CONNECTION_STRING",
                ..
            })
        ));
        assert!(matches!(
            pick(auto, &[key, sas]),
            Ok(Choice::Key {
                from: "AZURE_STORAGE_ACCOUNT_KEY",
                ..
            })
        ));
        match pick(auto, &[sas]) {
            Ok(Choice::Sas { token, .. }) => assert_eq!(token.expose(), "sv=x&sig=y"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            pick(auto, &[]),
            Ok(Choice::Entra(EntraKind::DeveloperTools))
        );
        assert_eq!(
            pick(AuthMode::Sas, &[key, sas]).map(|c| c.describe()),
            Ok("SAS from AZURE_STORAGE_SAS_TOKEN".into())
        );
    }

    #[test]
    fn entra_kind_follows_the_environment() {
        let wl = [
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "a2V5Mg=="),
        ];
        assert_eq!(
            pick(AuthMode::Entra, &wl),
            Ok(Choice::Entra(EntraKind::Workload))
        );
        assert_eq!(
            pick(AuthMode::Auto, &[("IDENTITY_ENDPOINT", "http://x")]),
            Ok(Choice::Entra(EntraKind::ManagedIdentity))
        );
        assert_eq!(
            pick(AuthMode::Auto, &[("MSI_ENDPOINT", "http://x")]),
            Ok(Choice::Entra(EntraKind::ManagedIdentity))
        );
    }

    #[test]
    fn missing_or_bad_secrets_are_clear_errors_without_the_secret() {
        let e = pick(AuthMode::Key, &[]).unwrap_err();
        assert!(e.contains("set AZURE_STORAGE_ACCOUNT_KEY"), "{e}");
        let e = pick(AuthMode::Sas, &[]).unwrap_err();
        assert!(e.contains("AZURE_STORAGE_SAS_TOKEN"), "{e}");
        let e = pick(AuthMode::Auto, &[("AZURE_STORAGE_ACCOUNT_KEY", "hunter2!")]).unwrap_err();
        assert!(e.contains("not base64") && !e.contains("hunter2"), "{e}");
        let e = pick(
            AuthMode::Auto,
            &[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=other;AccountKey=a2V5MQ==",
            )],
        )
        .unwrap_err();
        assert!(e.contains("\"other\"") && !e.contains("a2V5MQ"), "{e}");
        let e = pick(
            AuthMode::Auto,
            &[("AZURE_STORAGE_CONNECTION_STRING", "garbage")],
        )
        .unwrap_err();
        assert!(e.contains("malformed"), "{e}");
        let key = Secret::new("a2V5MQ==");
        assert_eq!(format!("{key:?} {key}"), "*** ***");
    }
}
