use super::*;

fn t(s: &str) -> DateTime<Utc> {
    parse_sf_datetime(s).unwrap()
}

fn policy(margin: i64, max_len: i64) -> WindowPolicy {
    WindowPolicy {
        margin: Duration::seconds(margin),
        max_len: Duration::seconds(max_len),
    }
}

#[test]
fn ends_at_now_minus_margin() {
    let w = next_window(
        t("2024-06-25T10:00:00Z"),
        t("2024-06-25T10:10:07.900Z"),
        None,
        policy(5, 3600),
    )
    .unwrap();
    assert_eq!(w.start, t("2024-06-25T10:00:00Z"));
    assert_eq!(w.end, t("2024-06-25T10:10:02Z"));
}

#[test]
fn never_passes_latest_date_covered() {
    let w = next_window(
        t("2024-06-25T10:00:00Z"),
        t("2024-06-25T10:10:00Z"),
        Some(t("2024-06-25T10:04:00.000+0000")),
        policy(5, 3600),
    )
    .unwrap();
    assert_eq!(w.end, t("2024-06-25T10:04:00Z"));
}

#[test]
fn nothing_to_read_when_latest_covered_is_behind_start() {
    // A transaction open since before our high-water mark holds the window shut.
    let w = next_window(
        t("2024-06-25T10:05:00Z"),
        t("2024-06-25T10:10:00Z"),
        Some(t("2024-06-25T10:04:00Z")),
        policy(5, 3600),
    );
    assert_eq!(w, None);
    let w = next_window(
        t("2024-06-25T10:05:00Z"),
        t("2024-06-25T10:10:00Z"),
        Some(t("2024-06-25T10:05:00Z")),
        policy(5, 3600),
    );
    assert_eq!(w, None, "an empty window is no window");
}

#[test]
fn nothing_to_read_inside_the_margin() {
    let start = t("2024-06-25T10:00:00Z");
    assert_eq!(
        next_window(start, t("2024-06-25T10:00:05.999Z"), None, policy(5, 60)),
        None
    );
    let w = next_window(start, t("2024-06-25T10:00:06Z"), None, policy(5, 60)).unwrap();
    assert_eq!(w.len_secs(), 1);
    // A clock behind Salesforce's must not produce an inverted window.
    assert_eq!(
        next_window(start, t("2024-06-25T09:00:00Z"), None, policy(5, 60)),
        None
    );
}

#[test]
fn caps_the_window_length() {
    let w = next_window(
        t("2024-06-25T00:00:00Z"),
        t("2024-06-26T00:00:00Z"),
        Some(t("2024-06-25T23:00:00Z")),
        policy(5, 3600),
    )
    .unwrap();
    assert_eq!(w.end, t("2024-06-25T01:00:00Z"));
}

#[test]
fn fractional_high_water_mark_is_floored() {
    let w = next_window(
        t("2024-06-25T10:00:00.700Z"),
        t("2024-06-25T10:01:00Z"),
        None,
        policy(0, 3600),
    )
    .unwrap();
    assert_eq!(w.start, t("2024-06-25T10:00:00Z"));
}

#[test]
fn split_covers_exactly_and_contiguously() {
    let w = Window::new(t("2024-06-25T10:00:00Z"), t("2024-06-25T10:00:10Z")).unwrap();
    let parts = w.split(3);
    assert_eq!(
        parts.iter().map(Window::len_secs).collect::<Vec<_>>(),
        vec![4, 3, 3]
    );
    assert_eq!(parts[0].start, w.start);
    assert_eq!(parts[2].end, w.end);
    for pair in parts.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
    }
    assert_eq!(w.split(1), vec![w]);
    assert_eq!(w.split(0), vec![w]);
    let short = w.split(25);
    assert_eq!(short.len(), 10, "never below one second per batch");
    assert!(short.iter().all(|p| p.len_secs() == 1));
}

#[test]
fn halving() {
    let w = Window::new(t("2024-06-25T10:00:00Z"), t("2024-06-25T10:00:05Z")).unwrap();
    let (a, b) = w.halve().unwrap();
    assert_eq!((a.len_secs(), b.len_secs()), (2, 3));
    assert_eq!(a.end, b.start);
    let one = Window::new(t("2024-06-25T10:00:00Z"), t("2024-06-25T10:00:01Z")).unwrap();
    assert_eq!(one.halve(), None);
}

#[test]
fn soql_literals_are_whole_second_utc() {
    assert_eq!(
        soql_datetime(t("2024-06-25T10:00:00.999Z")),
        "2024-06-25T10:00:00Z"
    );
    assert_eq!(
        soql_datetime(t("2024-06-25T12:00:00+02:00")),
        "2024-06-25T10:00:00Z"
    );
    let w = Window::new(t("2024-06-25T10:00:00Z"), t("2024-06-25T10:10:00Z")).unwrap();
    assert_eq!(
        w.soql_condition(),
        "SystemModstamp >= 2024-06-25T10:00:00Z AND SystemModstamp < 2024-06-25T10:10:00Z"
    );
}

#[test]
fn contains_at_second_precision() {
    let w = Window::new(t("2024-06-25T10:00:00Z"), t("2024-06-25T10:00:10Z")).unwrap();
    assert!(w.contains(t("2024-06-25T10:00:00Z")));
    assert!(w.contains(t("2024-06-25T10:00:09.999Z")));
    assert!(!w.contains(t("2024-06-25T10:00:10Z")));
    assert!(!w.contains(t("2024-06-25T09:59:59.999Z")));
}

#[test]
fn window_new_rejects_empty_and_inverted() {
    let a = t("2024-06-25T10:00:00Z");
    assert_eq!(Window::new(a, a), None);
    assert_eq!(Window::new(a, t("2024-06-25T10:00:00.500Z")), None);
    assert_eq!(Window::new(t("2024-06-25T10:00:01Z"), a), None);
}

#[test]
fn parses_salesforce_datetimes() {
    let want = t("2013-05-08T21:20:00Z");
    assert_eq!(
        parse_sf_datetime("2013-05-08T21:20:00.000+0000"),
        Some(want)
    );
    assert_eq!(
        parse_sf_datetime("2013-05-08T21:20:00.000+00:00"),
        Some(want)
    );
    assert_eq!(parse_sf_datetime("2013-05-08T21:20:00"), Some(want));
    assert_eq!(parse_sf_datetime("yesterday"), None);
}

#[test]
fn windows_serialize_as_rfc3339() {
    let w = Window::new(t("2024-06-25T10:00:00Z"), t("2024-06-25T10:00:10Z")).unwrap();
    let j = serde_json::to_string(&w).unwrap();
    assert_eq!(
        j,
        r#"{"start":"2024-06-25T10:00:00Z","end":"2024-06-25T10:00:10Z"}"#
    );
    assert_eq!(serde_json::from_str::<Window>(&j).unwrap(), w);
}
