#!/usr/bin/env python3
"""Portcullis loopback benchmark.

One command measures, on 127.0.0.1 only, with every server under test pinned to SUT_CPU and
the load generator (wrk) pinned to LOAD_CPU:

  1 upstream alone            5 API-key route             9  login vs raw argon2id
  2 nginx plain proxy         6 cookie route              10 proxied p99 under a login flood
  3 Portcullis public route   7 JWT, moka off, Redis hit  11 revocation propagation A -> B
  4 JWT, cached identity      8 JWT, moka off, SQL (PostgreSQL and SQLite)
  12 (with --callgrind) userland instructions per request of the proxy process, nginx vs
     Portcullis rows 3-6, counted by valgrind's callgrind: unlike req/s, not moved by CPU steal

and prints one table with ratios against the baseline rows of the same run. Runs are
interleaved (run 1 of every row, then run 2, ...) and medians reported. Every process it
starts is stopped by PID on exit. Needs: target/release/portcullis, nginx, wrk, taskset,
and (rows 7, 8a, 11) PostgreSQL and Redis on their default local ports.

    cargo build --release
    python3 bench/run.py                    # full run (~12 min)
    python3 bench/run.py --quick            # 1 run of 5 s per row
    python3 bench/run.py --rows 1,2,4       # some rows only
"""

import argparse
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release", "portcullis")
PASSWORD = "staple horse 4821"

PORT_UPSTREAM = 18180
PORT_NGINX = 18181
PORT_UPSTREAM_H2 = 18182   # the same nginx upstream, HTTP/2 without TLS (h2c)
PORT_MAIN = 18190      # SQLite, in-process cache on
PORT_REDIS = 18191     # PostgreSQL + Redis, in-process cache off
PORT_PG = 18192        # PostgreSQL, no Redis, cache off
PORT_SQLITE = 18193    # SQLite, cache off
PORT_B = 18194         # second replica of PORT_REPL_A (PostgreSQL + Redis, cache on)
PORT_REPL_A = 18195
PORT_CG = 18196        # rows 12: the process under callgrind
PORT_LOG = 18197       # row 4l: as PORT_MAIN with the access log on
PORT_NOLOG = 18198     # row 13: the access log's paired control

STARTED = []           # (name, Popen)
PINNED_SERVICES = []   # (pid, original affinity list)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stop_all():
    for name, proc in reversed(STARTED):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    STARTED.clear()
    for pid, cpus in PINNED_SERVICES:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True)
    PINNED_SERVICES.clear()


atexit.register(stop_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))


def start(name, argv, cpu, workdir, env=None):
    out = open(os.path.join(workdir, f"{name}.log"), "w")
    proc = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=out, stderr=subprocess.STDOUT,
                            cwd=workdir, env={**os.environ, **(env or {})})
    STARTED.append((name, proc))
    return proc


def wait_http(port, proc, name, path="/"):
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited during start; see its log")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{name} did not listen on {port}")


def call(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {"content-type": "application/json"} if body is not None else {}
    h.update(headers or {})
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data.startswith(b"{") else data)


