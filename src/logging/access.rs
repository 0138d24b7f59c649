//! The access log: one line per request, written off the request path. A request formats
//! its line straight into a buffer its thread shares with few others (no `String`, no
//! `tracing` event, no system call); a writer thread swaps the buffers out every
//! `FLUSH_EVERY`, or as soon as one holds `FLUSH_AT` bytes, and writes them to stderr. The
//! request never waits on the terminal, a pipe or a log collector: when the writer cannot
//! keep up and a buffer holds `MAX_BUFFERED` bytes, lines are dropped and counted, and the
//! writer says how many.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;

/// How often the writer empties the buffers.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A buffer this full wakes the writer at once.
const FLUSH_AT: usize = 32 * 1024;
/// A buffer this full takes no more lines until the writer has emptied it.
const MAX_BUFFERED: usize = 1024 * 1024;
/// The writer writes whole lines, at most this much at a time (one pipe write of up to
/// `PIPE_BUF` bytes is never interleaved with another process's or thread's).
const WRITE_CHUNK: usize = 4096;

/// What one access-log line says.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request path as received (never the query).
    pub path: &'a str,
    /// The response status.
    pub status: u16,
    /// The route name, or `(account)`, `(unmatched)`, `(rejected)`.
    pub route: &'a str,
    /// Time from the request head to the response head.
    pub micros: u64,
    /// The `X-Request-Id` sent back.
    pub request_id: &'a [u8],
}

/// One buffer, on its own cache lines so that threads appending to neighbours do not
/// slow each other down.
#[repr(align(128))]
struct Shard(Mutex<Vec<u8>>);

struct Shared {
    format: LogFormat,
    shards: Box<[Shard]>,
    dropped: AtomicU64,
    /// Set when a buffer reaches `FLUSH_AT`, or to stop; the writer waits on `wake`.
    signal: Mutex<Signal>,
    wake: Condvar,
    /// Notified when the writer finishes a round.
    done: Condvar,
}

#[derive(Default)]
struct Signal {
    flush: bool,
    stop: bool,
    /// Rounds the writer has finished; `flush` waits for the next one.
    rounds: u64,
}

/// The access log's handle: clone it freely; the writer stops, after writing everything
/// buffered, when the last clone is dropped.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
    _writer: Arc<WriterGuard>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

