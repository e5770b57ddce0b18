use crate::harness::*;
use nix::sys::signal::Signal;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::time::{Duration, Instant};

/// Deadline for a flood: these are loss checks, not timings.
const FLOOD: Duration = Duration::from_secs(120);

/// A Procfile of `n` processes each writing `lines` numbered lines through awk, which
/// block-buffers its output to a pipe, so its writes split lines at buffer boundaries. Each
/// then waits until the test stops the run (`sleep infinity`: no hidden deadline of its own).
fn flood_procfile(n: usize, lines: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "p{i}: awk 'BEGIN {{ for (i = 0; i < {lines}; i++) printf \"%s %07d the quick brown fox jumps over the lazy dog\\n\", \"p{i}\", i }}'; exec sleep infinity\n"
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

/// The flood process (`p7`) whose last line `line` is, if it is one: `... | p7 NNNNNNN ...`
/// with NNNNNNN = `lines - 1`.
fn last_line_of(line: &[u8], lines: usize) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?;
    let (_, body) = line.split_once(" | ")?;
    let mut words = body.split(' ');
    let (who, num) = (words.next()?, words.next()?);
    (num.parse::<usize>().ok()? == lines - 1).then(|| who.to_string())
}

/// Waits until every one of the `n` flood processes has printed its last line (one pass over
/// the output, line by line, as it arrives).
fn wait_all_lines(run: &Running, n: usize, lines: usize) {
    let mut done = HashSet::new();
    let complete = run.stdout.each_line(FLOOD, |line| {
        if let Some(who) = last_line_of(line, lines) {
            done.insert(who);
        }
        done.len() == n
    });
    assert!(
        complete,
        "flood did not complete within {FLOOD:?}: {} of {n} processes done, {} bytes read; stderr: {}",
        done.len(),
        run.stdout.len(),
        run.err()
    );
}

fn flood(n: usize, lines: usize) {
    let d = Dir::with_procfile("flood", &flood_procfile(n, lines));
    let run = procrun(d.path(), &["start", "--no-colour"]).spawn();
    wait_all_lines(&run, n, lines);
    run.signal(Signal::SIGTERM);
    let out = run.stdout.clone();
    assert_eq!(run.finish(FLOOD).0, 143);
    assert_eq!(check_flood(&out.bytes(), n, lines), n * lines);
}

#[test]
fn flood_4_processes_25000_lines_each_is_lossless() {
    flood(4, 25_000);
}

#[test]
fn flood_100_processes_is_lossless() {
    flood(100, 5_000);
}

/// The lines of `out` without timestamps.
fn lines(out: &str) -> Vec<String> {
    normalise(out, std::path::Path::new("/nonexistent"))
        .lines()
        .map(|l| l.trim_start_matches("HH:MM:SS ").to_string())
        .collect()
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// True when some thread of `pid` sleeps in a pipe write (its pipe is full).
fn blocked_writing(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w.contains("pipe_write"))
    })
}

/// stdout is a pipe nobody reads: procrun's memory stays bounded and children block. SIGTERM
/// stops everything; the output is given up on only once stdout has taken nothing for 10 s, and
/// the warning counts the bytes dropped.
#[test]
fn blocked_stdout_keeps_memory_bounded_and_supervision_working() {
    let d = Dir::with_procfile(
        "blocked",
        "flood: yes 'a line of output that nobody reads'\nticker: echo ticker-ready; exec sleep infinity\n",
    );
    let spawned = Instant::now();
    let mut r = procrun(d.path(), &["start", "-t", "1"])
        .stdout(Out::Raw)
        .spawn();
    let pid = r.pid;
    let stdout = r.take_stdout();
    // The pipe fills first, then procrun's own buffer; then procrun stops reading and `yes`
    // blocks on its own pipe (procrun's writer never blocks: it polls its own non-blocking
    // description of stdout). From then on nothing moves: sample procrun's memory for a while.
    let flood_blocked = || {
        descendants(pid)
            .iter()
            .any(|p| p.comm == "yes" && blocked_writing(p.pid))
    };
    assert!(
        wait_until(T, flood_blocked),
        "the flood never blocked:\n{}",
        describe(pid)
    );
    let mut max_rss = 0;
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        max_rss = max_rss.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        max_rss < 16 * 1024,
        "procrun RSS grew to {max_rss} KiB with a blocked stdout"
    );
    let start = Instant::now();
    r.signal(Signal::SIGTERM);
    let exit = r.wait(Duration::from_secs(20));
    assert!(exit.is_some(), "procrun hung with a blocked stdout");
    assert_eq!(exit, Some(Exit::Code(143)));
    // stdout took nothing since before the SIGTERM: procrun waited 10 s from its last write
    // (after the spawn), no less, then gave up.
    assert!(
        spawned.elapsed() >= Duration::from_millis(9_800),
        "gave up after {:?}",
        spawned.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    let err = r.err();
    let dropped: u64 = err
        .split("stdout made no progress for 10s: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of dropped bytes: {err}"));
    assert!(dropped > 0, "{err}");
    drop(stdout);
}

