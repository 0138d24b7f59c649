//! The Kubernetes examples hold together: every manifest parses; each Deployment runs
//! Portcullis from a ConfigMap that is a valid configuration, exposes the ports that
//! configuration listens on, probes paths the operator listener really serves, mounts the
//! Secrets (and keys) it reads, drains within its grace period, and runs locked down; the
//! Service reaches Portcullis, never the app; the production variant has several replicas
//! and talks to PostgreSQL and Redis Services that exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::TestServer;

const ROOT: &str = "examples/kubernetes";

/// Every document of every manifest in `dir`, with the file it came from.
fn manifests(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in docs {
            assert!(
                doc["apiVersion"].is_string(),
                "{}: no apiVersion",
                file.display()
            );
            assert!(
                doc["metadata"]["name"].is_string(),
                "{}: no name",
                file.display()
            );
            out.push((file.clone(), doc));
        }
    }
    out
}

fn of_kind<'a>(docs: &'a [(PathBuf, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
        .collect()
}

fn named<'a>(docs: &'a [(PathBuf, Value)], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name:?}"))
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// A container port given by number or by name.
fn port_number(container: &Value, port: &Value) -> u64 {
    port.as_u64().unwrap_or_else(|| {
        array(&container["ports"])
            .iter()
            .find(|p| p["name"] == *port)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no port {port} on {}", container["name"]))
    })
}

fn seconds(duration: std::time::Duration) -> u64 {
    duration.as_secs()
}

