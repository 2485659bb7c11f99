//! The Kubernetes manifests (deploy/kubernetes): every overlay renders with `kubectl
//! kustomize`, every object it renders is valid against the Kubernetes API's types (each is
//! read into its k8s-openapi type and written back: a field the API does not have, a wrong
//! type or a missing required field shows as a difference), and the services agree with
//! docker-compose.yml where neither is written from crates/stack-spec: the environment of
//! docreader, the embedder and the frontend, privileges, ports and probes. (The images, the
//! app's ConfigMap and its secrets, the pods' users and the limits are written from the spec
//! by `cargo xtask codegen`, like compose's; plain tests keep them fresh.) No cluster runs here; what needs one is said in
//! docs/operations.md, "Scaling out".

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Namespace, Probe, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::de::DeserializeOwned;
use serde_json::Value;
// A secret as crates/stack-spec declares it: it must come from the Secret, never from the
// ConfigMap (the same rule makes Docker secrets of them on Swarm).
use weknora_operator::swarm::is_secret;

mod support;
use weknora_testkit::{Need, require};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn kubernetes() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// The base and every overlay.
fn renderable() -> Vec<PathBuf> {
    let mut dirs = vec![kubernetes().join("base")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(kubernetes().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").exists())
        .collect();
    overlays.sort();
    assert!(overlays.len() >= 2, "expected the in-cluster and managed overlays, found {overlays:?}");
    dirs.extend(overlays);
    dirs
}

/// `kubectl kustomize DIR`, one JSON value per object.
fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl").arg("kustomize").arg(dir).output().expect(
        "running kubectl: install it (kubectl 1.21 or later, for kustomize components; `cargo xtask doctor --dev` checks)",
    );
    assert!(out.status.success(), "kubectl kustomize {}:\n{}", dir.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut objects = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        if !value.is_null() {
            objects.push(value);
        }
    }
    objects
}

fn kind(object: &Value) -> (&str, &str) {
    (object["apiVersion"].as_str().unwrap_or("?"), object["kind"].as_str().unwrap_or("?"))
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("?")
}

/// Reads `object` into `T` and writes it back: what changes is not in the API's schema.
fn round_trip<T: DeserializeOwned + serde::Serialize>(object: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).unwrap();
    let mut differences = Vec::new();
    diff("", object, &back, &mut differences);
    if differences.is_empty() { Ok(()) } else { Err(differences.join("; ")) }
}

