//! Loss and duplicate accounting across real producer and consumer processes on an Azure Storage Queue
//! served by a real Azurite: three consumers, a consumer SIGKILLed midway, a SIGTERM drain, Azurite itself
//! stopping and coming back, the original demo's variables, and bad input.
//!
//! Azurite's receive and delete slow down with the queue's depth, so producers are paced to keep the backlog
//! small, as the measurements advise.

use std::process::Command;
use std::time::Duration;

use testkit::azurite::{self, Azurite};
use testkit::{Proc, command, delivery, eventually, ledger_entries, tally, u};

const ROLES: delivery::Roles = delivery::Roles {
    producer_batch: "50",
    consumer_flags: &["--batch", "32"],
    ..delivery::AZURE
};

/// Waits for the queue to empty (leased messages included), then SIGTERMs the consumers and checks they exit 0.
fn drain_and_stop(url: &str, consumers: &mut [Proc], limit: Duration) {
    assert!(
        eventually(limit, || azurite::depth(url).total() == 0),
        "queue did not drain: {:?}",
        azurite::depth(url)
    );
    testkit::stop_gracefully(consumers);
}

#[test]
fn one_producer_three_consumers_lose_nothing() {
    let az = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let url = az.url("three", "");
    let mut consumers = ROLES.consumers(
        &url,
        dir.path(),
        3,
        &["--work", "none", "--max-in-flight", "32"],
    );
    let mut p = Proc::spawn("producer", ROLES.producer(&url, 5_000, 500));
    let mut max_backlog = 0;
    while p.running() {
        max_backlog = max_backlog.max(azurite::depth(&url).total());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(p.wait(Duration::from_secs(5)).success(), "{}", p.stderr());
    let sent = u(&p.summary().expect("producer summary"), "sent");
    assert_eq!(sent, 5_000);
    assert!(max_backlog < 500, "backlog reached {max_backlog}");
    drain_and_stop(&url, &mut consumers, Duration::from_secs(60));

    let (consumed, lost, dups, unexpected) = tally(&ledger_entries(dir.path()), sent);
    assert_eq!((consumed, lost, unexpected), (5_000, 0, 0), "dups {dups}");
    // Every ledger entry was followed by an ack: accepted (`acked`) or refused because the lease had already
    // passed to another consumer (`lease_lost`, which happens on a loaded machine), whose redelivery is the
    // duplicate the ledgers show.
    let acks_sent: u64 = consumers
        .iter()
        .map(|c| {
            let s = c.summary().unwrap();
            u(&s, "acked") + u(&s, "lease_lost")
        })
        .sum();
    assert_eq!(acks_sent, 5_000 + dups, "acks sent agree with the ledgers");
    let busy = consumers
        .iter()
        .filter(|c| u(&c.summary().unwrap(), "acked") > 0)
        .count();
    assert!(
        busy >= 2,
        "the consumers shared the work ({busy} of 3 acked anything)"
    );
}

/// An Azurite queue, as the shared scenarios drive it, with this file's batches.
fn backend<'a>(az: &Azurite, queue: &str) -> delivery::Backend<'a> {
    delivery::Backend {
        roles: ROLES,
        ..delivery::Backend::azure(az, queue)
    }
}

#[test]
fn a_consumer_killed_midway_loses_nothing_and_its_messages_return_after_the_lease() {
    let az = Azurite::start();
    // A short lease (visibility timeouts are whole seconds) and slow work, so the victim holds many; paced,
    // because Azurite slows down with depth. The work is long enough that the victim is almost never between
    // two receives when it is killed: with 20 ms it often held nothing by then (its stats line said it did a
    // moment before), nothing came back, and the test failed on a loaded machine.
    let load = delivery::KillLoad {
        count: 2_000,
        rate: 400,
        consumer_args: &[
            "--work",
            "sleep:200ms",
            "--max-in-flight",
            "32",
            "--lease",
            "2s",
        ],
        acked_before_kill: 200,
        duplicates_at_most: None,
    };
    delivery::a_consumer_killed_midway_loses_nothing(&backend(&az, "killed"), &load);
}

/// Setting the visibility to 0 makes released messages visible at once, not after the 60 s lease.
#[test]
fn sigterm_releases_held_messages_at_once() {
    let az = Azurite::start();
    delivery::sigterm_releases_what_it_cannot_finish(&backend(&az, "drain"));
}

#[test]
fn azurite_stopped_and_restarted_mid_run_costs_errors_not_messages() {
    let mut az = Azurite::start();
    let load = delivery::OutageLoad {
        consumers: 2,
        consumer_args: &["--work", "none", "--max-in-flight", "32", "--lease", "3s"],
        count: 2_000,
        rate: 250,
        outage_after: 300,
    };
    let mut run = delivery::Outage::start(&backend(&az, "crash"), &load);
    az.stop();
    std::thread::sleep(Duration::from_secs(2));
    az.restart();
    run.finish(&backend(&az, "crash"));
    assert!(
        delivery::sum(&run.consumers, "errors") > 0,
        "the consumers counted the outage"
    );
}

#[test]
fn the_original_demo_variables_and_a_connection_string_work() {
    let az = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let legacy = |mut cmd: Command| {
        azurite::clear_credentials(&mut cmd)
            .env("AZURE_STORAGE_CONNECTION_STRING", az.connection_string())
            .env("AZURE_STORAGE_QUEUE_NAME", "legacy-queue");
        cmd
    };
    let mut p = command("producer");
    p.args(["--count", "20", "--rate", "0"]);
    let mut p = Proc::spawn("producer", legacy(p));
    assert!(p.wait(Duration::from_secs(20)).success(), "{}", p.stderr());
    let mut c = command("consumer");
    c.args(["--count", "20", "--ledger"])
        .arg(dir.path().join("c.ledger"));
    let mut c = Proc::spawn("consumer", legacy(c));
    assert!(c.wait(Duration::from_secs(30)).success(), "{}", c.stderr());
    assert_eq!(tally(&ledger_entries(dir.path()), 20), (20, 0, 0, 0));
    assert_eq!(azurite::depth(&az.url("legacy-queue", "")).total(), 0);
}

#[test]
fn bad_input_is_a_clear_error() {
    let az = Azurite::start();
    let run = |mut cmd: Command| {
        let mut p = Proc::spawn("producer", {
            cmd.args(["--count", "1"]);
            cmd
        });
        let status = p.wait(Duration::from_secs(20));
        (status, p.stderr())
    };
    // A queue name that breaks Azure's rules: a usage error before anything starts.
    let mut cmd = command("producer");
    cmd.args(["--queue", &az.url("Bad_Name", "")]);
    azurite::with_key(&mut cmd);
    let (status, err) = run(cmd);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("breaks Azure's rules"), "{err}");

    // A malformed connection string: named, never quoted (it may hold a key).
    let mut cmd = command("producer");
    azurite::clear_credentials(&mut cmd).env(
        "AZURE_STORAGE_CONNECTION_STRING",
        "AccountName=devstoreaccount1;AccountKey",
    );
    let (status, err) = run(cmd);
    assert!(!status.success());
    assert!(
        err.contains("AZURE_STORAGE_CONNECTION_STRING is malformed"),
        "{err}"
    );

    // auth=key without a key.
    let mut cmd = command("producer");
    cmd.args(["--queue", &az.url("nokey", "auth=key")]);
    azurite::clear_credentials(&mut cmd);
    let (status, err) = run(cmd);
    assert!(!status.success());
    assert!(err.contains("set AZURE_STORAGE_ACCOUNT_KEY"), "{err}");

    // A wrong key: the account and the 403, no key, no signature.
    let wrong = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ==";
    let mut cmd = command("producer");
    cmd.args(["--queue", &az.url("denied", "")]);
    azurite::clear_credentials(&mut cmd).env("AZURE_STORAGE_ACCOUNT_KEY", wrong);
    let (status, err) = run(cmd);
    assert!(!status.success());
    assert!(
        err.contains("devstoreaccount1") && err.contains("403"),
        "{err}"
    );
    assert!(
        !err.contains(wrong) && !err.contains(azurite::KEY) && !err.contains("sig="),
        "{err}"
    );
}

