//! Installing flagger-rs the way Flagger is installed: the Helm chart (`charts/flagger-rs`) and the kustomize
//! overlays (`deploy/kustomize`).
//!
//! The `rendered_*` tests check what the chart and the overlays render, without a cluster: the ClusterRole grants
//! the configured router's API groups and nothing of the others, every overlay grants what the chart grants for
//! its provider, and the rendered command is Flagger's and parses. `hack/test-install` runs them with
//! `FLAGGER_INSTALL_TESTS=1`, `HELM` and `KUBECTL` set.
//!
//! The `installed_*` tests install into the local cluster (`hack/e2e`). Its pods are kwok pods that never run a
//! process, so each test takes the container's command and args from the installed Deployment and runs them
//! here, authenticated as the installed ServiceAccount (a TokenRequest token): the RBAC the install grants is all
//! the controller has while a blue/green Canary promotes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::audit::service_account_kubeconfig;
use e2e::controller::{
    self as ctl, Proc, Recorder, blue_green_canary, canaries, create_canary, deploy, set_image,
    wait_canary, wait_phase,
};
use e2e::objects::App;
use e2e::{Result, TestNamespace, audit, run, skip_unless_e2e, strings, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Api;
use kube::api::DeleteParams;
use serde_json::{Value, json};

const CHART: &str = "charts/flagger-rs";
const APP: &str = "podinfo";
/// Initialisation: primary rollout (kwok pods are Ready at once) plus one tick.
const INIT: Duration = Duration::from_secs(60);
/// A blue/green run of 2 iterations at 1 s.
const RUN: Duration = Duration::from_secs(90);
/// API groups every install grants, whatever the router.
const CORE_GROUPS: [&str; 4] = ["", "apps", "autoscaling", "flagger.app"];

fn install_tests_enabled() -> bool {
    std::env::var_os("FLAGGER_INSTALL_TESTS").is_some_and(|v| !v.is_empty()) || e2e::enabled()
}

macro_rules! skip_unless_install {
    () => {
        if !install_tests_enabled() {
            eprintln!(
                "skipped: FLAGGER_INSTALL_TESTS and FLAGGER_E2E are unset (run `hack/test-install` or `hack/e2e`)"
            );
            return Ok(());
        }
    };
}

/// `HELM`, else the cached build of `hack/tools/helm` (built on first use).
fn helm() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HELM").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let out = run(&mut Command::new(e2e::repo_path("hack/tools/helm")))?;
    let path = out
        .lines()
        .last()
        .context("hack/tools/helm printed nothing")?;
    Ok(PathBuf::from(path.trim()))
}

/// `KUBECTL`, else `kubectl` on PATH (inside `hack/cluster/exec`).
fn kubectl() -> PathBuf {
    std::env::var_os("KUBECTL")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("kubectl"), PathBuf::from)
}

fn documents(yaml: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).context("parsing rendered YAML")?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// `helm template flagger charts/flagger-rs -n flagger-system <args>`.
fn template(args: &[&str]) -> Result<Vec<Value>> {
    let out = run(Command::new(helm()?)
        .args(["template", "flagger"])
        .arg(e2e::repo_path(CHART))
        .args(["-n", "flagger-system"])
        .args(args))?;
    documents(&out)
}

fn template_provider(provider: &str) -> Result<Vec<Value>> {
    template(&["--set", &format!("meshProvider={provider}")])
}

fn kustomize(dir: &Path) -> Result<Vec<Value>> {
    documents(&run(Command::new(kubectl()).arg("kustomize").arg(dir))?)
}

fn find<'a>(docs: &'a [Value], kind: &str, pred: impl Fn(&Value) -> bool) -> Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && pred(d))
        .with_context(|| format!("no matching {kind} among the rendered objects"))
}

/// The controller container of the rendered Deployment.
fn controller_container(docs: &[Value]) -> Result<&Value> {
    let deployment = find(docs, "Deployment", |d| {
        d["spec"]["template"]["spec"]["containers"][0]["name"] == "flagger"
    })?;
    Ok(&deployment["spec"]["template"]["spec"]["containers"][0])
}

/// The container's entrypoint as the kubelet runs it: command then args.
fn command_line(container: &Value) -> Vec<String> {
    let mut line = strings(&container["command"]);
    line.extend(strings(&container["args"]));
    line
}

