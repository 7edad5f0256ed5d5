//! No secret given in a URL, a flag or a variable appears in anything any binary writes. Every binary and role
//! is run on error paths (a malformed URL, an unreachable server, a refused credential) over every scheme, with
//! secrets in userinfo, in secret query parameters, percent-encoded, in the credential variables and flags,
//! and every byte of stdout and stderr is searched for the secret in every form it was given.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::azurite::Azurite;
use testkit::fake_marathon::FakeMarathon;
use testkit::fake_nsqd::{FakeNsqd, Options};
use testkit::redis::RedisServer;
use testkit::{Proc, command, eventually};

/// Every secret below starts with this, so finding it anywhere (any case) finds a leak of any of them.
const MARK: &str = "zq7se";
/// A plain secret (a password, a token).
const S: &str = "Zq7SeCrEt9x";
/// A secret with the characters a SAS signature has, which URLs carry percent-encoded.
const SIG: &str = "Zq7Se+Cr/Et=9x";
/// [`SIG`] percent-encoded.
const SIG_ENC: &str = "Zq7Se%2BCr%2FEt%3D9x";
/// An account key: valid base64, so that it passes the key check and reaches the service.
const KEY: &str = "Zq7SeCrEt9xZq7SeCrEt9xA=";

/// The forms a leak could take: as given, percent-encoded and decoded, and the bare mark.
fn forms() -> Vec<String> {
    let mut f = vec![
        MARK.to_string(),
        S.into(),
        SIG.into(),
        SIG_ENC.into(),
        KEY.into(),
    ];
    f.push(SIG_ENC.to_lowercase());
    f.push("Zq7Se%2bCr%2fEt%3d9x".into());
    f.push(KEY.replace('=', "%3D"));
    f
}

/// Every credential variable the suite reads, each holding a secret.
fn secret_env(cmd: &mut Command) -> &mut Command {
    cmd.env("NSQ_AUTH_SECRET", S)
        .env("REDIS_PASSWORD", S)
        .env("AMQP_PASSWORD", S)
        .env("DCOS_TOKEN", S)
        .env("MARATHON_PASSWORD", S)
        .env("AZURE_STORAGE_ACCOUNT_KEY", KEY)
        .env(
            "AZURE_STORAGE_SAS_TOKEN",
            format!("sv=2020-08-04&sig={SIG_ENC}"),
        )
}

fn with_secrets(mut cmd: Command) -> Command {
    secret_env(&mut cmd);
    cmd
}

/// Runs one case: at most `limit`, then SIGTERM (a consumer retries a dead queue for ever), then checks every
/// byte written.
fn check(what: &str, mut cmd: Command, limit: Duration) {
    cmd.env("RUST_LOG", "info");
    let mut p = Proc::spawn(what, cmd);
    if !eventually(limit, || !p.running()) {
        p.signal(libc::SIGTERM);
    }
    p.wait(Duration::from_secs(20));
    let all = format!("{}\n{}", p.lines().join("\n"), p.stderr());
    assert!(
        !all.trim().is_empty(),
        "{what}: wrote nothing, so it checked nothing"
    );
    let lower = all.to_lowercase();
    for f in forms() {
        assert!(
            !lower.contains(&f.to_lowercase()),
            "{what}: the secret ({f}) is in the output:\n{all}"
        );
    }
    assert!(!all.contains("panicked"), "{what}: {all}");
}

fn case(bin: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = command(bin);
    cmd.current_dir(dir).args(args);
    cmd
}