#[test]
fn secrets_in_a_rejected_queue_url_are_never_echoed() {
    // Each URL is refused before anything is opened, and the refusal names the URL: with its secrets masked.
    let key = "U0VDUkVUS0VZU0VDUkVUS0VZU0VDUkVU";
    let endpoint = "http://127.0.0.1:9/acct";
    for (url, why) in [
        (
            format!("azure://acct/queue1?endpoint={endpoint}&sig={key}&AccountKey={key}"),
            "never in the queue URL",
        ),
        (
            format!("azure://acct/queue1?endpoint={endpoint}%3Fsv%3D1%26sig%3D{key}"),
            "",
        ),
        (
            format!("azure://acct/queue1?endpoint=http://user:{key}@127.0.0.1:9/acct"),
            "must not carry a user name or password",
        ),
        (
            format!("azure://acct/Q_1?endpoint={endpoint}&sig={key}"),
            "breaks Azure's rules",
        ),
    ] {
        for role in ["producer", "consumer"] {
            let mut cmd = command(role);
            cmd.args(["--queue", &url]);
            azurite::clear_credentials(&mut cmd);
            let mut p = Proc::spawn(role, cmd);
            let status = p.wait(Duration::from_secs(20));
            let err = p.stderr();
            assert!(!status.success(), "{role} {url}: {err}");
            assert!(!err.contains(key), "{role} echoed the secret: {err}");
            assert!(err.contains(why), "{role} {url}: {err}");
        }
    }
}
