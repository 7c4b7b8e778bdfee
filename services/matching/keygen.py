"""Creates the templates-at-rest key: ``python -m retailface.services.matching.keygen PATH``.

Writes 32 random bytes as base64 text, mode 0600, and refuses to overwrite an existing file (losing
the key makes every gallery written with it unreadable). Point RETAILFACE_MATCHING_KEY_FILE at it,
or store its content in the deployment's secret store and mount it as a file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retailface.services.matching.crypto import generate_key_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retailface.services.matching.keygen", description=__doc__)
    parser.add_argument("path", type=Path, help="key file to create")
    args = parser.parse_args(argv)
    try:
        generate_key_file(args.path)
    except FileExistsError:
        print(f"{args.path} exists; refusing to overwrite a key", file=sys.stderr)
        return 1
    print(f"wrote a new 32-byte matching key to {args.path}; set RETAILFACE_MATCHING_KEY_FILE={args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