/// Queue URLs with secrets, each on an error path, for any role that takes --queue.
fn secret_urls(
    azurite: &Azurite,
    nsqd: &FakeNsqd,
    redis: &RedisServer,
    nats: &testkit::nats::NatsServer,
    rabbit: &testkit::amqp::Rabbit,
) -> Vec<(String, Vec<(&'static str, String)>)> {
    let dead_azure = "http://127.0.0.1:1/devstoreaccount1";
    let live = azurite.endpoint();
    let nsq = format!("{}?http={}", nsqd.tcp_addr(), nsqd.http_addr());
    let none = Vec::new;
    vec![
        // Malformed: userinfo where a host belongs, plain and percent-encoded, in every address.
        (format!("nsq://user:{S}@127.0.0.1:1/t/c"), none()),
        (format!("nsq://u%3A{S}@127.0.0.1:1/t/c"), none()),
        (
            format!("nsq://127.0.0.1:1/t/c?http=u:{S}@127.0.0.1:2"),
            none(),
        ),
        (
            format!("nsq://127.0.0.1:1/t/c?http=127.0.0.1:2&lookupd=u:{S}@127.0.0.1:3"),
            none(),
        ),
        (
            format!("nsq://127.0.0.1:1/t/c?http=127.0.0.1:2&token={S}"),
            none(),
        ),
        (format!("sqlite://u:{S}@nohost/q.db"), none()),
        (format!("redis://user:{S}@127.0.0.1:1/jobs"), none()),
        (format!("redis://127.0.0.1:1/jobs?password={S}"), none()),
        (
            format!("azure://devstoreaccount1/jobs?sig={SIG_ENC}"),
            none(),
        ),
        (
            format!(
                "azure://devstoreaccount1/jobs?endpoint=http://u:{S}@127.0.0.1:1/devstoreaccount1"
            ),
            none(),
        ),
        (
            format!(
                "azure://devstoreaccount1/jobs?endpoint={dead_azure}%3Fsv%3D1%26sig%3D{SIG_ENC}"
            ),
            none(),
        ),
        // Unreachable servers, with the credential in the environment.
        ("nsq://127.0.0.1:1/t/c?http=127.0.0.1:2".into(), none()),
        (
            format!("azure://devstoreaccount1/jobs?endpoint={dead_azure}"),
            none(),
        ),
        (
            format!("azure://devstoreaccount1/jobs?endpoint={dead_azure}&auth=sas"),
            none(),
        ),
        // Refused credentials: a wrong AUTH secret, a wrong key, a wrong SAS, a wrong Redis password.
        (redis.url("jobs", ""), none()),
        (format!("nsq://{nsq}").replacen("?", "/t/c?", 1), none()),
        (
            format!("azure://devstoreaccount1/jobs?endpoint={live}"),
            none(),
        ),
        (
            format!("azure://devstoreaccount1/jobs?endpoint={live}&auth=sas"),
            none(),
        ),
        // NATS: a password in the URL; the password in the environment, refused by the server. (Each live
        // case costs this test about 10 s: the roles retry a refused credential until stopped.)
        (format!("nats://user:{S}@127.0.0.1:1/s"), none()),
        (
            nats.url("s", ""),
            vec![("NATS_USER", "u".into()), ("NATS_PASSWORD", S.into())],
        ),
        // AMQP: a password in the URL's userinfo, in a query parameter, in the management address; an
        // unreachable broker; AMQP_PASSWORD (from secret_env) refused by a live node for its guest user.
        (format!("amqp://user:{S}@127.0.0.1:1/q"), none()),
        (format!("amqp://u%3A{S}@127.0.0.1:1/q"), none()),
        (format!("amqp://127.0.0.1:1/q?password={S}"), none()),
        (
            format!("amqp://127.0.0.1:1/q?management=http://u:{S}@127.0.0.1:2"),
            none(),
        ),
        ("amqp://127.0.0.1:1/q?management=127.0.0.1:2".into(), none()),
        (rabbit.url("q", ""), none()),
        // A connection string, malformed and refused.
        (
            "azure://devstoreaccount1/jobs".into(),
            vec![(
                "AZURE_STORAGE_CONNECTION_STRING",
                format!("AccountName=devstoreaccount1;AccountKey={KEY};Junk"),
            )],
        ),
        (
            "azure://devstoreaccount1/jobs".into(),
            vec![(
                "AZURE_STORAGE_CONNECTION_STRING",
                format!(
                    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};QueueEndpoint={live}"
                ),
            )],
        ),
    ]
}

