//! Tests of the access log: the lines' shape in both formats, escaping, the writer's
//! whole-line writes, and that a stuck writer costs the request path nothing but lines.

use super::*;

/// Every write the writer made, in order.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
    }
}

fn entry<'a>(path: &'a str, request_id: &'a [u8]) -> Entry<'a> {
    Entry {
        method: "GET",
        path,
        status: 200,
        route: "api",
        micros: 1234,
        request_id,
    }
}

/// 2026-12-03T16:09:05.123456Z
fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(1_796_314_145_123_456)
}

#[test]
fn a_text_line_reads_like_the_tracing_formatter() {
    let mut buf = Vec::new();
    format_line(&mut buf, LogFormat::Text, at(), &entry("/api/x", b"req-1"));
    assert_eq!(
        String::from_utf8(buf).unwrap(),
        "2026-12-03T16:09:05.123456Z  INFO portcullis::access: request method=GET \
         path=\"/api/x\" status=200 route=\"api\" micros=1234 request_id=\"req-1\"\n"
    );
}

#[test]
fn a_json_line_is_one_valid_object_whatever_the_client_sent() {
    let mut buf = Vec::new();
    let path = "/a\"b\\c\nd\u{7f}";
    format_line(&mut buf, LogFormat::Json, at(), &entry(path, b"id\xff\x01"));
    assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
    assert!(buf.ends_with(b"\n"));
    let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(v["timestamp"], "2026-12-03T16:09:05.123456Z");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["target"], "portcullis::access");
    let f = &v["fields"];
    assert_eq!(f["message"], "request");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["path"], path);
    assert_eq!(f["status"], 200);
    assert_eq!(f["route"], "api");
    assert_eq!(f["micros"], 1234);
    // Bytes outside ASCII are written as the code point of the same number.
    assert_eq!(f["request_id"], "id\u{ff}\u{1}");
    // The text line escapes the same way: a newline in the path cannot start a new line.
    let mut text = Vec::new();
    format_line(&mut text, LogFormat::Text, at(), &entry(path, b"x"));
    assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 1);
    assert!(
        String::from_utf8(text)
            .unwrap()
            .contains(r#"path="/a\"b\\c\u000ad\u007f""#)
    );
}

#[test]
fn dates_agree_with_chrono() {
    use chrono::{Datelike as _, TimeZone as _};
    for days in (0..200_000u64)
        .step_by(7)
        .chain([11_016, 11_017, 11_077, 20_515])
    {
        let day = chrono::Utc
            .timestamp_opt(i64::try_from(days * 86_400).unwrap(), 0)
            .unwrap();
        let expected = (
            u64::try_from(day.year()).unwrap(),
            u64::from(day.month()),
            u64::from(day.day()),
        );
        assert_eq!(civil_from_days(days), expected, "day {days}");
    }
}

#[test]
fn lines_from_many_threads_are_written_whole_and_none_is_lost() {
    let sink = Sink::default();
    let log = AccessLog::to_writer(LogFormat::Text, Box::new(sink.clone())).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..5000 {
                    let path = format!("/t{t}/{i}");
                    log.record(&entry(&path, b"r"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    log.flush();
    let writes = sink.0.lock().unwrap().clone();
    assert!(
        writes
            .iter()
            .all(|w| w.len() <= WRITE_CHUNK && w.ends_with(b"\n"))
    );
    // Buffered: far fewer writes than lines.
    assert!(writes.len() < 20_000 / 10, "{} writes", writes.len());
    let text = sink.text();
    let mut seen: Vec<&str> = text
        .lines()
        .map(|l| {
            l.split("path=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(seen.len(), 20_000);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 20_000);
    assert_eq!(log.dropped(), 0);
}

#[test]
fn a_quiet_log_is_written_within_the_flush_interval() {
    let sink = Sink::default();
    let log = AccessLog::to_writer(LogFormat::Json, Box::new(sink.clone())).unwrap();
    log.record(&entry("/one", b"r"));
    let started = std::time::Instant::now();
    while sink.text().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(2), "never written");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(sink.text().contains("\"path\":\"/one\""));
    // Dropping the last handle writes what is left and stops the writer.
    log.record(&entry("/two", b"r"));
    drop(log);
    assert!(sink.text().contains("\"path\":\"/two\""));
}

/// A writer that blocks until released, like a full pipe nobody reads.
struct Stuck(Arc<(Mutex<bool>, Condvar)>, Sink);

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (released, cv) = &*self.0;
        let guard = released.lock().unwrap();
        drop(cv.wait_while(guard, |r| !*r).unwrap());
        self.1.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stuck_writer_drops_lines_instead_of_blocking_requests() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let sink = Sink::default();
    let log =
        AccessLog::to_writer(LogFormat::Text, Box::new(Stuck(gate.clone(), sink.clone()))).unwrap();
    let line_len = {
        let mut b = Vec::new();
        format_line(&mut b, LogFormat::Text, at(), &entry("/p", b"r"));
        b.len()
    };
    // Far more than every buffer can hold, from one thread: each record returns at once.
    let lines = 3 * MAX_BUFFERED / line_len;
    let started = std::time::Instant::now();
    for _ in 0..lines {
        log.record(&entry("/p", b"r"));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(log.dropped() > 0);
    let kept = lines as u64 - log.dropped();
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    drop(log);
    let text = sink.text();
    assert_eq!(text.lines().count() as u64, kept);
    assert!(text.lines().all(|l| l.ends_with("request_id=\"r\"")));
}

#[test]
fn numbers_are_padded_to_their_width_and_never_cut() {
    for (n, width, text) in [
        (0, 1, "0"),
        (7, 2, "07"),
        (42, 6, "000042"),
        (123_456, 2, "123456"),
        (u64::MAX, 1, "18446744073709551615"),
    ] {
        let mut buf = Vec::new();
        number(&mut buf, n, width);
        assert_eq!(buf, text.as_bytes(), "{n} to {width}");
    }
}
