"""Write generated sample audio (several formats, plus a few deliberately broken files) to a folder
and print their paths."""

import argparse
import sys

from pipeline.demo_audio import write_samples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", help="where to write the files (created if missing)")
    parser.add_argument("--no-bad", action="store_true", help="leave out the broken files")
    args = parser.parse_args(argv)
    for path in write_samples(args.folder, include_bad=not args.no_bad).values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