/// The flags of a rendered entrypoint `./<program> <flags>`, checking the program is `want` (Flagger's image
/// ships `./flagger` and `./loadtester`; here they are symlinks to the binary under test, which acts on the name
/// it is run under).
fn entrypoint_flags<'a>(command: &'a [String], want: &str) -> Result<&'a [String]> {
    let (entry, flags) = command.split_first().context("empty container command")?;
    ensure!(
        entry == &format!("./{want}"),
        "entrypoint {entry:?}, want Flagger's ./{want}"
    );
    Ok(flags)
}

type Grant = (String, String, String);

/// (group, resource, verb) of every rule granted to the controller's ServiceAccount, cluster-wide and in Roles.
fn grants(docs: &[Value]) -> Result<BTreeSet<Grant>> {
    let deployment = find(docs, "Deployment", |d| {
        d["spec"]["template"]["spec"]["containers"][0]["name"] == "flagger"
    })?;
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"].clone();
    let mut out = BTreeSet::new();
    for (binding_kind, role_kind) in [
        ("ClusterRoleBinding", "ClusterRole"),
        ("RoleBinding", "Role"),
    ] {
        for binding in docs.iter().filter(|d| {
            d["kind"] == binding_kind
                && d["subjects"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["name"] == account))
        }) {
            let role = find(docs, role_kind, |r| {
                r["metadata"]["name"] == binding["roleRef"]["name"]
            })?;
            for rule in role["rules"].as_array().into_iter().flatten() {
                ensure!(
                    rule.get("nonResourceURLs").is_none(),
                    "unexpected nonResourceURLs rule {rule}"
                );
                for g in strings(&rule["apiGroups"]) {
                    for r in strings(&rule["resources"]) {
                        for v in strings(&rule["verbs"]) {
                            out.insert((g.clone(), r.clone(), v));
                        }
                    }
                }
            }
        }
    }
    ensure!(
        !out.is_empty(),
        "nothing is granted to ServiceAccount {account}"
    );
    Ok(out)
}

fn groups(grants: &BTreeSet<Grant>) -> BTreeSet<String> {
    grants.iter().map(|(g, _, _)| g.clone()).collect()
}

