//! Scenario files (`scenarios/*.toml`): a load, its cost, and the target a scaling engine is asked to hold,
//! for any backend. The demo runs one (`demo --scenario`); the scorecard reads one to know when the load
//! changed (`scorecard watch --scenario`).
//!
//! ```toml
//! description = "A quiet queue hit by 3,000 messages at once."
//! shape = "const:20+burst:3000@10s"   # the producer's --shape (see the README's grammar)
//! work = "sleep:exp(20ms)"            # the producer's --work, stamped into every message
//! target = 50                          # queue depth the engine holds
//! duration = "60s"                     # how long the producer runs
//!
//! [autoscale]                          # optional: the local autoscaler's settings for this scenario
//! min = 0                              # any key `demo --autoscale` takes, e.g. policy = "keda",
//! max = 8                              # polling = "5s", cooldown = "30s"; `target` here overrides the
//! interval = "1s"                      # one above for the autoscaler only
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use workload::cli::parse_duration;
use workload::shape::Shape;

use crate::demo::AutoscaleArgs;

/// What can be wrong with a scenario file.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `at` is where in the file, when the TOML itself is at fault: `scenario burst.toml:3:7 is not valid: …`.
    #[error("scenario {path}{} is not valid: {message}", .at.map_or_else(String::new, |at| format!(":{}:{}", at.line, at.column)))]
    Invalid {
        path: String,
        at: Option<Position>,
        message: String,
    },
    #[error("scenario {path} is a directory: give a scenario file{files}")]
    Directory { path: String, files: String },
}

/// A place in a scenario's text, both from 1; the column counts characters, as an editor does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text` (the toml crate's spans are byte ranges).
    fn of(text: &str, offset: usize) -> Position {
        // An offset inside a character (never seen from toml) counts from that character's start.
        let before = text
            .char_indices()
            .take_while(|&(i, _)| i < offset)
            .map(|(_, c)| c);
        let (mut line, mut column) = (1, 1);
        for c in before {
            if c == '\n' {
                (line, column) = (line + 1, 1);
            } else {
                column += 1;
            }
        }
        Position { line, column }
    }
}

/// What is wrong with a scenario's text; `at` is where, when the TOML itself is at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", .at.map_or_else(String::new, |at| format!(" (line {}, column {})", at.line, at.column)))]
pub struct Problem {
    pub at: Option<Position>,
    pub message: String,
}

impl From<String> for Problem {
    fn from(message: String) -> Problem {
        Problem { at: None, message }
    }
}

impl From<&str> for Problem {
    fn from(message: &str) -> Problem {
        Problem::from(message.to_string())
    }
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    description: String,
    shape: String,
    #[serde(default)]
    work: Option<String>,
    target: u64,
    duration: String,
    #[serde(default)]
    autoscale: toml::Table,
}

/// A checked scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file's name without `.toml`, for titles (`burst`).
    pub name: String,
    pub description: String,
    pub shape: Shape,
    /// The work spec, passed to the producer as is (it stamps it into every message).
    pub work: Option<String>,
    pub target: u64,
    pub duration: Duration,
    /// Autoscaler settings the scenario suggests (its target first); a command-line `--autoscale` overrides
    /// them one by one.
    pub autoscale: AutoscaleArgs,
}

