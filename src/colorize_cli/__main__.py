"""Entry point of ``colorize`` and ``python -m colorize_cli``.

``--version`` is answered here, before the command-line framework is imported, so it is instant.
"""

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from colorize_cli._version import __version__

        print(f"colorize-cli {__version__}")
        return
    from colorize_cli.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