fn router_groups(grants: &BTreeSet<Grant>) -> BTreeSet<String> {
    groups(grants)
        .into_iter()
        .filter(|g| !CORE_GROUPS.contains(&g.as_str()))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every meshProvider value maps to its router's API groups and nothing else; no install can delete anything.
#[tokio::test]
async fn rendered_rbac_grants_only_the_configured_router() -> Result<()> {
    skip_unless_install!();
    let table: [(&str, &[&str]); 22] = [
        // Empty: the controller's default provider, istio (as in Flagger).
        ("", &["networking.istio.io"]),
        ("kubernetes", &[]),
        ("istio", &["networking.istio.io"]),
        ("linkerd", &["split.smi-spec.io"]),
        ("osm", &["split.smi-spec.io"]),
        ("smi:v1alpha1", &["split.smi-spec.io"]),
        ("smi:v1alpha2", &["split.smi-spec.io"]),
        ("smi:v1alpha3:istio", &["split.smi-spec.io"]),
        ("kuma", &["kuma.io"]),
        ("appmesh", &["appmesh.k8s.aws"]),
        ("appmesh:v1beta2", &["appmesh.k8s.aws"]),
        ("gatewayapi", &["gateway.networking.k8s.io"]),
        ("gatewayapi:v1", &["gateway.networking.k8s.io"]),
        ("gatewayapi:v1beta1", &["gateway.networking.k8s.io"]),
        ("nginx", &["networking.k8s.io"]),
        ("skipper", &["networking.k8s.io"]),
        ("traefik", &["traefik.io"]),
        ("contour", &["projectcontour.io"]),
        ("gloo", &["gloo.solo.io", "gateway.solo.io"]),
        ("apisix", &["apisix.apache.org"]),
        ("knative", &["serving.knative.dev"]),
        ("supergloo", &[]),
    ];
    let base = grants(&template_provider("kubernetes")?)?;
    ensure!(
        groups(&base) == set(&CORE_GROUPS),
        "kubernetes grants groups {:?}",
        groups(&base)
    );
    for (provider, want) in table {
        let docs = match template_provider(provider) {
            Ok(docs) => docs,
            // A provider flagger-rs does not know must not render (the ClusterRole could not grant its router).
            Err(e) if provider == "supergloo" => {
                ensure!(
                    e.to_string().contains("supergloo"),
                    "refusal does not name the provider: {e:#}"
                );
                continue;
            }
            Err(e) => return Err(e.context(format!("meshProvider={provider}"))),
        };
        ensure!(provider != "supergloo", "meshProvider=supergloo rendered");
        let got = grants(&docs)?;
        ensure!(
            router_groups(&got) == set(want),
            "meshProvider={provider:?} grants router groups {:?}, want {want:?}",
            router_groups(&got)
        );
        let core: BTreeSet<Grant> = got
            .iter()
            .filter(|(g, _, _)| CORE_GROUPS.contains(&g.as_str()))
            .cloned()
            .collect();
        ensure!(
            core == base,
            "meshProvider={provider:?} changes the core grants"
        );
        let broad: Vec<&Grant> = got
            .iter()
            .filter(|(g, r, v)| {
                g == "*" || r == "*" || ["*", "delete", "deletecollection"].contains(&v.as_str())
            })
            .collect();
        ensure!(
            broad.is_empty(),
            "meshProvider={provider:?} grants {broad:?}"
        );
    }
    Ok(())
}

/// Canaries with their own spec.provider get their router through rbac.extraProviders; leader election adds a
/// Lease Role in the release namespace only.
#[tokio::test]
async fn rendered_rbac_extra_providers_and_leader_election() -> Result<()> {
    skip_unless_install!();
    let docs = template(&[
        "--set",
        "meshProvider=istio",
        "--set",
        "rbac.extraProviders={nginx,gatewayapi:v1beta1}",
    ])?;
    let got = router_groups(&grants(&docs)?);
    ensure!(
        got == set(&[
            "networking.istio.io",
            "networking.k8s.io",
            "gateway.networking.k8s.io"
        ]),
        "istio + extraProviders grant {got:?}"
    );
    ensure!(
        !groups(&grants(&template(&[])?)?).contains("coordination.k8s.io"),
        "Leases granted without leader election"
    );
    // MetricTemplate types that read the Kubernetes API get its permissions only when named.
    let metric_groups = set(&["metrics.keptn.sh", "external.metrics.k8s.io"]);
    let default_groups = groups(&grants(&template(&[])?)?);
    ensure!(
        default_groups.is_disjoint(&metric_groups),
        "metric provider groups granted by default: {default_groups:?}"
    );
    let named = groups(&grants(&template(&[
        "--set",
        "rbac.metricProviders={keptn,externalmetrics}",
    ])?)?);
    ensure!(
        named.is_superset(&metric_groups),
        "rbac.metricProviders grants {named:?}"
    );
    let docs = template(&["--set", "leaderElection.enabled=true"])?;
    let role = find(&docs, "Role", |_| true)?;
    ensure!(
        role["metadata"]["namespace"] == "flagger-system",
        "Lease Role outside the release namespace: {role}"
    );
    let leases: BTreeSet<Grant> = grants(&docs)?
        .into_iter()
        .filter(|(g, _, _)| g == "coordination.k8s.io")
        .collect();
    let want: BTreeSet<Grant> = ["get", "create", "update"]
        .iter()
        .map(|v| ("coordination.k8s.io".into(), "leases".into(), v.to_string()))
        .collect();
    ensure!(leases == want, "Lease grants {leases:?}");
    ensure!(
        !docs.iter().any(
            |d| d["kind"] == "ClusterRole" && groups_of_role(d).contains("coordination.k8s.io")
        ),
        "Leases granted cluster-wide"
    );
    Ok(())
}

fn groups_of_role(role: &Value) -> BTreeSet<String> {
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| strings(&r["apiGroups"]))
        .collect()
}