fn diff(path: &str, written: &Value, read: &Value, out: &mut Vec<String>) {
    match (written, read) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => diff(&format!("{path}.{k}"), v, w, out),
                    None => out.push(format!("{path}.{k} is not a field of the API")),
                }
            }
            // k8s-openapi writes the type of an embedded object (a claim template): not ours.
            for k in b.keys().filter(|k| !a.contains_key(*k) && !["apiVersion", "kind"].contains(&k.as_str())) {
                out.push(format!("{path}.{k} appeared"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ if written == read => {}
        _ => out.push(format!("{path}: {written} reads as {read}")),
    }
}

fn validate(object: &Value) -> Result<(), String> {
    match kind(object) {
        ("v1", "ConfigMap") => round_trip::<ConfigMap>(object),
        ("v1", "Namespace") => round_trip::<Namespace>(object),
        ("v1", "Service") => round_trip::<Service>(object),
        ("apps/v1", "Deployment") => round_trip::<Deployment>(object),
        ("apps/v1", "StatefulSet") => round_trip::<StatefulSet>(object),
        ("batch/v1", "Job") => round_trip::<Job>(object),
        ("policy/v1", "PodDisruptionBudget") => round_trip::<PodDisruptionBudget>(object),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => round_trip::<HorizontalPodAutoscaler>(object),
        (api, kind) => Err(format!("{api} {kind}: no schema here; add its k8s-openapi type to this test")),
    }
}

#[test]
fn every_overlay_renders_and_every_object_is_valid_against_the_api() {
    require!(Need::Kubectl);
    for dir in renderable() {
        let objects = render(&dir);
        assert!(!objects.is_empty(), "{} renders nothing", dir.display());
        let mut errors = Vec::new();
        for object in &objects {
            if object["metadata"]["name"].as_str().is_none_or(str::is_empty) {
                errors.push(format!("a {:?} has no name", kind(object)));
            }
            if let Err(e) = validate(object) {
                errors.push(format!("{:?} {}: {e}", kind(object), name(object)));
            }
            // Secrets are referenced, never written into the manifests.
            assert_ne!(kind(object).1, "Secret", "{} inlines a Secret", dir.display());
        }
        assert!(errors.is_empty(), "{}:\n{}", dir.display(), errors.join("\n"));

        let names: BTreeSet<(&str, &str)> = objects.iter().map(|o| (kind(o).1, name(o))).collect();
        for service in ["app", "docreader"] {
            for kind in ["Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"] {
                assert!(names.contains(&(kind, service)), "{}: no {kind} {service}", dir.display());
            }
        }
        assert!(names.contains(&("Job", "migrate")), "{}: no migration Job", dir.display());
    }
}

/// The rendered base, typed.
struct Base {
    deployments: BTreeMap<String, Deployment>,
    services: BTreeMap<String, Service>,
    config: BTreeMap<String, String>,
    migrate: Job,
}

fn base() -> Base {
    let mut base = Base {
        deployments: BTreeMap::new(),
        services: BTreeMap::new(),
        config: BTreeMap::new(),
        migrate: Job::default(),
    };
    for object in render(&kubernetes().join("base")) {
        let n = name(&object).to_string();
        match kind(&object).1 {
            "Deployment" => drop(base.deployments.insert(n, serde_json::from_value(object).unwrap())),
            "Service" => drop(base.services.insert(n, serde_json::from_value(object).unwrap())),
            "ConfigMap" if n.starts_with("weknora-config") => {
                let map: ConfigMap = serde_json::from_value(object).unwrap();
                base.config = map.data.unwrap_or_default();
            }
            "Job" if n == "migrate" => base.migrate = serde_json::from_value(object).unwrap(),
            _ => {}
        }
    }
    base
}

/// docker-compose.yml as compose reads it, the embedder's profile on.
fn compose() -> Value {
    support::compose_config(&["docker-compose.yml"], &["embedder"])
}

/// Where each variable of `container` comes from: a literal, a ConfigMap key or a Secret key.
#[derive(Debug, PartialEq)]
enum Source {
    Literal(String),
    Config(String),
    Secret(String),
}

fn environment(container: &Container, config: &BTreeMap<String, String>) -> BTreeMap<String, Source> {
    let mut vars = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        assert!(from.config_map_ref.is_some(), "{}: envFrom other than the ConfigMap", container.name);
        for key in config.keys() {
            vars.insert(key.clone(), Source::Config(key.clone()));
        }
    }
    for EnvVar { name, value, value_from } in container.env.iter().flatten() {
        let source = match (value, value_from) {
            (Some(v), None) => Source::Literal(v.clone()),
            (None, None) => Source::Literal(String::new()),
            (_, Some(from)) => match (&from.config_map_key_ref, &from.secret_key_ref) {
                (Some(c), None) => Source::Config(c.key.clone()),
                (None, Some(s)) => {
                    assert_eq!(s.name, "weknora-secrets", "{name}: secrets come from weknora-secrets");
                    Source::Secret(s.key.clone())
                }
                other => panic!("{name}: an unexpected source {other:?}"),
            },
        };
        vars.insert(name.clone(), source);
    }
    vars
}

/// Where the manifests deliberately differ from compose's defaults, and why.
const DIFFERENT: &[(&str, &str, &str)] = &[
    // nginx's resolver is the cluster's DNS, which needs the Service's full name.
    ("frontend", "APP_HOST", "app.weknora.svc.cluster.local"),
    ("frontend", "NGINX_RESOLVER", "kube-dns.kube-system.svc.cluster.local"),
];

fn container(d: &Deployment) -> &Container {
    &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
}

fn container_port(c: &Container, name: &str) -> i32 {
    c.ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .map(|p| p.container_port)
        .unwrap_or_else(|| panic!("{}: no port named {name}", c.name))
}

fn service_port(s: &Service) -> i32 {
    s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port
}

fn http_probe(p: &Option<Probe>) -> (String, String) {
    let get = p.as_ref().and_then(|p| p.http_get.as_ref()).expect("an httpGet probe");
    let port = match &get.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    };
    (get.path.clone().unwrap_or_default(), port)
}

