use super::*;

#[test]
fn rates_and_amounts_say_what_was_wrong() {
    assert_eq!(parse_rate(" 2.5 "), Ok(2.5));
    assert_eq!(parse_rate("0"), Ok(0.0));
    let e = parse_rate("abc").unwrap_err();
    assert!(
        e.starts_with(r#""abc" is not a number of messages per second"#),
        "{e}"
    );
    assert_eq!(
        parse_rate("-1").unwrap_err(),
        "must be a number of messages per second, 0 or more (got -1)"
    );
    assert_eq!(parse_rate("1e7"), Ok(MAX_RATE));
    for bad in ["inf", "NaN", "1e400"] {
        let e = parse_rate(bad).unwrap_err();
        assert!(e.contains("not a finite number"), "{bad}: {e}");
    }
    assert!(
        parse_rate("2e7")
            .unwrap_err()
            .contains("the most a rate may be")
    );
    assert_eq!(parse_amount("0.25"), Ok(0.25));
    assert!(
        parse_amount("lots")
            .unwrap_err()
            .contains("is not a number")
    );
    assert_eq!(parse_amount("-0.5"), Ok(-0.5), "bounds are the caller's");
    assert!(
        parse_amount("inf")
            .unwrap_err()
            .contains("not a finite number")
    );
}

/// An error that quotes its source, as many do.
#[derive(Debug, thiserror::Error)]
#[error("cannot read x.json: {0}")]
struct Quoting(#[source] std::io::Error);

/// An error whose source is a usage error, deeper in the chain.
#[derive(Debug, thiserror::Error)]
#[error("while starting")]
struct Wrapping(#[source] UsageError);

#[test]
fn each_cause_is_said_once_and_a_usage_error_anywhere_in_the_chain_exits_2() {
    let e = Quoting(std::io::Error::from(std::io::ErrorKind::NotFound));
    let line = one_line(&e);
    assert_eq!(line.matches("not found").count(), 1, "{line}");
    let e: Box<dyn std::error::Error + Send + Sync> = Box::new(Wrapping(usage("no --target")));
    assert_eq!(one_line(e.as_ref()), "while starting: no --target");
    assert_eq!(exit::<(), _>(Err(e)), ExitCode::from(2));
    let e: Box<dyn std::error::Error + Send + Sync> =
        Box::new(Quoting(std::io::Error::other("disk on fire")));
    assert_eq!(exit::<(), _>(Err(e)), ExitCode::from(1));
}

#[test]
fn durations_parse_and_errors_say_what_is_expected() {
    assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    let e = parse_duration("ten seconds").unwrap_err();
    assert!(e.contains("expected a number with a unit"), "{e}");
    assert!(parse_duration("10").is_err(), "a bare number has no unit");
    assert_eq!(
        parse_duration("5x").unwrap_err(),
        r#"invalid duration "5x" (unknown unit "x"): expected a number with a unit, e.g. 300ms, 10s, 2m"#
    );
    assert!(parse_interval("0s").unwrap_err().contains("more than 0"));
    let e = parse_duration("-5s").unwrap_err();
    assert!(e.contains("not negative") && e.contains("unit"), "{e}");
    assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    assert!(
        parse_duration("366d")
            .unwrap_err()
            .contains("more than a year")
    );
    assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
}

#[test]
fn whole_numbers_say_their_range_for_zero_negatives_and_words() {
    let batch = whole::<usize>(1, 100);
    assert_eq!(batch("7"), Ok(7));
    assert_eq!(batch(" 100 "), Ok(100));
    assert_eq!(batch("0").unwrap_err(), "must be from 1 to 100 (got 0)");
    assert_eq!(batch("-5").unwrap_err(), "must be from 1 to 100 (got -5)");
    assert_eq!(batch("101").unwrap_err(), "must be from 1 to 100 (got 101)");
    assert!(
        batch("ten")
            .unwrap_err()
            .contains("not a whole number (expected from 1 to 100)")
    );
    let seed = whole::<u64>(0, u64::MAX);
    assert_eq!(seed("-1").unwrap_err(), "must be 0 or more (got -1)");
    assert_eq!(
        whole::<u32>(0, u32::MAX.into())("4294967296").unwrap_err(),
        "must be from 0 to 4294967295 (got 4294967296)"
    );
    let threads = whole_nonzero(64);
    assert_eq!(threads("3").map(|n| n.get()), Ok(3));
    assert_eq!(threads("0").unwrap_err(), "must be from 1 to 64 (got 0)");
}