/// The kustomize overlays (one per provider family) grant exactly what the chart grants for the overlay's
/// -mesh-provider, bind the ServiceAccount in the overlay's namespace, and run Flagger's entrypoint.
#[tokio::test]
async fn rendered_kustomize_overlays_match_the_chart() -> Result<()> {
    skip_unless_install!();
    let root = e2e::repo_path("deploy/kustomize");
    let mut overlays = Vec::new();
    for entry in std::fs::read_dir(&root)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if path.join("kustomization.yaml").is_file() && name != "tester" {
            overlays.push((name, path));
        }
    }
    overlays.sort();
    ensure!(overlays.len() >= 14, "overlays: {overlays:?}");
    for (name, dir) in &overlays {
        let docs = kustomize(dir)?;
        let command = command_line(controller_container(&docs)?);
        ensure!(
            command.first().map(String::as_str) == Some("./flagger"),
            "{name}: command {command:?}"
        );
        let provider = command
            .iter()
            .find_map(|a| a.strip_prefix("-mesh-provider="))
            .with_context(|| format!("{name}: no -mesh-provider in {command:?}"))?;
        let chart = grants(&template_provider(provider)?)?;
        let got = grants(&docs)?;
        ensure!(
            got == chart,
            "{name}: kustomize grants differ from the chart's for {provider}: only kustomize {:?}, only chart {:?}",
            got.difference(&chart).collect::<Vec<_>>(),
            chart.difference(&got).collect::<Vec<_>>()
        );
        let deployment = find(&docs, "Deployment", |_| true)?;
        let binding = find(&docs, "ClusterRoleBinding", |_| true)?;
        ensure!(
            binding["subjects"][0]["namespace"] == deployment["metadata"]["namespace"],
            "{name}: binding subject {} not in the Deployment's namespace {}",
            binding["subjects"][0],
            deployment["metadata"]["namespace"]
        );
        let crds = docs
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .count();
        ensure!(crds == 3, "{name}: {crds} CRDs");
    }
    let tester = kustomize(&root.join("tester"))?;
    let container =
        find(&tester, "Deployment", |_| true)?["spec"]["template"]["spec"]["containers"][0].clone();
    ensure!(
        command_line(&container).first().map(String::as_str) == Some("./loadtester"),
        "tester command {:?}",
        command_line(&container)
    );
    Ok(())
}

/// Flagger's chart keys become Flagger's flags, in Flagger's single-dash form, and the binary accepts every
/// command the chart renders from the documented values examples.
#[tokio::test]
async fn rendered_command_is_flaggers_and_parses() -> Result<()> {
    skip_unless_install!();
    let defaults = command_line(controller_container(&template(&[])?)?);
    ensure!(
        defaults
            == [
                "./flagger",
                "-log-level=info",
                "-metrics-server=http://prometheus:9090",
                "-enable-config-tracking=true",
                "-slack-user=flagger",
            ],
        "default command {defaults:?}"
    );
    let examples = e2e::repo_path(&format!("{CHART}/examples"));
    let all = e2e::repo_path(&format!("{CHART}/examples/all-flags.yaml"));
    let docs = template(&["-f", &all.to_string_lossy()])?;
    let container = controller_container(&docs)?;
    let command = command_line(container);
    let want = [
        "./flagger",
        "-log-level=debug",
        "-mesh-provider=gatewayapi:v1beta1",
        "-metrics-server=http://prometheus.monitoring:9090",
        "-selector-labels=app,name,app.kubernetes.io/name,team",
        "-enable-config-tracking=false",
        "-namespace=apps",
        "-slack-url=https://hooks.slack.com/services/X",
        "-slack-proxy-url=http://proxy:3128",
        "-slack-user=bot",
        "-slack-channel=deploys",
        "-msteams-url=https://teams.example/webhook",
        "-msteams-proxy-url=http://proxy:3128",
        "-enable-leader-election=true",
        "-leader-election-namespace=flagger-system",
        "-ingress-annotations-prefix=custom.ingress.kubernetes.io",
        "-include-label-prefix=app.kubernetes.io,team",
        "-ingress-class=contour",
        "-event-webhook=https://events.example/flagger",
        "-kubeconfig-qps=200",
        "-kubeconfig-burst=400",
        "-kubeconfig-service-mesh=/tmp/controlplane/config",
        "-threadiness=4",
        "-cluster-name=prod",
        "-no-cross-namespace-refs=true",
        "-min-analysis-interval=5s",
    ];
    ensure!(command == want, "rendered {command:?}\nwant {want:?}");
    ensure!(
        container["volumeMounts"][0]["mountPath"] == "/tmp/controlplane",
        "mesh kubeconfig not mounted: {container}"
    );

    let flagger = ctl::program_symlink("flagger")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.sort();
    for file in files {
        let docs = template(&["-f", &file.to_string_lossy()])?;
        let command = command_line(controller_container(&docs)?);
        let flags = entrypoint_flags(&command, "flagger")?;
        // clap reads every flag before acting on --help: exit 0 means each one parsed.
        run(Command::new(&flagger).args(flags).arg("--help"))
            .with_context(|| format!("flags rendered from {}", file.display()))?;
    }

    // The loadtester chart: Flagger's loadtester entrypoint and flags, parsed by the binary run as `loadtester`.
    let out = run(Command::new(helm()?)
        .args(["template", "flagger-loadtester"])
        .arg(e2e::repo_path("charts/loadtester"))
        .args([
            "--set",
            "cmd.namespaceRegexp=^test$,cmd.timeout=30m,logLevel=debug",
        ]))?;
    let docs = documents(&out)?;
    let loadtester = find(&docs, "Deployment", |_| true)?;
    let command = command_line(&loadtester["spec"]["template"]["spec"]["containers"][0]);
    let want = [
        "./loadtester",
        "-port=8080",
        "-log-level=debug",
        "-timeout=30m",
        "-namespace-regexp=^test$",
    ];
    ensure!(command == want, "loadtester command {command:?}");
    run(Command::new(ctl::program_symlink("loadtester")?)
        .args(entrypoint_flags(&command, "loadtester")?)
        .arg("--help"))
    .context("the loadtester flags the chart renders")?;
    Ok(())
}

