use super::*;

#[test]
fn retry_after_reads_seconds_and_dates() {
    let mut headers = HeaderMap::new();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
    let soon = std::time::SystemTime::now() + Duration::from_secs(300);
    let date = humantime::format_rfc3339_seconds(soon).to_string();
    // 2026-12-08T01:02:03Z → Tue, 08 Dec 2026 01:02:03 GMT (the weekday is not checked).
    let (day, time) = date.trim_end_matches('Z').split_once('T').unwrap();
    let [year, month, dom] = day.split('-').collect::<Vec<_>>()[..] else {
        panic!("{day}")
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months[month.parse::<usize>().unwrap() - 1];
    let http_date = format!("Tue, {dom} {month} {year} {time} GMT");
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::try_from(http_date).unwrap(),
    );
    let wait = retry_after(&headers).unwrap();
    assert!(
        wait > Duration::from_secs(290) && wait <= Duration::from_secs(300),
        "{wait:?}"
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
    assert_eq!(retry_after(&headers), None);
}