/// The scenario files a directory given as `--scenario` holds, for the error: `, such as DIR/a.toml or DIR/b.toml`.
fn toml_files_in(dir: &Path) -> String {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    match files.as_slice() {
        [] => " (it holds no .toml file)".to_string(),
        [one] => format!(", such as {one}"),
        more => format!(
            ", such as {}",
            more.iter()
                .take(4)
                .cloned()
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    ///
    /// # Errors
    /// When it cannot be read, is not TOML of the documented form, or a value does not parse.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        if path.is_dir() {
            return Err(ScenarioError::Directory {
                files: toml_files_in(path),
                path: shown,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        let name = path
            .file_stem()
            .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned());
        Scenario::parse(&name, &text).map_err(|p| ScenarioError::Invalid {
            path: shown,
            at: p.at,
            message: p.message,
        })
    }

    /// Checks a scenario's text; the error says what is wrong, and where for a TOML error, for
    /// [`Scenario::load`] to frame.
    pub fn parse(name: &str, text: &str) -> Result<Scenario, Problem> {
        // `message()`, not the error's Display: that one is several lines, with an excerpt of the file.
        let f: File = toml::from_str(text).map_err(|e| Problem {
            at: e.span().map(|span| Position::of(text, span.start)),
            message: e.message().replace('\n', " "),
        })?;
        let shape = Shape::parse(&f.shape).map_err(|e| format!("shape: {e}"))?;
        let duration = parse_duration(&f.duration).map_err(|e| format!("duration: {e}"))?;
        if duration.is_zero() {
            return Err("duration must be more than 0 (e.g. \"60s\")".into());
        }
        if f.target == 0 {
            return Err("target must be a queue depth of 1 or more".into());
        }
        // The same KEY=VALUE pairs as `--autoscale`, so that both are checked by one parser.
        let mut pairs = vec![("target".to_string(), f.target.to_string())];
        for (k, v) in f.autoscale {
            let v = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    v.to_string()
                }
                other => {
                    return Err(format!(
                        "autoscale.{k}: expected a string, number or boolean, not {}",
                        other.type_str()
                    )
                    .into());
                }
            };
            pairs.push((k, v));
        }
        let autoscale =
            AutoscaleArgs::from_pairs(pairs).map_err(|e| format!("[autoscale]: {e}"))?;
        Ok(Scenario {
            name: name.into(),
            description: f.description,
            shape,
            work: f.work,
            target: f.target,
            duration,
            autoscale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_reads_every_field() {
        let s = Scenario::parse(
            "burst",
            r#"
            description = "d"
            shape = "const:20+burst:3000@10s"
            work = "sleep:20ms"
            target = 50
            duration = "60s"
            [autoscale]
            max = 6
            interval = "500ms"
            "#,
        )
        .unwrap();
        assert_eq!(s.shape.to_string(), "const:20+burst:3000@10s");
        assert_eq!(s.work.as_deref(), Some("sleep:20ms"));
        assert_eq!((s.target, s.duration), (50, Duration::from_secs(60)));
        let a = crate::demo::Autoscale::resolve(&AutoscaleArgs::default(), &s.autoscale).unwrap();
        assert_eq!((a.target, a.min, a.max, a.slots), (50, 0, 6, 6));
        assert_eq!(a.interval, Duration::from_millis(500));
    }

    #[test]
    fn a_scenario_can_name_the_keda_policy_and_its_settings() {
        let s = Scenario::parse(
            "step",
            r#"
            shape = "const:10"
            target = 50
            duration = "10s"
            [autoscale]
            policy = "keda"
            target = 10
            polling = "5s"
            cooldown = "30s"
            activation = 2
            tolerance = 0.2
            use-cached-metrics = true
            "#,
        )
        .unwrap();
        let a = crate::demo::Autoscale::resolve(&AutoscaleArgs::default(), &s.autoscale).unwrap();
        assert_eq!(a.policy, crate::demo::autoscale::PolicyKind::Keda);
        // The scenario's target for the run; the autoscaler's own per-replica target from [autoscale].
        assert_eq!((s.target, a.target), (50, 10));
        assert_eq!(
            (a.keda.polling, a.keda.cooldown, a.keda.activation),
            (Duration::from_secs(5), Duration::from_secs(30), 2)
        );
        assert_eq!(a.keda.hpa.tolerance, 0.2);
        assert!(a.keda.use_cached_metrics);
    }

    #[test]
    fn bad_scenarios_say_what_is_wrong() {
        for (text, needle) in [
            ("shape = \"const:1\"\ntarget = 5", "duration"),
            ("shape = \"zig:1\"\ntarget = 5\nduration = \"1s\"", "shape:"),
            (
                "shape = \"const:1\"\ntarget = 0\nduration = \"1s\"",
                "target",
            ),
            (
                "shape = \"const:1\"\ntarget = 5\nduration = \"1s\"\nspeed = 3",
                "speed",
            ),
            ("not toml", ""),
            (
                "shape = \"const:1\"\ntarget = 5\nduration = \"1s\"\n[autoscale]\npolling = \"soon\"",
                "[autoscale]: polling",
            ),
            (
                "shape = \"const:1\"\ntarget = 5\nduration = \"1s\"\n[autoscale]\nspeed = 3",
                "unknown key \"speed\"",
            ),
        ] {
            let e = Scenario::parse("x", text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn a_toml_error_says_where_it_is_on_one_line() {
        // /etc/passwd's first line, as `demo --scenario /etc/passwd` read it: the error is at its end.
        let e = Scenario::parse("passwd", "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1::/:\n")
            .unwrap_err();
        assert_eq!(
            e,
            Problem {
                at: Some(Position {
                    line: 1,
                    column: 32
                }),
                message: "key with no value, expected `=`".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "key with no value, expected `=` (line 1, column 32)"
        );
        // A key on line 4 that no scenario has; columns count characters, not bytes.
        let e = Scenario::parse(
            "x",
            "description = \"é\"\nshape = \"const:1\"\ntarget = 5\n  speed = 3\nduration = \"1s\"",
        )
        .unwrap_err();
        assert_eq!(e.at, Some(Position { line: 4, column: 3 }));
        let e = Scenario::parse("x", "description = \"é\" x").unwrap_err();
        assert_eq!(
            e.at,
            Some(Position {
                line: 1,
                column: 19
            })
        );
        // A value that parses but is wrong is not the TOML's fault: no position.
        let e =
            Scenario::parse("x", "shape = \"zig:1\"\ntarget = 5\nduration = \"1s\"").unwrap_err();
        assert_eq!(e.at, None);
    }

    #[test]
    fn a_file_that_is_not_toml_is_named_with_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "shape = \"const:1\"\ntarget = 5\nduration 60s\n").unwrap();
        let e = Scenario::load(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "scenario {}:3:10 is not valid: key with no value, expected `=`",
                path.display()
            )
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
