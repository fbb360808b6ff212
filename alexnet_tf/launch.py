"""Try multi-worker training on one machine: N local worker processes, one TF_CONFIG each.

    python -m alexnet_tf.launch --workers 2 [--port-base auto] -- <alexnet_tf.train arguments>

Picks free loopback ports, starts `python -m alexnet_tf.train <arguments>` once per worker
with TF_CONFIG {"cluster": {"worker": ["127.0.0.1:p0", ...]}, "task": {"type": "worker",
"index": i}} (worker 0 is the chief), prints every output line as `[worker i] ...`, and stops
all workers on Ctrl-C or as soon as one fails. Exit code: the first failure's (128 + signal
for a worker killed by a signal), 128 + signal when the launcher is stopped (130 on Ctrl-C,
143 on SIGTERM), else 0.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
# A worker holds SIGTERM while it saves an epoch; one stuck longer gets SIGKILL (a save cut off
# so is no loss: the backup keeps the previous epoch's copy). Mid-epoch, SIGTERM ends it at once.
STOP_GRACE_SECONDS = 10


def free_ports(count, host=HOST):
    """`count` distinct ports the OS reports free (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(hosts, index):
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def _die_with_parent():
    """Linux: a worker gets SIGTERM if the launcher dies (no orphans blocked in collectives)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _exit_code(returncode):
    return 128 - returncode if returncode < 0 else returncode


def parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m alexnet_tf.launch", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="number of worker processes")
    parser.add_argument("--port-base", default="auto",
                        help="'auto' (free ports from the OS) or P: ports P, P+1, ...")
    parser.add_argument("--module", default="alexnet_tf.train", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs=argparse.REMAINDER,
                        help="-- then the arguments for python -m alexnet_tf.train")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.port_base != "auto" and not (args.port_base.isdigit() and
                                         1 <= int(args.port_base) <= 65536 - args.workers):
        parser.error(f"--port-base must be 'auto' or a port number with room for "
                     f"{args.workers} ports (up to {65536 - args.workers}), got {args.port_base!r}")
    if args.args[:1] == ["--"]:
        args.args = args.args[1:]
    return args


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    ports = (free_ports(args.workers) if args.port_base == "auto"
             else [int(args.port_base) + i for i in range(args.workers)])
    hosts = [f"{HOST}:{port}" for port in ports]
    print(f"[launch] {args.workers} workers on {', '.join(hosts)} (worker 0 is the chief)",
          flush=True)
    lock = threading.Lock()
    workers, readers = [], []
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or stopped by a supervisor
        signal.signal(signum, _interrupt)  # (SIGINT too: a shell may start us with it ignored)
    try:
        for index in range(args.workers):  # all started before any thread (preexec_fn)
            env = {**os.environ, "TF_CONFIG": tf_config(hosts, index), "PYTHONUNBUFFERED": "1"}
            workers.append(subprocess.Popen(
                [sys.executable, "-u", "-m", args.module, *args.args], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, errors="replace", bufsize=1, start_new_session=True,
                preexec_fn=_die_with_parent))
            print(f"[launch] worker {index}: pid {workers[-1].pid}", flush=True)
        for index, proc in enumerate(workers):
            readers.append(threading.Thread(target=_stream, daemon=True,
                                            args=(proc, f"[worker {index}] ", lock)))
            readers[-1].start()
        code = _wait(workers)
    except KeyboardInterrupt as interrupt:  # args: the signal, when _interrupt raised it
        print("[launch] interrupted: stopping all workers", flush=True)
        code = 128 + (interrupt.args[0] if interrupt.args else signal.SIGINT)
    for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C: the stop is bounded anyway
        signal.signal(signum, signal.SIG_IGN)
    _stop(workers)
    for reader in readers:
        if reader.ident is not None:  # a stop that came during Thread.start() left one unstarted
            reader.join(timeout=5)
    print(f"[launch] done, exit code {code}", flush=True)
    return code


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signum)


def _stream(proc, prefix, lock):
    for line in proc.stdout:  # text mode: "\r" progress updates arrive as lines too
        with lock:
            sys.stdout.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
            sys.stdout.flush()


def _wait(workers):
    """Waits until all succeed (0) or one fails (its code; the others are then stopped)."""
    while True:
        codes = [proc.poll() for proc in workers]
        for index, code in enumerate(codes):
            if code:
                print(f"[launch] worker {index} exited with code {code}: stopping the others",
                      flush=True)
                return _exit_code(code)
        if all(code == 0 for code in codes):
            return 0
        time.sleep(0.1)


def _stop(workers):
    """SIGTERM to the workers still running, SIGKILL after a grace period."""
    running = [proc for proc in workers if proc.poll() is None]
    for proc in running:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the worker and anything it started
        except ProcessLookupError:
            pass
    deadline = time.time() + STOP_GRACE_SECONDS
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