#[test]
fn the_manifests_agree_with_the_compose_description() {
    require!(Need::Kubectl, Need::Compose);
    let compose = compose();
    let base = base();
    for service in ["app", "docreader", "embedder", "frontend"] {
        let ours = &compose["services"][service];
        let deployment = base.deployments.get(service).unwrap_or_else(|| panic!("no Deployment {service}"));
        let c = container(deployment);

        // The environment: the same names, secrets from the Secret, the same values (the
        // app's are written from the spec on both sides: codegen's freshness tests).
        if service == "app" {
            check_privileges(service, ours, c);
            continue;
        }
        let wanted: BTreeMap<String, String> = ours["environment"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let got = environment(c, &base.config);
        let (compose_names, k8s_names): (BTreeSet<&String>, BTreeSet<&String>) =
            (wanted.keys().collect(), got.keys().collect());
        let only_compose: Vec<_> = compose_names.difference(&k8s_names).collect();
        let only_k8s: Vec<_> = k8s_names.difference(&compose_names).collect();
        assert!(
            only_compose.is_empty() && only_k8s.is_empty(),
            "{service}: only in compose {only_compose:?}, only in the manifests {only_k8s:?}"
        );
        for (var, source) in &got {
            let value = match source {
                Source::Secret(key) => {
                    assert!(is_secret(var), "{service}: {var} is not a secret, yet comes from the Secret");
                    assert_eq!(key, var, "{service}: {var} from the Secret's key {key}");
                    continue;
                }
                _ if is_secret(var) => panic!("{service}: {var} is a secret: take it from weknora-secrets"),
                Source::Literal(v) => v.clone(),
                Source::Config(key) => base
                    .config
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| panic!("{service}: {var}: no {key} in the ConfigMap")),
            };
            let expected = DIFFERENT
                .iter()
                .find(|(s, v, _)| *s == service && v == var)
                .map_or(wanted[var].clone(), |(_, _, value)| value.to_string());
            assert_eq!(value, expected, "{service}: {var}");
        }

        check_privileges(service, ours, c);
    }
    ports_probes_and_migration(&compose, &base);
}

/// Least privilege, as in compose. (The limits and users are written from the spec on both
/// sides: deploy/kubernetes/base/generated/.)
fn check_privileges(service: &str, ours: &Value, c: &Container) {
    assert_eq!(ours["read_only"], true);
    let security = c.security_context.as_ref().expect("a securityContext");
    assert_eq!(security.read_only_root_filesystem, Some(true), "{service}: read-only root");
    assert_eq!(security.allow_privilege_escalation, Some(false), "{service}: no privilege gain");
    assert_eq!(security.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_string()]));
}

fn ports_probes_and_migration(compose: &Value, base: &Base) {
    // Ports and probes: where compose's services find each other, the Services answer.
    let app_env = &compose["services"]["app"]["environment"];
    let port_in = |addr: &str| addr.rsplit(':').next().unwrap().trim_end_matches('/').parse::<i32>().unwrap();
    let app = container(&base.deployments["app"]);
    let app_target = compose["services"]["app"]["ports"][0]["target"].as_i64().unwrap() as i32;
    assert_eq!(container_port(app, "http"), app_target);
    assert_eq!(
        service_port(&base.services["app"]),
        port_in(&format!(":{}", compose["services"]["frontend"]["environment"]["APP_PORT"].as_str().unwrap()))
    );
    assert_eq!(http_probe(&app.liveness_probe), ("/health".into(), "http".into()));
    assert_eq!(http_probe(&app.readiness_probe), ("/ready".into(), "http".into()));

    let docreader = container(&base.deployments["docreader"]);
    let grpc = port_in(app_env["DOCREADER_ADDR"].as_str().unwrap());
    assert_eq!((container_port(docreader, "grpc"), service_port(&base.services["docreader"])), (grpc, grpc));
    for probe in [&docreader.liveness_probe, &docreader.readiness_probe] {
        assert_eq!(
            probe.as_ref().and_then(|p| p.grpc.as_ref()).map(|g| g.port),
            Some(grpc),
            "docreader: gRPC health probe"
        );
    }

    let embedder = container(&base.deployments["embedder"]);
    let http = port_in(app_env["EMBEDDING_BASE_URL"].as_str().unwrap());
    assert_eq!((container_port(embedder, "http"), service_port(&base.services["embedder"])), (http, http));
    let healthcheck = std::fs::read_to_string(root().join("docker/Dockerfile.embedder")).unwrap();
    let (path, _) = http_probe(&embedder.liveness_probe);
    assert!(
        healthcheck.contains(&format!("GET {path} ")) && healthcheck.contains(&format!("{http})")),
        "embedder: the probe is not the image's healthcheck"
    );

    let frontend = container(&base.deployments["frontend"]);
    let test = compose["services"]["frontend"]["healthcheck"]["test"].to_string();
    let (path, _) = http_probe(&frontend.liveness_probe);
    let target = compose["services"]["frontend"]["ports"][0]["target"].as_i64().unwrap() as i32;
    assert_eq!(container_port(frontend, "http"), target);
    assert!(test.contains(&format!(":{target}{path}")), "frontend: probe {path} is not compose's healthcheck {test}");

    // The migration Job runs the app's image with a subset of its environment.
    let job = &base.migrate.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    assert_eq!(job.image, app.image);
    assert_eq!(job.args.as_deref(), Some(&["migrate".to_string()][..]));
    let job_env = environment(job, &base.config);
    let app_env = environment(app, &base.config);
    for (var, source) in &job_env {
        assert_eq!(app_env.get(var), Some(source), "migrate: {var} differs from the app's");
    }
    // The app never migrates at start here.
    assert_eq!(base.config["AUTO_MIGRATE"], "false");
}
