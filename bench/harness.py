#!/usr/bin/env python3
"""procrun benchmark: procrun vs honcho 2.0.0 vs a plain /bin/sh floor.

Python 3 standard library only.  Normally started by `bench/run`, which builds
procrun and installs honcho first; see bench/README.md for what every metric
measures.  Contenders run interleaved (the order rotates every round) and every
trial has a timeout; the harness is a child subreaper, so every process a trial
leaves behind comes back to it and is killed by pid before the next trial.
"""

import argparse
import ctypes
import datetime
import os
import platform
import re
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

METRICS = ['startup', 'oneshot', 'throughput', 'rss', 'shutdown', 'scale', 'restart']

# repetitions per contender: (full, --quick)
REPEATS = {'startup': (20, 3), 'oneshot': (20, 3), 'throughput': (7, 2), 'rss': (5, 1),
           'shutdown': (10, 3), 'scale': (5, 1), 'restart': (7, 2)}

# restart: starts measured per trial (the interval is their mean)
RESTARTS = 100

# "HH:MM:SS name.N | text" -- honcho and procrun; the name column may be padded
LINE_RE = re.compile(rb'^(?:\x1b\[[0-9;]*m)*\d\d:\d\d:\d\d (\S+?) *\| ?(?:\x1b\[0m)?(.*)$', re.S)

# throughput writers: names, payload layout and length (80 bytes with the newline)
TP_PROCS = ['w1', 'w2', 'w3', 'w4']
TP_LINE_BYTES = 80


def tp_filler(name):
    n = TP_LINE_BYTES - 1 - len(name) - 10          # "name 00000001 " + filler + "\n"
    return ('0123456789abcdefghijklmnopqrstuvwxyz' * 4)[:n]


def log(msg, end='\n'):
    sys.stderr.write(msg + end)
    sys.stderr.flush()


class Abort(Exception):
    """The harness itself got SIGINT/SIGTERM."""


# ----------------------------------------------------------------------------- /proc

def _read(path, mode='r'):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def kids(pid):
    out = []
    try:
        tasks = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return out
    for t in tasks:
        s = _read('/proc/%d/task/%s/children' % (pid, t))
        if s:
            out.extend(int(x) for x in s.split())
    return out


def tree(pid):
    """All descendants of pid (not pid itself)."""
    todo, found = [pid], []
    while todo:
        for c in kids(todo.pop()):
            if c not in found:
                found.append(c)
                todo.append(c)
    return found


def state(pid):
    s = _read('/proc/%d/stat' % pid)
    return s[s.rindex(')') + 2] if s else None


def alive(pids):
    return [p for p in pids if state(p) not in (None, 'Z', 'X')]


def comm(pid):
    s = _read('/proc/%d/comm' % pid)
    return s.strip() if s else None


def exe(pid):
    try:
        return os.readlink('/proc/%d/exe' % pid)
    except OSError:
        return None


def kb_field(path, key):
    s = _read(path)
    if not s:
        return None
    for line in s.splitlines():
        if line.startswith(key + ':'):
            return int(line.split()[1])
    return None


def own_processes(pid):
    """The supervisor's own processes: pid plus every descendant running the same
    executable (honcho's per-child multiprocessing forks), not the workload's sh/sleep."""
    me = exe(pid)
    return [pid] + [p for p in alive(tree(pid)) if me is not None and exe(p) == me]


def memory(pid):
    procs = own_processes(pid)
    pss = [kb_field('/proc/%d/smaps_rollup' % p, 'Pss') for p in procs]
    return {'rss_kb': kb_field('/proc/%d/status' % pid, 'VmRSS'),
            'anon_kb': kb_field('/proc/%d/status' % pid, 'RssAnon'),
            'pss_kb': sum(x for x in pss if x is not None) if any(x is not None for x in pss) else None,
            'procs': len(procs)}


def count_comm(pid, name):
    return sum(1 for p in alive(tree(pid)) if comm(p) == name)


# ----------------------------------------------------------------------------- process lab

class Run:
    """One started supervisor: pid, spawn time, its stdout (pipe) and parsed lines."""

    def __init__(self, pid, t0, fd):
        self.pid, self.t0, self.fd = pid, t0, fd
        self.partial = b''
        self.lines = []            # (time read, name or None, payload bytes)

    def take(self, data, now):
        data = self.partial + data
        *whole, self.partial = data.split(b'\n')
        for raw in whole:
            m = LINE_RE.match(raw)
            if m:
                self.lines.append((now, m.group(1).decode('ascii', 'replace'), m.group(2)))
            else:
                self.lines.append((now, None, raw))


