//! The development stack is docker-compose.yml overridden by docker-compose.dev.yml: what
//! compose makes of the two (`docker compose config`, which needs no engine) is the
//! production stack with app-dev in the app's place, the extra ports and no backup service.

use serde_json::Value;
use weknora_testkit::{Need, require};

mod support;

/// `docker compose config` of `files`, every profile on.
fn config(files: &[&str]) -> Value {
    support::compose_config(files, &["full", "embedder", "backup"])
}

/// A service's environment as a map (compose renders an extended service's as `K=V` items).
fn environment(service: &Value) -> serde_json::Map<String, Value> {
    match &service["environment"] {
        Value::Object(map) => map.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                let (k, v) = i.as_str().unwrap().split_once('=').unwrap();
                (k.to_string(), Value::from(v))
            })
            .collect(),
        other => panic!("an environment of {other}"),
    }
}

fn names(services: &Value) -> Vec<String> {
    let mut names: Vec<String> = services.as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}

#[test]
fn the_development_override_changes_only_what_development_needs() {
    require!(Need::Compose);
    let prod = config(&["docker-compose.yml"]);
    let dev = config(&["docker-compose.yml", "docker-compose.dev.yml"]);
    let (prod, dev) = (&prod["services"], &dev["services"]);

    let mut expected: Vec<String> = names(prod).into_iter().filter(|n| n != "app" && n != "backup").collect();
    expected.push("app-dev".into());
    expected.sort();
    assert_eq!(names(dev), expected);

    // app-dev: the production app's settings, and the source's configuration file.
    let mut env = environment(&prod["app"]);
    env.insert("WEKNORA_CONFIG".into(), "/src/config/config.yaml".into());
    assert_eq!(environment(&dev["app-dev"]), env);
    assert_eq!(dev["app-dev"]["ports"], prod["app"]["ports"]);
    assert_eq!(dev["app-dev"]["depends_on"], prod["app"]["depends_on"]);
    assert_eq!(dev["app-dev"]["networks"]["WeKnora-network"]["aliases"], serde_json::json!(["app"]));
    assert_ne!(dev["app-dev"]["read_only"], true, "app-dev builds in its container");

    // The frontend waits for app-dev instead of the app; nothing else of it changes.
    let depends: Vec<&String> = dev["frontend"]["depends_on"].as_object().unwrap().keys().collect();
    assert_eq!(depends, ["app-dev"]);
    let (mut front_dev, mut front_prod) = (dev["frontend"].clone(), prod["frontend"].clone());
    front_dev.as_object_mut().unwrap().remove("depends_on");
    front_prod.as_object_mut().unwrap().remove("depends_on");
    assert_eq!(front_dev, front_prod);

    // docreader, postgres and redis get a port on 127.0.0.1 each, and keep the rest.
    for (service, port) in [("docreader", 50051), ("postgres", 5432), ("redis", 6379)] {
        let ports = dev[service]["ports"].as_array().unwrap();
        let published = ports.last().unwrap();
        assert_eq!((published["target"].as_u64(), published["host_ip"].as_str()), (Some(port), Some("127.0.0.1")));
        let (mut d, mut p) = (dev[service].clone(), prod[service].clone());
        d.as_object_mut().unwrap().remove("ports");
        p.as_object_mut().unwrap().remove("ports");
        assert_eq!(d, p, "{service}");
    }
}