def session(port, email):
    status, v = call(port, "POST", "/api/v1/auth/register",
                     {"email": email, "password": PASSWORD, "full_name": "Bench"})
    if status == 400:
        status, v = call(port, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
    assert status in (200, 201), (status, v)
    return v["access_token"]


def portcullis_config(workdir, name, port, store, redis=None, cache=True, hashing=None, access_log=False,
                      throttle=None, quiet_route=False):
    key = os.path.join(workdir, "signing.pem")
    lines = [
        "[server]", f'listen = "127.0.0.1:{port}"',
        "[store]", f'database_url = "{store}"',
    ]
    if redis:
        lines += [f'redis_url = "{redis}"', f'redis_key_prefix = "bench{int(time.time())}:"']
    lines += ["[tokens]", f'signing_key_path = "{key}"',
              "[cookies]", "secure = false",
              "[log]"] + (["access_log = true", 'level = "info"'] if access_log
                          else ["access_log = false", 'level = "warn"'])
    if not cache:
        lines += ["[cache]", "max_entries = 0"]
    if hashing:
        lines += ["[password_hashing]"] + hashing
    if throttle:
        lines += ["[throttle]"] + throttle
    lines += [
        "[[routes]]", 'name = "public"', 'prefix = "/public"', 'auth = "public"',
        f'upstream = "http://127.0.0.1:{PORT_UPSTREAM}"',
        "[[routes]]", 'name = "api"', 'prefix = "/api"',
        f'upstream = "http://127.0.0.1:{PORT_UPSTREAM}"',
        "[[routes]]", 'name = "h2"', 'prefix = "/h2"',
        f'upstream = "http://127.0.0.1:{PORT_UPSTREAM_H2}"', 'upstream_protocol = "h2c"',
    ]
    if quiet_route:
        # As "api", but kept out of the access log: row 4q, row 4l's control in one process.
        lines += ["[[routes]]", 'name = "quiet"', 'prefix = "/quiet"', "access_log = false",
                  f'upstream = "http://127.0.0.1:{PORT_UPSTREAM}"']
    path = os.path.join(workdir, f"{name}.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run_wrk(url, conns, duration, headers=(), script=None, cpu="1", threads=1, pid=None, upstream=None):
    """Runs wrk; returns its parsed output, the busy share of every CPU, and (with `pid`)
    that process's user and system CPU seconds over the run (with `upstream`, the
    upstream worker's too)."""
    argv = ["taskset", "-c", cpu, "wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}", "--latency"]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    argv.append(url)
    cpu_before = cpu_times()
    proc_before = process_times(pid) if pid else None
    up_before = process_times(upstream) if upstream else None
    segs_before = tcp_out_segments()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    cpu_after = cpu_times()
    result = parse_wrk(out)
    result["segments"] = tcp_out_segments() - segs_before
    if pid:
        after = process_times(pid)
        result["proc_usr"], result["proc_sys"] = (a - b for a, b in zip(after, proc_before))
    if upstream:
        result["up_cpu"] = sum(process_times(upstream)) - sum(up_before)
    return result, cpu_busy(cpu_before, cpu_after)


def tcp_out_segments():
    """TCP segments sent by every process on this machine (/proc/net/snmp)."""
    with open("/proc/net/snmp") as f:
        tcp = [line.split() for line in f if line.startswith("Tcp:")]
    return int(tcp[1][tcp[0].index("OutSegs")])


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(text):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\b", text, re.M)
        lat[pct] = to_ms(*m.groups()) if m else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    requests = re.search(r"(\d+) requests in", text)
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"],
            "requests": int(requests.group(1)) if requests else 0,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(0) if errors else ""}


def cpu_times():
    with open("/proc/stat") as f:
        return {l.split()[0]: list(map(int, l.split()[1:9])) for l in f if re.match(r"cpu\d", l)}


def process_times(pid):
    """User and system CPU seconds of `pid` so far: all its threads, exited ones included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / hz, int(fields[12]) / hz


def worker_of(master):
    """nginx's single worker: the child of the master process."""
    for _ in range(50):
        kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise SystemExit(f"nginx master {master} has no worker")


def cpu_busy(before, after):
    out = {}
    for cpu, a in after.items():
        d = [x - y for x, y in zip(a, before[cpu])]
        total = sum(d) or 1
        out[cpu] = 100.0 * (d[0] + d[1] + d[2] + d[5] + d[6]) / total
    return out


def pin_service(pattern, cpu):
    """Pins a system service (PostgreSQL, Redis) to the SUT CPU for the rows that use it."""
    for pid in subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split():
        cur = subprocess.run(["taskset", "-p", "-c", pid], capture_output=True, text=True).stdout
        m = re.search(r"list: (.*)", cur)
        if m:
            PINNED_SERVICES.append((int(pid), m.group(1).strip()))
            subprocess.run(["taskset", "-a", "-p", "-c", cpu, pid], capture_output=True)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pg_url(name):
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def reset_pg(name):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                    f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True, check=True)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {name}"],
                   capture_output=True, check=True)


