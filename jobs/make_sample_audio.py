"""Write generated sample audio (several formats, plus a few deliberately broken files) to a folder."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.samples import write_samples  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder")
    parser.add_argument("--no-bad", action="store_true", help="leave out the broken files")
    args = parser.parse_args()
    for name, path in write_samples(args.folder, include_bad=not args.no_bad).items():
        print(path)
