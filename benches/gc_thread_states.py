#!/usr/bin/env python3
"""Where the server's threads are while the GC bench runs: before, during and after a collection.

Run beside `cargo bench --bench gc -- --online-only` (as root, for the kernel stacks):

    python3 benches/gc_thread_states.py target/gc-bench/root states.txt &
    cargo bench --bench gc -- --online-only

Every ~4 ms it reads /proc/<server>/task/*/stat (state, nice, CPU time) and, for threads in
uninterruptible sleep (D), their kernel stack. It splits the run into three phases: `before`
(until `regapp gc` starts), `gc` (while it runs) and `purge` (until the store's trash is gone),
and writes, per phase, the CPU cores used by the server's threads by nice value, by the bench's
pushers and by the machine (from /proc/stat), then the average number of threads in each
(name, nice, state, kernel stack). Its findings are in the history of BENCHMARKS.md (garbage collection).
"""

import collections
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
MACHINE = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
SKIPPED_FRAMES = {"__schedule", "schedule", "schedule_preempt_disabled", "io_schedule"}


def pid_of(matches):
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if matches(cmd):
            return pid
    return None


def regapp(subcommand):
    return lambda cmd: (
        len(cmd) > 1 and b"regapp" in os.path.basename(cmd[0]) and cmd[1] == subcommand
    )


def bench(cmd):
    return os.path.basename(cmd[0]).startswith(b"gc-") and b"--bench" in cmd


def stat_fields(path):
    text = open(path).read()
    return text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()


def kernel_stack(path):
    try:
        frames = [line.split()[1].split("+")[0] for line in open(path)]
    except OSError:
        return "?"
    return "<".join(f for f in frames if f not in SKIPPED_FRAMES)[:160]


def main():
    root, out = sys.argv[1], sys.argv[2]
    trash = os.path.join(root, "regapp-trash")
    server = None
    while server is None:
        server = pid_of(regapp(b"serve"))
        time.sleep(0.05)
    pushers = pid_of(bench)
    threads = collections.defaultdict(collections.Counter)
    samples = collections.Counter()
    first_cpu, last_cpu, first_at, last_at = {}, {}, {}, {}
    phase, collected, checked = "before", False, 0.0
    while True:
        now = time.time()
        if now - checked > 0.05:
            checked = now
            if pid_of(regapp(b"gc")):
                phase, collected = "gc", True
            elif collected:
                if not os.path.exists(trash):
                    break
                phase = "purge"
        try:
            tasks = os.listdir(f"/proc/{server}/task")
        except FileNotFoundError:
            break
        samples[phase] += 1
        cpu = collections.Counter()
        for task in tasks:
            base = f"/proc/{server}/task/{task}"
            try:
                name, fields = stat_fields(f"{base}/stat")
            except (OSError, ValueError):
                continue
            state, nice = fields[0], int(fields[16])
            cpu[f"server nice {nice}"] += (int(fields[11]) + int(fields[12])) / HZ
            if state == "S":
                continue
            stack = kernel_stack(f"{base}/stack") if state == "D" else ""
            threads[phase][(name.rstrip("0123456789-"), nice, state, stack)] += 1
        for name, value in zip(MACHINE, open("/proc/stat").readline().split()[1:9]):
            cpu[f"machine {name}"] = int(value) / HZ
        if pushers:
            try:
                _, fields = stat_fields(f"/proc/{pushers}/stat")
                cpu["bench (pushers)"] = (int(fields[11]) + int(fields[12])) / HZ
            except (OSError, ValueError):
                pass
        first_cpu.setdefault(phase, cpu)
        first_at.setdefault(phase, now)
        last_cpu[phase], last_at[phase] = cpu, now
        time.sleep(0.004)
    with open(out, "w") as report:
        for phase in ("before", "gc", "purge"):
            if not samples[phase]:
                continue
            seconds = max(last_at[phase] - first_at[phase], 1e-3)
            report.write(f"== {phase}: {samples[phase]} samples over {seconds:.1f} s\n")
            for key in sorted(last_cpu[phase]):
                used = last_cpu[phase][key] - first_cpu[phase].get(key, 0)
                report.write(f"  cpu {key}: {used / seconds:.2f} cores\n")
            for key, count in threads[phase].most_common(30):
                report.write(f"  {count / samples[phase]:6.3f} {key}\n")


if __name__ == "__main__":
    main()
