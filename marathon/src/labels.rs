//! App labels: the ones that mark what `marathon-install` created, and the user's `--label key=value`,
//! checked against Docker's label guidelines
//! (<https://docs.docker.com/engine/manage-resources/labels/#key-format-recommendations>).
//!
//! A reserved prefix (`com.docker.`, `io.docker.`, `org.dockerproject.`) is an error: those belong to Docker.
//! Any other departure from the guidelines is only a warning, because Marathon itself accepts any string.

/// The label every app we install carries; uninstall refuses to remove apps without it.
pub const SUITE_KEY: &str = "io.microscaling.suite";
/// Its value.
pub const SUITE_VALUE: &str = "queue-workload";
/// The version of the installer that wrote the app.
pub const VERSION_KEY: &str = "io.microscaling.suite.version";
/// The app's role in the demo (`producer`, `consumer`, …).
pub const ROLE_KEY: &str = "io.microscaling.suite.role";

/// Prefixes Docker reserves for its own labels.
const RESERVED: &[&str] = &["com.docker.", "io.docker.", "org.dockerproject."];

/// A `--label` that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("--label {0:?}: expected KEY=VALUE, e.g. --label com.example.team=queues")]
    Syntax(String),
    #[error(
        "--label {0:?}: the prefixes com.docker., io.docker. and org.dockerproject. are reserved for Docker; use your own reverse-DNS namespace, e.g. com.example.{1}"
    )]
    Reserved(String, String),
    #[error(
        "--label {0:?}: {SUITE_KEY}.* labels are set by marathon-install itself (they mark the apps it may update and remove)"
    )]
    Ours(String),
}

/// A user label: key, value, and the guideline warnings it raised (empty when it follows them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
    pub warnings: Vec<String>,
}

/// Parses and checks one `--label KEY=VALUE`.
pub fn parse(arg: &str) -> Result<Label, LabelError> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err(LabelError::Syntax(arg.to_string()));
    };
    if key.is_empty() {
        return Err(LabelError::Syntax(arg.to_string()));
    }
    let lower = key.to_ascii_lowercase();
    if let Some(p) = RESERVED.iter().find(|p| lower.starts_with(*p)) {
        return Err(LabelError::Reserved(
            key.to_string(),
            key[p.len()..].to_string(),
        ));
    }
    if lower == SUITE_KEY || lower.starts_with(&format!("{SUITE_KEY}.")) {
        return Err(LabelError::Ours(key.to_string()));
    }
    Ok(Label {
        key: key.to_string(),
        value: value.to_string(),
        warnings: guideline_warnings(key),
    })
}

/// How `key` departs from Docker's key format recommendations (empty when it does not).
fn guideline_warnings(key: &str) -> Vec<String> {
    let mut w = Vec::new();
    if !key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        w.push("use only lowercase letters, digits, '.' and '-'".to_string());
    }
    let first = key.chars().next();
    let last = key.chars().last();
    if !first.is_some_and(|c| c.is_ascii_alphanumeric())
        || !last.is_some_and(|c| c.is_ascii_alphanumeric())
    {
        w.push("start and end with a letter or digit".to_string());
    }
    if key.contains("..") || key.contains("--") || key.contains(".-") || key.contains("-.") {
        w.push("no consecutive '.' or '-'".to_string());
    }
    if !key.contains('.') {
        w.push("prefix it with a reverse-DNS namespace you own, e.g. com.example.".to_string());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guideline_keys_pass_clean() {
        let l = parse("com.example.team=queues").unwrap();
        assert_eq!(
            (l.key.as_str(), l.value.as_str()),
            ("com.example.team", "queues")
        );
        assert!(l.warnings.is_empty());
        assert_eq!(parse("com.example.empty=").unwrap().value, "");
    }

    #[test]
    fn reserved_prefixes_are_errors() {
        for k in [
            "com.docker.x=1",
            "io.docker.y=2",
            "org.dockerproject.z=3",
            "COM.DOCKER.x=1",
        ] {
            assert!(matches!(parse(k), Err(LabelError::Reserved(..))), "{k}");
        }
        assert!(matches!(
            parse("io.microscaling.suite.role=x"),
            Err(LabelError::Ours(_))
        ));
    }

    #[test]
    fn departures_from_the_guidelines_warn() {
        let l = parse("Foo_Bar=1").unwrap();
        assert!(
            l.warnings.iter().any(|w| w.contains("lowercase")),
            "{:?}",
            l.warnings
        );
        assert!(l.warnings.iter().any(|w| w.contains("reverse-DNS")));
        assert!(!parse("com.example..x=1").unwrap().warnings.is_empty());
        assert!(!parse("com.example.x-=1").unwrap().warnings.is_empty());
    }

    #[test]
    fn syntax_errors_say_what_is_expected() {
        assert!(
            parse("novalue")
                .unwrap_err()
                .to_string()
                .contains("KEY=VALUE")
        );
        assert!(matches!(parse("=v"), Err(LabelError::Syntax(_))));
    }
}