/// Starts the controller exactly as the installed Deployment `deployment` would run it: its rendered command
/// and args, authenticated as its ServiceAccount.
async fn start_installed(ns: &TestNamespace, deployment: &str) -> Result<Proc> {
    let installed: Deployment = ns.api::<Deployment>().get(deployment).await?;
    let installed = serde_json::to_value(&installed)?;
    let pod = &installed["spec"]["template"]["spec"];
    let command = command_line(&pod["containers"][0]);
    let flags = entrypoint_flags(&command, "flagger")?.to_vec();
    let account = pod["serviceAccountName"]
        .as_str()
        .context("no serviceAccountName")?;
    let kubeconfig = service_account_kubeconfig(ns, account).await?;
    Proc::spawn_program(
        &format!("installed controller ({})", ns.name),
        &format!("{}-installed", ns.name),
        &ctl::program_symlink("flagger")?,
        &flags,
        &[("KUBECONFIG", &kubeconfig.to_string_lossy())],
    )
}

/// The primary generation before a run, to check afterwards that it promoted exactly once.
async fn primary_generation(ns: &TestNamespace) -> Result<Option<i64>> {
    Ok(ns
        .api::<Deployment>()
        .get(&format!("{APP}-primary"))
        .await?
        .metadata
        .generation)
}

/// The run ends `Succeeded` with one promotion to 6.0.1, and the API server refused the controller nothing.
async fn ensure_promoted(
    ns: &TestNamespace,
    controller: &Proc,
    recorder: &Recorder,
    generation: Option<i64>,
) -> Result<()> {
    wait_phase(&canaries(ns), APP, "Succeeded", RUN, controller).await?;
    eprintln!("observed: {}", recorder.render());
    recorder.ensure_promoted_once()?;
    ctl::ensure_primary_promoted_once(&ns.api(), APP, "6.0.1", generation).await?;
    let refused = controller
        .log()
        .lines()
        .filter(|l| l.contains("forbidden"))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n");
    ensure!(
        refused.is_empty(),
        "the API server refused the installed RBAC:\n{refused}"
    );
    Ok(())
}

