"""Benchmark: `download_and_store_recording` on a large file — its memory and its throughput
against the minio client's own `fput_object` of the same file, in the same run.

    uv run python bench/recording_store.py                 # 1 GiB, 2 rounds
    uv run python bench/recording_store.py --size-mb 200 --rounds 1
    uv run python bench/recording_store.py --size-mb 200 --rounds 1 --source staging

`--source staging` reads as in production: the file is first put in the `egress` staging
bucket (as Egress uploads it, untimed) and the activity reads it by bucket and key with
credentials from its path-style location, then deletes the staging copy.

Starts moto's S3 server and a static HTTP server (a second process, with Range support) on
free ports, writes an Ogg-like file of the given size to a scratch directory, then alternates
per round: `fput_object` of the file, and the activity downloading it over HTTP into the
bucket. Memory is the peak RSS growth of this process while the activity runs (sampled every
5 ms). Throughput ratio = fput time / activity time (best round of each). Targets: RSS growth
under 64 MiB, ratio at least 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fixtures import PeakRSS, write_ogg_like  # noqa: E402

MiB = 1024 * 1024
TARGET_RSS_MB = 64
TARGET_RATIO = 0.8


def serve(directory: str, port: int) -> None:
    """The static file server (run in its own process: `--serve DIR PORT`)."""
    from aiohttp import web

    app = web.Application()
    app.router.add_static("/files", directory)  # FileResponse: sendfile, Range, ETag
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def main(size_mb: int, rounds: int, source: str = "http") -> int:
    from minio import Minio
    from temporalio.testing import ActivityEnvironment

    from activities.multipart import MAX_IN_FLIGHT
    from activities.storage import PART_SIZE, StorageActivities
    from core import models as m
    from devstack.services import free_port

    scratch = Path(tempfile.mkdtemp(prefix="bench-recording-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        size = size_mb * MiB
        path = scratch / "recording.ogg"
        t = time.monotonic()
        sha = write_ogg_like(path, size)
        print(f"file: {size_mb} MiB written in {time.monotonic() - t:.1f} s", flush=True)

        s3_port, http_port = free_port(), free_port()
        log = (scratch / "servers.log").open("wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
            stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--serve", str(scratch), str(http_port)],
            stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        await wait_port(s3_port)
        await wait_port(http_port)
        minio = Minio(f"127.0.0.1:{s3_port}", "bench", "bench-secret", secure=False)
        minio.make_bucket("recordings")
        minio.make_bucket("egress")
        storage = StorageActivities(
            minio, "recordings", source_hosts=frozenset({f"127.0.0.1:{http_port}"}),
            s3_endpoints=(f"127.0.0.1:{s3_port}",),
        )  # fmt: skip
        url = f"http://127.0.0.1:{http_port}/files/{path.name}"

        fput_times: list[float] = []
        ours_times: list[float] = []
        growths: list[float] = []
        for r in range(1, rounds + 1):
            t = time.monotonic()
            await asyncio.to_thread(minio.fput_object, "recordings", "bench/fput.ogg", str(path))
            fput_times.append(time.monotonic() - t)
            minio.remove_object("recordings", "bench/fput.ogg")

            call_id = m.new_call_id()
            location = url
            if source == "staging":  # what Egress did before the activity runs: not timed
                staged = m.recording_object_key(call_id)
                await asyncio.to_thread(minio.fput_object, "egress", staged, str(path))
                location = f"http://127.0.0.1:{s3_port}/egress/{staged}"
            inp = m.RecordingInput(
                call_id=call_id, room_name=m.room_name_for(call_id), egress_id="EG_bench",
                location=location, expected_size=size, expected_duration_s=0, call_duration_s=0,
            )  # fmt: skip
            t = time.monotonic()
            with PeakRSS() as rss:
                result = await ActivityEnvironment().run(storage.download_and_store_recording, inp)
            ours_times.append(time.monotonic() - t)
            growths.append(rss.growth_mb)
            assert result.sha256 == sha and result.size == size, "stored bytes differ"
            if source == "staging":
                assert not list(minio.list_objects("egress", prefix=result.key)), "staging kept"
            minio.remove_object("recordings", result.key)
            print(
                f"round {r}: fput_object {fput_times[-1]:.2f} s ({size_mb / fput_times[-1]:.0f} "
                f"MiB/s) | download_and_store_recording {ours_times[-1]:.2f} s "
                f"({size_mb / ours_times[-1]:.0f} MiB/s), peak RSS growth {growths[-1]:.1f} MiB",
                flush=True,
            )

        best_fput, best_ours = min(fput_times), min(ours_times)
        ratio = best_fput / best_ours
        peak = max(growths)
        print(f"\nsource:                    {source}")
        print(f"file size:                 {size_mb} MiB (sha256 verified after every round)")
        print(f"part size / in flight:     {PART_SIZE // MiB} MiB / {MAX_IN_FLIGHT}")
        print(f"fput_object (best):        {best_fput:.2f} s  {size_mb / best_fput:.0f} MiB/s")
        print(f"download_and_store (best): {best_ours:.2f} s  {size_mb / best_ours:.0f} MiB/s")
        print(f"throughput ratio:          {ratio:.2f}  (target >= {TARGET_RATIO})")
        print(f"peak RSS growth (max):     {peak:.1f} MiB  (target < {TARGET_RSS_MB} MiB)")
        ok = peak < TARGET_RSS_MB and ratio >= TARGET_RATIO
        print("result:                    " + ("PASS" if ok else "FAIL"))
        return 0 if ok else 1
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    from core.temporal import exit_process

    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (1024)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each (2)")
    parser.add_argument("--source", choices=("http", "staging"), default="http",
                        help="http: an allowed HTTP host; staging: the egress bucket (S3)")  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    exit_process(asyncio.run(main(args.size_mb, args.rounds, args.source)))
