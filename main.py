"""Start RetLLM Desktop: the desktop app, or a CLI command when arguments are given."""

import sys

from retllm_desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
