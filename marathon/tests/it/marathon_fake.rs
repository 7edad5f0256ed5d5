//! The fake Marathon answers as Marathon 1.10 does (`../shared/reference/README.md` and the RAML): status
//! codes, bodies and headers of the endpoints the installer uses, raw over HTTP, so that the installer's
//! tests stand on a faithful fake.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::fake_marathon::FakeMarathon;

struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn new(fake: &FakeMarathon) -> Http {
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: workload::tls::http_client_builder(Vec::new(), "test")
                .expect("TLS config")
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base: fake.url(),
        }
    }

    /// (status, Marathon-Deployment-Id header, JSON body or Null).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Option<String>, Value) {
        self.rt.block_on(async {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = self.client.request(method, format!("{}{path}", self.base));
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let dep = resp
                .headers()
                .get("Marathon-Deployment-Id")
                .map(|v| v.to_str().unwrap().to_string());
            let body = resp.json::<Value>().await.unwrap_or(Value::Null);
            (status, dep, body)
        })
    }
}

#[test]
fn groups_apps_and_deployments_behave_like_marathon_1_10() {
    let fake = FakeMarathon::start();
    fake.faults().deployment_duration = Duration::from_secs(60);
    let http = Http::new(&fake);

    let (s, _, b) = http.call("GET", "/v2/groups/demo", None);
    assert_eq!(
        (s, b),
        (404, json!({"message": "Group '/demo' does not exist"}))
    );

    let group = json!({"id": "/demo", "apps": [{"id": "/demo/a", "args": ["x"], "container": {"type": "DOCKER", "docker": {"image": "i"}}}]});
    let (s, dep, b) = http.call("PUT", "/v2/groups/demo", Some(group.clone()));
    assert_eq!(s, 200);
    assert_eq!(
        dep.as_deref(),
        b["deploymentId"].as_str(),
        "header and body name the deployment"
    );
    assert!(b["version"].is_string());

    let (s, _, list) = http.call("GET", "/v2/deployments", None);
    assert_eq!(s, 200);
    assert_eq!(list[0]["affectedApps"], json!(["/demo/a"]));
    assert_eq!(list[0]["currentActions"][0]["action"], "StartApplication");

    // Stored with Marathon's defaults.
    let (s, _, b) = http.call("GET", "/v2/apps/demo/a", None);
    assert_eq!(s, 200);
    assert_eq!(
        (b["app"]["cpus"].as_f64(), b["app"]["mem"].as_f64()),
        (Some(1.0), Some(128.0))
    );
    assert_eq!(b["app"]["instances"], 1);

    // Locked while the deployment runs; force cancels it.
    let changed = json!({"id": "/demo", "apps": [{"id": "/demo/a", "args": ["y"], "container": {"type": "DOCKER", "docker": {"image": "i"}}}]});
    let (s, _, b) = http.call("PUT", "/v2/groups/demo", Some(changed.clone()));
    assert_eq!(s, 409);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("locked by one or more deployments")
    );
    assert!(b["deployments"][0]["id"].is_string());
    let (s, _, _) = http.call("PUT", "/v2/groups/demo?force=true", Some(changed));
    assert_eq!(s, 200);

    // Validation: 422 with details; malformed JSON: 400; an existing app id on POST: 409.
    let bad = json!({"id": "/demo", "apps": [{"id": "/other/a", "cmd": "x", "args": ["y"]}]});
    let (s, _, b) = http.call("PUT", "/v2/groups/demo?force=true", Some(bad));
    assert_eq!(s, 422);
    assert_eq!(b["message"], "Object is not valid");
    assert!(b["details"].as_array().unwrap().len() >= 2, "{b}");
    let raw = http.rt.block_on(async {
        http.client
            .put(format!("{}/v2/groups/demo", http.base))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(raw, 400);
    let (s, _, b) = http.call(
        "POST",
        "/v2/apps",
        Some(json!({"id": "/demo/a", "cmd": "x"})),
    );
    assert_eq!(
        (s, b),
        (
            409,
            json!({"message": "An app with id [/demo/a] already exists."})
        )
    );

    // DELETE of a group: force defaults to false (locked); of an app: force defaults to true.
    let (s, _, _) = http.call("DELETE", "/v2/groups/demo", None);
    assert_eq!(s, 409);
    let (s, _, _) = http.call("DELETE", "/v2/apps/demo/a", None);
    assert_eq!(s, 200);
    let (s, _, b) = http.call("DELETE", "/v2/apps/demo/a", None);
    assert_eq!(
        (s, b),
        (404, json!({"message": "App '/demo/a' does not exist"}))
    );

    let (s, _, b) = http.call("GET", "/v2/leader", None);
    assert_eq!(
        (s, b["leader"].as_str()),
        (200, Some(fake.url().trim_start_matches("http://")))
    );
    let (s, _, b) = http.call("GET", "/v2/info", None);
    assert_eq!((s, b["name"].as_str()), (200, Some("marathon")));

    let logged = fake.requests();
    assert_eq!(logged.len(), 14);
    assert!(logged[1].method == "PUT" && logged[1].json == Some(group));
}
