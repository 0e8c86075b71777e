#!/usr/bin/env python3
"""Git store benchmark: one append and one 7-region deploy at N records of history.

Usage: scripts/bench-git-store.py BINARY [--layout old|segments] [--runs 5] N...

For each N it generates a local bare remote whose ledger branch holds N real-shaped history
records (the lines of one real 7-region deploy, replayed with fresh ids and a valid hash chain),
in the old layout (one root `history.jsonl`) or in segments of 256 KiB, clones a project of it,
warms the clone (the first fetch downloads everything once), then times `publish-event` (one
append) and `deploy` (7 regions in 3 stages, exec adapter), and measures how many bytes the
remote's objects grow per append (the uncompressed size of the objects the append added).
Prints the median of --runs runs of each.
"""
import hashlib, json, os, random, shutil, statistics, subprocess, sys, tempfile, time

SEGMENT = 256 * 1024
CONFIG = """
[app]
name = "demo"
version = "env:TEST_VERSION"

[target]
adapter = "exec"

[target.exec]
deploy = ["./deploy.sh", "{region}", "{version}"]
current = ["./current.sh", "{region}"]

[defaults]
timeout = "30s"
command_timeout = "20s"

[[stage]]
name = "canary"
regions = ["lhr"]
gates = ["health"]

[[stage]]
name = "primary"
regions = ["ewr", "ord", "fra"]
gates = ["health"]

[[stage]]
name = "full"
regions = ["nrt", "syd", "gru"]
gates = ["health"]

[gate.health]
type = "command"
run = ["./health.sh", "{region}"]
interval = "100ms"
timeout = "5s"
severity = "P1"
failures = 2
"""
REGIONS = ["lhr", "ewr", "ord", "fra", "nrt", "syd", "gru"]
SCRIPTS = {
    "deploy.sh": '#!/bin/sh\ndir="$(cd "$(dirname "$0")" && pwd)"\nprintf "%s\\n" "$2" > "$dir/state/$1"\n',
    "current.sh": '#!/bin/sh\ndir="$(cd "$(dirname "$0")" && pwd)"\ncat "$dir/state/$1" 2>/dev/null; exit 0\n',
    "health.sh": '#!/bin/sh\nexit 0\n',
}
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com",
               GIT_CONFIG_NOSYSTEM="1")


def git(cwd, *args, input=None):
    return subprocess.run(["git", *args], cwd=cwd, env=dict(GIT_ENV, HOME=cwd), input=input,
                          check=True, capture_output=True).stdout


def project(root, binary, remote=None, store="file"):
    os.makedirs(os.path.join(root, "state"), exist_ok=True)
    cfg = CONFIG + (f'\n[state]\nstore = "{store}"\nremote = "origin"\n' if store == "git" else "")
    open(os.path.join(root, "pipeline.toml"), "w").write(cfg)
    for name, text in SCRIPTS.items():
        path = os.path.join(root, name)
        open(path, "w").write(text)
        os.chmod(path, 0o755)
    for r in REGIONS:
        open(os.path.join(root, "state", r), "w").write("v1\n")
    open(os.path.join(root, ".gitignore"), "w").write(".shipgate/\nstate/\n")
    if remote:
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "init")
        git(root, "remote", "add", "origin", remote)


