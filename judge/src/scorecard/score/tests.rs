use super::*;

/// The scorecard as its table prints it.
fn table(c: &Scorecard) -> String {
    let mut out = Vec::new();
    crate::scorecard::table::write(&mut out, c).unwrap();
    String::from_utf8(out).unwrap()
}

/// A series from (t, depth, consumers) triples, target 10, one change at 0 s.
fn series(points: &[(f64, u64, usize)]) -> Series {
    Series {
        title: None,
        policy: None,
        settings: None,
        target: 10,
        band_low: 7,
        shape: None,
        changes_s: vec![0.0],
        change_directions: Vec::new(),
        manual: Vec::new(),
        consumed: 0,
        lost: None,
        work: None,
        consumer_slots: None,
        started_us: None,
        samples: points
            .iter()
            .map(|&(t, d, c)| Sample {
                t,
                depth: Some(d),
                consumers: c,
                remainders: 0,
                produce_rate: 0.0,
                busy_s: None,
                decided: None,
            })
            .collect(),
    }
}

#[test]
fn scale_out_and_back_in_band_are_timed_from_the_change() {
    let mut s = series(&[
        (0.0, 0, 0),
        (1.0, 50, 0),
        (2.0, 40, 1),
        (3.0, 20, 2),
        (4.0, 5, 2),
        (5.0, 0, 1),
    ]);
    s.changes_s = vec![0.5];
    let c = score(&s);
    assert_eq!(
        c.reactions,
        vec![Reaction {
            change_s: 0.5,
            direction: Direction::Up,
            scale_out_after_s: Some(1.5),
            scale_in_after_s: None,
            settled_after_s: None,
            left_band: true,
            back_in_band_after_s: Some(3.5),
        }]
    );
    assert_eq!(c.worst_scale_out_s, Some(1.5));
    assert_eq!(c.worst_back_in_band_s, Some(3.5));
    assert_eq!(c.never_back_in_band, 0);
}

#[test]
fn without_a_load_change_the_reaction_figures_say_so() {
    let mut s = series(&[(0.0, 0, 1), (1.0, 5, 1)]);
    s.changes_s = vec![];
    let c = score(&s);
    assert!(c.reactions.is_empty());
    let table = table(&c);
    assert_eq!(
        table
            .matches("— (the load never changed: nothing to react to)")
            .count(),
        3,
        "{table}"
    );
}

#[test]
fn a_change_never_back_in_band_is_counted_not_hidden_behind_the_others() {
    // Up at 0.5 s: out of band at 1 s, back at 3 s. Up again at 4 s: out of band at 5 s, never back.
    let mut s = series(&[
        (0.0, 0, 1),
        (1.0, 50, 1),
        (2.0, 30, 2),
        (3.0, 5, 2),
        (5.0, 60, 2),
        (6.0, 80, 2),
    ]);
    s.changes_s = vec![0.5, 4.0];
    let c = score(&s);
    assert_eq!(c.reactions[0].back_in_band_after_s, Some(2.5));
    assert!(c.reactions[1].left_band);
    assert_eq!(c.reactions[1].back_in_band_after_s, None);
    assert_eq!(c.worst_back_in_band_s, Some(2.5));
    assert_eq!(c.never_back_in_band, 1);
    let table = table(&c);
    assert!(
        table.contains("worst time back in band    never: 1 load change(s) left the band and were not back by the next (the others: 2.5s)"),
        "{table}"
    );
    assert!(
        table.contains("scale-out after   none   back in band after not back by the next change"),
        "{table}"
    );
    assert!(table.contains("back in band after     2.5s"), "{table}");
}

#[test]
fn a_decrease_is_graded_by_its_scale_in_never_by_a_scale_out() {
    // The step scenario's shape: up at 0 s, down at 10 s. After the step down a consumer is added at 10.4 s
    // (the backlog of the high load), then two removed at 12 s and 14 s, and the count holds.
    let mut s = series(&[
        (0.0, 0, 1),
        (2.0, 30, 3),
        (10.0, 30, 3),
        (10.4, 30, 4),
        (12.0, 5, 3),
        (14.0, 0, 2),
        (16.0, 0, 2),
    ]);
    s.changes_s = vec![0.0, 10.0];
    s.change_directions = vec![Direction::Up, Direction::Down];
    let c = score(&s);
    let down = &c.reactions[1];
    assert_eq!(down.direction, Direction::Down);
    assert_eq!(down.scale_out_after_s, None, "{down:?}");
    assert_eq!(down.scale_in_after_s, Some(2.0));
    assert_eq!(down.settled_after_s, Some(4.0));
    // The worst scale-out is the increase's (2 s), not the 0.4 s after the decrease.
    assert_eq!(c.reactions[0].scale_out_after_s, Some(2.0));
    assert_eq!(c.worst_scale_out_s, Some(2.0));
    assert_eq!(c.worst_scale_in_s, Some(2.0));
    // A decrease followed by a scale-out that is never undone has not settled.
    s.samples[6].consumers = 5;
    assert_eq!(score(&s).reactions[1].settled_after_s, None);
}

