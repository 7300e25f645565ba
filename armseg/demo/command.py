"""`armseg demo`: flags in, `demo()` called."""

from __future__ import annotations

import argparse
from pathlib import Path

from armseg.params import parse_bool, parse_size, typed_value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo", help="folder for the phantom tree and the table "
                                                      "(default: %(default)s)")
    parser.add_argument("--size", nargs="+", default=["256", "256"], metavar="N",
                        help="in-plane size of the phantom scans (default: 256 256)")
    parser.add_argument("--slices", default=None, help="slices per scan (default: 64, fewer than synth's "
                        "100 so the whole demo keeps to 10 minutes on 2 cores)")
    parser.add_argument("--epochs", default=None, help="train epochs (default: train's default)")
    parser.add_argument("--seed", default="0", help="seed of the phantom and of training (default: 0)")
    parser.add_argument("--quick", nargs="?", const="true", default="false", metavar="BOOL",
                        help="tiny scans and networks: checks the plumbing in a minute; its numbers say "
                             "nothing about accuracy")


def run(args: argparse.Namespace) -> None:
    from armseg.demo.run import DEMO_SLICES, demo

    demo(Path(args.out), parse_size(args.size), typed_value(args.slices, "slices", int, DEMO_SLICES),
         epochs=typed_value(args.epochs, "epochs", int), seed=typed_value(args.seed, "seed", int, 0),
         quick=parse_bool(args.quick, "quick"))
