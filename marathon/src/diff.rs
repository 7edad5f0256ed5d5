//! What an install would change: the apps to add, remove and update, compared field by field with what
//! Marathon has. Only the fields we send are compared (Marathon fills in defaults we never set), except the
//! maps we own entirely (`env`, `labels`, `secrets`), where a key Marathon has and we do not is a change.
//! Changes are reported by field path, never by value, so that secrets stay out of the output.

use serde_json::Value;

use super::labels::SUITE_KEY;

/// One app's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(String),
    Removed(String),
    /// The app id and the changed field paths (`env.CONSUMER_WORK`, `instances`).
    Updated(String, Vec<String>),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Added(id) => write!(f, "+ {id} (new)"),
            Change::Removed(id) => write!(f, "- {id} (removed)"),
            Change::Updated(id, fields) => write!(f, "~ {id}: {}", fields.join(", ")),
        }
    }
}

/// Maps the installer owns whole: keys present only in Marathon count as changes.
const OWNED_MAPS: &[&str] = &["env", "labels", "secrets"];

/// Apps in the live group that the installer did not create (no suite label).
pub fn foreign_apps(live_group: &Value) -> Vec<String> {
    live_apps(live_group)
        .filter(|a| {
            a.pointer(&format!("/labels/{}", SUITE_KEY.replace('/', "~1")))
                .is_none()
        })
        .filter_map(|a| a.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The apps directly in a group as Marathon returned it.
pub fn live_apps(live_group: &Value) -> impl Iterator<Item = &Value> {
    live_group
        .get("apps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The changes that turn `live_group` into `desired` apps (rendered with secrets revealed, so that a key
/// change is seen).
pub fn changes(desired: &[Value], live_group: Option<&Value>) -> Vec<Change> {
    let live: Vec<&Value> = live_group
        .map(|g| live_apps(g).collect())
        .unwrap_or_default();
    let id_of = |v: &Value| {
        v.get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut out = Vec::new();
    for d in desired {
        let id = id_of(d);
        match live.iter().find(|l| id_of(l) == id) {
            None => out.push(Change::Added(id)),
            Some(l) => {
                let mut fields = Vec::new();
                compare("", d, l, &mut fields);
                if !fields.is_empty() {
                    out.push(Change::Updated(id, fields));
                }
            }
        }
    }
    for l in live {
        let id = id_of(l);
        if !desired.iter().any(|d| id_of(d) == id) {
            out.push(Change::Removed(id));
        }
    }
    out
}

fn compare(path: &str, desired: &Value, live: &Value, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (k, dv) in d {
                match l.get(k) {
                    Some(lv) => compare(&join(k), dv, lv, out),
                    None => out.push(join(k)),
                }
            }
            if OWNED_MAPS.contains(&path) {
                for k in l.keys().filter(|k| !d.contains_key(*k)) {
                    out.push(join(k));
                }
            }
        }
        (Value::Array(d), Value::Array(l)) => {
            if d.len() != l.len() {
                out.push(path.to_string());
            } else {
                let before = out.len();
                let mut sub = Vec::new();
                for (dv, lv) in d.iter().zip(l) {
                    compare(path, dv, lv, &mut sub);
                }
                if !sub.is_empty() && out.len() == before {
                    out.push(path.to_string());
                }
            }
        }
        (Value::Number(d), Value::Number(l)) => {
            if d.as_f64() != l.as_f64() {
                out.push(path.to_string());
            }
        }
        (d, l) => {
            if d != l {
                out.push(path.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_marathon_adds_are_not_changes() {
        let d = json!({"id": "/g/a", "cpus": 0.1, "env": {"A": "1"}, "container": {"docker": {"image": "i"}}});
        let l = json!({"apps": [{"id": "/g/a", "cpus": 0.1, "mem": 128, "env": {"A": "1"},
            "container": {"docker": {"image": "i", "privileged": false}, "volumes": []}}]});
        assert!(changes(&[d], Some(&l)).is_empty());
    }

    #[test]
    fn changes_name_fields_not_values() {
        let d = json!({"id": "/g/a", "instances": 3, "env": {"KEY": "new"}});
        let l = json!({"apps": [{"id": "/g/a", "instances": 1, "env": {"KEY": "old", "EXTRA": "x"}},
                                {"id": "/g/b"}]});
        let c = changes(&[d, json!({"id": "/g/c"})], Some(&l));
        assert_eq!(
            c,
            vec![
                Change::Updated(
                    "/g/a".into(),
                    vec!["instances".into(), "env.KEY".into(), "env.EXTRA".into()]
                ),
                Change::Added("/g/c".into()),
                Change::Removed("/g/b".into()),
            ]
        );
        assert!(
            !c.iter()
                .map(|c| c.to_string())
                .collect::<String>()
                .contains("old")
        );
    }

    #[test]
    fn apps_without_our_label_are_foreign() {
        let g = json!({"apps": [{"id": "/g/a", "labels": {SUITE_KEY: "queue-workload"}}, {"id": "/g/x", "labels": {}}]});
        assert_eq!(foreign_apps(&g), vec!["/g/x"]);
    }
}
