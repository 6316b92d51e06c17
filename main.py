"""Start gradviz from a source checkout: ``python main.py``."""
import sys

if __name__ == "__main__":
    # Imported here, not at the top: the training process ("spawn") re-imports this file,
    # and must not pay for Qt and the views.
    from gradviz.ui.app import run_app

    sys.exit(run_app())
