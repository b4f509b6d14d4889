"""Cost of running Apply in the detector worker process instead of in the GUI process (prints figures).

    python scripts/benchmark_worker.py [--phase] [--repeats 1]

On the benchmark's 256x256x128 profile scan, loaded into a slicer-core scene: end-to-end time of
``CMBDetectorLogic.process`` in this process versus a :class:`BackgroundDetection` through a warm
worker (started and ready beforehand, as the panel keeps it between runs), polled every 100 ms
like the panel's timer; the longest single poll (the GUI thread's longest busy spell, loading
the result included); and the cancel latency (kill to process gone) during the 3D CNN stage.
Both paths start warm (this process imports torch and ultralytics first, as the worker does
before it says Ready) and run their first detection, so both pay the model loading once.
On a shared machine the stage times swing with the load; the time each path spends outside
the detector's timed stages (``result.timings``) isolates what the worker adds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CMBDetector"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from benchmark import profile_scan_data  # noqa: E402

from CMBDetectorMRML import volumes  # noqa: E402
from CMBDetectorMRML.background import BackgroundDetection  # noqa: E402
from CMBDetectorMRML.logic import CMBDetectorLogic  # noqa: E402
from CMBDetectorMRML.scene import new_scene  # noqa: E402
from CMBDetectorMRML.worker import warm_up  # noqa: E402
from CMBDetectorMRML.worker_client import WorkerClient  # noqa: E402

POLL_S = 0.1


def wait_ready(client: WorkerClient) -> float:
    start = time.perf_counter()
    client.start()
    while not client.ready:
        client.poll()
        time.sleep(POLL_S)
    return time.perf_counter() - start


def background_run(logic, client, volume, phase):
    """End-to-end seconds, seconds spent starting the run (writing the inputs), the longest poll
    and the ProcessResult."""
    start = time.perf_counter()
    run = BackgroundDetection(logic, client, volume, phaseNode=phase)
    submitted = time.perf_counter() - start
    longest = 0.0
    while True:
        t = time.perf_counter()
        out = run.poll().out
        longest = max(longest, time.perf_counter() - t)
        if out is not None:
            return time.perf_counter() - start, submitted, longest, out
        time.sleep(POLL_S)


def cancel_during(logic, client, volume, phase, stage: str) -> float:
    """Cancel latency once the run has reached ``stage``."""
    run = BackgroundDetection(logic, client, volume, phaseNode=phase)
    while run.poll().stage != stage:
        time.sleep(0.02)
    return run.cancel()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", action="store_true", help="give the detector the scan's phase image")
    parser.add_argument("--repeats", type=int, default=1, help="detections per path (alternating)")
    parser.add_argument("--cancels", type=int, default=2, help="cancel-latency measurements")
    args = parser.parse_args(argv)

    scan = profile_scan_data()
    headless = new_scene()
    volume = volumes.volume_from_array(headless.scene, scan.magnitude, scan.geometry, "profile")
    phase = volumes.volume_from_array(headless.scene, scan.phase, scan.geometry, "phase") if args.phase else None
    logic, client = CMBDetectorLogic(), WorkerClient()
    try:
        cold_start = wait_ready(client)
        warm_up()
        local, remote, submit, longest, local_outside, remote_outside = [], [], [], [], [], []
        for n in range(args.repeats):
            t = time.perf_counter()
            result = logic.process(volume, phaseNode=phase).result
            local.append(time.perf_counter() - t)
            local_outside.append(local[-1] - sum(result.timings.values()))
            count = result.count
            seconds, submitted, poll, out = background_run(logic, client, volume, phase)
            remote.append(seconds)
            remote_outside.append(seconds - sum(out.result.timings.values()))
            submit.append(submitted)
            longest.append(poll)
            print(f"[benchmark_worker] run {n + 1}: in-process {local[-1]:.1f} s, worker {seconds:.1f} s "
                  f"({count} detections)", flush=True)
        cancels = []
        for _ in range(args.cancels):
            wait_ready(client)
            cancels.append(cancel_during(logic, client, volume, phase, "3D CNN"))
    finally:
        client.close()
    figures = {
        "scan": "x".join(map(str, scan.magnitude.shape[::-1])) + " synthetic SWI" + (" + phase" if args.phase else ""), "cpu_cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 1), "worker_start_to_ready_s": round(cold_start, 2),
        "in_process_s": [round(v, 2) for v in local], "worker_s": [round(v, 2) for v in remote],
        "overhead_s": round(statistics.median(remote) - statistics.median(local), 2),
        "outside_stages_in_process_s": [round(v, 2) for v in local_outside],
        "outside_stages_worker_s": [round(v, 2) for v in remote_outside],
        "overhead_outside_stages_s": round(statistics.median(remote_outside) - statistics.median(local_outside), 2),
        "start_run_s": round(max(submit), 3), "longest_poll_s": round(max(longest), 3),
        "cancel_latency_s": [round(v, 3) for v in cancels]}
    print(json.dumps(figures))
    print(f"Apply through the warm worker: {statistics.median(remote):.1f} s vs {statistics.median(local):.1f} s "
          f"in process (overhead {figures['overhead_s']:+.1f} s; outside the timed stages "
          f"{figures['overhead_outside_stages_s']:+.2f} s); GUI thread busy at most "
          f"{max(max(submit), max(longest)):.2f} s at a time; cancel latency "
          f"{', '.join(f'{v:.2f}' for v in cancels)} s; worker start to ready {cold_start:.1f} s "
          f"({os.cpu_count()} CPU cores, load average {figures['load_average_1min']}).")


if __name__ == "__main__":
    main()
