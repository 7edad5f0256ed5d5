//! Every group and app definition `marathon-install` sends validates against Marathon's published JSON
//! Schema (1.7 + `IS`, the last one published), read at run time from `../shared/reference/` (never copied
//! into this repository). The bodies are captured from the fake Marathon's request log after real installs
//! with a spread of options.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use testkit::fake_marathon::FakeMarathon;

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/marathon")
}

fn read_json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): the reference schemas live beside the project",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("schema is JSON")
}

/// Resolves Group.json's `./AppDefinition.json` to the file beside it, and nothing else (no network).
struct Beside(Value);

impl jsonschema::Retrieve for Beside {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        if uri.as_str().ends_with("/AppDefinition.json") {
            Ok(self.0.clone())
        } else {
            Err(format!("unexpected reference {}", uri.as_str()).into())
        }
    }
}

fn validator(dir: &str, name: &str) -> jsonschema::Validator {
    let base = reference_dir().join(dir);
    let app = read_json(base.join("AppDefinition.json"));
    let schema = read_json(base.join(name));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .with_retriever(Beside(app))
        .build(&schema)
        .unwrap_or_else(|e| panic!("{dir}/{name} does not compile: {e}"))
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The group bodies sent by installs with the given option sets.
fn sent_groups() -> Vec<Value> {
    let option_sets: &[&[&str]] = &[
        &[],
        &["--engine", "--label", "com.example.team=queues"],
        &[
            "--nsqd",
            "nsqd.example:4150",
            "--topic",
            "t1",
            "--channel",
            "c1",
        ],
        &[
            "--queue",
            "azure",
            "--azure-account",
            "demoacct",
            "--azure-key",
            "a2V5",
        ],
        &[
            "--queue",
            "azure",
            "--azure-account",
            "demoacct",
            "--azure-key-secret",
            "demo/key",
            "--engine",
        ],
    ];
    let mut groups = Vec::new();
    for opts in option_sets {
        let fake = FakeMarathon::start();
        let url = fake.url();
        let mut cmd = testkit::command("marathon-install");
        for v in [
            "MSS_MARATHON_API",
            "DCOS_TOKEN",
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_ACCOUNT_NAME",
        ] {
            cmd.env_remove(v);
        }
        cmd.args(["--marathon-url", &url, "--poll-interval", "50ms"])
            .args(*opts);
        let mut p = testkit::Proc::spawn("marathon-install", cmd);
        let status = p.wait(Duration::from_secs(60));
        assert!(status.success(), "{opts:?}: {}", p.stderr());
        let puts: Vec<Value> = fake
            .writes()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.path.starts_with("/v2/groups"))
            .map(|r| r.json.expect("a JSON body"))
            .collect();
        assert_eq!(puts.len(), 1, "{opts:?}");
        groups.extend(puts);
    }
    groups
}

#[test]
fn every_definition_sent_validates_against_marathon_json_schema() {
    let group_schema = validator("json-schema", "Group.json");
    let app_schema = validator("json-schema", "AppDefinition.json");
    let groups = sent_groups();
    let mut apps = 0;
    for g in &groups {
        let errs = errors(&group_schema, g);
        assert!(errs.is_empty(), "group invalid: {errs:#?}\n{g:#}");
        for app in g["apps"].as_array().expect("apps") {
            let errs = errors(&app_schema, app);
            assert!(errs.is_empty(), "app invalid: {errs:#?}\n{app:#}");
            apps += 1;
        }
    }
    assert_eq!(apps, 19, "every app of every install was checked");

    // The schema really checks: a definition with both cmd and args, or an unknown field, fails.
    let mut bad = groups[0]["apps"][0].clone();
    bad["cmd"] = Value::from("sh -c true");
    assert!(!errors(&app_schema, &bad).is_empty());
    let mut bad = groups[0]["apps"][0].clone();
    bad["tty"] = Value::from(true);
    assert!(!errors(&app_schema, &bad).is_empty());
    let mut bad_group = groups[0].clone();
    bad_group["apps"][0] = bad;
    assert!(
        !errors(&group_schema, &bad_group).is_empty(),
        "Group.json checks its apps too"
    );
}

/// Marathon 1.1 (the 2016 demo's generation) knows neither secrets nor the kill grace period: apart from
/// those two later additions, the definitions are valid there too.
#[test]
fn apart_from_later_fields_definitions_are_valid_for_marathon_1_1() {
    let app_schema = validator("json-schema-1.1", "AppDefinition.json");
    for g in sent_groups() {
        for app in g["apps"].as_array().expect("apps") {
            let mut app = app.clone();
            let o = app.as_object_mut().unwrap();
            o.remove("taskKillGracePeriodSeconds");
            if o.remove("secrets").is_some() {
                continue; // secret references need Marathon 1.5+ (and DC/OS Enterprise)
            }
            let errs = errors(&app_schema, &app);
            assert!(errs.is_empty(), "app invalid for 1.1: {errs:#?}\n{app:#}");
        }
    }
}