def run(binary, root, *args, env=None):
    e = dict(os.environ, TEST_VERSION="v2", SHIPGATE_NO_PROGRESS="1", CI="true")
    for k in ["SHIPGATE_STATE_DIR", "SHIPGATE_CONFIG", "GITHUB_TOKEN", "SHIPGATE_GIT_TOKEN"]:
        e.pop(k, None)
    e.update(env or {})
    t = time.perf_counter()
    r = subprocess.run([binary, *args], cwd=root, env=e, capture_output=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{args} failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
    return dt


def templates(binary, tmp):
    """The history lines and status.json of one real deploy on the file store."""
    root = os.path.join(tmp, "template")
    project(root, binary)
    run(binary, root, "deploy")
    lines = open(os.path.join(root, ".shipgate/history.jsonl"), "rb").read().splitlines()
    status = open(os.path.join(root, ".shipgate/status.json"), "rb").read()
    return lines, status


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def history(lines, n):
    """n lines: the template replayed with fresh ids, ending in the template itself (so
    status.json's last record is the last deploy), chained from genesis."""
    out, prev = [], "0" * 64
    objs = [json.loads(l) for l in lines]
    fill = n - len(objs)
    for i in range(max(fill, 0) + len(objs)):
        if i < fill:
            o = dict(objs[i % len(objs)])
            o["id"] = "01J" + "".join(random.choice(CROCKFORD) for _ in range(23))
        else:
            o = dict(objs[i - fill])
        o["prev"] = prev
        line = json.dumps(o, separators=(",", ":")).encode()
        prev = hashlib.sha256(line).hexdigest()
        out.append(line + b"\n")
    return out


def remote_with(tmp, name, lines, status, layout):
    remote = os.path.join(tmp, name)
    os.makedirs(remote)
    git(remote, "init", "-q", "--bare", "-b", "main")
    files = []
    if layout == "old":
        files.append(("history.jsonl", b"".join(lines)))
    else:
        seg, n = [], 0
        for line in lines:
            if seg and sum(map(len, seg)) + len(line) > SEGMENT:
                files.append((f"history/{n // 1000:03}/{n:06}.jsonl", b"".join(seg)))
                seg, n = [], n + 1
            seg.append(line)
        files.append((f"history/{n // 1000:03}/{n:06}.jsonl", b"".join(seg)))
    files.append(("status.json", status))
    stream = []
    for i, (_, data) in enumerate(files):
        stream.append(b"blob\nmark :%d\ndata %d\n" % (i + 1, len(data)) + data + b"\n")
    msg = b"generated history"
    stream.append(b"commit refs/heads/shipgate/ledger\ncommitter b <b@example.com> 0 +0000\n"
                  + b"data %d\n" % len(msg) + msg + b"\n")
    for i, (path, _) in enumerate(files):
        stream.append(b"M 100644 :%d %s\n" % (i + 1, path.encode()))
    git(remote, "fast-import", "--quiet", input=b"".join(stream))
    return remote


def growth(remote, old, new):
    objs = git(remote, "rev-list", "--objects", f"{old}..{new}")
    sizes = git(remote, "cat-file", "--batch-check=%(objectsize)",
                input=b"\n".join(l.split(b" ")[0] for l in objs.splitlines()) + b"\n")
    return sum(int(s) for s in sizes.split())


def main():
    args = sys.argv[1:]
    binary = os.path.abspath(args.pop(0))
    layout, runs = "segments", 5
    if "--layout" in args:
        i = args.index("--layout"); layout = args[i + 1]; del args[i:i + 2]
    if "--runs" in args:
        i = args.index("--runs"); runs = int(args[i + 1]); del args[i:i + 2]
    sizes = [int(a) for a in args] or [1000, 10000, 100000]
    tmp = tempfile.mkdtemp(prefix="shipgate-gitbench-")
    try:
        lines, status = templates(binary, tmp)
        print(f"binary {binary}, layout {layout}, median of {runs}")
        print("| records | one append | growth per append | 7-region deploy | growth per deploy |")
        print("| --- | --- | --- | --- | --- |")
        for n in sizes:
            remote = remote_with(tmp, f"remote-{n}", history(lines, n), status, layout)
            root = os.path.join(tmp, f"clone-{n}")
            project(root, binary, remote, "git")
            run(binary, root, "status")  # warm: the first fetch downloads everything once
            app, dep, ga, gd = [], [], [], []
            tip = lambda: git(remote, "rev-parse", "shipgate/ledger").strip().decode()
            for i in range(runs):
                before = tip()
                app.append(run(binary, root, "publish-event", "--platform", "render",
                               "--event-type", "success", "--commit-sha", f"bench{i}"))
                ga.append(growth(remote, before, tip()))
                before = tip()
                dep.append(run(binary, root, "deploy", env={"TEST_VERSION": f"v{i + 3}"}))
                gd.append(growth(remote, before, tip()))
            ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms"
            kb = lambda xs: f"{statistics.median(xs) / 1024:.0f} KiB"
            print(f"| {n} | {ms(app)} | {kb(ga)} | {ms(dep)} | {kb(gd)} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


main()