/// Runs the installed controller and sees `canary` (a blue/green run of the app) initialise and promote once;
/// then stops the controller and holds what it asked the API server to what it was granted.
async fn promote_as_installed(
    ns: &TestNamespace,
    deployment: &str,
    provider: &str,
    canary: Value,
) -> Result<()> {
    let mut controller = start_installed(ns, deployment).await?;
    deploy(ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
    create_canary(ns, canary).await?;
    let api = canaries(ns);
    wait_phase(&api, APP, "Initialized", INIT, &controller).await?;
    let recorder = Recorder::start(&api, APP);
    let generation = primary_generation(ns).await?;
    set_image(&ns.api::<Deployment>(), APP, "6.0.1").await?;
    ensure_promoted(ns, &controller, &recorder, generation).await?;
    controller.terminate(Duration::from_secs(30)).await?;
    ensure_least_privilege(ns, deployment, provider).await
}

/// A blue/green Canary left to the controller's -mesh-provider (no spec.provider), as a chart user writes it.
fn installed_canary() -> Value {
    let mut canary = blue_green_canary(APP, "1s", 2, json!([]));
    if let Some(spec) = canary["spec"].as_object_mut() {
        spec.remove("provider");
    }
    canary
}

/// Deletes cluster-scoped RBAC objects an install created (namespace deletion does not), whatever the outcome.
async fn delete_cluster_rbac(client: &kube::Client, name: &str) -> Result<()> {
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    for result in [
        bindings
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ()),
        roles
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ()),
    ] {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `helm install flagger` with values written as Flagger's chart documents them; the Deployment's name.
fn helm_install(ns: &TestNamespace, provider: &str) -> Result<String> {
    // ClusterRole and ClusterRoleBinding are cluster-scoped: a per-namespace name keeps runs apart.
    let name = format!("flagger-{}", ns.name);
    let values = std::env::temp_dir().join(format!("flagger-rs-e2e-{}-values.yaml", ns.name));
    std::fs::write(
        &values,
        format!(
            "meshProvider: {provider}\n\
             metricsServer: http://127.0.0.1:9090\n\
             namespace: {ns}\n\
             logLevel: debug\n\
             includeLabelPrefix: app.kubernetes.io\n\
             fullnameOverride: {name}\n\
             podAnnotations:\n  testapp.flagger-rs.dev/serve: \"false\"\n\
             # test clusters only: ticks below Flagger's 10 s floor; any free port for /metrics\n\
             extraArgs: [-min-analysis-interval=1s, -port=0]\n",
            ns = ns.name
        ),
    )?;
    run(Command::new(helm()?)
        .args(["install", "flagger"])
        .arg(e2e::repo_path(CHART))
        .args(["-n", &ns.name, "-f"])
        .arg(&values))?;
    Ok(name)
}

/// `helm uninstall` and the cluster-scoped objects, whatever the test's outcome; the test's error wins.
async fn helm_cleanup(ns: &TestNamespace, name: &str, result: Result<()>) -> Result<()> {
    let uninstall = run(Command::new(helm()?).args(["uninstall", "flagger", "-n", &ns.name]));
    let cleanup = delete_cluster_rbac(&ns.client, name).await;
    result?;
    uninstall?;
    cleanup
}

/// `helm install` with values written as Flagger's chart documents them, then the rendered entrypoint runs.
#[tokio::test]
async fn installed_with_helm_promotes_a_canary() -> Result<()> {
    skip_unless_e2e!();
    with_namespace("install-helm", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let name = helm_install(&ns, "kubernetes")?;
        let result = promote_as_installed(&ns, &name, "kubernetes", installed_canary()).await;
        helm_cleanup(&ns, &name, result).await
    })
    .await
}

/// `helm install` with meshProvider gatewayapi:v1: the controller writes the Canary's HTTPRoute through Traefik's
/// Gateway with only the grants the chart gives that provider.
#[tokio::test]
async fn installed_with_helm_for_gatewayapi_promotes_a_canary() -> Result<()> {
    skip_unless_e2e!();
    with_namespace("install-gwapi", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        e2e::gateway::install(&ns).await?;
        let name = helm_install(&ns, "gatewayapi:v1")?;
        let mut canary = installed_canary();
        canary["spec"]["service"]["hosts"] = json!([format!("{APP}.{}.example", ns.name)]);
        canary["spec"]["service"]["gatewayRefs"] = json!([{"name": "gateway"}]);
        let result = promote_as_installed(&ns, &name, "gatewayapi:v1", canary).await;
        helm_cleanup(&ns, &name, result).await
    })
    .await
}

/// Switching a live cluster: a Canary mid-analysis under one controller, which is stopped (SIGTERM, as when
/// its Deployment is scaled to 0); the chart is installed and its rendered command started: the run resumes
/// from the status and ends Succeeded with one promotion.
#[tokio::test]
async fn installed_with_helm_resumes_a_run_started_by_another_controller() -> Result<()> {
    skip_unless_e2e!();
    with_namespace("install-switch", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let mut old = ctl::start_controller(&ns.name, &[])?;
        deploy(&ns, &App::new(APP, "6.0.0", 1), |_| {}).await?;
        create_canary(&ns, blue_green_canary(APP, "2s", 4, json!([]))).await?;
        let api = canaries(&ns);
        wait_phase(&api, APP, "Initialized", INIT, &old).await?;
        let recorder = Recorder::start(&api, APP);
        let generation = primary_generation(&ns).await?;
        set_image(&ns.api::<Deployment>(), APP, "6.0.1").await?;
        let seen = wait_canary(&api, APP, "mid-analysis", RUN, &old, |o| {
            ctl::phase(o) == "Progressing" && ctl::step(o).iterations >= 1
        })
        .await?;
        old.terminate(Duration::from_secs(30)).await?;
        eprintln!("stopped the first controller at {}", ctl::step(&seen));

        let name = helm_install(&ns, "kubernetes")?;
        let result = async {
            let controller = start_installed(&ns, &name).await?;
            ensure_promoted(&ns, &controller, &recorder, generation).await?;
            let iterations: Vec<i64> = recorder
                .steps()
                .iter()
                .filter(|s| s.phase == "Progressing")
                .map(|s| s.iterations)
                .collect();
            ensure!(
                iterations.windows(2).all(|w| w[0] <= w[1]),
                "the run restarted instead of resuming: {}",
                recorder.render()
            );
            Ok(())
        }
        .await;
        helm_cleanup(&ns, &name, result).await
    })
    .await
}