class Lab:
    """Spawns supervisors in their own sessions, pumps their stdout, reaps everything."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(36, 1, 0, 0, 0) != 0:        # PR_SET_CHILD_SUBREAPER
            log('warning: cannot become a child subreaper; leftover detection is weaker')
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.runs = []
        self.exits = {}            # pid -> (status, time)
        self.empty = True          # waitpid said ECHILD: nothing of ours is left

    def spawn(self, argv, cwd, out=None, err=None):
        """posix_spawn argv in a new session.  out=None: pipe to the harness; else a file."""
        acts = [(os.POSIX_SPAWN_OPEN, 0, '/dev/null', os.O_RDONLY, 0)]
        r = w = None
        if out is None:
            r, w = os.pipe2(os.O_CLOEXEC)
            acts.append((os.POSIX_SPAWN_DUP2, w, 1))
        else:
            acts.append((os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        acts.append((os.POSIX_SPAWN_OPEN, 2, err or '/dev/null', os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
        here = os.getcwd()
        os.chdir(cwd)              # no chdir file action in the stdlib; the harness has one thread
        try:
            t0 = time.perf_counter()
            pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=acts, setsid=True,
                                 setsigmask=(),
                                 setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT,
                                            signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP))
        finally:
            os.chdir(here)
            if w is not None:
                os.close(w)
        self.empty = False
        run = Run(pid, t0, r)
        if r is not None:
            os.set_blocking(r, False)
        self.runs.append(run)
        return run

    def reap(self):
        now = time.perf_counter()
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.empty = True
                return
            if pid == 0:
                return
            self.exits[pid] = (st, now)

    def pump(self, timeout, extra=()):
        """Wait up to timeout for output, a child's exit or an extra fd; returns ready extras."""
        fds = [self.wake_r] + [r.fd for r in self.runs if r.fd is not None] + list(extra)
        try:
            ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        except InterruptedError:
            ready = []
        now = time.perf_counter()
        if self.wake_r in ready:
            try:
                while os.read(self.wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        for r in self.runs:
            if r.fd is not None and r.fd in ready:
                try:
                    data = os.read(r.fd, 1 << 20)
                except BlockingIOError:
                    continue
                if data:
                    r.take(data, now)
                else:
                    os.close(r.fd)
                    r.fd = None
        self.reap()
        return [fd for fd in extra if fd in ready]

    def until(self, cond, timeout, tick=0.05, extra=(), on_extra=None):
        end = time.perf_counter() + timeout
        self.reap()
        while not cond():
            left = end - time.perf_counter()
            if left <= 0:
                return False
            ready = self.pump(min(left, tick), extra)
            if ready and on_extra:
                on_extra(ready)
        return True

    def sleep(self, secs):
        self.until(lambda: False, secs)

    def exited(self, run):
        return run.pid in self.exits

    def rc(self, run):
        if run.pid not in self.exits:
            return 'running'
        st = self.exits[run.pid][0]
        if os.WIFSIGNALED(st):
            return signal.Signals(os.WTERMSIG(st)).name
        return str(os.WEXITSTATUS(st))

    def all_gone(self):
        self.reap()
        return self.empty

    def terminate(self, run, group, timeout):
        """SIGTERM (to the pid, or to its process group for the sh floor); wait until the
        supervisor and every descendant are gone.  Returns a dict of facts."""
        t = time.perf_counter()
        try:
            (os.killpg if group else os.kill)(run.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        res = {'left_at_exit': None}

        def done():
            if res['left_at_exit'] is None and self.exited(run):
                res['left_at_exit'] = len(alive(tree(os.getpid())))
            return self.all_gone()
        ok = self.until(done, timeout, tick=0.02)
        res['ok'] = ok
        res['gone_ms'] = (time.perf_counter() - t) * 1000 if ok else None
        res['exit_ms'] = (self.exits[run.pid][1] - t) * 1000 if self.exited(run) else None
        left = [] if ok else alive(tree(os.getpid()))
        res['left'] = len(left)
        res['left_what'] = ', '.join(sorted({str(comm(p)) for p in left}))
        res['rc'] = self.rc(run)
        return res

    def cleanup(self, limit=5.0):
        """SIGKILL whatever is left (every descendant, by pid, and the sessions we made), reap."""
        end = time.perf_counter() + limit
        while True:
            self.reap()
            pids = alive(tree(os.getpid()))
            if self.empty and not pids:
                break
            for r in self.runs:
                try:
                    os.killpg(r.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if time.perf_counter() > end:
                log('warning: could not get rid of pids %s' % pids)
                break
            self.pump(0.01)
        for r in self.runs:
            if r.fd is not None:
                os.close(r.fd)
        self.runs, self.exits = [], {}


# ----------------------------------------------------------------------------- contenders

class Contender:
    """How to start the same workload: from a Procfile (procrun, honcho) or a sh script."""

    def __init__(self, name, argv, floor=False, group=False, only=None):
        self.name, self.argv, self.floor, self.group, self.only = name, argv, floor, group, only

    def command(self, d):
        return [a.replace('{procfile}', os.path.join(d, 'Procfile')).replace('{script}', os.path.join(d, 'floor.sh'))
                for a in self.argv]


def contenders(args):
    out = []
    if args.procrun:
        out.append(Contender('procrun', [args.procrun, '-f', '{procfile}', '--no-colour', 'start']))
    if args.honcho:
        out.append(Contender('honcho', [args.honcho, '-f', '{procfile}', '--no-colour', 'start']))
    # the floor: the same commands started by a plain /bin/sh script, no supervisor
    out.append(Contender('sh', ['/bin/sh', '{script}'], floor=True, group=True))
    out.append(Contender('sh|cat', ['/bin/sh', '-c', '/bin/sh "$0" | cat', '{script}'], floor=True, group=True,
                         only=['throughput']))
    return out


def prepare(d, procs):
    """Write the Procfile and the floor script (every command in the background, then wait)."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'Procfile'), 'w') as f:
        f.writelines('%s: %s\n' % p for p in procs)
    with open(os.path.join(d, 'floor.sh'), 'w') as f:
        f.writelines('/bin/sh -c %s &\n' % shlex.quote(cmd) for _, cmd in procs)
        f.write('wait\n')


def stderr_of(d, n=240):
    s = _read(os.path.join(d, 'stderr.txt')) or ''
    return s.strip()[-n:].replace('\n', ' / ')


# ----------------------------------------------------------------------------- the trials

class Bench:
    def __init__(self, args):
        self.args = args
        self.lab = Lab()
        self.tmp = tempfile.mkdtemp(prefix='procrun-bench.')
        self.failures = []         # loud problems, printed at the end, exit status 1

    def trial_dir(self, metric, who):
        d = os.path.join(self.tmp, metric, who.replace('|', '_'))
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def start(self, who, d, procs, out=None):
        prepare(d, procs)
        return self.lab.spawn(who.command(d), d, out=out, err=os.path.join(d, 'stderr.txt'))

    def rounds(self, metric, label, who_all, trial, repeats):
        """Run trial(who) repeats times per contender, order rotating every round."""
        who_all = [w for w in who_all if w.only is None or metric in w.only]
        res = {w.name: [] for w in who_all}
        timeouts = dict.fromkeys(res, 0)
        log('%-22s' % label, end='')
        for i in range(repeats):
            order = who_all[i % len(who_all):] + who_all[:i % len(who_all)]
            for w in order:
                if timeouts[w.name] >= self.args.max_timeouts:
                    continue           # given up on: do not wait out the same timeout again
                try:
                    r = trial(w)
                except Abort:
                    raise
                except Exception as e:     # one broken contender must not stop the others
                    r = {'error': '%s: %s' % (type(e).__name__, e)}
                finally:
                    self.lab.cleanup()
                res[w.name].append(r)
                timeouts[w.name] = timeouts[w.name] + 1 if r.get('timeout') else 0
                if timeouts[w.name] == self.args.max_timeouts and i + 1 < repeats:
                    r['error'] += ' (given up after %d timeouts in a row)' % timeouts[w.name]
                log('x' if r.get('timeout') else '!' if r.get('error') else '.', end='')
        log('')
        return res

    # -- helpers
    def wait_lines(self, run, want, timeout):
        """Until want(run) or the supervisor exits or timeout: 'ok' | 'exited' | 'timeout'."""
        lab = self.lab
        lab.until(lambda: want(run) or lab.exited(run), timeout, tick=0.1)
        if want(run):
            return 'ok'
        if lab.exited(run):
            lab.until(lambda: want(run), 0.2, tick=0.02)     # what is still in the pipe
            return 'ok' if want(run) else 'exited'
        return 'timeout'

    def failed(self, who, run, how, what, d):
        rc = self.lab.rc(run)
        msg = ('%s exited (rc %s) before %s' % (who.name, rc, what) if how == 'exited'
               else '%s: no %s within the timeout' % (who.name, what))
        tail = stderr_of(d)
        return {'error': msg + (' [stderr: %s]' % tail if tail else ''), 'timeout': how == 'timeout'}

    # -- startup: exec -> first child line
    def startup(self, who_all):
        a = self.args
        procs = [('web', 'echo ready; exec sleep 300'), ('worker', 'exec sleep 300')]

        def first_ready(run):
            return next((t for t, n, p in run.lines if p.strip() == b'ready'), None)

        def trial(who):
            d = self.trial_dir('startup', who.name)
            run = self.start(who, d, procs)
            how = self.wait_lines(run, lambda r: first_ready(r) is not None, a.timeout)
            if how != 'ok':
                return self.failed(who, run, how, '"ready" line', d)
            ms = (first_ready(run) - run.t0) * 1000
            self.lab.sleep(a.settle)      # honcho crashes on a SIGTERM before it is fully up
            st = self.lab.terminate(run, who.group, a.grace)
            return {'ms': ms, 'left': st['left']}
        return self.rounds('startup', 'startup', who_all, trial, self.repeats('startup'))

    # -- oneshot: `a: true`, exec -> supervisor gone
    def oneshot(self, who_all):
        a = self.args

        def trial(who):
            d = self.trial_dir('oneshot', who.name)
            run = self.start(who, d, [('a', 'true')])
            if not self.lab.until(lambda: self.lab.exited(run), a.timeout, tick=0.5):
                return {'error': '%s did not exit within %gs' % (who.name, a.timeout), 'timeout': True}
            ms = (self.lab.exits[run.pid][1] - run.t0) * 1000
            left = 0 if self.lab.until(self.lab.all_gone, 1.0, tick=0.02) else len(alive(tree(os.getpid())))
            r = {'ms': ms, 'rc': self.lab.rc(run), 'left': left}
            if r['rc'] != '0' or left:
                r['error'] = '%s: rc %s, %d processes left' % (who.name, r['rc'], left)
            return r
        return self.rounds('oneshot', 'oneshot', who_all, trial, self.repeats('oneshot'))

    # -- throughput: 4 x L lines, block-buffered awk writers, output to a file
    def throughput(self, who_all):
        a = self.args
        L = a.lines

        def trial(who):
            d = self.trial_dir('throughput', who.name)
            gate, done = os.path.join(d, 'gate'), os.path.join(d, 'done')
            os.mkfifo(gate)
            os.mkfifo(done)
            # Writers must not exit before all have written everything: a Procfile
            # supervisor stops the others when the first one exits.  Each writer holds
            # `gate` open for reading, writes its lines, reports on `done` and reads
            # `gate` until EOF, which comes when the harness closes its end after all
            # four reported.  The harness opens both O_RDWR so no open() ever blocks.
            gate_fd = os.open(gate, os.O_RDWR | os.O_NONBLOCK)
            done_fd = os.open(done, os.O_RDWR | os.O_NONBLOCK)
            try:
                procs = []
                for n in TP_PROCS:
                    awk = 'BEGIN { for (i = 1; i <= %d; i++) printf "%s %%08d %s\\n", i }' % (L, n, tp_filler(n))
                    procs.append((n, 'exec 3<%s; awk %s; echo %s >%s; read x <&3; exit 0'
                                  % (shlex.quote(gate), shlex.quote(awk), n, shlex.quote(done))))
                out = os.path.join(d, 'out.txt')
                run = self.start(who, d, procs, out=out)
                reported = []

                def on_done(_):
                    nonlocal gate_fd
                    try:
                        reported.extend(os.read(done_fd, 4096).split())
                    except BlockingIOError:
                        pass
                    if len(reported) >= len(TP_PROCS) and gate_fd is not None:
                        os.close(gate_fd)
                        gate_fd = None
                if not self.lab.until(lambda: self.lab.exited(run), a.tp_timeout, tick=0.5,
                                      extra=[done_fd], on_extra=on_done):
                    return {'error': '%s did not finish within %gs (%d/4 writers done)'
                            % (who.name, a.tp_timeout, len(reported)), 'timeout': True}
                secs = self.lab.exits[run.pid][1] - run.t0
                rc = self.lab.rc(run)
                self.lab.until(self.lab.all_gone, 2.0, tick=0.02)
                self.lab.cleanup()
                if who.floor:
                    chk = check_raw(out, L)
                else:
                    chk = check_prefixed(out, L)
                chk.update({'ms': secs * 1000, 'lines_s': L * len(TP_PROCS) / secs, 'rc': rc})
                bad = {k: v for k, v in chk.items() if k in LOSS_KEYS and v}
                if bad:
                    chk['error'] = 'LOSS CHECK FAILED for %s: %s' % (
                        who.name, ', '.join('%s %d' % kv for kv in bad.items()))
                    keep = os.path.join(tempfile.gettempdir(), 'procrun-bench-failed-%s.txt' % who.name.replace('|', '_'))
                    shutil.copyfile(out, keep)
                    chk['error'] += ' (output kept in %s)' % keep
                return chk
            finally:
                os.close(done_fd)
                if gate_fd is not None:
                    os.close(gate_fd)
        return self.rounds('throughput', 'throughput', who_all, trial, self.repeats('throughput'))

    # -- rss: supervisor memory with N idle children
    def rss(self, who_all):
        a = self.args
        out = {}
        for n in a.rss_children:
            procs = [('s%d' % k, 'exec sleep 300') for k in range(1, n + 1)]

            def trial(who, n=n, procs=procs):
                d = self.trial_dir('rss%d' % n, who.name)
                run = self.start(who, d, procs)
                if not self.lab.until(lambda: count_comm(run.pid, 'sleep') >= n or self.lab.exited(run),
                                      a.timeout, tick=0.05) or self.lab.exited(run):
                    return self.failed(who, run, 'exited' if self.lab.exited(run) else 'timeout',
                                       'all %d children running' % n, d)
                self.lab.sleep(a.settle)
                m = memory(run.pid)
                self.lab.terminate(run, who.group, a.grace)
                return m
            out[n] = self.rounds('rss', 'rss %d children' % n, who_all, trial, self.repeats('rss'))
        return out

    # -- shutdown: SIGTERM -> everything gone; children exit on SIGTERM
    def shutdown(self, who_all):
        a = self.args
        procs = [('s%d' % k, 'exec sleep 1000') for k in range(1, 5)]

        def trial(who):
            d = self.trial_dir('shutdown', who.name)
            run = self.start(who, d, procs)
            if not self.lab.until(lambda: count_comm(run.pid, 'sleep') >= 4 or self.lab.exited(run),
                                  a.timeout, tick=0.02) or self.lab.exited(run):
                return self.failed(who, run, 'exited' if self.lab.exited(run) else 'timeout',
                                   '4 children running', d)
            self.lab.sleep(a.settle)
            st = self.lab.terminate(run, who.group, a.term_timeout)
            r = {'ms': st['gone_ms'], 'exit_ms': st['exit_ms'], 'rc': st['rc'],
                 'left_at_exit': st['left_at_exit'], 'left': st['left']}
            if not st['ok']:
                r['error'] = '%s: %d processes (%s) still there %gs after SIGTERM, supervisor %s' % (
                    who.name, st['left'], st['left_what'], a.term_timeout,
                    'running' if st['rc'] == 'running' else 'exited (%s)' % st['rc'])
                r['timeout'] = True
            return r
        return self.rounds('shutdown', 'shutdown', who_all, trial, self.repeats('shutdown'))

    # -- scale: N processes: exec -> all N ready lines; memory; SIGTERM -> all gone
    def scale(self, who_all):
        a = self.args
        out = {}
        for n in a.scale:
            procs = [('p%d' % k, 'echo ready p%d; exec sleep 300' % k) for k in range(1, n + 1)]

            def ready(run):
                return {p for _, _, p in run.lines if p.startswith(b'ready p')}

            def trial(who, n=n, procs=procs):
                d = self.trial_dir('scale%d' % n, who.name)
                run = self.start(who, d, procs)
                how = self.wait_lines(run, lambda r: len(ready(r)) >= n, a.timeout + n * 0.05)
                if how != 'ok':
                    return self.failed(who, run, how, 'all %d ready lines (got %d)' % (n, len(ready(run))), d)
                seen = [t for t, _, p in run.lines if p.startswith(b'ready p')]
                r = {'ms': (max(seen) - run.t0) * 1000, 'dup': len(seen) - len(ready(run))}
                self.lab.until(lambda: count_comm(run.pid, 'sleep') >= n, 5.0, tick=0.05)
                self.lab.sleep(a.settle)
                r.update(memory(run.pid))
                st = self.lab.terminate(run, who.group, a.term_timeout)
                r.update({'stop_ms': st['gone_ms'], 'rc': st['rc'], 'left': st['left']})
                if not st['ok']:
                    r['error'] = '%s: N=%d: %d processes (%s) still there %gs after SIGTERM, supervisor %s' % (
                        who.name, n, st['left'], st['left_what'], a.term_timeout,
                        'running' if st['rc'] == 'running' else 'exited (%s)' % st['rc'])
                    r['timeout'] = True
                elif r['dup']:
                    r['error'] = '%s: N=%d: %d duplicated ready lines' % (who.name, n, r['dup'])
                return r
            out[n] = self.rounds('scale', 'scale N=%d' % n, who_all, trial,
                                 max(1, self.repeats('scale') - (2 if n >= 500 else 0)))
        return out

    # -- restart: a process that exits at once, restarted at once: exit -> next start
    def restart(self, who_all):
        """procrun with `--auto-restart w --restart-delay 0` against a `/bin/sh` loop that starts
        the same command again as soon as it exits (honcho cannot restart). The interval is the
        mean time between consecutive `up` lines over RESTARTS restarts: one child's exit, its
        reaping, the supervisor's decision and the next child's start up to its first line."""
        a = self.args
        n = RESTARTS

        def ups(run):
            return [t for t, _, p in run.lines if p.strip() == b'up']

        def trial(who):
            d = self.trial_dir('restart', who.name)
            prepare(d, [('w', 'echo up; exit 0')])
            if who.floor:
                with open(os.path.join(d, 'floor.sh'), 'w') as f:
                    f.write("while :; do /bin/sh -c 'echo up; exit 0'; done\n")
                argv = who.command(d)
            else:
                argv = who.command(d) + ['--auto-restart', 'w', '--restart-limit', '1000000',
                                         '--restart-delay', '0']
            run = self.lab.spawn(argv, d, err=os.path.join(d, 'stderr.txt'))
            how = self.wait_lines(run, lambda r: len(ups(r)) > n, a.timeout)
            if how != 'ok':
                return self.failed(who, run, how, '%d restarts (got %d)' % (n, max(0, len(ups(run)) - 1)), d)
            ts = ups(run)[:n + 1]
            st = self.lab.terminate(run, who.group, a.grace)
            return {'ms': (ts[-1] - ts[0]) * 1000 / n, 'left': st['left']}
        who_restart = [w for w in who_all if w.name in ('procrun', 'sh')]
        return self.rounds('restart', 'restart', who_restart, trial, self.repeats('restart'))

    def repeats(self, metric):
        if self.args.repeats:
            return self.args.repeats
        return REPEATS[metric][1 if self.args.quick else 0]


# ----------------------------------------------------------------------------- output checks

LOSS_KEYS = ('lost', 'dup', 'torn', 'misattributed', 'reordered', 'stray')


def check_prefixed(path, L):
    """Every line of every writer exactly once, whole, after its own process's prefix,
    in that process's order.  `stray` = non-system lines that are no writer's line."""
    seen = {n: bytearray(L + 1) for n in TP_PROCS}
    last = dict.fromkeys(TP_PROCS, 0)
    fill = {n: tp_filler(n).encode() for n in TP_PROCS}
    c = dict.fromkeys(LOSS_KEYS, 0)
    c['ok'] = 0
    with open(path, 'rb') as f:
        for raw in f:
            if not raw.endswith(b'\n'):
                c['torn'] += 1          # the file ends inside a line
                continue
            m = LINE_RE.match(raw[:-1])
            if m is None:
                c['stray'] += 1
                continue
            name, text = m.group(1).decode('ascii', 'replace'), m.group(2)
            if name == 'system':
                continue
            parts = text.split(b' ')
            proc = parts[0].decode('ascii', 'replace')
            if (len(parts) != 3 or proc not in seen or len(parts[1]) != 8 or not parts[1].isdigit()
                    or parts[2] != fill[proc]):
                c['torn'] += 1
                continue
            seq = int(parts[1])
            if not 1 <= seq <= L:
                c['torn'] += 1
                continue
            if name.split('.')[0] != proc:
                c['misattributed'] += 1
            if seen[proc][seq]:
                c['dup'] += 1
                continue
            seen[proc][seq] = 1
            c['ok'] += 1
            if seq < last[proc]:
                c['reordered'] += 1
            last[proc] = seq
    c['lost'] = sum(L - sum(seen[n]) for n in TP_PROCS)
    return c


def check_raw(path, L):
    """The floor: 4 writers share one unprefixed fd, so their blocks interleave mid-line;
    only the byte count can be checked (and that each writer's lines are all there)."""
    expected = sum(L * (len(n) + 10 + len(tp_filler(n)) + 1) for n in TP_PROCS)
    size = os.path.getsize(path)
    c = dict.fromkeys(LOSS_KEYS, 0)
    c['lost'] = max(0, (expected - size) // TP_LINE_BYTES)
    c['dup'] = max(0, (size - expected) // TP_LINE_BYTES)
    c['ok'] = None
    return c


# ----------------------------------------------------------------------------- reporting

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def col(rs, key):
    return [r.get(key) for r in rs if not r.get('error')]


def fmt(v, unit=''):
    if v is None:
        return '-'
    if isinstance(v, str):
        return v
    if isinstance(v, int) and unit not in ('kB', 'lines/s'):
        return str(v)
    if unit == 'lines/s':
        return '%.0f k' % (v / 1000) if v < 1e6 else '%.2f M' % (v / 1e6)
    if unit in ('kB', 'KiB'):
        return '%.1f MiB' % (v / 1024) if v >= 10240 else '%.0f KiB' % v
    if abs(v) >= 100:
        return '%.0f' % v
    if abs(v) >= 10:
        return '%.1f' % v
    return '%.2f' % v


def ratio(a, b):
    return a / b if (a is not None and b) else None


def fratio(r):
    if r is None:
        return '-'
    return '%.3f' % r if r < 1 else '%.2f' % r


class Report:
    def __init__(self, args, info):
        self.args, self.info = args, info
        self.summary = []          # rows of the headline table
        self.details = []          # (title, header, rows)
        self.notes = []

    def add(self, metric, unit, res, key, floor='sh', target=None):
        p, h, f = (med(col(res.get(n, []), key)) for n in ('procrun', 'honcho', floor))
        self.summary.append({'metric': metric, 'unit': unit, 'procrun': p, 'honcho': h, 'floor': f,
                             'floor_name': floor, 'p_h': ratio(p, h), 'p_f': ratio(p, f),
                             'target': target(p, h, f) if (target and p is not None) else None})

    def detail(self, title, res, cols):
        """cols: (header, key, how) with how in median|max|mode|min."""
        rows = []
        for name, rs in res.items():
            ok = [r for r in rs if not r.get('error')]
            row = [name, '%d/%d' % (len(ok), len(rs))]
            for _, key, how, unit in cols:
                vals = [r.get(key) for r in ok if r.get(key) is not None]
                if not vals:
                    v = None
                elif how == 'median':
                    v = statistics.median(vals)
                elif how == 'min':
                    v = min(vals)
                elif how == 'max':
                    v = max(vals)
                else:
                    v = max(set(vals), key=vals.count)
                row.append(fmt(v, unit))
            errs = sorted({r['error'] for r in rs if r.get('error')})
            row.append('; '.join(errs)[:300])
            rows.append(row)
        self.details.append((title, ['who', 'ok'] + [c[0] for c in cols] + ['problems'], rows))

    def summary_rows(self):
        head = ['metric', 'procrun', 'honcho', 'floor', 'procrun/honcho', 'procrun/floor', 'procrun - floor',
                'target', 'met']
        rows = []
        for s in self.summary:
            u = s['unit']
            tgt = s['target']
            rows.append(['%s (%s)' % (s['metric'], u) if u not in ('kB',) else s['metric'],
                         fmt(s['procrun'], u), fmt(s['honcho'], u),
                         '%s (%s)' % (fmt(s['floor'], u), s['floor_name']) if s['floor'] is not None else '-',
                         fratio(s['p_h']), fratio(s['p_f']),
                         '%+.1f ms' % (s['procrun'] - s['floor'])
                         if u == 'ms' and s['procrun'] is not None and s['floor'] is not None else '-',
                         tgt[0] if tgt else '', ('yes' if tgt[1] else '**NO**') if tgt else ''])
        return head, rows

    def text(self):
        out = []
        head, rows = self.summary_rows()
        out.append(table_text(head, rows))
        for title, h, rows in self.details:
            out.append('')
            out.append(title)
            out.append(table_text(h, rows))
        return '\n'.join(out)

    def markdown(self):
        i = self.info
        out = ['## Benchmark: procrun vs honcho %s' % i['honcho_version'], '',
               '- date: %s' % i['date'],
               '- machine: %s cores (`nproc`), %s, kernel %s, load average at start %s' % (
                   i['nproc'], i['cpu'], i['kernel'], i['load']),
               '- procrun: %s; honcho %s on Python %s' % (i['procrun_rev'], i['honcho_version'], i['python']),
               '- command: `%s`' % i['command'],
               '- medians of interleaved, repeated runs; floor = the same commands run by a plain '
               '`/bin/sh` script (`sh -c \'cmd1 & cmd2 & wait\'`; `sh | cat` for throughput)', '']
        head, rows = self.summary_rows()
        out.append(table_md(head, rows, left={0, len(head) - 2, len(head) - 1}))
        for title, h, rows in self.details:
            out += ['', '**%s**' % title, '', table_md(h, rows)]
        if self.notes:
            out.append('')
            out += ['- %s' % n for n in self.notes]
        return '\n'.join(out) + '\n'


def table_text(head, rows):
    w = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    lines = ['  '.join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in [head] + rows]
    lines.insert(1, '  '.join('-' * x for x in w))
    return '\n'.join(lines)


def table_md(head, rows, left=None):
    esc = lambda c: str(c).replace('|', '\\|')
    left = left if left is not None else {0, len(head) - 1}
    out = ['| ' + ' | '.join(map(esc, head)) + ' |',
           '|' + '|'.join('---' if i in left else '---:' for i in range(len(head))) + '|']
    out += ['| ' + ' | '.join(map(esc, r)) + ' |' for r in rows]
    return '\n'.join(out)


# performance targets -> (text, met?)
def t_fast(p, h, f):
    ok = h is not None and f is not None and p * 20 <= h and p <= f + 2.0
    return ('<= honcho/20 and <= floor + 2 ms', ok)


def t_tp(p, h, f):
    ok = h is not None and f is not None and p >= 20 * h and p >= f / 2
    return ('>= 20x honcho and >= floor/2', ok)


def t_rss(limit_kb):
    def t(p, h, f):
        ok = h is not None and p * 8 <= h and (limit_kb is None or p < limit_kb)
        return ('<= honcho/8' + (' and < 4 MiB' if limit_kb else ''), ok)
    return t


def t_stop(p, h, f):
    return ('<= floor + 20 ms', f is not None and p <= f + 20)


def t_restart(p, h, f):
    return ('<= floor + 1 ms', f is not None and p <= f + 1.0)


def t_scale(sc, n):
    """N processes all started, none failed, all gone after SIGTERM; and linear: the time per
    process at the largest N at most 1.5x the time per process at N=100 (or the next smaller N)."""
    def t(p, h, f):
        rs = sc[n].get('procrun', [])
        clean = bool(rs) and not any(r.get('error') for r in rs)
        smaller = [m for m in sc if m < n]
        ref = 100 if 100 in smaller else (max(smaller) if smaller else None)
        per_n = med(col(rs, 'ms_per'))
        per_ref = med(col(sc[ref].get('procrun', []), 'ms_per')) if ref else None
        linear = per_n is not None and per_ref is not None and per_n <= 1.5 * per_ref
        return ('all %d up and gone cleanly; ms/proc <= 1.5x N=%s' % (n, ref), clean and linear)
    return t


def build_report(b, results, info):
    rep = Report(b.args, info)
    a = b.args
    if 'startup' in results:
        r = results['startup']
        rep.add('startup', 'ms', r, 'ms', target=t_fast)
        rep.detail('startup: exec -> first child line on stdout (web: echo ready; exec sleep 300, worker: sleep) [ms]',
                   r, [('min', 'ms', 'min', 'ms'), ('median', 'ms', 'median', 'ms'),
                       ('max', 'ms', 'max', 'ms'), ('left after SIGTERM', 'left', 'max', '')])
    if 'oneshot' in results:
        r = results['oneshot']
        rep.add('one-shot', 'ms', r, 'ms', target=t_fast)
        rep.detail('one-shot: Procfile `a: true`, exec -> supervisor exited [ms]', r,
                   [('min', 'ms', 'min', 'ms'), ('median', 'ms', 'median', 'ms'), ('max', 'ms', 'max', 'ms'),
                    ('rc', 'rc', 'mode', '')])
    if 'throughput' in results:
        r = results['throughput']
        rep.add('throughput', 'lines/s', r, 'lines_s', floor='sh|cat', target=t_tp)
        rep.detail('throughput: 4 x %d lines of %d B (block-buffered awk), stdout to a file; exec -> exit'
                   % (a.lines, TP_LINE_BYTES), r,
                   [('lines/s', 'lines_s', 'median', 'lines/s'), ('median ms', 'ms', 'median', 'ms'),
                    ('whole lines (min)', 'ok', 'min', ''), ('lost', 'lost', 'max', ''), ('dup', 'dup', 'max', ''), ('torn', 'torn', 'max', ''),
                    ('misattr', 'misattributed', 'max', ''), ('reorder', 'reordered', 'max', ''),
                    ('stray', 'stray', 'max', ''), ('rc', 'rc', 'mode', '')])
        rep.notes.append('throughput loss check: lost/dup/torn/misattr/reorder/stray are the worst trial; '
                         'the sh floors write unprefixed through one shared fd, so only their byte count is checked')
    if 'rss' in results:
        for n, r in results['rss'].items():
            rep.add('VmRSS, %d idle children' % n, 'kB', r, 'rss_kb',
                    target=t_rss(4096 if n >= 100 else None))
            rep.add('PSS of all supervisor processes, %d children' % n, 'kB', r, 'pss_kb', target=t_rss(None))
            rep.detail('memory with %d idle children (exec sleep 300)' % n, r,
                       [('VmRSS', 'rss_kb', 'median', 'kB'), ('RssAnon', 'anon_kb', 'median', 'kB'),
                        ('PSS (own procs)', 'pss_kb', 'median', 'kB'), ('own procs', 'procs', 'mode', '')])
        rep.notes.append('VmRSS is the supervisor pid alone (RssAnon: its private heap/stack part, without '
                         'mapped files such as the binary and libc); PSS (from /proc/PID/smaps_rollup) is summed over '
                         'the supervisor pid and its descendants running the same executable (honcho forks one '
                         'Python helper per child), not the children\'s shells or sleeps')
    if 'shutdown' in results:
        r = results['shutdown']
        rep.add('shutdown', 'ms', r, 'ms', target=t_stop)
        rep.detail('shutdown: 4 children `exec sleep 1000`; SIGTERM -> supervisor and all children gone [ms]', r,
                   [('min', 'ms', 'min', 'ms'), ('median', 'ms', 'median', 'ms'), ('max', 'ms', 'max', 'ms'),
                    ('supervisor exit', 'exit_ms', 'median', 'ms'), ('rc', 'rc', 'mode', ''),
                    ('left at exit', 'left_at_exit', 'max', '')])
        rep.notes.append('the sh floor is signalled as a process group (sh forwards nothing); '
                         'procrun and honcho get SIGTERM on their pid only')
    if 'scale' in results:
        sc = results['scale']
        big = max(sc) if sc else None
        for n, r in sc.items():
            rep.add('scale N=%d: all ready' % n, 'ms', r, 'ms',
                    target=t_scale(sc, n) if n == big and n >= 100 else None)
            rep.detail('scale N=%d: `echo ready pK; exec sleep 300` x N' % n, r,
                       [('ready ms', 'ms', 'median', 'ms'), ('ms per process', 'ms_per', 'median', 'ms'),
                        ('VmRSS', 'rss_kb', 'median', 'kB'), ('PSS (own procs)', 'pss_kb', 'median', 'kB'),
                        ('own procs', 'procs', 'mode', ''), ('stop ms', 'stop_ms', 'median', 'ms'),
                        ('rc', 'rc', 'mode', ''), ('dup', 'dup', 'max', '')])
        if big is not None:
            rep.add('scale N=%d: VmRSS' % big, 'kB', sc[big], 'rss_kb')
            rep.add('scale N=%d: SIGTERM -> all gone' % big, 'ms', sc[big], 'stop_ms')
    if 'restart' in results:
        r = results['restart']
        rep.add('restart: exit -> next start', 'ms', r, 'ms', target=t_restart)
        rep.detail('restart: `w: echo up; exit 0` restarted at once (procrun `--auto-restart w --restart-delay 0`; '
                   'the floor: a `/bin/sh` loop), mean interval between starts over %d restarts [ms]' % RESTARTS, r,
                   [('min', 'ms', 'min', 'ms'), ('median', 'ms', 'median', 'ms'), ('max', 'ms', 'max', 'ms'),
                    ('left after SIGTERM', 'left', 'max', '')])
        rep.notes.append('restart: honcho cannot restart a process, so it has no row')
    return rep


# ----------------------------------------------------------------------------- machine facts

def first_line(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return '?'


def machine(args):
    cpu = '?'
    for line in (_read('/proc/cpuinfo') or '').splitlines():
        if line.startswith('model name'):
            cpu = line.split(':', 1)[1].strip()
            break
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rev = first_line(['git', '-C', repo, 'log', '-1', '--format=%h %s', '--', 'src', 'Cargo.toml', 'Cargo.lock'])
    if first_line(['git', '-C', repo, 'status', '--porcelain', '--', 'src', 'Cargo.toml']) not in ('?', ''):
        rev += ' (+ uncommitted changes in src/)'
    if args.procrun:
        with open(args.procrun, 'rb') as f:
            head = f.read(4096)
        rev += ' (%s, %s)' % (os.path.relpath(args.procrun, repo),
                              'dynamically linked' if b'/ld-' in head else 'static')
    return {
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'nproc': os.cpu_count(), 'cpu': cpu, 'kernel': platform.release(),
        'load': '%.2f' % os.getloadavg()[0], 'python': platform.python_version(),
        'procrun_rev': rev if args.procrun else 'not run',
        'honcho_version': first_line([args.honcho, 'version']).replace('honcho ', '') if args.honcho else 'not run',
        'command': os.environ.get('BENCH_COMMAND') or ' '.join(shlex.quote(x) for x in sys.argv),
    }


# ----------------------------------------------------------------------------- self-test

def self_test_checks():
    """The loss check must catch each kind of damage; prove it on made-up output."""
    L = 50
    tmp = tempfile.mkdtemp(prefix='procrun-bench-selftest.')
    try:
        good = []
        for i in range(1, L + 1):
            for n in TP_PROCS:
                good.append(b'12:00:00 %s.1   | %s %08d %s\n' % (n.encode(), n.encode(), i, tp_filler(n).encode()))
        good.insert(0, b'12:00:00 system | w1.1 started (pid=1)\n')
        cases = {
            'clean': (good, {}),
            'lost': (good[:10] + good[11:], {'lost': 1}),
            'dup': (good + [good[5]], {'dup': 1}),
            'torn': (good[:7] + [good[7][:30] + b'\n', b'12:00:00 w2.1 | ' + good[7][30:]] + good[8:],
                     {'torn': 2, 'lost': 1}),
            'misattributed': (good[:3] + [good[3].replace(b' w3.1 ', b' w4.1 ')] + good[4:], {'misattributed': 1}),
            'reordered': (good[:1] + [good[5], good[1], good[2], good[3], good[4]] + good[6:], {'reordered': 1}),
            'stray': (good + [b'garbage\n'], {'stray': 1}),
            'unterminated': (good[:-1] + [good[-1][:-1]], {'torn': 1, 'lost': 1}),
        }
        failures = []
        for name, (lines, want) in cases.items():
            p = os.path.join(tmp, name)
            with open(p, 'wb') as f:
                f.writelines(lines)
            got = check_prefixed(p, L)
            got = {k: v for k, v in got.items() if k in LOSS_KEYS and v}
            if got != want:
                failures.append('%s: expected %s, got %s' % (name, want, got))
        return failures
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--procrun', help='path to the procrun binary (omit to leave procrun out)')
    ap.add_argument('--honcho', help='path to honcho (omit to leave honcho out)')
    ap.add_argument('--quick', action='store_true', help='few repeats: a smoke run of under a minute')
    ap.add_argument('--only', default='', help='comma-separated metrics: ' + ','.join(METRICS))
    ap.add_argument('--out', help='write the Markdown report to this file')
    ap.add_argument('--repeats', type=int, default=0, help='runs per contender (default: per metric)')
    ap.add_argument('--lines', type=int, default=25000, help='throughput: lines per writer (default 25000)')
    ap.add_argument('--rss-children', default='4,100')
    ap.add_argument('--scale', default='1,10,100,500')
    ap.add_argument('--timeout', type=float, default=20.0, help='seconds for children to come up')
    ap.add_argument('--tp-timeout', type=float, default=0, help='seconds for one throughput run '
                    '(default 120, 30 with --quick)')
    ap.add_argument('--max-timeouts', type=int, default=2, help='give a contender up for the rest of a '
                    'measurement after this many timeouts in a row (default 2)')
    ap.add_argument('--term-timeout', type=float, default=10.0, help='seconds from SIGTERM to all gone')
    ap.add_argument('--grace', type=float, default=2.0, help='seconds from SIGTERM to SIGKILL in teardown')
    ap.add_argument('--settle', type=float, default=0.3, help='seconds to let things settle before sampling')
    ap.add_argument('--self-test', action='store_true',
                    help='check the loss checker, then a quick run of the /bin/sh floor only')
    args = ap.parse_args()
    args.tp_timeout = args.tp_timeout or (30.0 if args.quick else 120.0)
    args.rss_children = [int(x) for x in args.rss_children.split(',') if x]
    args.scale = [int(x) for x in args.scale.split(',') if x]
    only = [m for m in args.only.split(',') if m]
    for m in only:
        if m not in METRICS:
            ap.error('unknown metric %r (choose from %s)' % (m, ', '.join(METRICS)))
    todo = [m for m in METRICS if not only or m in only]

    if args.self_test:
        bad = self_test_checks()
        for b in bad:
            log('SELF-TEST FAILED: loss check: ' + b)
        if bad:
            return 1
        log('self-test: loss check catches lost, dup, torn, misattributed, reordered, stray lines')
        args.procrun = args.honcho = None
        args.quick = True
        if args.scale == [1, 10, 100, 500]:
            args.scale = [1, 10, 100]
        args.lines = min(args.lines, 5000)

    for opt in ('procrun', 'honcho'):
        p = getattr(args, opt)
        if p:
            p = os.path.abspath(p)
            if not os.access(p, os.X_OK):
                ap.error('--%s %s: not an executable' % (opt, p))
            setattr(args, opt, p)

    def on_signal(*_):
        raise Abort()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    info = machine(args)
    log('procrun bench: %s, %s cores, load %s; procrun %s; honcho %s' % (
        info['date'], info['nproc'], info['load'], info['procrun_rev'], info['honcho_version']))
    b = Bench(args)
    who_all = contenders(args)
    results = {}
    t0 = time.time()
    status = 0
    try:
        for m in todo:
            results[m] = getattr(b, m)(who_all)
    except Abort:
        log('\ninterrupted; cleaning up')
        status = 130
    finally:
        b.lab.cleanup()
        shutil.rmtree(b.tmp, ignore_errors=True)
        left = alive(tree(os.getpid()))
        if left:
            log('warning: processes left behind: %s' % left)

    # derived values
    for n, r in results.get('scale', {}).items():
        for rs in r.values():
            for x in rs:
                if x.get('ms') is not None:
                    x['ms_per'] = x['ms'] / n

    rep = build_report(b, results, info)
    rep.notes.append('wall time %.0f s; load average at the end %.2f' % (time.time() - t0, os.getloadavg()[0]))
    if args.out:
        with open(args.out, 'w') as f:
            f.write(rep.markdown())
        log('markdown written to %s' % args.out)
    try:
        print(rep.text())
        for n in rep.notes:
            print('- ' + n)
        sys.stdout.flush()
    except BrokenPipeError:
        pass

    errors = []
    for m, r in results.items():
        groups = r.values() if m in ('rss', 'scale') else [r]
        for g in groups:
            for name, rs in g.items():
                errors += ['%s: %s' % (m, x['error']) for x in rs if x.get('error')]
    loss = [e for e in errors if 'LOSS CHECK FAILED' in e]
    if errors:
        log('\n%d trial(s) had problems:' % len(errors))
        for e in sorted(set(errors)):
            log('  ' + e)
    if loss:
        log('\n' + '!' * 72 + '\n!!! LOSS CHECK FAILED (%d trials): output was lost or damaged\n' % len(loss) + '!' * 72)
        status = status or 3
    elif errors and args.self_test:
        status = status or 1
    return status


if __name__ == '__main__':
    sys.exit(main())