def services_up():
    pg = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0
    redis = subprocess.run(["redis-cli", "ping"], capture_output=True, text=True).stdout.strip() == "PONG"
    return pg and redis


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--warmup", default="2s")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", default="32,64")
    ap.add_argument("--rows", default="1,2,3,4,5,6,7,8,9,10,11,13")
    ap.add_argument("--sut-cpu", default="0")
    ap.add_argument("--load-cpu", default="1")
    ap.add_argument("--trials", type=int, default=200, help="revocation trials (row 11)")
    ap.add_argument("--quick", action="store_true", help="1 run of 5 s per row, 64 connections")
    ap.add_argument("--out", default=None, help="write the report here too")
    ap.add_argument("--access-log-to", choices=["file", "off"], default="file",
                    help="rows 4l and 13: the access log to a file in the scratch directory, or off "
                         "(an A/A control: the two processes then differ in nothing)")
    ap.add_argument("--syscalls", action="store_true",
                    help="also count system calls per request under strace (rows 2, 4, 4h; ~30 s)")
    ap.add_argument("--callgrind", action="store_true",
                    help="also count instructions per request under valgrind (row 12, ~3 min)")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.runs, args.conns, args.trials = "5s", 1, "64", 50
    rows = {r.strip() for r in args.rows.split(",")}
    sut, lg = args.sut_cpu, args.load_cpu
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required (Debian: apt-get install {tool if tool != 'taskset' else 'util-linux'})")
    if not os.path.exists(BIN):
        raise SystemExit("build first: cargo build --release")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    have_nginx = os.path.exists(nginx)
    need_services = rows & {"7", "8", "11"}
    have_services = services_up() if need_services else False
    if need_services and not have_services:
        log("PostgreSQL or Redis is not answering: skipping rows 7, 8 (PostgreSQL) and 11")

    work = tempfile.mkdtemp(prefix="portcullis-bench.")
    log(f"scratch directory {work}")
    subprocess.run([BIN, "keys", "generate", "--out", os.path.join(work, "signing.pem")], check=True,
                   capture_output=True)

    def conf(template, port, extra):
        text = open(os.path.join(HERE, template)).read().replace("@DIR@", work).replace("@PORT@", str(port))
        for k, v in extra.items():
            text = text.replace(k, str(v))
        path = os.path.join(work, template)
        with open(path, "w") as f:
            f.write(text)
        return path

    up = start("upstream", [nginx, "-c", conf("nginx-upstream.conf", PORT_UPSTREAM,
                                             {"@H2PORT@": PORT_UPSTREAM_H2})], sut, work)
    wait_http(PORT_UPSTREAM, up, "upstream")
    if have_nginx:
        px = start("nginx-proxy", [nginx, "-c", conf("nginx-proxy.conf", PORT_NGINX, {"@UPSTREAM@": PORT_UPSTREAM})], sut, work)
        wait_http(PORT_NGINX, px, "nginx proxy")

    main_cfg = portcullis_config(work, "main", PORT_MAIN, f"sqlite://{work}/main.db")
    p_main = start("portcullis-main", [BIN, "serve", "--config", main_cfg], sut, work)
    wait_http(PORT_MAIN, p_main, "portcullis")
    time.sleep(1.0)
    idle_rss = rss_kb(p_main.pid)
    token = session(PORT_MAIN, "bench@example.com")
    _, key = call(PORT_MAIN, "POST", "/api/v1/auth/api-keys", {"name": "bench"},
                  {"authorization": f"Bearer {token}"})
    api_key = key["api_key"]
    checks = check_contract(PORT_MAIN, token, api_key)

    targets = {}   # row id -> (label, url, headers)
    served_by = {"1": worker_of(up.pid), "3": p_main.pid, "4": p_main.pid, "5": p_main.pid,
                 "6": p_main.pid}   # row id -> the process whose CPU time is reported
    if have_nginx:
        served_by["2"] = worker_of(px.pid)
    targets["1"] = ("upstream alone", f"http://127.0.0.1:{PORT_UPSTREAM}/api/x", [])
    if have_nginx:
        targets["2"] = ("nginx plain proxy (no auth)", f"http://127.0.0.1:{PORT_NGINX}/api/x", [])
    targets["3"] = ("Portcullis public route", f"http://127.0.0.1:{PORT_MAIN}/public/x", [])
    targets["4"] = ("Portcullis JWT, cached identity", f"http://127.0.0.1:{PORT_MAIN}/api/x",
                    [f"Authorization: Bearer {token}"])
    targets["4h"] = ("Portcullis JWT, cached identity, h2c upstream", f"http://127.0.0.1:{PORT_MAIN}/h2/x",
                     [f"Authorization: Bearer {token}"])
    served_by["4h"] = p_main.pid
    if "4" in rows:
        # Row 4 again with the default access log on (lines to a file, as a container's
        # stderr goes to a pipe).
        log_cfg = portcullis_config(work, "logged", PORT_LOG, f"sqlite://{work}/main.db",
                                    access_log=args.access_log_to != "off", quiet_route=True)
        p_log = start("portcullis-logged", [BIN, "serve", "--config", log_cfg], sut, work)
        wait_http(PORT_LOG, p_log, "portcullis with the access log")
        targets["4l"] = ("Portcullis JWT, cached identity, access log on", f"http://127.0.0.1:{PORT_LOG}/api/x",
                         [f"Authorization: Bearer {token}"])
        served_by["4l"] = p_log.pid
        # The same process, a route with access_log = false: the log's cost without the
        # noise between two processes.
        targets["4q"] = ("the 4l process, a route kept out of the access log", f"http://127.0.0.1:{PORT_LOG}/quiet/x",
                         [f"Authorization: Bearer {token}"])
        served_by["4q"] = p_log.pid
    targets["5"] = ("Portcullis API key", f"http://127.0.0.1:{PORT_MAIN}/api/x", [f"X-API-Key: {api_key}"])
    targets["6"] = ("Portcullis cookie", f"http://127.0.0.1:{PORT_MAIN}/api/x", [f"Cookie: access_token={token}"])

    if "8" in rows:
        cfg = portcullis_config(work, "sqlite-nocache", PORT_SQLITE, f"sqlite://{work}/nocache.db", cache=False)
        p = start("portcullis-sqlite", [BIN, "serve", "--config", cfg], sut, work)
        wait_http(PORT_SQLITE, p, "portcullis sqlite")
        t = session(PORT_SQLITE, "bench@example.com")
        targets["8b"] = ("JWT, moka off, SQLite", f"http://127.0.0.1:{PORT_SQLITE}/api/x", [f"Authorization: Bearer {t}"])
        served_by["8b"] = p.pid
    if have_services and rows & {"7", "8", "11"}:
        reset_pg("portcullis_bench")
        pin_service("postgres", sut)
        pin_service("redis-server", sut)
        redis_cfg = portcullis_config(work, "redis", PORT_REDIS, pg_url("portcullis_bench"), redis="redis://127.0.0.1:6379", cache=False)
        p = start("portcullis-redis", [BIN, "serve", "--config", redis_cfg], sut, work)
        wait_http(PORT_REDIS, p, "portcullis redis")
        t = session(PORT_REDIS, "bench@example.com")
        targets["7"] = ("JWT, moka off, Redis hit", f"http://127.0.0.1:{PORT_REDIS}/api/x", [f"Authorization: Bearer {t}"])
        served_by["7"] = p.pid
        pg_cfg = portcullis_config(work, "pg", PORT_PG, pg_url("portcullis_bench"), cache=False)
        p = start("portcullis-pg", [BIN, "serve", "--config", pg_cfg], sut, work)
        wait_http(PORT_PG, p, "portcullis pg")
        targets["8a"] = ("JWT, moka off, PostgreSQL", f"http://127.0.0.1:{PORT_PG}/api/x", [f"Authorization: Bearer {t}"])
        served_by["8a"] = p.pid

    chosen = [r for r in ["1", "2", "3", "4", "4h", "4l", "4q", "5", "6", "7", "8a", "8b"]
              if r in targets and (r in rows or r.rstrip("abhlq") in rows)]
    conns_list = [int(c) for c in args.conns.split(",")]
    results = {}   # (row, conns) -> list of (wrk, cpu)
    for conns in conns_list:
        for row in chosen:
            _, url, headers = targets[row]
            run_wrk(url, conns, args.warmup, headers, cpu=lg)
    for run in range(args.runs):
        for conns in conns_list:
            for row in chosen:
                label, url, headers = targets[row]
                log(f"run {run + 1}/{args.runs} c={conns} row {row}: {label}")
                results.setdefault((row, conns), []).append(
                    run_wrk(url, conns, args.duration, headers, cpu=lg, pid=served_by.get(row),
                            upstream=served_by["1"] if row != "1" else None))

    report = [header_block(args, idle_rss)]
    if chosen:
        report.append(throughput_table(results, targets, chosen, conns_list, sut, lg))
    if "13" in rows:
        report.append(access_log_row(work, args, sut, lg, token))
    if "9" in rows or "10" in rows:
        report.append(login_rows(work, rows, args, sut, lg, token))
    if "11" in rows and have_services:
        report.append(revocation_row(work, args, sut))
    if args.syscalls:
        report.append(syscall_rows(targets, served_by, lg))
    if args.callgrind:
        report.append(instruction_rows(work, targets, sut, lg, nginx if have_nginx else None))
    report.append("Correctness checks before load:\n\n```\n" + "\n".join(checks) + "\n```\n")
    text = "\n".join(report)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