/// `kubectl apply -k` of an overlay of the kubernetes overlay (the namespace, a per-namespace name suffix and
/// test-cluster flags added), then the rendered entrypoint runs.
#[tokio::test]
async fn installed_with_kustomize_promotes_a_canary() -> Result<()> {
    skip_unless_e2e!();
    with_namespace("install-kustomize", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let dir = std::env::temp_dir().join(format!("flagger-rs-e2e-{}-kustomize", ns.name));
        std::fs::create_dir_all(&dir)?;
        let base = std::fs::canonicalize(e2e::repo_path("deploy/kustomize/kubernetes"))?;
        let kustomization = json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": ns.name,
            "nameSuffix": format!("-{}", ns.name),
            "resources": [relative_to(&dir, &base)?],
            "patches": [{
                "target": {"kind": "Deployment"},
                "patch": serde_json::to_string(&json!([
                    {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": format!("-namespace={}", ns.name)},
                    {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "-min-analysis-interval=1s"},
                    {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "-port=0"},
                    {"op": "add", "path": "/spec/template/metadata/annotations/testapp.flagger-rs.dev~1serve", "value": "false"},
                ]))?,
            }],
        });
        std::fs::write(
            dir.join("kustomization.yaml"),
            serde_json::to_vec_pretty(&kustomization)?,
        )?;
        let name = format!("flagger-rs-{}", ns.name);
        run(Command::new(kubectl())
            .args(["apply", "--server-side", "--force-conflicts", "-k"])
            .arg(&dir))?;
        let result = promote_as_installed(&ns, &name, "kubernetes", installed_canary()).await;
        let cleanup = delete_cluster_rbac(&ns.client, &name).await;
        result?;
        cleanup
    })
    .await
}

/// `to` relative to `from` (kustomize resources outside the kustomization are named by relative path).
fn relative_to(from: &Path, to: &Path) -> Result<String> {
    let from = std::fs::canonicalize(from)?;
    let common = from
        .ancestors()
        .find(|a| to.starts_with(a))
        .context("no common ancestor")?;
    let ups = from.components().count() - common.components().count();
    let rest = to.strip_prefix(common)?;
    let mut path = PathBuf::new();
    for _ in 0..ups {
        path.push("..");
    }
    path.push(rest);
    Ok(path.to_string_lossy().into_owned())
}