#[test]
fn manual_changes_are_not_credited_to_the_engine() {
    // A key pressed at 1.5 s adds the consumer seen at 2 s; the engine itself adds one at 3 s.
    let mut s = series(&[
        (0.0, 50, 1),
        (1.0, 50, 1),
        (2.0, 50, 2),
        (3.0, 40, 3),
        (4.0, 0, 3),
    ]);
    s.manual = vec![ManualEvent {
        t: 1.5,
        consumers: 2,
        source: "key +".into(),
    }];
    let c = score(&s);
    assert_eq!(c.reactions[0].scale_out_after_s, Some(3.0));
    assert_eq!(c.manual_changes, 1);
    // Without the record, the key's consumer is graded as the engine's answer.
    s.manual.clear();
    assert_eq!(score(&s).reactions[0].scale_out_after_s, Some(2.0));
}

#[test]
fn reactions_look_only_until_the_next_change() {
    let mut s = series(&[
        (0.0, 0, 1),
        (1.0, 20, 1),
        (2.0, 20, 1),
        (3.0, 5, 2),
        (4.0, 0, 2),
    ]);
    s.changes_s = vec![0.0, 2.5];
    let c = score(&s);
    // Before 2.5 s: out of band, no scale-out, not back.
    assert_eq!(c.reactions[0].scale_out_after_s, None);
    assert!(c.reactions[0].left_band);
    assert_eq!(c.reactions[0].back_in_band_after_s, None);
    // After 2.5 s: scale-out at 3 s, and the depth never above the target again.
    assert_eq!(c.reactions[1].scale_out_after_s, Some(0.5));
    assert!(!c.reactions[1].left_band);
    assert_eq!(c.reactions[1].back_in_band_after_s, None);
}

#[test]
fn overshoot_integral_and_band_share_hold_each_sample_until_the_next() {
    // Target 10. Depth 10 for 1 s, 30 for 2 s, 4 for 1 s; the last sample only closes the run.
    let c = score(&series(&[
        (0.0, 10, 1),
        (1.0, 30, 1),
        (3.0, 4, 1),
        (4.0, 1000, 1),
    ]));
    assert_eq!(c.duration_s, 4.0);
    // The closing sample's depth counts for the peak (it was seen) but not the integral (it lasts 0 s).
    assert_eq!(c.peak_overshoot, 990);
    assert_eq!(c.depth_error_integral, 0.0 + 20.0 * 2.0 + 6.0 * 1.0);
    assert_eq!(c.in_band_share, 2.0 / 4.0);
}

#[test]
fn unreadable_depths_count_for_nothing() {
    let mut s = series(&[(0.0, 20, 1), (1.0, 0, 1), (2.0, 0, 1)]);
    s.samples[1].depth = None;
    let c = score(&s);
    assert_eq!(c.depth_error_integral, 10.0);
    assert_eq!(c.in_band_share, 0.0);
}

#[test]
fn flaps_count_changes_of_direction_per_minute() {
    // Out, out, in, out, hold, in: three changes of direction in 30 s.
    let c = score(&series(&[
        (0.0, 0, 1),
        (5.0, 0, 2),
        (10.0, 0, 3),
        (15.0, 0, 2),
        (20.0, 0, 3),
        (25.0, 0, 3),
        (30.0, 0, 2),
    ]));
    assert_eq!(c.direction_changes, 3);
    assert_eq!(c.flaps_per_min, 6.0);
    assert_eq!(c.max_consumers, 3);
    // A plain burst answer (out, then in) is one change.
    let c = score(&series(&[
        (0.0, 0, 0),
        (1.0, 0, 2),
        (2.0, 0, 1),
        (3.0, 0, 0),
    ]));
    assert_eq!(c.direction_changes, 1);
}