def check_contract(port, token, api_key):
    lines = []

    def expect(name, status, want):
        ok = status == want
        lines.append(f"{'PASS' if ok else 'FAIL'} {name} (HTTP {status})")
        if not ok:
            raise SystemExit("\n".join(lines))

    expect("JWT accepted", call(port, "GET", "/api/x", headers={"authorization": f"Bearer {token}"})[0], 200)
    expect("no credential refused", call(port, "GET", "/api/x")[0], 401)
    bad = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    expect("bad signature refused", call(port, "GET", "/api/x", headers={"authorization": f"Bearer {bad}"})[0], 401)
    expect("API key accepted", call(port, "GET", "/api/x", headers={"x-api-key": api_key})[0], 200)
    status, body = call(port, "GET", "/api/whoami", headers={"authorization": f"Bearer {token}", "x-user-id": "spoofed"})
    expect("identity injected, spoof stripped", status, 200)
    if b"spoofed" in body or b"id=user_" not in body:
        raise SystemExit(f"upstream saw {body!r}")
    status, body = call(port, "GET", "/h2/whoami", headers={"authorization": f"Bearer {token}", "x-user-id": "spoofed"})
    expect("h2c upstream: identity injected, spoof stripped", status, 200)
    if b"spoofed" in body or b"id=user_" not in body:
        raise SystemExit(f"h2c upstream saw {body!r}")
    return lines


def header_block(args, idle_rss):
    def version(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "not installed"
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        "```\n"
        f"date_utc: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
        f"cpu: {cpu} x {os.cpu_count()}\n"
        f"kernel: {os.uname().release}\n"
        f"portcullis: {version([BIN, '--version'])}\n"
        f"nginx: {version(['nginx', '-v'])}\n"
        f"wrk: {version(['wrk', '-v'])}\n"
        f"settings: duration={args.duration} warmup={args.warmup} runs={args.runs} conns={args.conns} "
        f"sut_cpu={args.sut_cpu} load_cpu={args.load_cpu}\n"
        f"portcullis idle RSS: {idle_rss / 1024:.1f} MB\n"
        "```\n"
    )


def sut_us(run, sut):
    """Busy time of the SUT CPU per request, in µs."""
    wrk, busy = run
    return busy.get(f"cpu{sut}", 0) / 100 * 1e6 / wrk["rps"] if wrk["rps"] else float("nan")