/// What one Deployment's Portcullis container must satisfy; returns its configuration.
async fn check_deployment(
    docs: &[(PathBuf, Value)],
    deployment: &Value,
    probe_paths: &HashMap<String, u16>,
) -> portcullis::Config {
    let name = deployment["metadata"]["name"].as_str().unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        &deployment["spec"]["selector"]["matchLabels"], labels,
        "{name}"
    );
    // Portcullis: a native sidecar (init container that keeps running) or a container.
    let sidecar = array(&pod["initContainers"])
        .iter()
        .find(|c| c["name"] == "portcullis");
    if let Some(s) = sidecar {
        assert_eq!(s["restartPolicy"], "Always", "{name}: a native sidecar");
    }
    let pc = sidecar
        .or_else(|| {
            array(&pod["containers"])
                .iter()
                .find(|c| c["name"] == "portcullis")
        })
        .unwrap_or_else(|| panic!("{name}: no portcullis container"));

    // The configuration: from the ConfigMap mounted at the --config path, and valid.
    let args: Vec<&str> = array(&pc["args"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .unwrap_or_else(|| panic!("{name}: serve --config"));
    assert_eq!(args[0], "serve");
    // Mounted as a directory (a subPath mount would never see ConfigMap updates).
    let (mount, key) = array(&pc["volumeMounts"])
        .iter()
        .find_map(|m| {
            let rest = config_path.strip_prefix(m["mountPath"].as_str()?)?;
            Some((m, rest.strip_prefix('/')?))
        })
        .unwrap_or_else(|| panic!("{name}: nothing mounted at {config_path}"));
    assert!(
        mount.get("subPath").is_none(),
        "{name}: a subPath mount misses updates"
    );
    let volume = array(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let map = named(
        docs,
        "ConfigMap",
        volume["configMap"]["name"].as_str().unwrap(),
    );
    let toml = map["data"][key].as_str().unwrap();
    // The environment as the container gets it, `*_FILE` variables read from their Secret
    // (which must be mounted where the variable says and have that key).
    let mut env = Vec::new();
    for var in array(&pc["env"]) {
        let var_name = var["name"].as_str().unwrap();
        assert!(var_name.starts_with("PORTCULLIS_"), "{var_name}");
        let value = var["value"].as_str().unwrap();
        match var_name.strip_suffix("_FILE") {
            Some(plain) => {
                let contents = secret_file(docs, pod, pc, value, name);
                env.push((plain.to_string(), contents));
            }
            None => env.push((var_name.to_string(), value.to_string())),
        }
    }
    let config = portcullis::Config::from_toml(toml, env)
        .unwrap_or_else(|e| panic!("{name}: the ConfigMap's configuration: {e}"));
    assert!(
        config.server.watch_config,
        "{name}: ConfigMap edits apply live"
    );

    // Ports: what the configuration listens on.
    let listen = u64::from(config.server.listen.port());
    let admin = u64::from(
        config
            .server
            .admin_listen
            .expect("an admin listener")
            .port(),
    );
    assert!(
        config.server.listen.ip().is_unspecified(),
        "{name}: listen on the pod's address"
    );
    let declared: Vec<u64> = array(&pc["ports"])
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    assert!(
        declared.contains(&listen) && declared.contains(&admin),
        "{name}: {declared:?}"
    );

    // Probes: on the admin port, at paths the operator listener answers with 200.
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &pc[probe]["httpGet"];
        assert_eq!(port_number(pc, &get["port"]), admin, "{name}: {probe} port");
        let path = get["path"].as_str().unwrap();
        assert_eq!(
            probe_paths.get(path),
            Some(&200),
            "{name}: {probe} path {path}"
        );
    }
    assert_eq!(pc["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(pc["livenessProbe"]["httpGet"]["path"], "/healthz");

    // The signing key file is a mounted Secret's key, too.
    if let Some(key_path) = &config.tokens.signing_key_path {
        let pem = secret_file(docs, pod, pc, &key_path.display().to_string(), name);
        assert!(
            pem.contains("portcullis keys generate"),
            "{name}: the placeholder says how"
        );
    }

    // Shutdown: preStop, then the drain, inside the grace period.
    let pre_stop = pc["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(
        pre_stop + seconds(config.server.shutdown_grace) <= grace,
        "{name}: preStop {pre_stop} s + drain {:?} > {grace} s",
        config.server.shutdown_grace
    );

    // Locked down, with resources requested, for every container.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    assert!(
        pod["securityContext"]["runAsUser"]
            .as_u64()
            .is_some_and(|u| u > 0)
    );
    let all = array(&pod["initContainers"])
        .iter()
        .chain(array(&pod["containers"]));
    for c in all {
        let sc = &c["securityContext"];
        let who = format!("{name}/{}", c["name"]);
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{who}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{who}");
        assert!(
            array(&sc["capabilities"]["drop"]).contains(&Value::from("ALL")),
            "{who}"
        );
        assert!(
            c["resources"]["requests"].is_object(),
            "{who}: resource requests"
        );
    }

    // The Service sends traffic to Portcullis's port, and selects this pod.
    let service = of_kind(docs, "Service")
        .into_iter()
        .find(|s| {
            s["spec"]["selector"]
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| labels[k] == *v)
        })
        .unwrap_or_else(|| panic!("{name}: no Service selects it"));
    for port in array(&service["spec"]["ports"]) {
        assert_eq!(
            port_number(pc, &port["targetPort"]),
            listen,
            "{name}: Service port"
        );
    }
    config
}

/// The contents of `file`: it lies in a Secret volume mounted into `pc`, and that Secret
/// has the key.
fn secret_file(
    docs: &[(PathBuf, Value)],
    pod: &Value,
    pc: &Value,
    file: &str,
    who: &str,
) -> String {
    let (mount, rest) = array(&pc["volumeMounts"])
        .iter()
        .find_map(|m| {
            let dir = m["mountPath"].as_str()?;
            let rest = file.strip_prefix(dir)?.strip_prefix('/')?;
            Some((m, rest))
        })
        .unwrap_or_else(|| panic!("{who}: {file} is in no mounted volume"));
    let volume = array(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let secret_name = volume["secret"]["secretName"]
        .as_str()
        .unwrap_or_else(|| panic!("{who}: {file} is not from a Secret"));
    let key = array(&volume["secret"]["items"])
        .iter()
        .find(|i| i["path"] == rest)
        .map_or(rest, |i| i["key"].as_str().unwrap());
    let secret = named(docs, "Secret", secret_name);
    secret["stringData"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{who}: Secret {secret_name} has no {key}"))
        .trim_end_matches('\n')
        .to_string()
}

/// The status of each probe path on a real operator listener.
async fn operator_paths() -> HashMap<String, u16> {
    let srv = TestServer::start().await;
    let mut out = HashMap::new();
    for path in ["/healthz", "/readyz", "/metrics", "/nope"] {
        let (status, _) = crate::harness::raw_get(srv.admin, path, "a", "").await;
        out.insert(path.to_string(), status);
    }
    assert_eq!(out["/nope"], 404, "the check can fail");
    out
}

#[tokio::test]
async fn the_sidecar_examples_hold_together() {
    let probes = operator_paths().await;
    let docs = manifests(&Path::new(ROOT).join("sidecar"));
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(
        deployments.len(),
        2,
        "native sidecar and plain-container variants"
    );
    for d in deployments {
        check_deployment(&docs, d, &probes).await;
    }
}

#[tokio::test]
async fn the_production_example_shares_postgres_and_redis() {
    let probes = operator_paths().await;
    let docs = manifests(&Path::new(ROOT).join("production"));
    let deployment = named(&docs, "Deployment", "orders");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let config = check_deployment(&docs, deployment, &probes).await;
    assert!(
        config.tokens.signing_key_path.is_some(),
        "one key for every replica"
    );
    // The URLs in the Secret name Services that exist, and the password matches.
    let secret = &named(&docs, "Secret", "portcullis-secrets")["stringData"];
    let db: http::Uri = secret["database-url"].as_str().unwrap().parse().unwrap();
    let redis: http::Uri = secret["redis-url"].as_str().unwrap().parse().unwrap();
    for (uri, scheme) in [(&db, "postgres"), (&redis, "redis")] {
        assert_eq!(uri.scheme_str(), Some(scheme));
        let service = named(&docs, "Service", uri.host().unwrap());
        let port = u64::from(uri.port_u16().unwrap());
        assert!(
            array(&service["spec"]["ports"])
                .iter()
                .any(|p| p["port"] == port)
        );
    }
    let authority = db.authority().unwrap().as_str();
    let password = authority
        .split_once('@')
        .unwrap()
        .0
        .split_once(':')
        .unwrap()
        .1;
    assert_eq!(secret["postgres-password"], password);
    assert!(of_kind(&docs, "PodDisruptionBudget").len() == 1);
}
