//! The image `make image` builds (`hack/image`): unpacked with the same tool (umoci), its config read, and its
//! entrypoint started from the unpacked root filesystem alone (chroot, as the image's user) against the local
//! cluster until `/readyz` answers. Prints the image's size and the start-up time (a benchmark line, not an
//! assertion).
//!
//! Runs when FLAGGER_RS_IMAGE names the image as `<layout>:<tag>` (`make test-e2e` and `hack/test-image` set it
//! to what `hack/image` printed); skipped, saying so, otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use e2e::bench::free_port;
use e2e::controller::{self as ctl, Proc};
use e2e::{Result, run, skip_unless_e2e, strings, with_namespace};
use serde_json::Value;

/// The user the image config names; the process must run as it.
const IMAGE_USER: &str = "65532:65532";
/// Caches of an empty namespace sync in well under a second; the rest is slack for a loaded machine.
const READY: Duration = Duration::from_secs(60);

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The image manifest of `tag` in an OCI layout.
fn manifest(layout: &Path, tag: &str) -> Result<Value> {
    let index = read_json(&layout.join("index.json"))?;
    let entry = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .with_context(|| format!("no tag {tag} in {}", layout.display()))?;
    let digest = entry["digest"]
        .as_str()
        .context("manifest without digest")?;
    read_json(&blob(layout, digest))
}

/// Bytes of the regular files under `dir` (what the node unpacks).
fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Removes the unpacked bundle whatever the test's outcome.
struct Bundle(PathBuf);

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn image_entrypoint_starts_the_controller_from_its_own_rootfs() -> Result<()> {
    skip_unless_e2e!();
    let Some(image) = std::env::var("FLAGGER_RS_IMAGE")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "skipped: FLAGGER_RS_IMAGE is unset (`make test-e2e` or `hack/test-image` builds the image)"
        );
        return Ok(());
    };
    let (layout, tag) = image
        .rsplit_once(':')
        .context("FLAGGER_RS_IMAGE is not <layout>:<tag>")?;
    let layout = Path::new(layout);

    let manifest = manifest(layout, tag)?;
    let config = read_json(&blob(
        layout,
        manifest["config"]["digest"]
            .as_str()
            .context("manifest without config")?,
    ))?;
    let cfg = &config["config"];
    let entrypoint = strings(&cfg["Entrypoint"]);
    let cmd = strings(&cfg["Cmd"]);
    let env = strings(&cfg["Env"]);
    ensure!(
        entrypoint == ["/flagger"] && cmd.is_empty(),
        "image runs {entrypoint:?} {cmd:?}, want Flagger's controller entrypoint"
    );
    ensure!(
        cfg["User"] == IMAGE_USER,
        "image user {}, want {IMAGE_USER}",
        cfg["User"]
    );
    ensure!(
        config["os"] == "linux" && config["architecture"] == "amd64",
        "platform {}/{}",
        config["os"],
        config["architecture"]
    );

    let bundle =
        Bundle(std::env::temp_dir().join(format!("flagger-rs-e2e-image-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&bundle.0);
    let umoci = umoci()?;
    run(Command::new(&umoci)
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle.0))?;
    let rootfs = bundle.0.join("rootfs");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd"))?;
    ensure!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "/etc/passwd has no user 65532:\n{passwd}"
    );
    for name in ["flagger", "loadtester"] {
        let link = std::fs::read_link(rootfs.join(name))?;
        ensure!(
            link == Path::new("flagger-rs"),
            "/{name} -> {}",
            link.display()
        );
    }
    ensure!(
        rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file(),
        "no CA certificates in the image"
    );
    let compressed: u64 = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["size"].as_u64())
        .sum();
    let unpacked = tree_size(&rootfs)?;

    // Every container gets these devices from its runtime (the OCI runtime spec's defaults; the random sources
    // seed hash maps and TLS): the chroot stands in for the runtime, so it makes them.
    std::fs::create_dir_all(rootfs.join("dev"))?;
    for (name, minor) in [
        ("null", "3"),
        ("zero", "5"),
        ("random", "8"),
        ("urandom", "9"),
    ] {
        run(Command::new("mknod")
            .args(["-m", "0666"])
            .arg(rootfs.join("dev").join(name))
            .args(["c", "1", minor]))?;
    }
    // The kubeconfig of the flagger-rs identity goes inside the root filesystem, readable by the image's user
    // only: in the chroot nothing of the host is visible.
    let kubeconfig = rootfs.join("tmp/kubeconfig");
    std::fs::copy(ctl::controller_kubeconfig()?, &kubeconfig)?;
    run(Command::new("chown").arg(IMAGE_USER).arg(&kubeconfig))?;

    with_namespace("image", |ns| async move {
        ctl::install_crds(&ns.client).await?;
        let port = free_port()?;
        // `env -i` and the image's Env: nothing of the test's environment leaks in.
        let mut args = vec!["-i".to_string()];
        args.extend(env.iter().cloned());
        args.extend([
            on_path("chroot")?.to_string_lossy().into_owned(),
            format!("--userspec={IMAGE_USER}"),
            rootfs.to_string_lossy().into_owned(),
        ]);
        args.extend(entrypoint.iter().cloned());
        args.extend([
            "-kubeconfig=/tmp/kubeconfig".to_string(),
            format!("-namespace={}", ns.name),
            "-mesh-provider=kubernetes".into(),
            format!("-port={port}"),
            "-log-level=info".into(),
        ]);
        let started = Instant::now();
        let mut controller = Proc::spawn_program(
            "image entrypoint",
            &format!("{}-image", ns.name),
            Path::new("env"),
            &args,
            &[],
        )?;
        let ready = await_ready(&mut controller, port, started).await?;

        // `env` and `chroot` exec: the pid is the controller's, running as the image's user in the rootfs.
        let pid = controller.pid().context("controller reaped")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
        ensure!(
            uid.split_whitespace().skip(1).all(|id| id == "65532"),
            "controller runs as {uid}"
        );
        let root = std::fs::read_link(format!("/proc/{pid}/root"))?;
        ensure!(
            root == std::fs::canonicalize(&rootfs)?,
            "controller's root is {}",
            root.display()
        );
        let exit = controller.terminate(Duration::from_secs(30)).await?;
        ensure!(
            exit.success(),
            "SIGTERM: {exit}\n{}",
            controller.log_tail()
        );
        println!(
            "image: compressed layers {} KiB, unpacked {} KiB; entrypoint from the unpacked rootfs (uid 65532) ready in {} ms",
            compressed / 1024,
            unpacked / 1024,
            ready.as_millis()
        );
        Ok(())
    })
    .await
}

/// Polls `/readyz` (it has no watch) until it answers 200, at most [`READY`]; the time since `started`.
async fn await_ready(controller: &mut Proc, port: u16, started: Instant) -> Result<Duration> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://127.0.0.1:{port}/readyz");
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        controller.ensure_running()?;
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > READY {
            bail!(
                "{url} not ready after {READY:?}; log tail:\n{}",
                controller.log_tail()
            );
        }
    }
}

/// `program` on the test's PATH: the image's own PATH (given to `env -i`) has only the image's programs.
fn on_path(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} is not on PATH"))
}

/// The umoci `hack/image` built (cached by `hack/tools/umoci`).
fn umoci() -> Result<PathBuf> {
    let out = run(&mut Command::new(e2e::repo_path("hack/tools/umoci")))?;
    let path = out
        .lines()
        .last()
        .context("hack/tools/umoci printed nothing")?;
    Ok(PathBuf::from(path.trim()))
}
