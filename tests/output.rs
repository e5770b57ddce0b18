//! The output pipeline under load: floods with block-buffered writers (writes split lines),
//! slow and blocked readers, long lines, a closed stdout. These are loss checks, not timings.

mod support;

use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};
use support::*;

const T: Duration = Duration::from_secs(120);

/// A Procfile of `n` processes each writing `lines` numbered lines through awk, which
/// block-buffers its output to a pipe, so its writes split lines at buffer boundaries.
fn flood_procfile(n: usize, lines: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "p{i}: awk 'BEGIN {{ for (i = 0; i < {lines}; i++) printf \"%s %07d the quick brown fox jumps over the lazy dog\\n\", \"p{i}\", i }}'; exec sleep 60\n"
            )
        })
        .collect()
}

/// Checks that every process's lines arrived exactly once, whole, in order, after its own
/// prefix. Returns the number of lines checked.
fn check_flood(out: &[u8], n: usize, lines: usize) -> usize {
    let text = std::str::from_utf8(out).expect("utf8 output");
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut count = 0;
    for line in text.lines() {
        let Some((prefix, body)) = line.split_once(" | ") else {
            panic!("no prefix: {line:?}")
        };
        let name = prefix.split_whitespace().last().unwrap();
        if name == "system" {
            continue;
        }
        let ty = name.strip_suffix(".1").unwrap_or(name);
        let mut parts = body.splitn(3, ' ');
        let (who, num, rest) = (
            parts.next().unwrap(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        assert_eq!(who, ty, "line under the wrong prefix or torn: {line:?}");
        assert_eq!(
            rest, "the quick brown fox jumps over the lazy dog",
            "torn line: {line:?}"
        );
        let num: usize = num
            .parse()
            .unwrap_or_else(|_| panic!("torn line: {line:?}"));
        let want = next.entry(ty.to_string()).or_insert(0);
        assert_eq!(
            num, *want,
            "{ty}: out of order, duplicated or lost: {line:?}"
        );
        *want += 1;
        count += 1;
    }
    assert_eq!(next.len(), n, "processes seen");
    for (ty, got) in &next {
        assert_eq!(*got, lines, "{ty}: lines");
    }
    count
}

#[test]
fn flood_4_processes_25000_lines_each_is_lossless() {
    let d = TempDir::new("flood4");
    d.write("Procfile", &flood_procfile(4, 25_000));
    let run = spawn(procrun(d.path(), &["start", "--no-colour"]));
    wait_all_lines(&run, 4, 25_000);
    run.signal(Signal::SIGTERM);
    let out = run.out.clone();
    assert_eq!(run.finish(T).0, 143);
    assert_eq!(check_flood(&out.lock().unwrap(), 4, 25_000), 100_000);
}

#[test]
fn flood_100_processes_is_lossless() {
    let d = TempDir::new("flood100");
    d.write("Procfile", &flood_procfile(100, 5_000));
    let run = spawn(procrun(d.path(), &["start", "--no-colour"]));
    wait_all_lines(&run, 100, 5_000);
    run.signal(Signal::SIGTERM);
    let out = run.out.clone();
    assert_eq!(run.finish(T).0, 143);
    assert_eq!(check_flood(&out.lock().unwrap(), 100, 5_000), 500_000);
}

fn wait_all_lines(run: &Running, n: usize, lines: usize) {
    let end = Instant::now() + T;
    let mut last: Vec<String> = (0..n).map(|i| format!("p{i} {:07} ", lines - 1)).collect();
    let mut scanned: usize = 0;
    while !last.is_empty() {
        {
            // Scan only what arrived since the last look (with an overlap for split lines).
            let out = run.out.lock().unwrap();
            let from = scanned.saturating_sub(64);
            let text = String::from_utf8_lossy(&out[from..]);
            last.retain(|l| !text.contains(l.as_str()));
            scanned = out.len();
        }
        assert!(
            Instant::now() < end,
            "flood did not complete; stderr: {}",
            run.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// stdout is a pipe nobody reads: procrun's memory stays bounded, children block, and
/// SIGTERM still stops everything promptly.
#[test]
fn blocked_stdout_keeps_memory_bounded_and_supervision_working() {
    let d = TempDir::new("blocked");
    d.write("Procfile", "flood: yes 'a line of output that nobody reads'\nticker: echo ticker-ready; exec sleep 60\n");
    let mut cmd = procrun(d.path(), &["start", "-t", "1"]);
    use std::os::unix::process::CommandExt;
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    // Let the flood fill the pipe and procrun's buffer, sampling procrun's memory meanwhile.
    let mut max_rss = 0;
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        max_rss = max_rss.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        max_rss < 16 * 1024,
        "procrun RSS grew to {max_rss} KiB with a blocked stdout"
    );
    let start = Instant::now();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "procrun hung with a blocked stdout"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(143));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
}

/// A slow reader gets every line: nothing is dropped while procrun waits for it.
#[test]
fn slow_reader_loses_nothing() {
    let d = TempDir::new("slow");
    d.write("Procfile", &flood_procfile(2, 20_000));
    let mut cmd = procrun(d.path(), &["start", "--no-colour"]);
    use std::os::unix::process::CommandExt;
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + T;
    let last = ["p0 0019999 ", "p1 0019999 "];
    let mut max_rss = 0;
    while !last
        .iter()
        .all(|l| String::from_utf8_lossy(&out).contains(l))
    {
        assert!(Instant::now() < end, "slow reader did not get everything");
        let n = stdout.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
        max_rss = max_rss.max(rss_kib(pid));
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
    let _ = stdout.read_to_end(&mut out);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert_eq!(check_flood(&out, 2, 20_000), 40_000);
    assert!(max_rss < 16 * 1024, "RSS {max_rss} KiB");
}

/// Lines longer than the 64 KiB piece size come out in whole pieces, never torn by another
/// process's output; MiBs without a newline do not grow memory without bound.
#[test]
fn very_long_lines_are_split_into_whole_pieces() {
    let d = TempDir::new("long");
    d.write("Procfile", "long: head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done\nother: i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo other-line; done; exec sleep 60\n");
    let r = spawn(procrun(d.path(), &["start", "--no-colour"]));
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 0);
    let mut xs = 0;
    for line in out.lines() {
        let (prefix, body) = line.split_once(" | ").unwrap();
        if prefix.ends_with("long.1 ") && body.starts_with('x') {
            assert!(body.bytes().all(|b| b == b'x'), "torn piece");
            assert!(body.len() <= 64 * 1024);
            xs += body.len();
        } else if prefix.contains("other.1") {
            assert_eq!(body, "other-line");
        }
    }
    assert_eq!(xs, 3_000_000);
    assert!(out.contains("long.1  | done"));
}

/// `procrun start | head -1`: no panic, no hang, supervision goes on.
#[test]
fn closed_stdout_does_not_panic_or_hang() {
    let d = TempDir::new("closed");
    d.write(
        "Procfile",
        "chatty: yes chatty | head -c 5000000; echo done; sleep 0.5\nidle: exec sleep 60\n",
    );
    let mut cmd = procrun(d.path(), &["start"]);
    use std::os::unix::process::CommandExt;
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "hung");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the first stopper (chatty, rc 0) decides: {err}"
    );
    assert!(err.contains("stdout is closed"), "{err}");
    assert_eq!(
        err.matches("stdout is closed").count(),
        1,
        "one warning: {err}"
    );
    assert!(!err.contains("panicked"));
}