/// Least privilege, from the API server's audit log of the run of the installed controller (stopped): every
/// request it made is allowed by its installed ClusterRole and Roles, and every verb they grant was used in the
/// run or is declared in charts/flagger-rs/rbac.yaml (core, plus `provider`'s router) with the reason no run
/// uses it.
async fn ensure_least_privilege(
    ns: &TestNamespace,
    deployment: &str,
    provider: &str,
) -> Result<()> {
    let installed: Deployment = ns.api::<Deployment>().get(deployment).await?;
    let account = installed
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.service_account_name)
        .context("no serviceAccountName")?;
    let user = format!("system:serviceaccount:{}:{account}", ns.name);
    let requests = audit::requests_of(&user)?;
    ensure!(
        !requests.resources.is_empty(),
        "no request of {user} in {}",
        audit::log_path().display()
    );
    let rules = installed_rules(ns, &account).await?;
    let mut distinct: BTreeSet<String> = BTreeSet::new();
    for r in &requests.resources {
        let scope = if r.namespace.is_some() {
            "namespaced"
        } else {
            "cluster"
        };
        let group = if r.group.is_empty() { "core" } else { &r.group };
        distinct.insert(format!("{} {group}/{} ({scope})", r.verb, r.resource));
    }
    eprintln!(
        "audit: {user} made {} requests:\n  {}\n  non-resource: {:?}",
        requests.resources.len(),
        distinct.iter().cloned().collect::<Vec<_>>().join("\n  "),
        requests.non_resource
    );

    let refused: Vec<String> = requests
        .resources
        .iter()
        .filter(|r| r.code == 403 || !audit::allows(&rules, r))
        .map(ToString::to_string)
        .collect();
    ensure!(
        refused.is_empty(),
        "requests the installed RBAC does not allow:\n{}",
        refused.join("\n")
    );
    // Discovery and /version are every authenticated user's (system:discovery), not the chart's to grant.
    let other: Vec<&String> = requests
        .non_resource
        .iter()
        .filter(|p| {
            !(p.as_str() == "get /version"
                || p.starts_with("get /api/")
                || p.starts_with("get /apis/")
                || ["get /api", "get /apis"].contains(&p.as_str()))
        })
        .collect();
    ensure!(other.is_empty(), "non-resource requests: {other:?}");

    let used: BTreeSet<Grant> = requests
        .resources
        .iter()
        .flat_map(audit::grants_used)
        .collect();
    let declared = declared_rules(provider)?;
    let mut idle = Vec::new();
    for rule in &rules {
        for g in &rule.groups {
            for r in &rule.resources {
                for v in &rule.verbs {
                    let grant = (g.clone(), r.clone(), v.clone());
                    if used.contains(&grant) {
                        continue;
                    }
                    match unexercised_reason(&declared, &grant) {
                        Some(why) => {
                            eprintln!("audit: granted, not used in this run: {grant:?}: {why}")
                        }
                        None => idle.push(grant),
                    }
                }
            }
        }
    }
    ensure!(
        idle.is_empty(),
        "granted to {user} but neither used in the run nor declared `unexercised` in charts/flagger-rs/rbac.yaml: {idle:?}"
    );
    Ok(())
}

/// The rules of every ClusterRole and Role bound to ServiceAccount `account` of the namespace.
async fn installed_rules(ns: &TestNamespace, account: &str) -> Result<Vec<audit::Rule>> {
    let binds = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount"
                && s.name == account
                && s.namespace.as_deref() == Some(ns.name.as_str())
        })
    };
    let mut rules = Vec::new();
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(ns.client.clone());
    let cluster_roles: Api<ClusterRole> = Api::all(ns.client.clone());
    for b in cluster_bindings.list(&Default::default()).await? {
        if binds(&b.subjects) {
            let role = cluster_roles.get(&b.role_ref.name).await?;
            rules.extend(audit::rules(&serde_json::to_value(&role)?));
        }
    }
    let bindings: Api<RoleBinding> = ns.api();
    let roles: Api<Role> = ns.api();
    for b in bindings.list(&Default::default()).await? {
        if binds(&b.subjects) {
            let role = roles.get(&b.role_ref.name).await?;
            rules.extend(audit::rules(&serde_json::to_value(&role)?));
        }
    }
    ensure!(!rules.is_empty(), "nothing is bound to {account}");
    Ok(rules)
}

/// The rules charts/flagger-rs/rbac.yaml declares for `provider`: core and its router family's.
fn declared_rules(provider: &str) -> Result<Vec<Value>> {
    let path = e2e::repo_path(&format!("{CHART}/rbac.yaml"));
    let text = std::fs::read_to_string(&path)?;
    let rbac: Value = serde_saphyr::from_str(&text).context("parsing rbac.yaml")?;
    let family = provider.split(':').next().unwrap_or_default();
    let routers = rbac["routers"][family]
        .as_array()
        .with_context(|| format!("rbac.yaml declares no router {family:?}"))?;
    Ok(rbac["core"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(routers)
        .cloned()
        .collect())
}

/// Why a declared rule's grant is needed although no run uses it (its `unexercised` entry), if it says.
fn unexercised_reason(declared: &[Value], (group, resource, verb): &Grant) -> Option<String> {
    declared
        .iter()
        .filter(|rule| {
            strings(&rule["apiGroups"]).contains(group)
                && strings(&rule["resources"]).contains(resource)
                && strings(&rule["verbs"]).contains(verb)
        })
        .find_map(|rule| {
            rule["unexercised"][verb.as_str()]
                .as_str()
                .map(String::from)
        })
}