/// Stops the writer thread and waits for it when dropped.
struct WriterGuard {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if let Ok(mut signal) = self.shared.signal.lock() {
            signal.stop = true;
        }
        self.shared.wake.notify_one();
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

thread_local! {
    /// Which buffer this thread appends to: threads are dealt out round-robin.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

impl AccessLog {
    /// An access log in `format` on the process's stderr.
    pub fn stderr(format: LogFormat) -> std::io::Result<AccessLog> {
        AccessLog::to_writer(format, Box::new(std::io::stderr()))
    }

    /// An access log in `format` written to `out` by its own thread.
    pub fn to_writer(format: LogFormat, out: Box<dyn Write + Send>) -> std::io::Result<AccessLog> {
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        let shards = (threads * 2).next_power_of_two().max(4);
        let shared = Arc::new(Shared {
            format,
            shards: (0..shards)
                .map(|_| Shard(Mutex::new(Vec::with_capacity(FLUSH_AT * 2))))
                .collect(),
            dropped: AtomicU64::new(0),
            signal: Mutex::new(Signal::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("portcullis-access-log".into())
                .spawn(move || write_loop(&shared, out))?
        };
        Ok(AccessLog {
            _writer: Arc::new(WriterGuard {
                shared: shared.clone(),
                thread: Mutex::new(Some(writer)),
            }),
            shared,
        })
    }

    /// Appends `entry`'s line to this thread's buffer. Takes an uncontended lock and
    /// allocates only while a buffer grows past its starting size.
    pub fn record(&self, entry: &Entry<'_>) {
        let shards = &self.shared.shards;
        let shard = &shards[SHARD.with(|s| *s) & (shards.len() - 1)];
        let Ok(mut buf) = shard.0.lock() else { return };
        if buf.len() >= MAX_BUFFERED {
            drop(buf);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = buf.len();
        format_line(&mut buf, self.shared.format, SystemTime::now(), entry);
        let crossed = before < FLUSH_AT && buf.len() >= FLUSH_AT;
        drop(buf);
        if crossed {
            if let Ok(mut signal) = self.shared.signal.lock() {
                signal.flush = true;
            }
            self.shared.wake.notify_one();
        }
    }

    /// Waits (at most a second) until everything recorded before the call is written: at
    /// shutdown, so the last requests' lines are not lost.
    pub fn flush(&self) {
        let Ok(mut signal) = self.shared.signal.lock() else {
            return;
        };
        // The round in progress may have swapped its buffers before our lines arrived:
        // wait for the one after it.
        let until = signal.rounds + 2;
        signal.flush = true;
        self.shared.wake.notify_one();
        let _ = self
            .shared
            .done
            .wait_timeout_while(signal, Duration::from_secs(1), |s| s.rounds < until);
    }

    /// Lines dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

fn write_loop(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut spare: Vec<u8> = Vec::with_capacity(FLUSH_AT * 2);
    let mut reported = 0;
    loop {
        let stop = match shared.signal.lock() {
            Ok(signal) => {
                let (mut signal, _) = shared
                    .wake
                    .wait_timeout_while(signal, FLUSH_EVERY, |s| !s.flush && !s.stop)
                    .unwrap_or_else(|e| e.into_inner());
                signal.flush = false;
                signal.stop
            }
            Err(_) => true,
        };
        for shard in &shared.shards {
            if let Ok(mut buf) = shard.0.lock() {
                if buf.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *buf, &mut spare);
            }
            write_lines(&mut *out, &spare);
            spare.clear();
        }
        let _ = out.flush();
        if let Ok(mut signal) = shared.signal.lock() {
            signal.rounds += 1;
        }
        shared.done.notify_all();
        let dropped = shared.dropped.load(Ordering::Relaxed);
        if dropped != reported {
            tracing::warn!(
                lines = dropped - reported,
                "the access log could not keep up and dropped lines"
            );
            reported = dropped;
        }
        // `stop` was read before this round began, so the round has written everything
        // recorded before the last handle went away.
        if stop {
            return;
        }
    }
}

/// Writes `buf` (whole lines) in pieces of at most `WRITE_CHUNK` bytes cut at line ends.
fn write_lines(out: &mut dyn Write, mut buf: &[u8]) {
    while !buf.is_empty() {
        let cut = if buf.len() <= WRITE_CHUNK {
            buf.len()
        } else {
            buf[..WRITE_CHUNK]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(buf.len().min(WRITE_CHUNK), |i| i + 1)
        };
        if out.write_all(&buf[..cut]).is_err() {
            return;
        }
        buf = &buf[cut..];
    }
}

/// The fixed bytes around each field of a line, in one format.
struct Shape {
    before_time: &'static [u8],
    /// Through the method's opening.
    after_time: &'static [u8],
    after_method: &'static [u8],
    after_path: &'static [u8],
    after_status: &'static [u8],
    after_route: &'static [u8],
    after_micros: &'static [u8],
    end: &'static [u8],
}

/// As `tracing`'s text formatter writes an event.
const TEXT: Shape = Shape {
    before_time: b"",
    after_time: b"  INFO portcullis::access: request method=",
    after_method: b" path=\"",
    after_path: b"\" status=",
    after_status: b" route=\"",
    after_route: b"\" micros=",
    after_micros: b" request_id=\"",
    end: b"\"\n",
};

/// As `tracing`'s JSON formatter writes an event.
const JSON: Shape = Shape {
    before_time: b"{\"timestamp\":\"",
    after_time: b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"method\":\"",
    after_method: b"\",\"path\":\"",
    after_path: b"\",\"status\":",
    after_status: b",\"route\":\"",
    after_route: b"\",\"micros\":",
    after_micros: b",\"request_id\":\"",
    end: b"\"},\"target\":\"portcullis::access\"}\n",
};

/// Formats one line, as `tracing`'s text or JSON formatter would have written the same
/// event, into `buf`. Digits and escapes are written by hand: `core::fmt` would cost more
/// than the rest of the line.
pub(crate) fn format_line(buf: &mut Vec<u8>, format: LogFormat, now: SystemTime, e: &Entry<'_>) {
    let shape = match format {
        LogFormat::Text => &TEXT,
        LogFormat::Json => &JSON,
    };
    buf.reserve(192 + e.path.len() + e.route.len() + e.request_id.len());
    buf.extend_from_slice(shape.before_time);
    timestamp(buf, now);
    buf.extend_from_slice(shape.after_time);
    escaped(buf, e.method.as_bytes());
    buf.extend_from_slice(shape.after_method);
    escaped(buf, e.path.as_bytes());
    buf.extend_from_slice(shape.after_path);
    number(buf, u64::from(e.status), 1);
    buf.extend_from_slice(shape.after_status);
    escaped(buf, e.route.as_bytes());
    buf.extend_from_slice(shape.after_route);
    number(buf, e.micros, 1);
    buf.extend_from_slice(shape.after_micros);
    escaped(buf, e.request_id);
    buf.extend_from_slice(shape.end);
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn number(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    buf.extend_from_slice(&digits[start..]);
}

/// `bytes` inside a JSON string: `"` and `\` escaped, control characters and bytes outside
/// ASCII as `\u00XX`, so a line is valid JSON (and one line) whatever the client sent. Runs
/// of bytes that need nothing are copied whole.
fn escaped(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let plain = |b: &u8| matches!(b, 0x20..=0x7e) && *b != b'"' && *b != b'\\';
    let mut rest = bytes;
    while let Some(i) = rest.iter().position(|b| !plain(b)) {
        buf.extend_from_slice(&rest[..i]);
        let b = rest[i];
        if b == b'"' || b == b'\\' {
            buf.extend_from_slice(&[b'\\', b]);
        } else {
            buf.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
        rest = &rest[i + 1..];
    }
    buf.extend_from_slice(rest);
}

/// RFC 3339 UTC with microseconds, `2026-12-03T16:09:05.123456Z`.
fn timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    for (n, width, then) in [
        (year, 4, b'-'),
        (month, 2, b'-'),
        (day, 2, b'T'),
        (of_day / 3600, 2, b':'),
        (of_day / 60 % 60, 2, b':'),
        (of_day % 60, 2, b'.'),
        (u64::from(since.subsec_micros()), 6, b'Z'),
    ] {
        number(buf, n, width);
        buf.push(then);
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