/// A slow reader gets every line: nothing is dropped while procrun waits for it.
#[test]
fn slow_reader_loses_nothing() {
    let d = Dir::with_procfile("slow", &flood_procfile(2, 20_000));
    let mut r = procrun(d.path(), &["start", "--no-colour"])
        .stdout(Out::Raw)
        .spawn();
    let pid = r.pid;
    let mut stdout = r.take_stdout();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + FLOOD;
    let mut done = HashSet::new();
    let mut scanned = 0;
    let mut max_rss = 0;
    while done.len() < 2 {
        assert!(Instant::now() < end, "slow reader did not get everything");
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "EOF before the last lines");
        out.extend_from_slice(&buf[..n]);
        // Look at each new complete line once.
        if let Some(last) = out[scanned..].iter().rposition(|&b| b == b'\n') {
            for line in out[scanned..scanned + last].split(|&b| b == b'\n') {
                if let Some(who) = last_line_of(line, 20_000) {
                    done.insert(who);
                }
            }
            scanned += last + 1;
        }
        max_rss = max_rss.max(rss_kib(pid));
        std::thread::sleep(Duration::from_micros(200));
    }
    r.signal(Signal::SIGTERM);
    let _ = stdout.read_to_end(&mut out);
    assert_eq!(r.expect_exit(T), Exit::Code(143));
    assert_eq!(check_flood(&out, 2, 20_000), 40_000);
    assert!(max_rss < 16 * 1024, "RSS {max_rss} KiB");
}

