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
    #[error("scenario {path} is not valid: {message}")]
    Invalid { path: String, message: String },
    #[error("scenario {path} is a directory: give a scenario file{files}")]
    Directory { path: String, files: String },
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
        Scenario::parse(&name, &text).map_err(|message| ScenarioError::Invalid {
            path: shown,
            message,
        })
    }

    /// Checks a scenario's text; the error says what is wrong, for [`Scenario::load`] to frame.
    pub fn parse(name: &str, text: &str) -> Result<Scenario, String> {
        let f: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
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
                    ));
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
            let e = Scenario::parse("x", text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
