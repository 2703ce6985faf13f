"""Resume start-up at AudioSet scale: read the committed keys of an unbalanced-AudioSet-sized output
(≈1.74 M rows in ≈7,000 shards) from a real S3 API (moto's server on 127.0.0.1).

    python bench/resume_startup.py [--shards 7000] [--rows 1740000] [--threads 32]

Token lists are one pair per row (the key read touches only the id/chunk/count columns, and a
full-size corpus would not fit in moto's memory); what is measured is the listing and the
per-shard requests, which is what dominates on S3. It reads the keys twice: from every footer (an
output without a key index: a run killed before its end), then from the key index that first read
wrote (what a run leaves at its end).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@contextlib.contextmanager
def moto_process():
    """moto's S3 server in its own process: in-process it would share our GIL, which real S3 does not."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=7000)
    parser.add_argument("--rows", type=int, default=1_740_000)
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args()

    import logging

    import boto3
    import numpy as np
    import pyarrow.parquet as pq

    from pipeline.output.folder import KEYS_KEY, OutputFolder, tokens_table
    from pipeline.output.summary import footer_keys
    from tests.support.s3 import S3_ENV

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    os.environ.update(S3_ENV)
    with moto_process() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        per_shard = args.rows // args.shards
        t0 = time.time()

        def put(shard: int) -> None:
            rows = [{"id": f"YT{shard:05d}_{i:04d}_30.000_40.000", "uri": "s3://a/b.flac", "chunk_index": 0,
                     "num_chunks": 1, "chunk_start_s": 0.0, "duration_s": 10.0, "source_sample_rate": 48000,
                     "source_channels": 2, "num_frames": 1, "semantic": np.zeros(1, np.uint16),
                     "acoustic": np.zeros(1, np.uint16), "labels": ["/m/09x0r"], "human_labels": None}
                    for i in range(per_shard)]
            table = tokens_table(rows)
            footer = {**table.schema.metadata, KEYS_KEY.encode(): json.dumps(footer_keys(table)).encode()}
            buffer = io.BytesIO()  # as OutputFolder.write_shard writes it: keys and counts in the footer
            pq.write_table(table.replace_schema_metadata(footer), buffer, compression="zstd")
            client.put_object(Bucket="bench", Key=f"run/tokens/part-{shard:08x}.parquet", Body=buffer.getvalue())

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(args.shards)))
        print(f"wrote {args.shards} shards x {per_shard} rows in {time.time() - t0:.1f} s")

        output = OutputFolder("s3://bench/run", {"s3": {"endpoint_url": endpoint}})
        for threads in sorted({1, args.threads}):
            if threads == 1 and args.shards > 1000:
                sample = OutputFolder("s3://bench/run", {"s3": {"endpoint_url": endpoint}})
                start = time.time()
                files = sample.committed_files("tokens")[:500]
                fs = sample.fs
                for path in files:
                    pq.read_table(path, columns=["id", "chunk_index", "num_chunks"], filesystem=fs)
                per = (time.time() - start) / len(files)
                print(f"sequential (the old way), measured on 500 shards: {per * 1000:.1f} ms/shard "
                      f"-> {per * args.shards:.0f} s for {args.shards}")
                continue
            for what in ("every footer (no key index yet)", "the key index it wrote"):
                start = time.time()
                keys = output.committed_keys(threads=threads)
                print(f"committed_keys with {threads} threads from {what}: {keys.token_rows} keys from "
                      f"{keys.token_files} shards in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
