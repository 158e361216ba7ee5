"""Picture of the first-run dialog: ``QT_QPA_PLATFORM=offscreen python scripts/screenshot_setup.py [OUT.png]``.

Opens the setup dialog as a new user sees it (no models yet, the real model list) and grabs it to
``docs/setup-dialog.png`` (default). Works offscreen; no network.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "setup-dialog.png"
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from retllm_desktop.gui.setup_dialog import SetupDialog

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        dlg = SetupDialog(str(Path(tmp) / "models"), "no search model", "no checking model")
        dlg.resize(820, 640)
        dlg.show()
        for _ in range(20):
            app.processEvents()
        out.parent.mkdir(parents=True, exist_ok=True)
        if not dlg.grab().save(str(out)):
            sys.exit(f"could not write {out}")
        dlg.close()
    print(out)


if __name__ == "__main__":
    main()