def per_request_us(run, key):
    wrk = run[0]
    return wrk[key] * 1e6 / wrk["requests"] if key in wrk and wrk["requests"] else float("nan")


def throughput_table(results, targets, chosen, conns_list, sut, lg):
    out = ["| row | scenario | conns | req/s (median) | min..max | vs upstream | vs nginx | p50 ms | p99 ms "
           "| SUT CPU | SUT µs/req | server usr µs/req | server sys µs/req | upstream µs/req | vs nginx, usr = 0 "
           "| non-2xx |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    nan = [({"rps": float("nan")}, {})]
    for conns in conns_list:
        base_up = statistics.median(r[0]["rps"] for r in results.get(("1", conns), nan))
        base_ng = statistics.median(r[0]["rps"] for r in results.get(("2", conns), nan))
        ng_us = statistics.median(sut_us(r, sut) for r in results.get(("2", conns), nan))
        for row in chosen:
            runs = results[(row, conns)]
            rps = [r[0]["rps"] for r in runs]
            med = statistics.median(rps)
            p50 = statistics.median(r[0]["p50"] for r in runs)
            p99 = statistics.median(r[0]["p99"] for r in runs)
            busy = statistics.median(r[1].get(f"cpu{sut}", 0) for r in runs)
            usr = statistics.median(per_request_us(r, "proc_usr") for r in runs)
            sys_ = statistics.median(per_request_us(r, "proc_sys") for r in runs)
            up_us = statistics.median(per_request_us(r, "up_cpu") for r in runs) if row != "1" else usr + sys_
            # The most this row could reach against nginx if Portcullis's own user-space
            # work cost nothing: the SUT CPU time left per request is kernel + upstream.
            bound = (f"{ng_us / statistics.median(sut_us(r, sut) - per_request_us(r, 'proc_usr') for r in runs):.2f}"
                     if row not in ("1", "2") else "–")
            non2xx = sum(r[0]["non2xx"] for r in runs)
            out.append(
                f"| {row} | {targets[row][0]} | {conns} | {med:,.0f} | {min(rps):,.0f}..{max(rps):,.0f} | "
                f"{med / base_up:.2f} | {med / base_ng:.2f} | {p50:.3f} | {p99:.3f} | {busy:.0f}% | "
                f"{statistics.median(sut_us(r, sut) for r in runs):.1f} | {usr:.1f} | {sys_:.1f} | {up_us:.1f} | {bound} | {non2xx} |")
    wire = ["| row | conns | TCP segments/req (all processes) |", "|---|---:|---:|"]
    for conns in conns_list:
        for row in chosen:
            runs = results[(row, conns)]
            sg = statistics.median(r[0]["segments"] / r[0]["requests"] for r in runs)
            wire.append(f"| {row} | {conns} | {sg:.2f} |")
    out.append("\nTCP segments sent on the machine per request (`/proc/net/snmp` OutSegs: client, "
               "proxy and upstream together; `--syscalls` adds system calls).\n")
    out.extend(wire)
    return ("Requests/s are medians over the runs; ratios are against rows 1 and 2 of this run at the "
            "same connection count. SUT µs/req = busy time of the SUT CPU (upstream + proxy + kernel) "
            "per request. Server usr/sys µs/req = CPU time of the process answering the row (the "
            "upstream's worker in row 1, nginx's worker in row 2, Portcullis in the others) per "
            "request; system time includes the loopback receive work the kernel does while that "
            "process sends. Upstream µs/req = the upstream nginx worker's CPU time (usr + sys) per "
            "request, over HTTP/1.1 or, in row 4h, over HTTP/2. `vs nginx, usr = 0` = nginx's SUT µs/req over this row's SUT µs/req minus "
            "Portcullis's user time: the ratio this row would reach if Portcullis's own code took no "
            "time at all.\n\n" + "\n".join(out) + "\n")


def login_rows(work, rows, args, sut, lg, token):
    out = []
    # Rows 9 and 10 measure hashing, not throttling: wrk cuts the logins in flight at the end
    # of each run, and a login cut off holds its place in the limiters like a failure, so
    # with the defaults the second run would meet login_pair's limit.
    lax = '{ burst = 100000, every = "1ms" }'
    cfg = portcullis_config(work, "login", PORT_REPL_A, f"sqlite://{work}/login.db",
                            throttle=[f"login_account = {lax}", f"login_address = {lax}",
                                      f"login_pair = {lax}"])
    p = start("portcullis-login", [BIN, "serve", "--config", cfg], sut, work)
    wait_http(PORT_REPL_A, p, "portcullis login")
    session(PORT_REPL_A, "login@example.com")
    script = os.path.join(work, "login.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n'
                f'wrk.body = \'{{"email":"login@example.com","password":"{PASSWORD}"}}\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    login_url = f"http://127.0.0.1:{PORT_REPL_A}/api/v1/auth/login"
    if "9" in rows:
        # Raw hashing and logins alternate, like the other rows' runs, so that a burst of CPU
        # steal lands on both sides of the ratio rather than on one.
        seconds = max(1, int(to_ms(*re.fullmatch(r"([\d.]+)(ms|s)", args.duration).groups()) / 1000))
        raws, logins = [], []
        for _ in range(args.runs):
            raw = subprocess.run(["taskset", "-c", sut, BIN, "hash-rate", "--config", cfg, "--seconds",
                                  str(seconds)], capture_output=True, text=True, check=True).stdout
            raws.append(float(re.search(r"([\d.]+) hashes/s", raw).group(1)))
            logins.append(run_wrk(login_url, 8, args.duration, script=script, cpu=lg)[0])
        # What the login burst left in memory: right after the last run, then every 10 s for
        # a minute with no logins (argon2 working memory idle for 10 s is freed).
        rss_after = [rss_kb(p.pid)]
        for _ in range(6):
            time.sleep(10)
            rss_after.append(rss_kb(p.pid))
        raw_rate = statistics.median(raws)
        ok_rate = statistics.median(l["rps"] for l in logins)
        ratio = statistics.median(l["rps"] / r for l, r in zip(logins, raws))
        non2xx = sum(l["non2xx"] for l in logins)
        out.append("| row | measure | value |\n|---|---|---:|\n"
                   f"| 9 | raw argon2id hashes/s (same parameters, SUT CPU; median, {min(raws):.1f}..{max(raws):.1f}) | {raw_rate:.1f} |\n"
                   f"| 9 | login requests/s (8 connections; median, {min(l['rps'] for l in logins):.1f}..{max(l['rps'] for l in logins):.1f}) | {ok_rate:.1f} |\n"
                   f"| 9 | login / raw (median of the paired runs' ratios) | {ratio:.2f} |\n"
                   f"| 9 | non-2xx logins | {non2xx} |\n"
                   f"| 9 | portcullis RSS MB right after the logins | {rss_after[0] / 1024:.1f} |\n"
                   f"| 9 | RSS MB 10, 20, 30, 40, 50, 60 s later | "
                   f"{', '.join(f'{r / 1024:.1f}' for r in rss_after[1:])} |\n")
    if "10" in rows:
        url = f"http://127.0.0.1:{PORT_REPL_A}/api/x"
        t = session(PORT_REPL_A, "flood@example.com")
        hdr = [f"Authorization: Bearer {t}"]
        calm, flood = [], []
        for _ in range(args.runs):
            calm.append(run_wrk(url, 32, args.duration, hdr, cpu=lg)[0])
            flooder = subprocess.Popen(["taskset", "-c", lg, "wrk", "-t1", "-c64", f"-d{args.duration}",
                                        "-s", script, login_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            STARTED.append(("login-flood", flooder))
            flood.append(run_wrk(url, 32, args.duration, hdr, cpu=lg)[0])
            flooder.wait()
        p99_calm = statistics.median(r["p99"] for r in calm)
        p99_flood = statistics.median(r["p99"] for r in flood)
        out.append("| row | measure | calm | under login flood | ratio |\n|---|---|---:|---:|---:|\n"
                   f"| 10 | proxied JWT p99 ms (32 conns) | {p99_calm:.3f} | {p99_flood:.3f} | {p99_flood / p99_calm:.2f} |\n"
                   f"| 10 | proxied JWT req/s | {statistics.median(r['rps'] for r in calm):,.0f} | "
                   f"{statistics.median(r['rps'] for r in flood):,.0f} | |\n")
    return "\n".join(out)


def callgrind_count(name, argv, port, sut, lg, work, url=None, headers=()):
    """Instructions the process executes: from start to stop, with a 5 s wrk load against
    `url` in between when given. Returns (instructions, requests answered)."""
    out = os.path.join(work, f"callgrind.{name}.out")
    proc = start(f"callgrind-{name}", ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + argv,
                 sut, work)
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"{name} under valgrind exited during start; see its log")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/healthz")
            c.getresponse().read()
            break
        except OSError:
            time.sleep(0.1)
    requests = 0
    if url:
        wrk, _ = run_wrk(url, 8, "5s", headers, cpu=lg)
        requests = wrk["requests"]
    proc.terminate()
    proc.wait(timeout=120)
    with open(out) as f:
        total = next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:")))
    return total, requests


def access_log_row(work, args, sut, lg, token):
    """Row 13: what the access log costs. Two processes differing only in `log.access_log`
    are started afresh for every run (one process can run a few percent faster than an
    identical one for the whole of its life), warmed, then measured back to back in
    alternating order; the ratio is the median of the runs' own on/off ratios."""
    url = "http://127.0.0.1:{}/api/x"
    hdr = [f"Authorization: Bearer {token}"]
    pairs = []
    for run in range(max(args.runs, 5)):
        procs = {}
        for logged, port in ((False, PORT_NOLOG), (True, PORT_LOG)):
            cfg = portcullis_config(work, f"pair-{int(logged)}", port, f"sqlite://{work}/main.db",
                                    access_log=logged and args.access_log_to != "off")
            procs[logged] = start(f"pair-{int(logged)}-{run}", [BIN, "serve", "--config", cfg], sut, work)
            wait_http(port, procs[logged], "portcullis (row 13)")
        ports = {False: PORT_NOLOG, True: PORT_LOG}
        for logged in (False, True):
            run_wrk(url.format(ports[logged]), 64, args.warmup, hdr, cpu=lg)
        got = {}
        for logged in ((False, True) if run % 2 == 0 else (True, False)):
            log(f"row 13 pair {run + 1}: access log {'on' if logged else 'off'}")
            got[logged] = run_wrk(url.format(ports[logged]), 64, args.duration, hdr, cpu=lg,
                                  pid=procs[logged].pid)[0]
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
        pairs.append(got)
    ratios = [p[True]["rps"] / p[False]["rps"] for p in pairs]
    cpu = {k: statistics.median((p[k]["proc_usr"] + p[k]["proc_sys"]) * 1e6 / p[k]["requests"] for p in pairs)
           for k in (False, True)}
    return ("Row 13: the access log's cost, JWT with a cached identity (row 4), 64 connections; "
            "fresh processes per pair, measured back to back in alternating order. Lines go to "
            f"{'a file' if args.access_log_to == 'file' else 'nowhere: A/A control, the log is off in both'}.\n\n"
            "| row | measure | access log off | on | on / off |\n|---|---|---:|---:|---:|\n"
            f"| 13 | req/s (median of {len(pairs)} pairs) | {statistics.median(p[False]['rps'] for p in pairs):,.0f} | "
            f"{statistics.median(p[True]['rps'] for p in pairs):,.0f} | {statistics.median(ratios):.3f} "
            f"({min(ratios):.3f}..{max(ratios):.3f}) |\n"
            f"| 13 | Portcullis CPU µs/req (usr + sys, all threads) | {cpu[False]:.1f} | {cpu[True]:.1f} | "
            f"{cpu[True] / cpu[False]:.3f} |\n")


def syscall_rows(targets, served_by, lg):
    """System calls per request of the process answering rows 2, 4, 4h and 4l, and of the
    upstream's worker behind it, counted by `strace -c -f` attached for a 3 s wrk run
    (64 connections)."""
    if not shutil.which("strace"):
        return "System calls skipped: strace is not installed.\n"
    out = ["| row | scenario | syscalls/req | the most frequent, per request | upstream syscalls/req "
           "| the upstream's most frequent |", "|---|---|---:|---|---:|---|"]

    def counted(summary, n):
        calls = {}
        with open(summary) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[3].isdigit():
                    calls[parts[-1]] = int(parts[3])
        total = calls.pop("total", sum(calls.values()))
        top = ", ".join(f"{name} {c / n:.2f}" for name, c in sorted(calls.items(), key=lambda kv: -kv[1])[:4])
        return f"{total / n:.2f} | {top}"

    for row in ("2", "4", "4h", "4l"):
        if row not in targets or row not in served_by:
            continue
        label, url, headers = targets[row]
        summaries = [tempfile.mktemp(prefix="strace."), tempfile.mktemp(prefix="strace.")]
        tracers = [subprocess.Popen(["strace", "-c", "-f", "-q", "-o", summary, "-p", str(pid)],
                                    stderr=subprocess.DEVNULL)
                   for summary, pid in zip(summaries, (served_by[row], served_by["1"]))]
        time.sleep(1.0)
        wrk, _ = run_wrk(url, 64, "3s", headers, cpu=lg)
        for tracer in tracers:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
        n = max(wrk["requests"], 1)
        out.append(f"| {row} | {label} | {counted(summaries[0], n)} | {counted(summaries[1], n)} |")
    return ("System calls per request of the process answering the row and of the upstream's "
            "nginx worker, counted by `strace -c -f` during 3 s of wrk -c64 (strace slows the "
            "processes, so more events share each epoll wait than without it; compare rows with "
            "each other).\n\n" + "\n".join(out) + "\n")


def instruction_rows(work, targets, sut, lg, nginx):
    """Row 12: userland instructions per request of the proxy process (start-up subtracted)."""
    if not shutil.which("valgrind"):
        return "Row 12 skipped: valgrind is not installed.\n"
    rows = []
    if nginx:
        text = (open(os.path.join(HERE, "nginx-proxy.conf")).read()
                .replace("@DIR@", work).replace("@PORT@", str(PORT_CG))
                .replace("@UPSTREAM@", str(PORT_UPSTREAM)).replace("proxy.pid", "callgrind.pid")
                .replace("daemon off;", "daemon off;\nmaster_process off;"))
        ng_conf = os.path.join(work, "nginx-callgrind.conf")
        with open(ng_conf, "w") as f:
            f.write(text)
        argv = [nginx, "-c", ng_conf]
        idle, _ = callgrind_count("nginx-idle", argv, PORT_CG, sut, lg, work)
        busy, n = callgrind_count("nginx", argv, PORT_CG, sut, lg, work, f"http://127.0.0.1:{PORT_CG}/api/x")
        rows.append(("2", "nginx plain proxy (no auth)", (busy - idle) / n))
    cfg = portcullis_config(work, "callgrind", PORT_CG, f"sqlite://{work}/main.db")
    argv = [BIN, "serve", "--config", cfg]
    idle, _ = callgrind_count("portcullis-idle", argv, PORT_CG, sut, lg, work)
    for row in ("3", "4", "4h", "5", "6"):
        label, url, headers = targets[row]
        url = url.replace(f":{PORT_MAIN}/", f":{PORT_CG}/")
        busy, n = callgrind_count(f"portcullis-{row}", argv, PORT_CG, sut, lg, work, url, headers)
        rows.append((row, label, (busy - idle) / n))
    if "4l" in targets:
        # The access log's cost, every thread's instructions included (the writer's too).
        cfg = portcullis_config(work, "callgrind-logged", PORT_CG, f"sqlite://{work}/main.db",
                                access_log=True)
        argv = [BIN, "serve", "--config", cfg]
        idle, _ = callgrind_count("portcullis-logged-idle", argv, PORT_CG, sut, lg, work)
        label, url, headers = targets["4l"]
        url = url.replace(f":{PORT_LOG}/", f":{PORT_CG}/")
        busy, n = callgrind_count("portcullis-4l", argv, PORT_CG, sut, lg, work, url, headers)
        rows.append(("4l", label, (busy - idle) / n))
    base = rows[0][2] if nginx else float("nan")
    out = ["| row | scenario | instructions/request | vs nginx |", "|---|---|---:|---:|"]
    for row, label, ir in rows:
        out.append(f"| 12.{row} | {label} | {ir:,.0f} | {ir / base:.2f} |")
    return ("Row 12: userland instructions per request of the proxy process under callgrind (8 "
            "connections, 5 s; start-up measured separately and subtracted). valgrind hides the "
            "CPU's SHA extensions, so SHA-256 of a JWT or cookie credential (rows 4 and 6) runs a "
            "slower code path here than natively.\n\n" + "\n".join(out) + "\n")


def revocation_row(work, args, sut):
    reset_pg("portcullis_bench_repl")
    url = pg_url("portcullis_bench_repl")
    a_cfg = portcullis_config(work, "repl-a", PORT_REPL_A + 10, url, redis="redis://127.0.0.1:6379")
    b_cfg = portcullis_config(work, "repl-b", PORT_B, url, redis="redis://127.0.0.1:6379")
    # Both replicas must share the key prefix (and so the channel).
    prefix = open(a_cfg).read().split("redis_key_prefix = ")[1].split("\n")[0]
    text = open(b_cfg).read()
    with open(b_cfg, "w") as f:
        f.write(re.sub(r"redis_key_prefix = .*", f"redis_key_prefix = {prefix}", text))
    a = start("replica-a", [BIN, "serve", "--config", a_cfg], sut, work)
    wait_http(PORT_REPL_A + 10, a, "replica A")
    b = start("replica-b", [BIN, "serve", "--config", b_cfg], sut, work)
    wait_http(PORT_B, b, "replica B")
    time.sleep(1.0)
    call(PORT_REPL_A + 10, "POST", "/api/v1/auth/register", {"email": "rev@example.com", "password": PASSWORD, "full_name": "R"})
    conn_a = http.client.HTTPConnection("127.0.0.1", PORT_REPL_A + 10, timeout=10)
    conn_b = http.client.HTTPConnection("127.0.0.1", PORT_B, timeout=10)

    def req(conn, method, path, body=None, token=None):
        h = {"content-type": "application/json"}
        if token:
            h["authorization"] = f"Bearer {token}"
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, data

    propagation, logout_latency, first_refused = [], [], 0
    for _ in range(args.trials):
        _, body = req(conn_a, "POST", "/api/v1/auth/login", {"email": "rev@example.com", "password": PASSWORD})
        token = json.loads(body)["access_token"]
        assert req(conn_b, "GET", "/api/x", token=token)[0] == 200
        t0 = time.perf_counter()
        assert req(conn_a, "POST", "/api/v1/auth/logout", token=token)[0] == 200
        t1 = time.perf_counter()
        polls = 0
        while True:
            polls += 1
            if req(conn_b, "GET", "/api/x", token=token)[0] == 401:
                break
        t2 = time.perf_counter()
        first_refused += polls == 1
        logout_latency.append((t1 - t0) * 1000)
        propagation.append((t2 - t0) * 1000)

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(len(xs) * p / 100))]

    return ("| row | measure (ms, over %d trials) | p50 | p99 |\n|---|---|---:|---:|\n" % args.trials
            + f"| 11 | logout on A (includes waiting for every replica to confirm) | {pct(logout_latency, 50):.2f} | {pct(logout_latency, 99):.2f} |\n"
            + f"| 11 | logout sent on A -> B refuses the token | {pct(propagation, 50):.2f} | {pct(propagation, 99):.2f} |\n"
            + f"\nB refused on its first request after the logout returned in {first_refused}/{args.trials} trials.\n")


if __name__ == "__main__":
    main()
