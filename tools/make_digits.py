"""Writes scikit-learn's handwritten digits as a darknet classifier dataset (see darknet_py/datasets.py).

    python tools/make_digits.py OUT [--size 32] [--seed 0]

then e.g. `darknet-py classifier train OUT/digits.data cfg/mixnet_tiny.cfg`."""
import argparse

from darknet_py.datasets import make_digits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="directory to write (created)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/valid split (default 0)")
    args = parser.parse_args()
    print(make_digits(args.out, size=args.size, seed=args.seed))


if __name__ == "__main__":
    main()