/// Lines longer than the 64 KiB piece size come out in whole pieces, never torn by another
/// process's output; MiBs without a newline do not grow memory without bound.
#[test]
fn very_long_lines_are_split_into_whole_pieces() {
    let d = Dir::with_procfile(
        "long",
        "long: head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done\nother: i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo other-line; done; exec sleep infinity\n",
    );
    let (code, out, _) = procrun(d.path(), &["start", "--no-colour"])
        .spawn()
        .finish(FLOOD);
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

/// `procrun start | head -c 10`: no panic, no hang, supervision goes on.
#[test]
fn closed_stdout_does_not_panic_or_hang() {
    let d = Dir::with_procfile(
        "closed",
        "chatty: yes chatty | head -c 5000000; echo done; sleep 0.5\nidle: exec sleep infinity\n",
    );
    let mut r = procrun(d.path(), &["start"]).stdout(Out::Raw).spawn();
    let mut stdout = r.take_stdout();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let exit = r.wait(Duration::from_secs(30));
    assert!(exit.is_some(), "hung");
    let err = r.err();
    assert_eq!(
        exit,
        Some(Exit::Code(0)),
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

#[test]
fn last_output_is_never_lost() {
    let d = Dir::with_procfile(
        "last",
        "web: i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line $i; done; printf 'no newline at the end'; exit 4\nidle: exec sleep 30\n",
    );
    let (code, out, _) = procrun(d.path(), &["start"]).run();
    assert_eq!(code, 4);
    for i in 1..=3000 {
        assert!(
            out.contains(&format!("web.1  | line {i}\n")),
            "line {i} missing"
        );
    }
    let l = lines(&out);
    let tail = l
        .iter()
        .position(|x| x == "web.1  | no newline at the end")
        .expect("partial line");
    let stopped = l
        .iter()
        .position(|x| x == "system | web.1 stopped (rc=4)")
        .unwrap();
    assert!(tail < stopped);
}

#[test]
fn raw_bytes_pass_through() {
    let d = Dir::with_procfile(
        "raw",
        "web: printf 'bad:\\351\\377 ok:\\303\\251 cr\\r\\n'\n",
    );
    let r = procrun(d.path(), &["start", "--no-prefix"]).spawn();
    r.wait_for("stopped", T);
    let out = r.stdout.bytes();
    assert!(
        out.windows(14).any(|w| w == b"bad:\xe9\xff ok:\xc3\xa9 c"),
        "{out:?}"
    );
    assert!(
        out.windows(3).any(|w| w == b"cr\n"),
        "the \\r before \\n is dropped"
    );
}

#[test]
fn quiet_and_json_and_no_timestamp() {
    let d = Dir::with_procfile(
        "formats",
        "web: echo 'say \"hi\"'\nnoisy: echo noise; exec sleep 30\n",
    );
    let (_, out, _) = procrun(d.path(), &["start", "-q", "noisy", "--no-timestamp"]).run();
    assert!(
        out.contains("\nweb.1   | say \"hi\"\n") || out.starts_with("web.1"),
        "{out}"
    );
    assert!(!out.contains("noise"), "{out}");
    assert!(out.contains("system  | noisy.1 started"), "{out}");
    let (_, out, _) = procrun(d.path(), &["start", "--log-format", "json"]).run();
    let line = out
        .lines()
        .find(|l| l.contains("\"name\":\"web.1\""))
        .expect(&out);
    let re = regex::Regex::new(r#"^\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","name":"web.1","pid":\d+,"text":"say \\"hi\\""\}$"#).unwrap();
    assert!(re.is_match(line), "{line}");
    let (_, out, _) = procrun(d.path(), &["start", "--timestamp-format", "rfc3339"]).run();
    assert!(
        regex::Regex::new(r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z web.1   \| say")
            .unwrap()
            .is_match(&out),
        "{out}"
    );
}

#[test]
fn colour_can_be_forced_and_no_color_is_respected() {
    let d = Dir::with_procfile("colour", "web: echo hi\n");
    let (_, out, _) = procrun(d.path(), &["start", "--colour", "always"]).run();
    assert!(out.contains("\x1b[0m\x1b[36m"), "{out:?}");
    let (_, out, _) = procrun(d.path(), &["start", "--colour", "auto"])
        .env("NO_COLOR", "1")
        .run();
    assert!(!out.contains('\x1b'));
}

/// The line-ends of `out`: whole lines of a process (`name | text`) or system lines.
fn text_lines(out: &[u8]) -> Vec<&str> {
    std::str::from_utf8(out)
        .expect("utf8 output")
        .lines()
        .collect()
}

/// A reader much slower than procrun (4 KiB every 5 ms) gets every line of a job that has
/// long finished, in order, then the closing system lines, last; nothing is dropped and
/// nothing is said on stderr. (procrun used to count the job as stopped 200 ms after its exit
/// while its pipe was still full, and gave the output 2.5 s.)
#[test]
fn a_slow_reader_gets_every_line_and_the_closing_lines_last() {
    let d = Dir::with_procfile(
        "slow-end",
        "web: exec sleep 100\njob: seq 1 60000; echo LAST-LINE-OF-JOB; exit 3\n",
    );
    let mut r = procrun(d.path(), &["start", "--no-colour"])
        .stdout(Out::Raw)
        .spawn();
    let mut stdout = r.take_stdout();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + FLOOD;
    loop {
        assert!(Instant::now() < end, "the output never ended");
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(r.expect_exit(T), Exit::Code(3));
    let lines = text_lines(&out);
    let job: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once("job.1  | ").map(|(_, t)| t))
        .collect();
    let want: Vec<String> = (1..=60000).map(|i| i.to_string()).collect();
    assert_eq!(job.len(), 60001, "job lines");
    assert!(
        job[..60000].iter().zip(&want).all(|(a, b)| a == b),
        "out of order"
    );
    assert_eq!(job[60000], "LAST-LINE-OF-JOB");
    let tail: Vec<&str> = lines[lines.len() - 3..]
        .iter()
        .map(|l| l.split_once(' ').map_or(*l, |(_, rest)| rest))
        .collect();
    assert_eq!(tail[0], "system | job.1 stopped (rc=3)", "{tail:?}");
    assert!(
        tail[1].starts_with("system | sending SIGTERM to web.1 (pid "),
        "{tail:?}"
    );
    assert_eq!(tail[2], "system | web.1 stopped (rc=-15)", "{tail:?}");
    assert_eq!(r.err(), "", "nothing dropped, nothing to say");
}

/// 10,000 processes writing one line each, stdout a plain file: every line arrives, and
/// every stopped line. (procrun once gave up on readers it had not scheduled yet.) Fewer
/// processes when the descriptor limit cannot hold 10,000 pipes.
#[test]
fn ten_thousand_processes_to_a_file_lose_nothing() {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(1024);
    let n = 10_000.min(hard.saturating_sub(200) as usize);
    if n < 10_000 {
        tell(&format!(
            "output::ten_thousand_processes_to_a_file_lose_nothing: {n} processes (descriptor limit {hard})"
        ));
    }
    let d = Dir::with_procfile("ten-thousand", "web: echo hello\n");
    let script = format!("ulimit -n {hard}; exec {BIN} start --no-colour -c web={n} > out.txt");
    let (code, _, err) = Launch::shell(d.path(), &script).spawn().finish(FLOOD);
    assert_eq!(code, 0, "{err}");
    let out = std::fs::read(d.file("out.txt")).unwrap();
    let lines = text_lines(&out);
    let hellos = lines.iter().filter(|l| l.ends_with("| hello")).count();
    let stopped = lines
        .iter()
        .filter(|l| l.contains(" stopped (rc=0)"))
        .count();
    assert_eq!((hellos, stopped), (n, n), "{err}");
}

/// A line exactly 64 KiB long whose newline arrives in a later read (the piece size) is one
/// line, not a line and an empty one.
#[test]
fn a_line_of_exactly_64_kib_is_not_followed_by_an_empty_line() {
    let d = Dir::with_procfile(
        "64k",
        "web: head -c 65536 /dev/zero | tr '\\0' a; sleep 0.2; echo; echo after\n",
    );
    let (code, out, _) = procrun(d.path(), &["start", "--no-prefix"])
        .spawn()
        .finish(T);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains("started (pid=") && !l.contains("stopped (rc="))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "{:?}",
        lines.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert!(lines[0].len() == 65536 && lines[0].bytes().all(|b| b == b'a'));
    assert_eq!(lines[1], "after");
}