#[test]
fn no_secret_reaches_any_output_of_any_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let azurite = Azurite::start();
    let nsqd = FakeNsqd::with_options(Options {
        auth_secret: Some("the-right-secret".into()),
        ..Options::default()
    });
    let quick = Duration::from_secs(3);
    let redis = RedisServer::start_with(&["--requirepass", "the-right-password"]);

    let nats =
        testkit::nats::NatsServer::start_with(&["--user", "u", "--pass", "the-right-password"]);
    let rabbit = testkit::amqp::Rabbit::start();
    for (url, env) in secret_urls(&azurite, &nsqd, &redis, &nats, &rabbit) {
        for (bin, extra) in [
            ("producer", &["--count", "1", "--give-up-after", "2s"][..]),
            ("consumer", &["--count", "1"][..]),
        ] {
            let mut cmd = case(bin, d, &["--queue", &url]);
            cmd.args(extra);
            secret_env(&mut cmd).envs(env.iter().map(|(k, v)| (k, v)));
            check(&format!("{bin} --queue {url}"), cmd, quick);
            // The same URL from the environment.
            let mut cmd = case(bin, d, extra);
            secret_env(&mut cmd)
                .env("QUEUE_URL", &url)
                .envs(env.iter().map(|(k, v)| (k, v)));
            check(&format!("{bin} QUEUE_URL={url}"), cmd, quick);
        }
        let mut cmd = case(
            "scorecard",
            d,
            &[
                "watch",
                "--queue",
                &url,
                "--consumers",
                &format!("nsqd:http://u:{S}@127.0.0.1:1/t/c"),
            ],
        );
        cmd.args([
            "--target",
            "5",
            "--duration",
            "1s",
            "--interval",
            "200ms",
            "--out",
        ])
        .arg(d.join("sc"));
        secret_env(&mut cmd).envs(env.iter().map(|(k, v)| (k, v)));
        check(&format!("scorecard watch --queue {url}"), cmd, quick);
    }

    // The 2016 variables, which build the URL.
    for bin in ["producer", "consumer"] {
        let mut cmd = case(bin, d, &["--count", "1"]);
        secret_env(&mut cmd).env("MSS_QUEUE_ENDPOINT", format!("u:{S}@127.0.0.1:1"));
        check(&format!("{bin} MSS_QUEUE_ENDPOINT"), cmd, quick);
    }

    // scorecard's consumer sources.
    let sqlite = format!("sqlite:{}", d.join("q.db").display());
    std::fs::write(d.join("q.db"), b"").unwrap();
    for source in [
        format!("nsqd:http://u:{S}@127.0.0.1:1/t/c"),
        format!("marathon:http://u:{S}@127.0.0.1:1/microscaling-demo/consumer"),
        format!("marathon:http://127.0.0.1:1/app?token={S}"),
        format!("prometheus:http://u:{S}@127.0.0.1:1?query=count(mw_consumer_slots)"),
        format!("prometheus:http://127.0.0.1:1/prom?query=up&token={S}"),
    ] {
        let mut cmd = case(
            "scorecard",
            d,
            &[
                "watch",
                "--queue",
                &sqlite,
                "--consumers",
                &source,
                "--decided",
                &source,
            ],
        );
        cmd.args([
            "--target",
            "5",
            "--duration",
            "1s",
            "--interval",
            "200ms",
            "--out",
        ])
        .arg(d.join("sc"));
        check(
            &format!("scorecard watch --consumers {source}"),
            with_secrets(cmd),
            quick,
        );
    }

    // audit and the demo and remainder, with every credential variable set, and the audit given paths that
    // look like URLs with a password.
    let bad = format!("http://u:{S}@h/p.jsonl");
    let cmd = case(
        "audit",
        d,
        &["--producer", &bad, "--ledger", &format!("u:{S}@ledgers")],
    );
    check("audit", with_secrets(cmd), quick);
    let cmd = case(
        "demo",
        d,
        &["--duration", "1s", "--rate", "20", "--drain-timeout", "5s"],
    );
    check("demo", with_secrets(cmd), Duration::from_secs(20));
    let cmd = case("remainder", d, &["--duration", "500ms", "--threads", "1"]);
    check("remainder", with_secrets(cmd), quick);

    // Marathon: a password in the URL, a token, a user's password, an Azure key; unreachable, refused (401),
    // and a dry run that prints what it would send.
    let fake = FakeMarathon::start();
    fake.faults().require_authorization = Some("token=the-right-token".into());
    let live = fake.url();
    let with_pw = live.replacen("://", &format!("://u:{S}@"), 1);
    for bin in ["marathon-install", "marathon-uninstall"] {
        let runs: Vec<Vec<String>> = vec![
            vec!["--marathon-url".into(), format!("http://u:{S}@127.0.0.1:1")],
            vec!["--marathon-url".into(), with_pw.clone()],
            vec![
                "--marathon-url".into(),
                live.clone(),
                "--token".into(),
                S.into(),
            ],
            vec![
                "--marathon-url".into(),
                live.clone(),
                "--user".into(),
                "alice".into(),
            ],
            vec!["--marathon-url".into(), format!("{live}?token={S}")],
        ];
        for args in runs {
            let mut cmd = case(bin, d, &[]);
            cmd.args(&args).args(["--timeout", "2s"]);
            check(
                &format!("{bin} {args:?}"),
                with_secrets(cmd),
                Duration::from_secs(10),
            );
        }
    }
    for args in [
        vec![
            "--dry-run",
            "--queue",
            "azure",
            "--azure-account",
            "devstoreaccount1",
            "--azure-key",
            KEY,
        ],
        vec!["--dry-run", "--nsqd", "u:Zq7SeCrEt9x@h:4150"],
        vec![
            "--marathon-url",
            "http://127.0.0.1:1",
            "--queue",
            "azure",
            "--azure-account",
            "acct",
            "--azure-key",
            KEY,
        ],
    ] {
        let cmd = case("marathon-install", d, &args);
        check(
            &format!("marathon-install {args:?}"),
            with_secrets(cmd),
            Duration::from_secs(10),
        );
    }
}

/// `--help` shows each flag's variable, and clap would show its value too: a URL with a password or a SAS
/// signature, read from the environment, must not come back on the screen that way.
#[test]
fn help_never_shows_a_secret_read_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let queue = format!("azure://acct/q?sig={SIG_ENC}");
    let marathon = format!("http://user:{S}@127.0.0.1:1");
    for (bin, args) in [
        ("producer", &["--help"][..]),
        ("consumer", &["--help"][..]),
        ("remainder", &["--help"][..]),
        ("demo", &["--help"][..]),
        ("audit", &["--help"][..]),
        ("scorecard", &["watch", "--help"][..]),
        ("marathon-install", &["--help"][..]),
        ("marathon-uninstall", &["--help"][..]),
    ] {
        let mut cmd = case(bin, d, args);
        secret_env(&mut cmd)
            .env("QUEUE_URL", &queue)
            .env("MSS_MARATHON_API", &marathon)
            .env(
                "AZURE_STORAGE_CONNECTION_STRING",
                format!("AccountName=a;AccountKey={KEY}"),
            );
        check(
            &format!("{bin} {}", args.join(" ")),
            cmd,
            Duration::from_secs(10),
        );
    }
}