#[test]
fn cost_and_utilisation_come_from_consumer_seconds() {
    // 2 consumers for 3 s, then 4 for 2 s: 14 consumer-seconds; 7,000 messages; 7 busy slot-seconds.
    let mut s = series(&[(0.0, 0, 2), (3.0, 0, 4), (5.0, 0, 0)]);
    s.consumed = 7_000;
    s.lost = Some(0);
    s.samples[2].busy_s = Some(7.0);
    let c = score(&s);
    assert_eq!(c.consumer_seconds, 14.0);
    assert_eq!(c.consumer_seconds_per_1000, Some(2.0));
    assert_eq!(c.utilisation, Some(0.5));
    assert_eq!(c.lost, Some(0));
    // Nothing consumed, no busy figures: no ratio rather than a division by zero.
    let c = score(&series(&[(0.0, 0, 2), (3.0, 0, 4)]));
    assert_eq!(c.consumer_seconds_per_1000, None);
    assert_eq!(c.utilisation, None);
}

#[test]
fn an_empty_series_scores_zero_without_panicking() {
    let c = score(&series(&[]));
    assert_eq!(c.duration_s, 0.0);
    assert_eq!(c.peak_overshoot, 0);
    assert_eq!(c.flaps_per_min, 0.0);
    assert_eq!(c.reactions[0].scale_out_after_s, None);
}

#[test]
fn a_series_that_names_its_load_and_work_is_graded_against_its_demand() {
    // const:100 × sleep:20ms over 1 slot = 2 busy slots: a demand of 2 consumers throughout. Supply is 1
    // over [0, 10) and 3 over [10, 20): one missing for half the run, one idle for the other half.
    let mut s = series(&[(0.0, 0, 1), (10.0, 0, 3), (20.0, 0, 3)]);
    s.shape = Some("const:100".into());
    s.work = Some("sleep:20ms".into());
    s.consumer_slots = Some(1);
    let e = score(&s)
        .elasticity
        .expect("shape, work and slots are known");
    assert_eq!(e.duration_s, 20.0);
    assert_eq!((e.accuracy_under, e.accuracy_over), (0.5, 0.5));
    assert_eq!((e.timeshare_under, e.timeshare_over), (0.5, 0.5));
    // θ: 1 of 2 consumers missing for 10 of 20 s = 25 % of demand; likewise over.
    assert_eq!((e.theta_under_pct, e.theta_over_pct), (25.0, 25.0));
    // Without the work model there is no demand, so no figures rather than wrong ones.
    s.work = None;
    assert_eq!(score(&s).elasticity, None);
}

#[test]
fn a_series_without_directions_takes_them_from_its_shape() {
    // step:40,200@10s,40@40s changes at 10 s (up) and 40 s (down); a file written before directions
    // were recorded must not grade the step down by a scale-out.
    let mut s = series(&[
        (0.0, 0, 1),
        (10.0, 100, 1),
        (11.0, 100, 2),
        (40.0, 0, 2),
        (40.4, 0, 3),
    ]);
    s.shape = Some("step:40,200@10s,40@40s".into());
    s.changes_s = vec![10.0, 40.0];
    assert_eq!(directions(&s), vec![Direction::Up, Direction::Down]);
    let card = score(&s);
    assert_eq!(card.reactions[1].direction, Direction::Down);
    assert_eq!(card.reactions[1].scale_out_after_s, None);
    // Changes that are not the shape's: no guess.
    s.changes_s = vec![5.0];
    assert!(directions(&s).is_empty());
}

#[test]
fn the_engines_decision_is_graded_from_its_first_reading_holding_the_last() {
    // Running: 1, 1, 2, 3, 3. Decided: unread, 3, unread (a failed poll), 3, 1.
    let mut s = series(&[
        (0.0, 0, 1),
        (1.0, 0, 1),
        (2.0, 0, 2),
        (3.0, 0, 3),
        (4.0, 0, 3),
    ]);
    for (x, d) in s
        .samples
        .iter_mut()
        .zip([None, Some(3), None, Some(3), Some(1)])
    {
        x.decided = d;
    }
    let d = s.as_decided().expect("recorded");
    let counts: Vec<(f64, usize)> = d.samples.iter().map(|x| (x.t, x.consumers)).collect();
    assert_eq!(counts, [(1.0, 3), (2.0, 3), (3.0, 3), (4.0, 1)]);
    let card = score(&s);
    let decided = card.decided.as_deref().expect("graded");
    // 3 replicas for 3 s; the run itself had 1·2 + 2 + 3 = 7 consumer-seconds.
    assert_eq!(decided.consumer_seconds, 9.0);
    assert_eq!(card.consumer_seconds, 7.0);
    assert_eq!((decided.max_consumers, decided.direction_changes), (3, 0));
    assert!(decided.decided.is_none());
    // Nothing recorded: no decision graded.
    s.samples.iter_mut().for_each(|x| x.decided = None);
    assert_eq!(score(&s).decided, None);
}
